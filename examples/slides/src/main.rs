//! The flagship demo: a unikernel serving the talk in `slides.md` as a
//! website. Placeholder main until the network stack lands.
#![no_std]
#![no_main]

mod site {
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

#[atoll::main]
async fn main() {
    atoll::println!("{} pages, {} slides", site::PAGES.len(), site::SLIDE_COUNT);
}
