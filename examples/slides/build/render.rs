//! A deliberately small Markdown reader for the talk's format, and the HTML
//! it becomes.
//!
//! The talk uses `## ` for a section, `### ` for a slide, `* ` for list
//! items, `*emphasis*`, and `<!-- speaker notes -->`. Each heading starts a
//! slide; the first heading and the lines under it make the title page.
//! Everything else is escaped and shown as text: nothing in the talk can
//! inject markup into the site.

/// A slide: its heading and its lines.
pub struct Slide {
    pub title: String,
    /// `##` sections get a section-divider look.
    pub is_section: bool,
    pub lines: Vec<String>,
}

pub struct Talk {
    pub title: String,
    pub subtitle: Vec<String>,
    pub slides: Vec<Slide>,
}

pub struct Page {
    pub path: String,
    pub content_type: &'static str,
    pub body: String,
}

pub fn parse(source: &str) -> Talk {
    let mut slides: Vec<Slide> = Vec::new();
    for raw in source.lines() {
        let line = strip_comments(raw);
        let line = line.trim_end();
        if let Some(title) = line.strip_prefix("### ") {
            slides.push(Slide {
                title: title.trim().into(),
                is_section: false,
                lines: vec![],
            });
        } else if let Some(title) = line.strip_prefix("## ").or_else(|| line.strip_prefix("# ")) {
            slides.push(Slide {
                title: title.trim().into(),
                is_section: true,
                lines: vec![],
            });
        } else if !line.trim().is_empty() {
            if let Some(slide) = slides.last_mut() {
                slide.lines.push(line.trim().into());
            }
        }
    }
    let first = if slides.is_empty() {
        Slide {
            title: "Untitled talk".into(),
            is_section: true,
            lines: vec![],
        }
    } else {
        slides.remove(0)
    };
    Talk {
        title: first.title,
        subtitle: first.lines,
        slides,
    }
}

fn strip_comments(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `text`, then turns `*words*` into emphasis. An unpaired last
/// star (a footnote mark) stays a star.
fn inline(text: &str) -> String {
    let escaped = escape(text);
    let parts: Vec<&str> = escaped.split('*').collect();
    let paired_stars = (parts.len() - 1) / 2 * 2;
    let mut out = String::new();
    for (star, part) in parts.iter().enumerate() {
        if star > 0 {
            if star <= paired_stars {
                out.push_str(if star % 2 == 1 { "<em>" } else { "</em>" });
            } else {
                out.push('*');
            }
        }
        out.push_str(part);
    }
    out
}

fn body(lines: &[String]) -> String {
    let mut html = String::new();
    let mut in_list = false;
    for line in lines {
        if let Some(item) = line.strip_prefix("* ") {
            if !in_list {
                html.push_str("<ul>\n");
                in_list = true;
            }
            html.push_str(&format!("<li>{}</li>\n", inline(item)));
        } else {
            if in_list {
                html.push_str("</ul>\n");
                in_list = false;
            }
            html.push_str(&format!("<p>{}</p>\n", inline(line)));
        }
    }
    if in_list {
        html.push_str("</ul>\n");
    }
    html
}

fn layout(talk: &Talk, title: &str, class: &str, content: &str, nav: &str, links: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"/style.css\">\n{links}\
         <script src=\"/keys.js\" defer></script>\n</head>\n<body class=\"{class}\">\n\
         <main>\n{content}</main>\n<nav>{nav}</nav>\n<footer>{talk} &middot; served by an Atoll unikernel</footer>\n\
         </body>\n</html>\n",
        talk = escape(&talk.title),
    )
}

