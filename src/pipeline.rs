//! `webspool crawl`: reads the URL list into the journal and fetches every pending URL.
//!
//! Three parts run at once, joined by bounded channels and the journal:
//!
//! - **intake** (its own thread) streams the input into the journal in batches; the
//!   journal's `url_index` does the dedup, so memory does not grow with the list.
//! - **scheduler** (async, [`crate::fetch::schedule`]) takes pending URLs host by host from the
//!   journal's on-disk frontier and starts fetches within the global and per-host limits
//!   and the hosts' robots.txt, delays and backoff. A URL stays pending until its result
//!   is committed, so whatever is in flight at a crash is fetched again on restart, and
//!   nothing else is.
//! - **committer** (its own thread) takes finished fetches (bodies already compressed
//!   by the fetch tasks) in groups, appends the group's bodies to a segment file,
//!   records the group in one journal transaction and flushes. Only then does it
//!   count the pages as fetched. At most [`max_unflushed`] pages are fetched but not yet
//!   durable at any moment: that is what a kill -9 can cost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};

pub use crate::fetch::schedule::Politeness;
use crate::fetch::schedule::{Done, Scheduler};
use crate::fetch::{FetchConfig, FetchError, Fetcher};
use crate::intake::{self, Signals};
pub use crate::intake::{Input, IntakeError};
use crate::journal::{
    merge_proxy_counts, now_ms, DiskFull, ErrorKind, FetchedPage, Journal, JournalError, MinFree,
    NewUrl, Outcome, ProxyCount, Status, Via,
};
use crate::parse::stage::{self, Control, Mode, ParseConfig};
use crate::progress::{per_sec, Counts, ProgressMode, Reporter, View};
use crate::sync::{self, SyncConfig, SyncControl, SyncError};
use crate::urls::GivenUrl;

/// Pages per commit group, at most.
const COMMIT_BATCH: usize = 256;
/// Body bytes (decoded) per commit group, at most.
const COMMIT_BYTES: usize = 32 * 1024 * 1024;
/// Longest wait for more pages to share a group's flush: a flush per page or two
/// would cost more than the fetches (one `sync_file_range` each).
const GROUP_WAIT: Duration = Duration::from_millis(2);

#[derive(Clone, Debug)]
pub struct CrawlConfig {
    pub input: Input,
    /// Sitemaps or sitemap indexes (`--sitemap`) whose entries seed the crawl.
    pub sitemaps: Vec<GivenUrl>,
    pub fetch: FetchConfig,
    /// The parse stage runs alongside fetching, on its own threads (`None`: not in this
    /// run; `webspool parse` does it later).
    pub parse: Option<ParseConfig>,
    /// With a target, the sync stage runs alongside too, and the crawl ends only when
    /// everything is synced.
    pub sync: Option<SyncConfig>,
    pub politeness: Politeness,
    pub progress: ProgressMode,
    /// Stop starting fetches once less than this is free under the journal
    /// (`--min-free`; 0: never).
    pub min_free: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CrawlError {
    /// Whether the crawl stopped because the disk under the journal is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            CrawlError::Journal(e) | CrawlError::Intake(IntakeError::Journal(e)) => {
                e.is_disk_full()
            }
            CrawlError::Sync(e) => e.is_disk_full(),
            _ => false,
        }
    }
}

