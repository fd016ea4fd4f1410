//! `import`: the responses of WARC files recorded as pages of the journal.

use std::process::ExitCode;
use std::sync::Arc;

use webspool::cli::ImportArgs;
use webspool::holder::{self, Serves};
use webspool::journal::Journal;
use webspool::warc::Importer;

use super::held::open_to_write;
use crate::counted;

/// Runs `import`: every file in order; stops at the first bad one, whose error names
/// it and the offset, with the records before it imported.
pub(crate) async fn run_import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let dir = args.journal.journal.clone();
    let journal = Arc::new(open_to_write(&dir, Journal::open, "an import").await?);
    let _serving = holder::serve(journal.clone(), Serves::Readers, Default::default());
    let quiet = args.quiet;
    let (summary, result) = tokio::task::spawn_blocking(move || {
        let mut importer = Importer::new(&journal, args.max_body);
        let mut result = Ok(());
        for file in &args.warc {
            if let Err(e) = importer.import_file(file) {
                result = Err(e);
                break;
            }
        }
        let summary = importer.summary.clone();
        let checkpoint = journal.checkpoint();
        (
            summary,
            result
                .map_err(anyhow::Error::from)
                .and(checkpoint.map_err(Into::into)),
        )
    })
    .await?;
    if !quiet || result.is_err() {
        let skipped: Vec<String> = summary
            .skipped
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        eprintln!(
            "import: {} read, {} records: {} recorded, {} unchanged, {} revisits \
             resolved; skipped: {}",
            counted(summary.files, "file", "files"),
            summary.records,
            counted(summary.recorded, "page", "pages"),
            summary.unchanged,
            summary.revisits,
            match skipped.is_empty() {
                true => "none".to_string(),
                false => skipped.join(", "),
            }
        );
    }
    result?;
    if summary.recorded > 0 && !quiet {
        eprintln!(
            "import: next, `webspool parse --journal {0}`, then `webspool sync --journal \
             {0} ...`",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
