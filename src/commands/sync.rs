//! `sync`: the sync stage over a journal, here or in the process that holds it.

use std::process::ExitCode;
use std::sync::Arc;

use webspool::cli::{progress_mode, SyncArgs};
use webspool::holder::{self, Holder, Reply, Request, Serves, SyncRequest};
use webspool::journal::Journal;
use webspool::progress::{per_sec, Reporter, View};
use webspool::sync::{self, SyncControl};

use super::held::{ask, here_or_held, open_to_write, unexpected};
use crate::{disk_full_advice, ending, finished, stop_on_interrupt, EXIT_INTERRUPTED};

/// Runs `sync`: drains the journal's queue into MySQL, once or on a schedule.
pub(crate) async fn run_sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config();
    let dir = &args.journal.journal;
    // A pass handed to the process holding the journal is counted there.
    let metrics = args.metrics.bind().await?;
    let journal = if config.every.is_some() {
        open_to_write(dir, Journal::open_existing, "a `sync --every`").await?
    } else {
        match here_or_held(dir, Journal::open_existing, |holder| {
            sync_in_holder(holder, &args)
        })
        .await?
        {
            Ok(journal) => journal,
            Err(code) => return Ok(code),
        }
    };
    let journal = Arc::new(journal);
    let _serving = holder::serve(journal.clone(), Serves::All, config.turn.clone());
    let _metrics = metrics.map(|listener| webspool::metrics::serve(listener, journal.clone()));
    let control = Arc::new(SyncControl::default());
    stop_on_interrupt("finishing the batch in progress", control.clone(), |c| {
        &c.stop
    });
    let reporter = sync_progress(args.quiet, &control, Some(&journal));
    let summary = sync::run(journal.clone(), &config, control).await?;
    journal.checkpoint()?;
    drop(reporter);
    if args.quiet && !summary.interrupted {
        return Ok(finished(summary.interrupted, summary.disk_full));
    }
    print_sync_summary(
        ending(summary.interrupted, &summary.disk_full),
        &summary,
        &config.target,
        journal.status()?.pending_sync,
    );
    Ok(finished(summary.interrupted, summary.disk_full))
}

/// The progress of a sync: pages synced of those synced and still pending in
/// `journal` (opened here), or of those synced so far (a pass the holder runs).
pub(super) fn sync_progress(
    quiet: bool,
    control: &Arc<SyncControl>,
    journal: Option<&Arc<Journal>>,
) -> Reporter {
    let (control, started) = (control.clone(), std::time::Instant::now());
    let journal = journal.cloned();
    Reporter::start(progress_mode(quiet), "sync", move || {
        let synced = control.synced.load(std::sync::atomic::Ordering::Relaxed);
        let pending = journal
            .as_ref()
            .and_then(|journal| journal.status().ok())
            .map_or(0, |status| status.pending_sync);
        View {
            done: synced,
            total: synced + pending,
            message: format!("{:.0} pages/s", per_sec(synced, started)),
        }
    })
}

/// The line a sync prints when it ends.
pub(super) fn print_sync_summary(
    ending: &str,
    summary: &sync::SyncSummary,
    target: &sync::Target,
    pending: u64,
) {
    let secs = summary.elapsed.as_secs_f64().max(0.001);
    eprintln!(
        "{ending}: {} pages synced to {target} in {} batches, {:.1}s ({:.0} pages/s); {pending} pending",
        summary.pages,
        summary.batches,
        secs,
        summary.pages as f64 / secs,
    );
}

/// A one-shot `sync` run by the process holding the journal, with this command's
/// settings: it prints what a local sync prints and exits as it would.
pub(super) async fn sync_in_holder(
    mut holder: Holder,
    args: &SyncArgs,
) -> anyhow::Result<ExitCode> {
    let config = args.to_config();
    let request = Request::Sync(SyncRequest {
        target: config.target.clone(),
        bodies: config.bodies,
        batch_rows: config.batch_rows,
        batch_bytes: config.batch_bytes,
        op_timeout: config.op_timeout,
        give_up_after: config.give_up_after,
        min_free: config.min_free,
    });
    let control = Arc::new(SyncControl::default());
    stop_on_interrupt(
        "the holder finishes the batch in progress",
        control.clone(),
        |c| &c.stop,
    );
    // What the holder has pending is not known here.
    let reporter = sync_progress(args.quiet, &control, None);
    let dir = &args.journal.journal;
    let reply = ask(&mut holder, dir, &request, &control.stop, |reply| {
        if let Reply::Progress(synced) = reply {
            control
                .synced
                .store(synced, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .await?;
    drop(reporter);
    let outcome = match reply {
        Ok(Reply::Synced(outcome)) => outcome,
        Ok(other) => return Err(unexpected(&holder, &other)),
        Err(code) => return Ok(code),
    };
    let summary = sync::SyncSummary {
        pages: outcome.pages,
        batches: outcome.batches,
        elapsed: outcome.elapsed,
        interrupted: outcome.interrupted,
        ..Default::default()
    };
    let ending = match (&outcome.disk_full, outcome.interrupted) {
        (Some(_), _) => "stopped (disk full)",
        (None, true) => "interrupted",
        (None, false) => "done",
    };
    if !args.quiet || outcome.interrupted {
        print_sync_summary(ending, &summary, &config.target, outcome.pending);
    }
    Ok(match outcome.disk_full {
        Some(full) => {
            eprintln!("error: {full}");
            disk_full_advice(dir)
        }
        None if outcome.interrupted => ExitCode::from(EXIT_INTERRUPTED),
        None => ExitCode::SUCCESS,
    })
}
