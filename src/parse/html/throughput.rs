//! Throughput of [`parse_html`] on real pages: the Rust documentation shipped with the
//! toolchain. Ignored by default (it needs the docs and a release build):
//!
//! ```text
//! cargo test --release --lib parse::html::throughput -- --ignored --nocapture
//! WEBSPOOL_BENCH_DIRS=book cargo test --release --lib parse::html::throughput -- --ignored --nocapture
//! ```
//!
//! `WEBSPOOL_BENCH_DIRS` lists subdirectories of `share/doc/rust/html` (default
//! `std,book,reference`); about 400 pages are taken evenly from them.

use std::path::PathBuf;
use std::time::Instant;

use super::*;

fn html_files(root: PathBuf) -> Vec<PathBuf> {
    let mut stack = vec![root];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "html") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
#[ignore]
fn throughput() {
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let docs = PathBuf::from(String::from_utf8(sysroot.stdout).unwrap().trim())
        .join("share/doc/rust/html");
    let dirs = std::env::var("WEBSPOOL_BENCH_DIRS").unwrap_or("std,book,reference".into());
    let files: Vec<PathBuf> = dirs
        .split(',')
        .flat_map(|d| html_files(docs.join(d)))
        .collect();
    assert!(!files.is_empty(), "no HTML under {}", docs.display());
    let pages: Vec<Vec<u8>> = files
        .iter()
        .step_by(files.len() / 400 + 1)
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let mb = pages.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let url = Url::parse("https://example.test/dir/page.html").unwrap();
    let rules = Rules::default();
    let mut best = 0f64;
    for round in 0..7 {
        let started = Instant::now();
        let (mut links, mut words) = (0, 0);
        for page in &pages {
            let mut out = Annotation::default();
            parse_html(page, Some("text/html"), &url, &rules, &mut out);
            assert_eq!(out.error, None);
            links += out.links.len();
            words += out.word_count;
        }
        let rate = mb / started.elapsed().as_secs_f64();
        best = best.max(rate);
        println!(
            "{dirs} round {round}: {} pages, {mb:.1} MB, {links} links, {words} words: {rate:.1} MB/s",
            pages.len()
        );
    }
    println!("{dirs}: best {best:.1} MB/s");
}
