//! tools/bench-parse helper: prints every stored annotation of a webspool journal as
//! one JSON line per page (in id order), so the benchmark can compare webspool's
//! extraction with the Python peer's. Read-only; built by tools/bench-parse against the
//! repository's webspool library (there is no CLI to read annotations).
//!
//!     bench-parse-annotations JOURNAL_DIR > annotations.jsonl

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use webspool::journal::Journal;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: bench-parse-annotations JOURNAL_DIR")?;
    let journal = Journal::open(&dir)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for id in journal.recorded_ids() {
        let id = id?;
        let (Some(entry), Some(a)) = (journal.url(id)?, journal.annotation(id)?) else {
            continue;
        };
        let links: Vec<_> = a
            .links
            .iter()
            .map(|l| serde_json::json!({ "url": l.url, "text": l.text }))
            .collect();
        let line = serde_json::json!({
            "url": entry.url,
            "title": a.title,
            "description": a.description,
            "canonical": a.canonical,
            "links": links,
            "links_dropped": a.links_dropped,
            "word_count": a.word_count,
            "text": a.text,
            "error": a.error,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
