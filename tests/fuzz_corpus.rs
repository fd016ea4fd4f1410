//! Every input in `fuzz/corpus/` (the seeds, and what cargo-fuzz kept or found) replayed
//! through the same checks the fuzz targets run, so a regression fails `cargo test`
//! without cargo-fuzz.

use std::path::Path;

// `journal_records` and `segment_entries` bound the memory a decode takes and measures it with this allocator;
// for the rest of the test binary it is the system allocator.
#[global_allocator]
static ALLOCATOR: webspool::fuzz::CountingAlloc = webspool::fuzz::CountingAlloc;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{} fails its check", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "{} holds no input", dir.display());
}

#[test]
fn url_corpus() {
    replay("url", webspool::fuzz::url);
}

#[test]
fn page_corpus() {
    replay("page", webspool::fuzz::page);
}

#[test]
fn robots_corpus() {
    replay("robots", webspool::fuzz::robots);
}

#[test]
fn content_decoding_corpus() {
    replay("content_decoding", webspool::fuzz::content_decoding);
}

#[test]
fn journal_records_corpus() {
    replay("journal_records", webspool::fuzz::journal_records);
}

#[test]
fn segment_entries_corpus() {
    replay("segment_entries", webspool::fuzz::segment_entries);
}

#[test]
fn warc_records_corpus() {
    replay("warc_records", webspool::fuzz::warc_records);
}
