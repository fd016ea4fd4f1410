//! `recover`: rebuilds a journal's database from its body segments.

use std::process::ExitCode;

use webspool::cli::RecoverArgs;
use webspool::journal::JournalError;

use super::held::held_by;

/// Runs `recover`, then says what was found and what to run next.
pub(crate) async fn run_recover(args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let dir = args.journal.journal;
    let report = {
        let within = dir.clone();
        let recovered = tokio::task::spawn_blocking(move || {
            let mut last = std::time::Instant::now();
            webspool::journal::recover(&within, |pages| {
                if last.elapsed() >= std::time::Duration::from_secs(2) {
                    last = std::time::Instant::now();
                    eprintln!("recover: {pages} pages read");
                }
            })
        })
        .await?;
        match recovered {
            Err(e @ JournalError::InUse { .. }) => return Err(held_by(&dir, "a recovery", e).await),
            other => other?,
        }
    };
    let replaced = report
        .replaced
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if report.finished_interrupted {
        eprintln!(
            "recover: finished the interrupted recovery; the replaced files are in {replaced}"
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "recover: {} pages back as fetched (and {} older versions), {} to fetch again (their \
         bodies were damaged), {} damaged stretches skipped; the replaced files are in \
         {replaced}",
        report.pages, report.versions, report.refetch, report.damaged
    );
    if !report.bare_segments.is_empty() {
        eprintln!(
            "recover: {} segments were written before journal format 5 and describe no \
             page: their pages are not recovered",
            report.bare_segments.len()
        );
    }
    eprintln!(
        "recover: next, `webspool parse --journal {0}` (or `crawl` with the same list, \
         which also fetches what is pending), then `webspool sync --journal {0} ...`",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
