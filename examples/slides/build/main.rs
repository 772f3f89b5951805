//! Turns `slides.md` into the website, at build time: one HTML page per
//! slide, a title page, a stylesheet and a little script for arrow keys.
//! The pages land in `$OUT_DIR/site.rs` as `static` byte strings, so the
//! unikernel serves them straight from its read-only data, with no parsing
//! and no allocation at run time.

mod render;

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let source = std::fs::read_to_string("slides.md").expect("examples/slides/slides.md is readable");
    let talk = render::parse(&source);
    let site = render::site(&talk);
    let mut out = String::from("/// (path, content type, body) for every page of the site.\n");
    out.push_str("pub static PAGES: &[(&str, &str, &[u8])] = &[\n");
    for page in &site {
        writeln!(
            out,
            "    ({:?}, {:?}, {:?}.as_bytes()),",
            page.path, page.content_type, page.body
        )
        .unwrap();
    }
    out.push_str("];\n");
    writeln!(
        out,
        "/// Slides in the talk (pages /1 to /N).\npub const SLIDE_COUNT: usize = {};",
        talk.slides.len()
    )
    .unwrap();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out_dir.join("site.rs"), out).expect("writing site.rs");
    println!("cargo:rerun-if-changed=slides.md");
    println!("cargo:rerun-if-changed=build");
}