pub fn site(talk: &Talk) -> Vec<Page> {
    let count = talk.slides.len();
    let mut pages = Vec::new();
    let mut contents = String::from("<ol class=\"contents\">\n");
    for (i, slide) in talk.slides.iter().enumerate() {
        contents.push_str(&format!(
            "<li><a href=\"/{}\">{}</a></li>\n",
            i + 1,
            inline(&slide.title)
        ));
    }
    contents.push_str("</ol>\n");
    let title_content = format!(
        "<h1>{}</h1>\n{}<p class=\"start\"><a href=\"/1\">Start the talk &rarr;</a></p>\n{contents}",
        inline(&talk.title),
        body(&talk.subtitle),
    );
    let title_links = if count > 0 {
        "<link rel=\"next\" href=\"/1\">\n"
    } else {
        ""
    };
    let title_nav = if count > 0 {
        "<a rel=\"next\" href=\"/1\">next &rarr;</a>"
    } else {
        ""
    };
    pages.push(Page {
        path: "/".into(),
        content_type: "text/html; charset=utf-8",
        body: layout(
            talk,
            &escape(&talk.title),
            "title",
            &title_content,
            title_nav,
            title_links,
        ),
    });
    for (i, slide) in talk.slides.iter().enumerate() {
        let n = i + 1;
        let prev = if n == 1 { "/".to_string() } else { format!("/{}", n - 1) };
        let mut nav = format!("<a rel=\"prev\" href=\"{prev}\">&larr; previous</a> <span class=\"count\">{n} / {count}</span> <a href=\"/\">contents</a>");
        let mut links = format!("<link rel=\"prev\" href=\"{prev}\">\n");
        if n < count {
            nav.push_str(&format!(" <a rel=\"next\" href=\"/{}\">next &rarr;</a>", n + 1));
            links.push_str(&format!("<link rel=\"next\" href=\"/{}\">\n", n + 1));
        }
        let heading = if slide.is_section { "h1" } else { "h2" };
        let content = format!(
            "<{heading}>{}</{heading}>\n{}",
            inline(&slide.title),
            body(&slide.lines)
        );
        let class = if slide.is_section { "section" } else { "slide" };
        let title = format!("{} &middot; {}", inline(&slide.title), escape(&talk.title));
        pages.push(Page {
            path: format!("/{n}"),
            content_type: "text/html; charset=utf-8",
            body: layout(talk, &title, class, &content, &nav, &links),
        });
    }
    pages.push(Page {
        path: "/style.css".into(),
        content_type: "text/css; charset=utf-8",
        body: STYLE.into(),
    });
    pages.push(Page {
        path: "/keys.js".into(),
        content_type: "text/javascript; charset=utf-8",
        body: KEYS.into(),
    });
    pages
}

const STYLE: &str = r#"html { font-family: system-ui, sans-serif; background: #0b2239; color: #f4f1e8; }
body { margin: 0 auto; max-width: 52rem; min-height: 100vh; display: flex; flex-direction: column; padding: 0 1.5rem; }
main { flex: 1; display: flex; flex-direction: column; justify-content: center; font-size: 1.6rem; line-height: 1.4; }
h1 { font-size: 2.8rem; color: #7fdbca; margin: 0 0 1rem; }
h2 { font-size: 2.2rem; color: #ffd479; margin: 0 0 1rem; }
body.section h1 { font-size: 3.2rem; }
em { color: #ffd479; }
a { color: #7fdbca; }
nav { display: flex; gap: 1.5rem; align-items: center; padding: 1rem 0; font-size: 1.1rem; }
nav .count { opacity: 0.7; }
footer { padding: 0 0 1rem; font-size: 0.9rem; opacity: 0.6; }
body.title main { justify-content: flex-start; padding-top: 3rem; }
ol.contents { font-size: 1.1rem; columns: 2; column-gap: 3rem; }
ol.contents li { break-inside: avoid; }
p.start { font-size: 1.4rem; }
"#;

const KEYS: &str = r#"// Arrow keys move between slides, following the page's rel links.
document.addEventListener("keydown", function (event) {
  var rel = { ArrowRight: "next", ArrowLeft: "prev", " ": "next" }[event.key];
  var link = rel && document.querySelector('link[rel="' + rel + '"]');
  if (link) { window.location.href = link.getAttribute("href"); }
});
"#;
