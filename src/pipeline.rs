//! `webspool crawl`: reads the URL list into the journal and fetches every pending URL.
//!
//! Three parts run at once, joined by bounded channels and the journal:
//!
//! - **intake** (its own thread) streams the input into the journal in batches; the
//!   journal's `url_index` does the dedup, so memory does not grow with the list.
//! - **scheduler** (async) reads `pending_fetch` in id order through a bounded window,
//!   groups the window by host, and starts fetches within the global and per-host
//!   limits. A URL stays in `pending_fetch` until its result is committed, so whatever
//!   is in flight at a crash is fetched again on restart, and nothing else is.
//! - **committer** (its own thread) takes finished fetches in groups, compresses the
//!   bodies, records the group in one journal transaction and flushes. Only then does it
//!   count the pages as fetched. At most [`max_unflushed`] pages are fetched but not yet
//!   durable at any moment: that is what a kill -9 can cost.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use url::Url;

use crate::fetch::{FetchConfig, FetchError, Fetched, Fetcher, Trust};
pub use crate::intake::Input;
use crate::intake::{self, Signals};
use crate::journal::{
    now_ms, ErrorKind, FetchedPage, Journal, JournalError, Outcome, PageMeta, Status,
};
use crate::parse::stage::{self, Control, Mode, ParseConfig};
use crate::progress::{per_sec, Counts, ProgressMode, Reporter, View};
use crate::sync::{self, SyncConfig, SyncControl, SyncError};
use crate::urls::{host_key, normalize, redact};

/// Pages per commit group, at most.
const COMMIT_BATCH: usize = 256;
/// Body bytes (decoded) per commit group, at most.
const COMMIT_BYTES: usize = 32 * 1024 * 1024;
/// zstd level for bodies: fast, and HTML still shrinks several times.
const ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Debug)]
pub struct CrawlConfig {
    pub input: Input,
    pub fetch: FetchConfig,
    /// The parse stage runs alongside fetching, on its own threads (`None`: not in this
    /// run; `webspool parse` does it later).
    pub parse: Option<ParseConfig>,
    /// With a target, the sync stage runs alongside too, and the crawl ends only when
    /// everything is synced.
    pub sync: Option<SyncConfig>,
    pub progress: ProgressMode,
}

