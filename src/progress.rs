//! Live progress of a crawl: a bar on a terminal, plain periodic log lines otherwise.
//!
//! Counts come from [`Counts`], which the committer bumps only after the journal flush
//! holding a page returned `Ok`: what is shown as fetched is durable.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Durable progress counters shared by the stages and the reporter.
#[derive(Debug, Default)]
pub struct Counts {
    /// URLs known to the journal (grows while input is read).
    pub total: AtomicU64,
    /// Fetched or failed before this run started.
    pub done_before: AtomicU64,
    pub fetched: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.total.load(Ordering::Relaxed),
            self.done_before.load(Ordering::Relaxed),
            self.fetched.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar if stderr is a terminal, log lines otherwise.
    Auto,
    /// Nothing but the final summary (tests, `--quiet`).
    Off,
}

/// Shows progress until dropped.
pub struct Reporter {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Reporter {
    pub fn start(counts: Arc<Counts>, mode: ProgressMode) -> Reporter {
        if mode == ProgressMode::Off {
            return Reporter {
                task: None,
                bar: None,
            };
        }
        let started = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let shown = bar.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let (total, before, fetched, failed) = counts.snapshot();
                    shown.set_length(total);
                    shown.set_position(before + fetched + failed);
                    shown.set_message(line(&counts, started, fetched, failed));
                }
            });
            Reporter {
                task: Some(task),
                bar: Some(bar),
            }
        } else {
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let (total, before, fetched, failed) = counts.snapshot();
                    tracing::info!(
                        "progress: {}/{} done, {}",
                        before + fetched + failed,
                        total,
                        line(&counts, started, fetched, failed)
                    );
                }
            });
            Reporter {
                task: Some(task),
                bar: None,
            }
        }
    }
}

fn line(counts: &Counts, started: Instant, fetched: u64, failed: u64) -> String {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let bytes = counts.bytes.load(Ordering::Relaxed) as f64;
    format!(
        "fetched {fetched}, failed {failed}, {:.0} pages/s, {:.1} MB/s",
        (fetched + failed) as f64 / secs,
        bytes / secs / 1e6
    )
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
