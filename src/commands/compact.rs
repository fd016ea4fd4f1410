//! `compact`: copies a journal's live bodies into new segments and frees the old.

use std::process::ExitCode;
use std::sync::Arc;

use webspool::cli::CompactArgs;
use webspool::holder::{self, Serves};
use webspool::journal::{CompactOptions, Journal, MinFree, Problem};

use super::held::open_to_write;
use super::verify::print_problem;
use crate::{counted, finished, pages};

/// Runs `compact`: exit 0 when every body moved, 1 when damaged pages were left where
/// they are (named as `verify` names them), 75 when it stopped at `--min-free`.
pub(crate) async fn run_compact(args: CompactArgs) -> anyhow::Result<ExitCode> {
    let journal = Arc::new(
        open_to_write(
            &args.journal.journal,
            Journal::open_existing,
            "a compaction",
        )
        .await?,
    );
    let _serving = holder::serve(journal.clone(), Serves::Readers, Default::default());
    let space = MinFree::new(journal.path(), args.min_free.min_free);
    let options = CompactOptions {
        keep_versions: args.keep_versions,
        drop_gone: args.drop_gone,
    };
    let started = std::time::Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        let mut last = std::time::Instant::now();
        let report = journal.compact(
            &options,
            &space,
            |problem: &Problem| print_problem(problem, false),
            |pages| {
                if last.elapsed() >= std::time::Duration::from_secs(2) {
                    last = std::time::Instant::now();
                    eprintln!("compact: {pages} pages read");
                }
            },
        )?;
        journal.checkpoint()?;
        Ok::<_, anyhow::Error>(report)
    })
    .await??;
    if report.nothing_to_reclaim {
        eprintln!(
            "compact: nothing to reclaim: every byte of the segments belongs to a page's \
             entry or a kept version's; disk bytes {}",
            report.disk_before
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "compact: {}{}{} moved ({} stored bytes, {} upgraded to self-describing entries), \
         {} dropped, {} dropped, {} deleted; disk bytes {} -> {} in {:.1}s",
        match report.disk_full {
            Some(_) => "stopped (disk full): ",
            None => "",
        },
        if report.resumed {
            "resumed an interrupted compaction; "
        } else {
            ""
        },
        counted(report.moved, "body", "bodies"),
        report.moved_bytes,
        report.upgraded,
        counted(report.versions_dropped, "older version", "older versions"),
        counted(report.gone_dropped, "gone page", "gone pages"),
        counted(report.retired, "old segment file", "old segment files"),
        report.disk_before,
        report.disk_after,
        started.elapsed().as_secs_f64(),
    );
    if report.disk_full.is_some() {
        return Ok(finished(false, report.disk_full));
    }
    if report.damaged == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "compact: {} left where they are ({} kept for them); run `webspool verify \
         --repair`, then `webspool compact` again",
        pages(report.damaged),
        counted(
            report.kept.len() as u64,
            "old segment file",
            "old segment files"
        ),
    );
    Ok(ExitCode::FAILURE)
}