#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("cannot read the URL list {path}: {source}")]
    Input {
        path: String,
        source: std::io::Error,
    },
    #[error("seeding from MySQL, {0}")]
    Seed(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a crawl did, for the final summary.
#[derive(Debug, Default)]
pub struct CrawlSummary {
    pub added: u64,
    pub duplicates: u64,
    pub invalid_lines: u64,
    pub fetched: u64,
    pub failed: u64,
    pub bytes: u64,
    /// Pages annotated by the parse stage during the crawl.
    pub parsed: u64,
    /// Pages synced to MySQL during the crawl (with `--sync`).
    pub synced: u64,
    pub elapsed: Duration,
    /// Stopped by a shutdown signal with work left pending.
    pub interrupted: bool,
    pub status: Status,
}

/// Pages that can be fetched but not yet durable at one time, for `concurrency`:
/// in flight, queued for the committer, and in the group being committed.
pub fn max_unflushed(concurrency: usize) -> usize {
    concurrency + commit_queue(concurrency) + COMMIT_BATCH
}

fn commit_queue(concurrency: usize) -> usize {
    concurrency.max(16)
}

/// Pending URLs held in memory at once, across all hosts.
fn window(concurrency: usize) -> usize {
    (concurrency * 64).clamp(1024, 16 * 1024)
}

/// Runs a crawl until every URL is fetched or failed, or until `shutdown` turns true.
pub async fn crawl(
    journal: Arc<Journal>,
    config: CrawlConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<CrawlSummary, CrawlError> {
    let started = Instant::now();
    let fetcher = Arc::new(Fetcher::new(config.fetch.clone())?);
    let status = journal.status()?;
    let counts = Arc::new(Counts::default());
    counts.total.store(status.urls, Ordering::Relaxed);
    counts
        .done_before
        .store(status.fetched + status.failed, Ordering::Relaxed);
    let parse_control = Arc::new(Control::default());
    parse_control.follow.store(true, Ordering::Release);
    let reporter = {
        let counts = counts.clone();
        let parse_control = parse_control.clone();
        Reporter::start(config.progress, "crawl", move || {
            let parsed = parse_control.parsed.load(Ordering::Relaxed);
            let fetched = counts.fetched.load(Ordering::Relaxed);
            let failed = counts.failed.load(Ordering::Relaxed);
            let bytes = counts.bytes.load(Ordering::Relaxed);
            View {
                done: counts.done_before.load(Ordering::Relaxed) + fetched + failed,
                total: counts.total.load(Ordering::Relaxed),
                message: format!(
                    "fetched {fetched}, failed {failed}, parsed {parsed}, {:.0} pages/s, {:.1} MB/s",
                    per_sec(fetched + failed, started),
                    per_sec(bytes, started) / 1e6
                ),
            }
        })
    };

    let stop_intake = Arc::new(AtomicBool::new(false));
    let intake_done = Arc::new(AtomicBool::new(false));
    let intake_notify = Arc::new(Notify::new());
    let mut intake = intake::spawn(
        journal.clone(),
        config.input.clone(),
        Signals {
            counts: counts.clone(),
            stop: stop_intake.clone(),
            done: intake_done.clone(),
            notify: intake_notify.clone(),
        },
    )?;

    let (commit_tx, commit_rx) = mpsc::channel(commit_queue(config.fetch.concurrency));
    let committer_failed = Arc::new(AtomicBool::new(false));
    let committer = {
        let journal = journal.clone();
        let counts = counts.clone();
        let failed = committer_failed.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("webspool-commit".into())
            .spawn(move || {
                let result = commit_loop(&journal, commit_rx, &counts);
                if result.is_err() {
                    failed.store(true, Ordering::Release);
                }
                // Let go of the journal before reporting, so that once `crawl` returns
                // the caller holds the only handle and can close it.
                drop(journal);
                let _ = tx.send(result);
            })
            .map_err(|e| CrawlError::Internal(format!("cannot start the committer: {e}")))?;
        rx
    };

    let parser = match config.parse.clone() {
        None => None,
        Some(parse_config) => {
            let (journal, control) = (journal.clone(), parse_control.clone());
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("webspool-parse".into())
                .spawn(move || {
                    let result = stage::run(&journal, &parse_config, Mode::Pending, &control);
                    drop(journal);
                    let _ = tx.send(result);
                })
                .map_err(|e| CrawlError::Internal(format!("cannot start the parse stage: {e}")))?;
            Some(rx)
        }
    };

    let sync_control = Arc::new(SyncControl::default());
    sync_control.follow.store(true, Ordering::Release);
    let syncer = config.sync.clone().map(|sync_config| {
        let (journal, control) = (journal.clone(), sync_control.clone());
        tokio::spawn(async move { sync::run(journal, &sync_config, control).await })
    });

    let mut scheduler = Scheduler {
        journal: journal.clone(),
        fetcher,
        commit_tx,
        per_host: config.fetch.per_host.max(1),
        concurrency: config.fetch.concurrency.max(1),
        hosts: HashMap::new(),
        ready: VecDeque::new(),
        queued: 0,
        active: 0,
        cursor: None,
    };
    let interrupted = scheduler
        .run(
            shutdown,
            &intake_done,
            &intake_notify,
            &stop_intake,
            &committer_failed,
        )
        .await?;
    stop_intake.store(true, Ordering::Release);
    drop(scheduler);

    let committed = committer
        .await
        .map_err(|_| CrawlError::Internal("the committer thread died".into()))?;
    committed?;
    // Every page is recorded: the parse stage finishes what is pending and stops.
    parse_control.fetch_done.store(true, Ordering::Release);
    if interrupted {
        parse_control.stop.store(true, Ordering::Release);
    }
    let parsed = match parser {
        Some(rx) => {
            rx.await
                .map_err(|_| CrawlError::Internal("the parse stage died".into()))??
                .parsed
        }
        None => 0,
    };
    // Every page is annotated: the sync stage drains what is queued and stops.
    sync_control.upstream_done.store(true, Ordering::Release);
    if interrupted {
        sync_control.stop.store(true, Ordering::Release);
    }
    let synced = match syncer {
        Some(task) => {
            task.await
                .map_err(|_| CrawlError::Internal("the sync stage died".into()))??
                .pages
        }
        None => 0,
    };
    drop(reporter);

    // When interrupted, intake may be blocked reading stdin: do not wait for it.
    let intake_report = if interrupted {
        intake.try_recv().ok()
    } else {
        intake.await.ok()
    }
    .transpose()?
    .unwrap_or_default();

    Ok(CrawlSummary {
        added: intake_report.added,
        duplicates: intake_report.duplicates,
        invalid_lines: intake_report.invalid,
        fetched: counts.fetched.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        bytes: counts.bytes.load(Ordering::Relaxed),
        parsed,
        synced,
        elapsed: started.elapsed(),
        interrupted,
        status: journal.status()?,
    })
}

/// A finished fetch on its way to the committer.
struct Done {
    id: u64,
    url: Url,
    fetched: Fetched,
}

fn commit_loop(
    journal: &Journal,
    mut rx: mpsc::Receiver<Done>,
    counts: &Counts,
) -> Result<(), JournalError> {
    // One compression context for the whole crawl, not one per page.
    let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)
        .map_err(|e| JournalError::Encode(format!("zstd: {e}")))?;
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut bytes = group[0].fetched.body.as_ref().map_or(0, Vec::len);
        while group.len() < COMMIT_BATCH && bytes < COMMIT_BYTES {
            match rx.try_recv() {
                Ok(done) => {
                    bytes += done.fetched.body.as_ref().map_or(0, Vec::len);
                    group.push(done);
                }
                Err(_) => break,
            }
        }
        let mut pages = Vec::with_capacity(group.len());
        for done in &group {
            let compressed_body = match &done.fetched.body {
                Some(body) => Some(
                    compressor
                        .compress(body)
                        .map_err(|e| JournalError::Encode(format!("zstd: {e}")))?,
                ),
                None => None,
            };
            pages.push(FetchedPage {
                id: done.id,
                meta: done.fetched.meta.clone(),
                compressed_body,
            });
        }
        journal.record_fetches(&pages)?;
        journal.flush_blocking()?;
        // Durable from here on: count and report.
        for done in &group {
            match &done.fetched.meta.outcome {
                Outcome::Response {
                    status, body_len, ..
                } => {
                    counts.fetched.fetch_add(1, Ordering::Relaxed);
                    counts.bytes.fetch_add(*body_len, Ordering::Relaxed);
                    tracing::debug!(target: "webspool::committed", id = done.id, status, "fetched {}", redact(&done.url));
                }
                Outcome::Error { kind, message } => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "webspool::committed", id = done.id, %kind, "failed {}: {message}", redact(&done.url));
                }
            }
        }
    }
    Ok(())
}

