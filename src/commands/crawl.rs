//! `crawl` and `recrawl`: the whole pipeline over a journal, and its summary.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;

use webspool::cli::{CrawlArgs, RecrawlArgs};
use webspool::holder::{self, Serves};
use webspool::journal::Journal;
use webspool::pipeline::{crawl, CrawlConfig, CrawlSummary, Input};

use super::held::open_to_write;
use crate::{counted, ending, finished, on_interrupt, usage_error};

pub(crate) async fn run_crawl(args: CrawlArgs) -> anyhow::Result<ExitCode> {
    let config = match args.to_config() {
        Ok(config) => config,
        Err(e) if e.is_usage() => return Ok(usage_error("crawl", &e)),
        Err(e) => return Err(e.into()),
    };
    // Before the journal exists: a list that cannot be read leaves none behind.
    config.input.check()?;
    let metrics = args.run.metrics.bind().await?;
    let journal = Arc::new(open_to_write(&args.journal.journal, Journal::open, "a crawl").await?);
    let _serving = serve_run(&journal, &config);
    let _metrics = metrics.map(|listener| webspool::metrics::serve(listener, journal.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    on_interrupt("finishing pages in flight", move || {
        let _ = stop_tx.send(true);
    });
    let summary = crawl(journal.clone(), config, stop_rx).await?;
    journal.checkpoint()?;
    if !args.run.quiet || summary.interrupted {
        print_summary(&summary);
    }
    if let Some(e) = summary.sync_gave_up {
        return Err(e.into());
    }
    Ok(finished(summary.interrupted, summary.disk_full))
}

/// Serves the journal of a run that fetches to other processes; their sync passes take
/// turns with its sync stage (`--sync`).
pub(super) fn serve_run(journal: &Arc<Journal>, config: &CrawlConfig) -> Option<holder::Serving> {
    let turn = config.sync.as_ref().map(|s| s.turn.clone());
    holder::serve(journal.clone(), Serves::All, turn.unwrap_or_default())
}

/// Runs `recrawl`: queues the pages that are due, fetches them as a crawl does, and with
/// `--every` does it again on that schedule until stopped.
pub(crate) async fn run_recrawl(args: RecrawlArgs) -> anyhow::Result<ExitCode> {
    let usage = |e: webspool::cli::ConfigError| usage_error("recrawl", &e);
    let config = match args.run.to_config(Input::None) {
        Ok(config) => config,
        Err(e) if e.is_usage() => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let metrics = args.run.metrics.bind().await?;
    let journal =
        Arc::new(open_to_write(&args.journal.journal, Journal::open_existing, "a recrawl").await?);
    let _serving = serve_run(&journal, &config);
    let _metrics = metrics.map(|listener| webspool::metrics::serve(listener, journal.clone()));
    let policy = match args.policy(journal.recrawl_policy()?) {
        Ok(policy) => policy,
        Err(e) => return Ok(usage(e)),
    };
    journal.set_recrawl_policy(policy)?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    on_interrupt("finishing pages in flight", move || {
        let _ = stop_tx.send(true);
    });
    let mut all = args.all;
    loop {
        let before = journal.status()?;
        let queued = journal.queue_due(webspool::journal::now_ms(), all)?;
        all = false;
        if queued > 0 || before.pending_fetch > 0 {
            let summary = crawl(journal.clone(), config.clone(), stop_rx.clone()).await?;
            journal.checkpoint()?;
            let s = &summary.status;
            if !args.run.quiet || summary.interrupted {
                eprintln!(
                    "recrawl: {queued} pages due; checked {}: {} unchanged, {} changed, {} gone",
                    s.checked - before.checked,
                    s.unchanged - before.unchanged,
                    s.changed - before.changed,
                    s.gone - before.gone,
                );
                print_summary(&summary);
            }
            if summary.interrupted {
                return Ok(finished(summary.interrupted, summary.disk_full));
            }
            match (summary.sync_gave_up, args.every) {
                (Some(e), None) => return Err(e.into()),
                // The next round syncs what this one could not.
                (Some(e), Some(_)) => tracing::warn!("{e}"),
                (None, _) => {}
            }
        } else if args.every.is_none() && !args.run.quiet {
            eprintln!("recrawl: no page is due");
        }
        let Some(every) = args.every else {
            return Ok(ExitCode::SUCCESS);
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop_rx.changed() => return Ok(ExitCode::SUCCESS),
        }
    }
}

pub(super) fn print_summary(s: &CrawlSummary) {
    let secs = s.elapsed.as_secs_f64().max(0.001);
    let pages = s.fetched + s.failed;
    let found = match s.discovered {
        0 => String::new(),
        n => format!(
            "{} given, {n} found in sitemaps, feeds and links; ",
            s.added
        ),
    };
    eprintln!(
        "{}: {} ({found}{}, {}); this run fetched {}, failed {}, parsed {}, synced {} in {:.1}s ({:.0} pages/s, {:.1} MB/s)",
        ending(s.interrupted, &s.disk_full),
        counted(s.added + s.discovered, "new URL", "new URLs"),
        counted(s.duplicates, "duplicate", "duplicates"),
        counted(s.invalid_lines, "invalid line", "invalid lines"),
        s.fetched,
        s.failed,
        s.parsed,
        s.synced,
        secs,
        pages as f64 / secs,
        s.bytes as f64 / secs / 1e6,
    );
    if s.blocked > 0 {
        eprintln!(
            "{} to private addresses skipped; --allow-private fetches them",
            counted(s.blocked, "link", "links")
        );
    }
    eprintln!(
        "journal: {} URLs, {} fetched, {} failed, {} pending",
        s.status.urls, s.status.fetched, s.status.failed, s.status.pending_fetch
    );
    if s.interrupted && s.disk_full.is_none() {
        eprintln!("run the same command again to resume");
    }
}