/// What a crawl did, for the final summary.
#[derive(Debug, Default)]
pub struct CrawlSummary {
    /// New URLs from the list, the query or `--sitemap`: the URLs given.
    pub added: u64,
    /// New URLs found in sitemaps, feeds, links and robots.txt files.
    pub discovered: u64,
    pub duplicates: u64,
    pub invalid_lines: u64,
    pub fetched: u64,
    pub failed: u64,
    /// Of `failed`, discovered links refused by the private-address guard
    /// (`--allow-private` fetches them).
    pub blocked: u64,
    pub bytes: u64,
    /// Pages annotated by the parse stage during the crawl.
    pub parsed: u64,
    /// Pages synced to MySQL during the crawl (with `--sync`).
    pub synced: u64,
    pub elapsed: Duration,
    /// Stopped by a shutdown signal, or below `--min-free`, with work left pending.
    pub interrupted: bool,
    /// Stopped because less than `--min-free` was free under the journal.
    pub disk_full: Option<DiskFull>,
    /// With `--sync`: MySQL stayed unavailable past `--give-up-after` at the crawl's
    /// end; every page is fetched and kept in the journal, waiting for `webspool sync`.
    pub sync_gave_up: Option<SyncError>,
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

/// Runs a crawl until every URL is fetched or failed, or until `shutdown` turns true.
pub async fn crawl(
    journal: Arc<Journal>,
    config: CrawlConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<CrawlSummary, CrawlError> {
    let started = Instant::now();
    let fetcher = Arc::new(Fetcher::new(config.fetch.clone(), journal.grants())?);
    let proxy_counts = ProxyCounts::start(journal.clone(), fetcher.clone())?;
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
            let retried = counts.retried.load(Ordering::Relaxed);
            View {
                done: counts.done_before.load(Ordering::Relaxed) + fetched + failed,
                total: counts.total.load(Ordering::Relaxed)
                    + parse_control.discovered.load(Ordering::Relaxed),
                message: format!(
                    "fetched {fetched}, failed {failed}, retries {retried}, parsed {parsed}, {:.0} pages/s, {:.1} MB/s",
                    per_sec(fetched + failed, started),
                    per_sec(bytes, started) / 1e6
                ),
            }
        })
    };

    let mut seeded = 0;
    if !config.sitemaps.is_empty() {
        let mut seeds = Vec::with_capacity(config.sitemaps.len());
        for given in &config.sitemaps {
            journal
                .grants()
                .grant(&given.url, given.userinfo.as_ref())?;
            seeds.push(NewUrl::new(&given.url, None, 0, Via::SitemapSeed));
        }
        seeded = journal.add_urls(&seeds)?.added;
        counts.total.fetch_add(seeded, Ordering::Relaxed);
    }
    let stop_intake = Arc::new(AtomicBool::new(false));
    let intake_done = Arc::new(AtomicBool::new(false));
    let intake_failed = Arc::new(AtomicBool::new(false));
    let intake_notify = Arc::new(Notify::new());
    let intake = intake::spawn(
        journal.clone(),
        config.input.clone(),
        Signals {
            counts: counts.clone(),
            stop: stop_intake.clone(),
            done: intake_done.clone(),
            failed: intake_failed.clone(),
            notify: intake_notify.clone(),
        },
    )?;

    let (commit_tx, commit_rx) = mpsc::channel(commit_queue(config.fetch.concurrency));
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let committer_failed = Arc::new(AtomicBool::new(false));
    let committer = {
        let journal = journal.clone();
        let counts = counts.clone();
        let failed = committer_failed.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("webspool-commit".into())
            .spawn(move || {
                let result = commit_loop(&journal, commit_rx, &counts, &acks_tx);
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

    let parse_ended = Arc::new(AtomicBool::new(false));
    let parser = match config.parse.clone() {
        None => None,
        Some(parse_config) => {
            let (journal, control) = (journal.clone(), parse_control.clone());
            let ended = parse_ended.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("webspool-parse".into())
                .spawn(move || {
                    let result = stage::run(&journal, &parse_config, Mode::Pending, &control);
                    ended.store(true, Ordering::Release);
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

    let following = config.parse.as_ref().is_some_and(|p| p.follow.is_some());
    let mut scheduler = Scheduler::new(
        journal.clone(),
        fetcher,
        config.politeness.clone(),
        commit_tx,
        acks_rx,
    );
    let ended = run_scheduler(
        &mut scheduler,
        &journal,
        shutdown,
        Upstream {
            intake_done: &intake_done,
            intake_failed: &intake_failed,
            intake_notify: &intake_notify,
            stop_intake: &stop_intake,
            committer_failed: &committer_failed,
            parse_ended: following.then_some(&*parse_ended),
            space: MinFree::new(journal.path(), config.min_free),
        },
    )
    .await?;
    let interrupted = ended != Ended::Done;
    let mut disk_full = match ended {
        Ended::DiskFull(full) => Some(full),
        Ended::Done | Ended::Interrupted => None,
    };
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
            let summary = rx
                .await
                .map_err(|_| CrawlError::Internal("the parse stage died".into()))??;
            disk_full = disk_full.or(summary.disk_full);
            summary.parsed
        }
        None => 0,
    };
    // Every page is annotated: the sync stage drains what is queued and stops.
    sync_control.upstream_done.store(true, Ordering::Release);
    if interrupted {
        sync_control.stop.store(true, Ordering::Release);
    }
    let mut sync_gave_up = None;
    let synced = match syncer {
        Some(task) => {
            let result = task
                .await
                .map_err(|_| CrawlError::Internal("the sync stage died".into()))?;
            match result {
                Ok(summary) => {
                    disk_full = disk_full.or(summary.disk_full);
                    summary.pages
                }
                // The crawl itself is done: its summary is still due, then this error.
                Err(e @ SyncError::GaveUp { .. }) => {
                    sync_gave_up = Some(e);
                    sync_control.synced.load(Ordering::Relaxed)
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => 0,
    };
    drop(reporter);

    // When interrupted, intake may be blocked reading stdin: it is not waited for, and
    // may still hold a handle on the journal when the process exits, so what it added
    // is flushed here.
    let intake_report = intake.finish(interrupted).await?;
    if interrupted {
        journal.flush().await?;
    }

    proxy_counts.finish()?;
    let added = intake_report.added + seeded;
    let now = journal.status()?;
    Ok(CrawlSummary {
        added,
        discovered: now.urls.saturating_sub(status.urls + added),
        duplicates: intake_report.duplicates,
        invalid_lines: intake_report.invalid,
        fetched: counts.fetched.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        blocked: counts.blocked.load(Ordering::Relaxed),
        bytes: counts.bytes.load(Ordering::Relaxed),
        parsed,
        synced,
        elapsed: started.elapsed(),
        interrupted: interrupted || disk_full.is_some(),
        disk_full,
        sync_gave_up,
        status: now,
    })
}

/// Keeps the proxies' counts in the journal for `status`: every [`PROXY_COUNTS_EVERY`]
/// while the crawl runs, and at its end, added to those of earlier runs.
struct ProxyCounts {
    journal: Arc<Journal>,
    fetcher: Arc<Fetcher>,
    before: Vec<ProxyCount>,
    task: tokio::task::JoinHandle<()>,
}

const PROXY_COUNTS_EVERY: Duration = Duration::from_secs(2);

impl ProxyCounts {
    fn start(journal: Arc<Journal>, fetcher: Arc<Fetcher>) -> Result<ProxyCounts, JournalError> {
        let before = journal.proxy_counts()?;
        let task = {
            let (journal, fetcher, before) = (journal.clone(), fetcher.clone(), before.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PROXY_COUNTS_EVERY).await;
                    // A failed write is the journal's sticky error: the crawl reports it.
                    if Self::keep(&journal, &fetcher, &before).is_err() {
                        return;
                    }
                }
            })
        };
        Ok(ProxyCounts {
            journal,
            fetcher,
            before,
            task,
        })
    }

    fn keep(
        journal: &Journal,
        fetcher: &Fetcher,
        before: &[ProxyCount],
    ) -> Result<(), JournalError> {
        let run = fetcher.proxy_counts();
        if run.is_empty() {
            return Ok(());
        }
        journal.keep_proxy_counts(&merge_proxy_counts(before, &run))
    }

    fn finish(&self) -> Result<(), JournalError> {
        self.task.abort();
        Self::keep(&self.journal, &self.fetcher, &self.before)
    }
}

impl Drop for ProxyCounts {
    /// A crawl that ends on an error lets go of the journal all the same.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records finished fetches in groups, one transaction and one flush per group, then
/// counts them and acknowledges their ids to the scheduler.
fn commit_loop(
    journal: &Journal,
    mut rx: mpsc::Receiver<Done>,
    counts: &Counts,
    acks: &mpsc::UnboundedSender<Vec<u64>>,
) -> Result<(), JournalError> {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut bytes = body_len(&group[0]);
        // Pages that arrive within GROUP_WAIT of the first share its flush. The thread
        // sleeps through the wait rather than waiting on the channel, so that the pages
        // arriving meanwhile do not wake it one by one.
        let until = Instant::now() + GROUP_WAIT;
        loop {
            let mut closed = false;
            while group.len() < COMMIT_BATCH && bytes < COMMIT_BYTES {
                match rx.try_recv() {
                    Ok(done) => {
                        bytes += body_len(&done);
                        group.push(done);
                    }
                    Err(e) => {
                        closed = e == mpsc::error::TryRecvError::Disconnected;
                        break;
                    }
                }
            }
            let now = Instant::now();
            if closed || now >= until || group.len() >= COMMIT_BATCH || bytes >= COMMIT_BYTES {
                break;
            }
            std::thread::sleep(until - now);
        }
        let mut pages = Vec::with_capacity(group.len());
        for done in &mut group {
            pages.push(FetchedPage {
                id: done.id,
                host: std::mem::take(&mut done.host),
                url: done.url.clone(),
                meta: done.fetched.meta.clone(),
                body: std::mem::replace(&mut done.body, Ok(None))?,
                retry_at_ms: done.retry_at_ms,
            });
        }
        journal.record_fetches(&pages)?;
        journal.flush_blocking()?;
        // Durable from here on: count and report.
        let _ = acks.send(group.iter().map(|done| done.id).collect());
        let metrics = crate::metrics::metrics();
        for done in &group {
            let meta = &done.fetched.meta;
            metrics
                .fetch_duration
                .observe(meta.duration_ms as f64 / 1000.0);
            if let Some(kind) = meta.error_kind() {
                metrics.fetch_failed(kind);
            }
            if let Some(at) = done.retry_at_ms {
                counts.retried.fetch_add(1, Ordering::Relaxed);
                let wait = at.saturating_sub(now_ms());
                tracing::debug!(target: "webspool::committed", id = done.id, "retry in {wait} ms: {}", done.shown);
                continue;
            }
            match &done.fetched.meta.outcome {
                Outcome::Response {
                    status, body_len, ..
                } => {
                    counts.fetched.fetch_add(1, Ordering::Relaxed);
                    counts.bytes.fetch_add(*body_len, Ordering::Relaxed);
                    metrics.pages_fetched.inc();
                    metrics.response_bytes.inc_by(*body_len);
                    tracing::debug!(target: "webspool::committed", id = done.id, status, "fetched {}", done.shown);
                }
                Outcome::Error { kind, message } => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    if *kind == ErrorKind::Blocked {
                        counts.blocked.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(target: "webspool::committed", id = done.id, %kind, "failed {}: {message}", done.shown);
                }
            }
        }
    }
    Ok(())
}

/// The page's body size as received (decoded), for the group's byte bound.
fn body_len(done: &Done) -> usize {
    match &done.fetched.meta.outcome {
        Outcome::Response { body_len, .. } => *body_len as usize,
        Outcome::Error { .. } => 0,
    }
}

/// What the scheduler loop watches besides its own work.
struct Upstream<'a> {
    intake_done: &'a AtomicBool,
    /// Intake ended on an error: stop as for an interrupt; the error is the crawl's.
    intake_failed: &'a AtomicBool,
    intake_notify: &'a Notify,
    stop_intake: &'a AtomicBool,
    committer_failed: &'a AtomicBool,
    /// With link following, the parse stage may add URLs until it has parsed every
    /// page or has ended (on an error, reported once the crawl is over).
    parse_ended: Option<&'a AtomicBool>,
    /// The free-space watermark: below it, no fetch is started.
    space: MinFree,
}

/// How the scheduler loop ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Every URL is done.
    Done,
    /// Ctrl-C, or a failure upstream.
    Interrupted,
    /// Less than `--min-free` is free under the journal.
    DiskFull(DiskFull),
}

/// Runs the scheduler until every URL is done, or it is told to stop, or the disk is
/// below the watermark; in the two last cases, until the fetches in flight are done.
async fn run_scheduler(
    scheduler: &mut Scheduler,
    journal: &Journal,
    mut shutdown: watch::Receiver<bool>,
    up: Upstream<'_>,
) -> Result<Ended, CrawlError> {
    let mut stopping = *shutdown.borrow();
    let mut disk_full = None;
    let mut refilled: Option<Instant> = None;
    let mut space_checked: Option<Instant> = None;
    loop {
        if up.committer_failed.load(Ordering::Acquire) || up.intake_failed.load(Ordering::Acquire) {
            stopping = true;
        }
        if !stopping && space_checked.is_none_or(|at| at.elapsed() >= SPACE_EVERY) {
            space_checked = Some(Instant::now());
            match up.space.check() {
                Ok(()) => {}
                Err(JournalError::DiskFull(full)) => {
                    tracing::warn!("stopping: {full}; finishing pages in flight");
                    disk_full = Some(full);
                    stopping = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if stopping {
            up.stop_intake.store(true, Ordering::Release);
            if scheduler.active() == 0 {
                return Ok(disk_full.map_or(Ended::Interrupted, Ended::DiskFull));
            }
        } else {
            // Reading the frontier costs a few range scans: not on every event.
            let due = refilled.is_none_or(|at| at.elapsed() >= REFILL_EVERY);
            if due || !scheduler.busy() {
                let intake_finished = up.intake_done.load(Ordering::Acquire);
                scheduler.refill()?;
                refilled = Some(Instant::now());
                if !scheduler.busy() && intake_finished && all_done(journal, up.parse_ended)? {
                    return Ok(Ended::Done);
                }
            }
            scheduler.dispatch().await;
        }
        let wake = scheduler
            .next_wake()
            .unwrap_or_else(|| Instant::now() + IDLE_TICK)
            .min(Instant::now() + IDLE_TICK);
        tokio::select! {
            event = scheduler.next_event() => event?,
            _ = up.intake_notify.notified(), if !stopping => {}
            changed = shutdown.changed(), if !stopping => {
                if changed.is_err() || *shutdown.borrow() {
                    stopping = true;
                }
            }
            // Checks the committer, retries and the frontier now and then, whatever else
            // happens.
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// Least time between two reads of the frontier while fetches are running.
const REFILL_EVERY: Duration = Duration::from_millis(50);
/// Time between two checks of the free space under the journal: at 1 GB/s of bodies,
/// 100 MB, well within the default `--min-free`.
const SPACE_EVERY: Duration = Duration::from_millis(100);
/// Longest sleep of the scheduler loop.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// Nothing is pending, waiting for a retry, or (with link following, while the parse
/// stage runs) still to be parsed.
fn all_done(journal: &Journal, parse_ended: Option<&AtomicBool>) -> Result<bool, JournalError> {
    let status = journal.status()?;
    let parsing = parse_ended.is_some_and(|ended| !ended.load(Ordering::Acquire));
    Ok(status.pending_fetch == 0 && !(parsing && status.pending_parse > 0))
}