struct Job {
    id: u64,
    url: Url,
}

#[derive(Default)]
struct Host {
    queue: VecDeque<Job>,
    active: usize,
    in_ready: bool,
}

struct Scheduler {
    journal: Arc<Journal>,
    fetcher: Arc<Fetcher>,
    commit_tx: mpsc::Sender<Done>,
    per_host: usize,
    concurrency: usize,
    hosts: HashMap<String, Host>,
    /// Hosts with queued jobs and a free slot, each at most once.
    ready: VecDeque<String>,
    queued: usize,
    active: usize,
    /// The last pending id loaded into the window.
    cursor: Option<u64>,
}

impl Scheduler {
    /// Returns whether the crawl was interrupted.
    async fn run(
        &mut self,
        mut shutdown: watch::Receiver<bool>,
        intake_done: &AtomicBool,
        intake_notify: &Notify,
        stop_intake: &AtomicBool,
        committer_failed: &AtomicBool,
    ) -> Result<bool, CrawlError> {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
        let mut stopping = *shutdown.borrow();
        let mut exhausted = false;
        loop {
            if committer_failed.load(Ordering::Acquire) {
                stopping = true;
            }
            if stopping {
                stop_intake.store(true, Ordering::Release);
                if self.active == 0 {
                    return Ok(true);
                }
            } else {
                if self.queued < window(self.concurrency) / 2 && !exhausted {
                    let intake_finished = intake_done.load(Ordering::Acquire);
                    let loaded = self.refill()?;
                    if loaded == 0 && intake_finished {
                        exhausted = true;
                    }
                }
                self.dispatch(&done_tx);
                if exhausted && self.active == 0 && self.queued == 0 {
                    return Ok(false);
                }
            }
            let wait_for_intake = !exhausted && self.queued == 0 && !stopping;
            tokio::select! {
                Some(host) = done_rx.recv() => {
                    self.finished(&host);
                    // Collect every other completion already there before refilling.
                    while let Ok(host) = done_rx.try_recv() {
                        self.finished(&host);
                    }
                }
                _ = intake_notify.notified(), if wait_for_intake => {}
                changed = shutdown.changed(), if !stopping => {
                    if changed.is_err() || *shutdown.borrow() {
                        stopping = true;
                    }
                }
                // Checks the committer and the window now and then, whatever else happens.
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Loads pending URLs after the cursor into the window; returns how many.
    fn refill(&mut self) -> Result<usize, CrawlError> {
        let room = window(self.concurrency).saturating_sub(self.queued);
        let journal = self.journal.clone();
        let batch = journal.pending_fetch_after(self.cursor, room)?;
        let loaded = batch.len();
        for (id, entry) in batch {
            self.cursor = Some(id);
            let url = match normalize(&entry.url) {
                Ok(url) => url,
                Err(reason) => {
                    // A record this build cannot request: record it as failed, don't stall.
                    self.fail_now(id, &entry.url, reason)?;
                    continue;
                }
            };
            let key = host_key(&url);
            let host = self.hosts.entry(key.clone()).or_default();
            host.queue.push_back(Job { id, url });
            self.queued += 1;
            if !host.in_ready && host.active < self.per_host {
                host.in_ready = true;
                self.ready.push_back(key);
            }
        }
        Ok(loaded)
    }

    fn fail_now(&self, id: u64, url: &str, reason: String) -> Result<(), CrawlError> {
        let page = FetchedPage {
            id,
            meta: PageMeta {
                fetched_at_ms: now_ms(),
                duration_ms: 0,
                redirects: Vec::new(),
                outcome: Outcome::Error {
                    kind: ErrorKind::Protocol,
                    message: format!("stored URL cannot be requested: {reason}"),
                },
            },
            compressed_body: None,
        };
        tracing::warn!(
            "id {id}: stored URL {:?} cannot be requested: {reason}",
            crate::urls::redact_text(url)
        );
        self.journal.record_fetches(&[page])?;
        Ok(())
    }

    fn dispatch(&mut self, done_tx: &mpsc::UnboundedSender<String>) {
        while self.active < self.concurrency {
            let Some(key) = self.ready.pop_front() else {
                return;
            };
            let Some(host) = self.hosts.get_mut(&key) else {
                continue;
            };
            host.in_ready = false;
            let Some(job) = host.queue.pop_front() else {
                continue;
            };
            host.active += 1;
            self.queued -= 1;
            self.active += 1;
            if !host.queue.is_empty() && host.active < self.per_host {
                host.in_ready = true;
                self.ready.push_back(key.clone());
            }
            let fetcher = self.fetcher.clone();
            let commit_tx = self.commit_tx.clone();
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let fetched = fetcher.fetch(&job.url, Trust::Given).await;
                let done = Done {
                    id: job.id,
                    url: job.url,
                    fetched,
                };
                // A closed channel means the committer stopped on an error; the page
                // stays pending in the journal and is fetched again next run.
                let _ = commit_tx.send(done).await;
                let _ = done_tx.send(key);
            });
        }
    }

    fn finished(&mut self, key: &str) {
        self.active -= 1;
        let Some(host) = self.hosts.get_mut(key) else {
            return;
        };
        host.active -= 1;
        if host.queue.is_empty() {
            if host.active == 0 {
                self.hosts.remove(key);
            }
        } else if !host.in_ready {
            host.in_ready = true;
            self.ready.push_back(key.to_string());
        }
    }
}
