//! Live progress of a stage: a bar on a terminal, plain periodic log lines otherwise.
//!
//! Stages keep their counts in atomics that they bump only after the journal flush
//! holding the work returned `Ok`, and hand the reporter a closure that reads them: what
//! is shown as done is durable.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Durable progress counters of the fetch stage.
#[derive(Debug, Default)]
pub struct Counts {
    /// URLs known to the journal (grows while input is read).
    pub total: AtomicU64,
    /// Fetched or failed before this run started.
    pub done_before: AtomicU64,
    pub fetched: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
    /// Transient failures scheduled for another attempt.
    pub retried: AtomicU64,
    /// Of `failed`, discovered links refused by the private-address guard.
    pub blocked: AtomicU64,
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar if stderr is a terminal, log lines otherwise.
    Auto,
    /// Nothing but the final summary (tests, `--quiet`).
    Off,
}

/// One look at a stage's progress.
pub struct View {
    pub done: u64,
    pub total: u64,
    pub message: String,
}

/// Rate of `n` things over the time since `started`.
pub fn per_sec(n: u64, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64().max(0.001)
}

/// Shows progress from its own thread until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn start(
        mode: ProgressMode,
        label: &'static str,
        view: impl Fn() -> View + Send + 'static,
    ) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        if mode == ProgressMode::Off {
            return Reporter { stop, thread: None };
        }
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("webspool-progress".into())
            .spawn(move || {
                if std::io::stderr().is_terminal() {
                    bar(label, &stopped, &view)
                } else {
                    lines(label, &stopped, &view)
                }
            })
            .ok();
        Reporter { stop, thread }
    }
}

fn bar(label: &str, stop: &AtomicBool, view: &dyn Fn() -> View) {
    let bar = ProgressBar::new(0);
    let template =
        format!("{{spinner}} {label} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {{msg}}");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while !stop.load(Ordering::Acquire) {
        let v = view();
        bar.set_length(v.total);
        bar.set_position(v.done);
        bar.set_message(v.message);
        std::thread::park_timeout(Duration::from_millis(250));
    }
    bar.finish_and_clear();
}

/// A log line every 10 s, when there is news: an idle stage (`sync --every` between
/// rounds, a crawl waiting for a retry) logs nothing until its counts move.
fn lines(label: &str, stop: &AtomicBool, view: &dyn Fn() -> View) {
    let mut next = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
        if Instant::now() >= next && !stop.load(Ordering::Acquire) {
            let v = view();
            if last != Some((v.done, v.total)) {
                tracing::info!("{label}: {}/{} done, {}", v.done, v.total, v.message);
                last = Some((v.done, v.total));
            }
            next += Duration::from_secs(10);
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
