//! One sync pass at a time over a journal, within the process that holds it.
//!
//! A pass reads batches in queue order and writes each page's state as it reads it, so
//! two passes at once could write an older state of a page over a newer one and move
//! the watermark back. Every pass in a process ([`super::run`]: `sync`, `crawl --sync`,
//! and the passes the holder runs for other processes, see `crate::holder`) takes the
//! journal's [`Turn`] first and keeps it until it ends. A request for a pass that finds
//! one running to the same database joins it instead of waiting for it to end (which,
//! for `crawl --sync` or `sync --every`, may be days): it waits until that pass's
//! watermark covers everything queued when the request came ([`run_or_join`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{run_in_turn, SyncConfig, SyncControl, SyncError, SyncSummary};
use crate::journal::Journal;

/// The right to run a sync pass over one journal; shared by every pass of a process
/// through [`SyncConfig::turn`].
#[derive(Debug, Default)]
pub struct Turn {
    lock: tokio::sync::Mutex<()>,
    /// The pass holding the lock, once it has said which database it writes to.
    running: Mutex<Option<Running>>,
}

/// A pass under way: its database (as shown) and its counters.
#[derive(Clone, Debug)]
struct Running {
    target: String,
    control: Arc<SyncControl>,
}

/// Held by a pass while it runs; says the pass ended when dropped.
pub(super) struct Held<'a> {
    turn: &'a Turn,
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

impl Turn {
    /// Waits for the turn, then announces the pass writing to `target`.
    pub(super) async fn take(&self, target: String, control: Arc<SyncControl>) -> Held<'_> {
        let guard = self.lock.lock().await;
        self.announce(target, control);
        Held {
            turn: self,
            _guard: guard,
        }
    }

    fn announce(&self, target: String, control: Arc<SyncControl>) {
        if let Ok(mut running) = self.running.lock() {
            *running = Some(Running { target, control });
        }
    }

    fn running(&self) -> Option<Running> {
        self.running.lock().ok().and_then(|running| running.clone())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.turn.running.lock() {
            *running = None;
        }
    }
}

/// Syncs everything queued in `journal` until now to `config.target`, with the same
/// guarantee as [`super::run`]: when no pass is running, as a pass of its own (drain
/// and return); when one is running to the same database, by waiting for it to get
/// that far (waking it if it sleeps between `--every` rounds). A pass running to
/// another database is an error: both would take pages from the one queue. The
/// summary counts what was synced meanwhile, by whichever pass.
pub async fn run_or_join(
    journal: Arc<Journal>,
    config: &SyncConfig,
    control: Arc<SyncControl>,
) -> Result<SyncSummary, SyncError> {
    let started = Instant::now();
    let through = journal.last_sync_seq()?;
    let target = config.target.to_string();
    let mut summary = SyncSummary::default();
    // The pass being watched, with its counts when first seen.
    let mut watched: Option<Watched> = None;
    loop {
        if control.stop.load(Ordering::Acquire) {
            summary.interrupted = true;
            break;
        }
        if let Ok(guard) = config.turn.lock.try_lock() {
            Watched::settle(watched.take(), &mut summary);
            config.turn.announce(target, control.clone());
            let held = Held {
                turn: &config.turn,
                _guard: guard,
            };
            let own = run_in_turn(journal, config, control, held).await?;
            summary.pages += own.pages;
            summary.batches += own.batches;
            summary.checks += own.checks;
            summary.interrupted = own.interrupted;
            summary.disk_full = own.disk_full;
            break;
        }
        let Some(running) = config.turn.running() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if running.target != target {
            return Err(SyncError::Config(format!(
                "the process holding this journal is syncing it to {}; a pass to {target} \
                 would take pages from the same queue: sync to {} as it does, or wait \
                 until it ends",
                running.target, running.target
            )));
        }
        if !watched
            .as_ref()
            .is_some_and(|w| Arc::ptr_eq(&w.control, &running.control))
        {
            Watched::settle(watched.take(), &mut summary);
            watched = Some(Watched::new(running.control.clone()));
        }
        if running.control.watermark.load(Ordering::Acquire) >= through {
            Watched::settle(watched.take(), &mut summary);
            break;
        }
        running.control.wake.store(true, Ordering::Release);
        let so_far = watched.as_ref().map_or(0, |w| w.pages_now());
        control
            .synced
            .store(summary.pages + so_far, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A pass of another caller that a request waits on, and its counts when first seen.
struct Watched {
    control: Arc<SyncControl>,
    pages: u64,
    batches: u64,
}

impl Watched {
    fn new(control: Arc<SyncControl>) -> Watched {
        Watched {
            pages: control.synced.load(Ordering::Relaxed),
            batches: control.batches.load(Ordering::Relaxed),
            control,
        }
    }

    /// Pages the pass has synced since it was first seen.
    fn pages_now(&self) -> u64 {
        self.control
            .synced
            .load(Ordering::Relaxed)
            .saturating_sub(self.pages)
    }

    /// Adds what the pass synced while watched to `summary`.
    fn settle(watched: Option<Watched>, summary: &mut SyncSummary) {
        if let Some(w) = watched {
            summary.pages += w.pages_now();
            summary.batches += w
                .control
                .batches
                .load(Ordering::Relaxed)
                .saturating_sub(w.batches);
        }
    }
}
