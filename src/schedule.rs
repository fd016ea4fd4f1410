//! The crawl's scheduler: decides which pending URL is fetched next, host by host.
//!
//! Work comes from the journal's on-disk frontier, grouped by host (see
//! `journal/frontier.rs`), so memory holds only a bounded set of hosts with a bounded
//! chunk of URLs each, whatever the crawl's size. Hosts take turns; a host is ready
//! when it has work, a free slot, its delay or backoff has passed and its robots.txt is
//! known. A host's slots start at one and grow by one with every page it serves, up to
//! `--per-host` (slow start); a failure takes them back to one, and a delay keeps them
//! at one. A fetch still running after `STALLED_AFTER` (2 s) stops counting against
//! `--concurrency` (up to another `--concurrency` of them), so a slow host, a tarpit or
//! a host in backoff never starves the others: it holds one request that the global
//! limit no longer sees.
//!
//! Politeness lives here: robots.txt is fetched once per host and cached in the journal
//! (`hosts` tree) until it expires; `Crawl-delay` and `--delay` space the requests to a
//! host; a transient failure is retried with exponential backoff and jitter (or after
//! the server's `Retry-After`) up to `--retries` times, the schedule kept in the
//! journal's `retry_queue`; a host whose requests keep failing is backed off, and a host
//! that has not answered once in this run is, after [`HOST_DOWN_AFTER`] failures in a
//! row without any response, taken for down for
//! [`HOST_DOWN_FOR`] (kept in the journal): its URLs are recorded as failed without
//! being sent.
//!
//! The scheduler never writes results itself: every outcome, including URLs refused by
//! robots.txt, goes to the committer, which acknowledges ids once they are durable.
//! Until then an id stays in `inflight`, so a host reloaded from the frontier never
//! fetches it twice.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use url::Url;

use crate::fetch::{Fetched, Fetcher, Trust};
use crate::journal::{now_ms, ErrorKind, HostDown, Journal, JournalError, NewUrl, Outcome};
use crate::journal::{pack_body, PackedBody, PageMeta, UrlEntry, Via};
use crate::robots::{agent_token, robots_url, Robots, RobotsFetch, RobotsSource};
use crate::urls::{normalize_stored, redact, redact_text};

/// Transient failures in a row, with no response at all, after which a host is taken
/// for down: its remaining URLs are recorded as failed without being sent.
pub const HOST_DOWN_AFTER: u32 = 8;
/// How long a host stays down (kept in the journal, so restarts respect it too).
pub const HOST_DOWN_FOR: Duration = Duration::from_secs(600);
/// First retry delay; doubled at each attempt, with jitter.
const RETRY_BASE: Duration = Duration::from_millis(500);
/// Longest wait between attempts, and the most of a `Retry-After` that is honored.
const RETRY_MAX: Duration = Duration::from_secs(3600);
/// Longest backoff of a host that keeps failing.
const HOST_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A fetch running longer than this is stalled: its slot is given back to the global
/// limit while it goes on (its host's slot stays taken).
const STALLED_AFTER: Duration = Duration::from_secs(2);

/// How the crawl treats the sites it visits.
#[derive(Clone, Debug)]
pub struct Politeness {
    /// Obey robots.txt (`--ignore-robots` turns it off).
    pub robots: bool,
    /// Least time between two requests to one host (`--delay`); `Crawl-delay` can
    /// raise it.
    pub delay: Duration,
    /// Attempts after the first for a transient failure (`--retries`).
    pub retries: u32,
    /// Add the `Sitemap:` lines of robots.txt files as seeds (with link following).
    pub robots_sitemaps: bool,
}

impl Default for Politeness {
    fn default() -> Self {
        Politeness {
            robots: true,
            delay: Duration::ZERO,
            retries: 3,
            robots_sitemaps: false,
        }
    }
}

/// A finished fetch (or a failure decided without fetching) on its way to the committer.
pub struct Done {
    pub id: u64,
    /// The host key of its frontier entry.
    pub host: String,
    /// The URL's record, as the frontier held it.
    pub url: UrlEntry,
    /// The URL for log lines, userinfo redacted.
    pub shown: String,
    /// The outcome; its body has been taken out and packed into `body`.
    pub fetched: Fetched,
    /// The body as the journal stores it, compressed and hashed by the fetch task.
    pub body: Result<Option<PackedBody>, JournalError>,
    /// Try again at this time instead of recording the outcome.
    pub retry_at_ms: Option<u64>,
}

struct Job {
    id: u64,
    /// `entry.url`, parsed.
    url: Url,
    entry: UrlEntry,
    attempts: u32,
}

enum RobotsState {
    Unknown,
    Fetching,
    Known(Arc<Robots>),
}

struct Host {
    queue: VecDeque<Job>,
    /// The last id loaded from this host's frontier.
    cursor: Option<u64>,
    /// The last load filled the chunk: the frontier may hold more.
    more: bool,
    active: usize,
    /// Requests the host may have in flight: 1, plus one per page served since its last
    /// failure, at most `--per-host`.
    window: usize,
    next_at: Instant,
    delay: Duration,
    robots: RobotsState,
    robots_failures: u32,
    /// Transient failures in a row (reset by any response).
    failures: u32,
    /// The host has answered at least once in this run: then it is never taken for
    /// down, whatever fails on it (a server that serves some pages and stalls on others
    /// keeps serving the good ones).
    answered: bool,
    /// Set when nothing more is sent to the host: how its remaining URLs fail.
    down: Option<(ErrorKind, String)>,
    in_ready: bool,
}

/// What a finished task tells the scheduler.
enum Event {
    Page {
        task: u64,
        host: String,
        id: u64,
        verdict: Verdict,
    },
    Robots {
        task: u64,
        host: String,
        fetched: Box<Fetched>,
    },
    /// The task has run longer than [`STALLED_AFTER`].
    Stalled { task: u64 },
}

/// What one fetch says about its host.
enum Verdict {
    /// A response that is not a transient failure: the host works.
    Served,
    /// A transient status (408, 429, 5xx): the host answers, but is busy or erring.
    Busy { retry_after: Option<Duration> },
    /// No response at all (DNS, connect, TLS, timeout, protocol): maybe down.
    Silent { kind: ErrorKind, message: String },
    /// Says nothing about the host (too large, too many redirects, blocked).
    Neutral,
}

impl Verdict {
    fn of(fetched: &Fetched) -> Verdict {
        match &fetched.meta.outcome {
            Outcome::Response { .. } if fetched.transient => Verdict::Busy {
                retry_after: fetched.retry_after,
            },
            Outcome::Response { .. } => Verdict::Served,
            Outcome::Error { kind, message } => match kind {
                ErrorKind::Dns
                | ErrorKind::Connect
                | ErrorKind::Tls
                | ErrorKind::Timeout
                | ErrorKind::Protocol => Verdict::Silent {
                    kind: *kind,
                    message: message.clone(),
                },
                ErrorKind::TooLarge
                | ErrorKind::TooManyRedirects
                | ErrorKind::Blocked
                | ErrorKind::Robots => Verdict::Neutral,
            },
        }
    }
}

pub struct Scheduler {
    journal: Arc<Journal>,
    fetcher: Arc<Fetcher>,
    politeness: Politeness,
    agent: String,
    commit_tx: mpsc::Sender<Done>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    /// Ids the committer has made durable.
    acks: mpsc::UnboundedReceiver<Vec<u64>>,
    per_host: usize,
    concurrency: usize,
    hosts: HashMap<String, Host>,
    /// Hosts that may dispatch now, each at most once.
    ready: VecDeque<String>,
    /// Hosts waiting for a time (delay, backoff); stale entries are skipped.
    sleeping: BinaryHeap<Reverse<(Instant, String)>>,
    /// Ids handed out and not yet durable: never loaded again.
    inflight: HashSet<u64>,
    queued: usize,
    /// Tasks counted against `--concurrency`.
    active: usize,
    /// Tasks past [`STALLED_AFTER`] that no longer count (at most `--concurrency`).
    stalled: HashSet<u64>,
    /// Number of the next task started.
    next_task: u64,
    /// The last host visited by the scan of the frontier's hosts.
    host_cursor: Option<String>,
    /// Failures decided without fetching, waiting to go to the committer.
    refused: Vec<Done>,
}

/// Limits of what the scheduler holds in memory.
fn max_hosts(concurrency: usize) -> usize {
    (concurrency * 4).clamp(256, 4096)
}

fn chunk(per_host: usize) -> usize {
    (per_host * 4).clamp(16, 256)
}

impl Scheduler {
    pub fn new(
        journal: Arc<Journal>,
        fetcher: Arc<Fetcher>,
        politeness: Politeness,
        commit_tx: mpsc::Sender<Done>,
        acks: mpsc::UnboundedReceiver<Vec<u64>>,
    ) -> Scheduler {
        let config = fetcher.config();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Scheduler {
            agent: agent_token(&config.user_agent),
            per_host: config.per_host.max(1),
            concurrency: config.concurrency.max(1),
            journal,
            fetcher,
            politeness,
            commit_tx,
            events_tx,
            events_rx,
            acks,
            hosts: HashMap::new(),
            ready: VecDeque::new(),
            sleeping: BinaryHeap::new(),
            inflight: HashSet::new(),
            queued: 0,
            active: 0,
            stalled: HashSet::new(),
            next_task: 0,
            host_cursor: None,
            refused: Vec::new(),
        }
    }

    /// Fetches in flight or queued in memory.
    pub fn busy(&self) -> bool {
        self.active() > 0 || self.queued > 0
    }

    /// Tasks running, stalled or not.
    pub fn active(&self) -> usize {
        self.active + self.stalled.len()
    }

    /// Moves due retries back to the frontier and loads work from it.
    pub fn refill(&mut self) -> Result<(), JournalError> {
        for promoted in self.journal.promote_retries(now_ms(), 4096)? {
            let (id, entry) = (promoted.id, promoted.entry);
            let key = entry.host;
            // A host in memory has read its frontier past this id: queue it here.
            let Some(host) = self.hosts.get_mut(&key) else {
                continue;
            };
            if host.cursor.is_none_or(|cursor| cursor < id) || self.inflight.contains(&id) {
                continue;
            }
            if let Ok(url) = normalize_stored(&entry.url.url) {
                host.queue.push_back(Job {
                    id,
                    url,
                    entry: entry.url,
                    attempts: entry.attempts,
                });
                self.queued += 1;
                self.wake(&key);
            }
        }
        let cap = max_hosts(self.concurrency);
        let chunk = chunk(self.per_host);
        // Hosts in memory whose queue ran dry but whose frontier may hold more.
        let dry: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.queue.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for key in dry {
            self.load(&key, chunk)?;
        }
        // New hosts, in turn from where the last scan stopped.
        let mut wrapped = false;
        while self.hosts.len() < cap {
            let batch = self
                .journal
                .frontier_hosts_after(self.host_cursor.as_deref(), 64)?;
            if batch.is_empty() {
                if wrapped || self.host_cursor.is_none() {
                    break;
                }
                self.host_cursor = None;
                wrapped = true;
                continue;
            }
            for key in batch {
                self.host_cursor = Some(key.clone());
                if self.hosts.len() >= cap {
                    break;
                }
                if !self.hosts.contains_key(&key) {
                    self.admit_host(&key)?;
                    self.load(&key, chunk)?;
                }
            }
        }
        Ok(())
    }

    fn admit_host(&mut self, key: &str) -> Result<(), JournalError> {
        let stored = self.journal.host(key)?.unwrap_or_default();
        let now = now_ms();
        let wait = Duration::from_millis(stored.not_before_ms.saturating_sub(now));
        let mut robots = RobotsState::Unknown;
        if !self.politeness.robots {
            // As if the host had no robots.txt (a 4xx), which allows everything.
            let none = RobotsFetch::Response {
                status: 404,
                body: &[],
            };
            robots = RobotsState::Known(Arc::new(Robots::from_fetch(none, &self.agent)));
        } else if let Some(source) = stored
            .robots
            .as_deref()
            .and_then(RobotsSource::decode)
            .filter(|source| source.expires_at_ms() > now)
        {
            robots = RobotsState::Known(Arc::new(Robots::from_source(&source, &self.agent)));
        }
        let down = stored
            .down
            .filter(|down| down.until_ms > now)
            .map(|down| (down.kind, down.message));
        let mut host = Host {
            queue: VecDeque::new(),
            cursor: None,
            more: true,
            active: 0,
            window: 1,
            next_at: Instant::now() + wait,
            delay: self.politeness.delay,
            robots,
            robots_failures: 0,
            failures: 0,
            answered: false,
            down,
            in_ready: false,
        };
        if let RobotsState::Known(robots) = &host.robots {
            host.delay = host.delay.max(robots.crawl_delay().unwrap_or_default());
        }
        self.hosts.insert(key.to_string(), host);
        Ok(())
    }

    /// Loads the next chunk of `key`'s frontier into memory; drops the host when it has
    /// nothing left and nothing in flight.
    fn load(&mut self, key: &str, chunk: usize) -> Result<(), JournalError> {
        let Some(host) = self.hosts.get_mut(key) else {
            return Ok(());
        };
        if host.more || host.queue.is_empty() {
            let batch = self.journal.frontier_of(key, host.cursor, chunk)?;
            host.more = batch.len() == chunk;
            for ready in batch {
                host.cursor = Some(ready.id);
                if self.inflight.contains(&ready.id) {
                    continue;
                }
                match normalize_stored(&ready.entry.url) {
                    Ok(url) => {
                        host.queue.push_back(Job {
                            id: ready.id,
                            url,
                            entry: ready.entry,
                            attempts: ready.attempts,
                        });
                        self.queued += 1;
                    }
                    Err(reason) => {
                        // A record this build cannot request: fail it, don't stall.
                        let shown = redact_text(&ready.entry.url);
                        tracing::warn!(
                            "id {}: stored URL {shown} cannot be requested: {reason}",
                            ready.id
                        );
                        self.inflight.insert(ready.id);
                        let message = format!("stored URL cannot be requested: {reason}");
                        let why = (ErrorKind::Protocol, message);
                        let done = failed(ready.id, key, ready.entry, shown, why);
                        self.refused.push(done);
                    }
                }
            }
        }
        if host.queue.is_empty() && host.active == 0 && !host.more {
            self.forget(key)?;
        } else {
            self.wake(key);
        }
        Ok(())
    }

    /// Drops a host from memory, keeping its backoff in the journal.
    fn forget(&mut self, key: &str) -> Result<(), JournalError> {
        if let Some(host) = self.hosts.remove(key) {
            let wait = host.next_at.saturating_duration_since(Instant::now());
            if wait > Duration::from_secs(1) {
                let until = now_ms() + wait.as_millis() as u64;
                self.journal
                    .update_host(key, |h| h.not_before_ms = h.not_before_ms.max(until))?;
            }
        }
        Ok(())
    }

    /// Puts a host where it belongs: ready, sleeping until a time, or neither.
    fn wake(&mut self, key: &str) {
        let Some(host) = self.hosts.get_mut(key) else {
            return;
        };
        // One request at a time while a delay applies; otherwise as many as the host
        // has earned (a tarpit never gets past one).
        let limit = if host.delay.is_zero() {
            host.window.min(self.per_host)
        } else {
            1
        };
        let wants = !host.queue.is_empty() && host.active < limit;
        if !wants || host.in_ready || matches!(host.robots, RobotsState::Fetching) {
            return;
        }
        if host.next_at > Instant::now() && host.down.is_none() {
            self.sleeping.push(Reverse((host.next_at, key.to_string())));
        } else {
            host.in_ready = true;
            self.ready.push_back(key.to_string());
        }
    }

    /// When the next sleeping host wakes, if any.
    pub fn next_wake(&self) -> Option<Instant> {
        self.sleeping.peek().map(|Reverse((at, _))| *at)
    }

    /// Starts fetches within the limits; returns how many it started.
    pub async fn dispatch(&mut self) -> usize {
        for done in std::mem::take(&mut self.refused) {
            let _ = self.commit_tx.send(done).await;
        }
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.sleeping.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.sleeping.pop() {
                self.wake(&key);
            }
        }
        let mut started = 0;
        while self.active < self.concurrency {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(host) = self.hosts.get_mut(&key) else {
                continue;
            };
            host.in_ready = false;
            // A host taken for down has its URLs recorded as failed at once.
            if host.next_at > Instant::now() && host.down.is_none() {
                self.wake(&key);
                continue;
            }
            let robots = match &host.robots {
                RobotsState::Known(robots) => robots.clone(),
                RobotsState::Fetching => continue,
                RobotsState::Unknown => {
                    let Some(first) = host.queue.front() else {
                        continue;
                    };
                    host.robots = RobotsState::Fetching;
                    host.active += 1;
                    self.active += 1;
                    started += 1;
                    let task = self.next_task;
                    self.next_task += 1;
                    let target = robots_url(&first.url);
                    let trust = if first.entry.via.trusted() {
                        Trust::Given
                    } else {
                        Trust::Discovered
                    };
                    let (fetcher, events) = (self.fetcher.clone(), self.events_tx.clone());
                    tokio::spawn(async move {
                        let fetched = watched(fetcher.fetch(&target, trust), task, &events);
                        let fetched = Box::new(fetched.await);
                        let _ = events.send(Event::Robots {
                            task,
                            host: key,
                            fetched,
                        });
                    });
                    continue;
                }
            };
            let Some(job) = host.queue.pop_front() else {
                continue;
            };
            self.queued -= 1;
            self.inflight.insert(job.id);
            if let Some(done) = refuse(&key, host, &robots, &job) {
                tracing::debug!("{}: {}", done.shown, error_text(&done));
                let _ = self.commit_tx.send(done).await;
                self.wake(&key);
                continue;
            }
            host.active += 1;
            self.active += 1;
            started += 1;
            let task = self.next_task;
            self.next_task += 1;
            if !host.delay.is_zero() {
                host.next_at = Instant::now() + host.delay;
            }
            self.wake(&key);
            let retries = self.politeness.retries;
            let (fetcher, commit_tx) = (self.fetcher.clone(), self.commit_tx.clone());
            let events = self.events_tx.clone();
            // A stored page (a recrawl check) is asked for with its validators; one
            // whose record cannot be read is simply fetched again.
            let validators = self.journal.validators(job.id).ok().flatten();
            tokio::spawn(async move {
                let trust = if job.entry.via.trusted() {
                    Trust::Given
                } else {
                    Trust::Discovered
                };
                let fetching = fetcher.fetch_if_changed(&job.url, trust, validators.as_ref());
                let in_flight = crate::metrics::InFlight::start();
                let mut fetched = watched(fetching, task, &events).await;
                drop(in_flight);
                let verdict = Verdict::of(&fetched);
                let retry_at_ms = (fetched.transient && job.attempts < retries)
                    .then(|| now_ms() + retry_delay(job.attempts, fetched.retry_after, job.id));
                // A page to be fetched again keeps no body: nothing to compress.
                let body = fetched.body.take().filter(|_| retry_at_ms.is_none());
                let body = pack_off_loop(body).await;
                let id = job.id;
                let done = Done {
                    id,
                    host: key.clone(),
                    url: job.entry,
                    shown: redact(&job.url),
                    fetched,
                    body,
                    retry_at_ms,
                };
                // A closed channel means the committer stopped on an error; the page
                // stays pending in the journal and is fetched again next run.
                let _ = commit_tx.send(done).await;
                let _ = events.send(Event::Page {
                    task,
                    host: key,
                    id,
                    verdict,
                });
            });
        }
        started
    }

    /// Waits for a finished task or an acknowledgement from the committer, and applies
    /// it and any others already there.
    pub async fn next_event(&mut self) -> Result<(), JournalError> {
        tokio::select! {
            Some(event) = self.events_rx.recv() => self.apply(event)?,
            Some(ids) = self.acks.recv() => self.acknowledge(&ids),
        }
        while let Ok(event) = self.events_rx.try_recv() {
            self.apply(event)?;
        }
        while let Ok(ids) = self.acks.try_recv() {
            self.acknowledge(&ids);
        }
        Ok(())
    }

    /// Gives back the task's global slot, unless it had stalled and given it back.
    fn task_ended(&mut self, task: u64) {
        if !self.stalled.remove(&task) {
            self.active -= 1;
        }
    }

    fn acknowledge(&mut self, ids: &[u64]) {
        for id in ids {
            self.inflight.remove(id);
        }
    }

    fn apply(&mut self, event: Event) -> Result<(), JournalError> {
        match event {
            Event::Stalled { task } => {
                if self.stalled.len() < self.concurrency {
                    self.stalled.insert(task);
                    self.active -= 1;
                }
                Ok(())
            }
            Event::Page {
                task,
                host,
                id,
                verdict,
            } => {
                self.task_ended(task);
                let per_host = self.per_host;
                let mut newly_down = None;
                let Some(h) = self.hosts.get_mut(&host) else {
                    return Ok(());
                };
                h.active -= 1;
                let back_off = |h: &mut Host, retry_after: Option<Duration>| {
                    h.failures += 1;
                    let mut wait = host_backoff(h.failures, id);
                    if let Some(after) = retry_after {
                        wait = wait.max(after.min(RETRY_MAX));
                    }
                    h.next_at = h.next_at.max(Instant::now() + wait);
                    h.window = 1;
                };
                match verdict {
                    Verdict::Served => {
                        h.failures = 0;
                        h.answered = true;
                        h.window = (h.window + 1).min(per_host);
                    }
                    Verdict::Busy { retry_after } => {
                        h.answered = true;
                        back_off(h, retry_after);
                    }
                    Verdict::Silent { kind, message } => {
                        back_off(h, None);
                        if h.failures >= HOST_DOWN_AFTER && !h.answered && h.down.is_none() {
                            newly_down = Some((
                                kind,
                                format!(
                                    "not sent: the host failed {} times in a row without \
                                     answering (last: {message})",
                                    h.failures
                                ),
                            ));
                        }
                    }
                    Verdict::Neutral => {}
                }
                if let Some((kind, message)) = newly_down {
                    self.take_down(&host, kind, message)?;
                }
                self.after_task(&host)
            }
            Event::Robots {
                task,
                host,
                fetched,
            } => {
                self.task_ended(task);
                let agent = self.agent.clone();
                let retries = self.politeness.retries;
                let Some(h) = self.hosts.get_mut(&host) else {
                    return Ok(());
                };
                h.active -= 1;
                let source = RobotsSource::new(robots_input(&fetched), now_ms());
                let robots = Robots::from_source(&source, &agent);
                let unreachable = robots.is_unreachable();
                h.answered |= matches!(fetched.meta.outcome, Outcome::Response { .. });
                if unreachable {
                    // Nothing is fetched from the host until its robots.txt is known.
                    h.robots_failures += 1;
                    h.robots = RobotsState::Unknown;
                    h.next_at = Instant::now() + host_backoff(h.robots_failures + 1, 0);
                    // The private-address guard refuses the host's pages too: asking
                    // again would change nothing.
                    let blocked = matches!(
                        fetched.meta.outcome,
                        Outcome::Error {
                            kind: ErrorKind::Blocked,
                            ..
                        }
                    );
                    if h.robots_failures > retries || blocked {
                        h.robots = RobotsState::Known(Arc::new(robots));
                        let (kind, message) = match &fetched.meta.outcome {
                            Outcome::Error {
                                kind: ErrorKind::Blocked,
                                message,
                            } => (ErrorKind::Blocked, message.clone()),
                            Outcome::Error { kind, message } => {
                                (*kind, format!("robots.txt could not be fetched: {message}"))
                            }
                            Outcome::Response { status, .. } => (
                                ErrorKind::Robots,
                                format!(
                                    "robots.txt answered HTTP {status} {} time(s): until it \
                                     answers, nothing of this host is fetched",
                                    h.robots_failures
                                ),
                            ),
                        };
                        self.take_down(&host, kind, message)?;
                    }
                } else {
                    h.delay = self
                        .politeness
                        .delay
                        .max(robots.crawl_delay().unwrap_or_default());
                    let sitemaps = robots.sitemaps();
                    h.robots = RobotsState::Known(Arc::new(robots));
                    let bytes = bincode::serialize(&source)
                        .map_err(|e| JournalError::Encode(e.to_string()))?;
                    self.journal
                        .update_host(&host, |entry| entry.robots = Some(bytes.clone()))?;
                    if self.politeness.robots_sitemaps && !sitemaps.is_empty() {
                        let seeds: Vec<NewUrl> = sitemaps
                            .iter()
                            .map(|url| NewUrl::new(url, None, 0, Via::Sitemap))
                            .collect();
                        self.journal.add_urls(&seeds)?;
                    }
                }
                self.after_task(&host)
            }
        }
    }

    /// Takes a host for down for [`HOST_DOWN_FOR`]: its URLs are recorded as failed
    /// with `kind` and `message`, without being sent, in this run and the next ones
    /// (in this run only when the private-address guard refused it).
    fn take_down(
        &mut self,
        key: &str,
        kind: ErrorKind,
        message: String,
    ) -> Result<(), JournalError> {
        // A host refused by the private-address guard is not down: its pages are
        // refused in this run only (a run with --allow-private fetches them), and
        // counted in the run's summary with that flag.
        if kind != ErrorKind::Blocked {
            tracing::warn!("host {key} taken for down: {message}");
            let down = HostDown {
                until_ms: now_ms() + HOST_DOWN_FOR.as_millis() as u64,
                kind,
                message: message.clone(),
            };
            self.journal
                .update_host(key, |h| h.down = Some(down.clone()))?;
        }
        if let Some(host) = self.hosts.get_mut(key) {
            host.down = Some((kind, message));
        }
        Ok(())
    }

    fn after_task(&mut self, key: &str) -> Result<(), JournalError> {
        let Some(host) = self.hosts.get(key) else {
            return Ok(());
        };
        if host.queue.is_empty() {
            self.load(key, chunk(self.per_host))
        } else {
            self.wake(key);
            Ok(())
        }
    }
}

/// Runs a task's fetch, telling the scheduler once it has run past [`STALLED_AFTER`].
async fn watched<F: std::future::Future>(
    fetch: F,
    task: u64,
    events: &mpsc::UnboundedSender<Event>,
) -> F::Output {
    tokio::pin!(fetch);
    if let Ok(done) = tokio::time::timeout(STALLED_AFTER, &mut fetch).await {
        return done;
    }
    let _ = events.send(Event::Stalled { task });
    fetch.await
}

/// A job that is not to be sent: its host is down, or robots.txt disallows it.
fn refuse(key: &str, host: &Host, robots: &Robots, job: &Job) -> Option<Done> {
    if let Some(down) = &host.down {
        let shown = redact(&job.url);
        return Some(failed(job.id, key, job.entry.clone(), shown, down.clone()));
    }
    if !robots.allowed(&job.url) {
        let why = (ErrorKind::Robots, "disallowed by robots.txt".to_string());
        return Some(failed(
            job.id,
            key,
            job.entry.clone(),
            redact(&job.url),
            why,
        ));
    }
    None
}

fn error_text(done: &Done) -> &str {
    match &done.fetched.meta.outcome {
        Outcome::Error { message, .. } => message,
        Outcome::Response { .. } => "",
    }
}

fn robots_input(fetched: &Fetched) -> RobotsFetch<'_> {
    match &fetched.meta.outcome {
        Outcome::Response { status, .. } => RobotsFetch::Response {
            status: *status,
            body: fetched.body.as_deref().unwrap_or_default(),
        },
        Outcome::Error { message, .. } => RobotsFetch::Failed { message },
    }
}

fn failed(
    id: u64,
    host: &str,
    url: UrlEntry,
    shown: String,
    (kind, message): (ErrorKind, String),
) -> Done {
    Done {
        id,
        host: host.to_string(),
        url,
        shown,
        fetched: Fetched {
            meta: PageMeta {
                fetched_at_ms: now_ms(),
                duration_ms: 0,
                redirects: Vec::new(),
                outcome: Outcome::Error { kind, message },
            },
            body: None,
            transient: false,
            retry_after: None,
        },
        body: Ok(None),
        retry_at_ms: None,
    }
}

/// Bodies up to this size are compressed on the fetch task's worker thread (tens of
/// microseconds); larger ones on the blocking pool, so no page holds up the event loop.
const COMPRESS_INLINE_MAX: usize = 256 * 1024;

/// Compresses a fetched body for the journal. This runs in the fetch tasks, spread over
/// the runtime's workers, rather than on the committer's one thread, which every page
/// passes through.
async fn pack_off_loop(body: Option<Vec<u8>>) -> Result<Option<PackedBody>, JournalError> {
    match body {
        None => Ok(None),
        Some(body) if body.len() <= COMPRESS_INLINE_MAX => pack_body(&body).map(Some),
        Some(body) => tokio::task::spawn_blocking(move || pack_body(&body))
            .await
            .map_err(|e| JournalError::Encode(format!("zstd task: {e}")))?
            .map(Some),
    }
}

/// Wait before attempt `attempts + 1`: the server's Retry-After if it gave one, else
/// exponential from [`RETRY_BASE`] with jitter of up to half again.
fn retry_delay(attempts: u32, retry_after: Option<Duration>, salt: u64) -> u64 {
    if let Some(after) = retry_after {
        return after.min(RETRY_MAX).as_millis() as u64;
    }
    let base = RETRY_BASE
        .saturating_mul(1 << attempts.min(16))
        .min(RETRY_MAX);
    let base = base.as_millis() as u64;
    base + jitter(salt ^ u64::from(attempts)) % (base / 2 + 1)
}

/// Backoff of a host after `failures` failures in a row: none for the first, then
/// doubling up to [`HOST_BACKOFF_MAX`], with jitter.
fn host_backoff(failures: u32, salt: u64) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let base = RETRY_BASE
        .saturating_mul(1 << (failures - 1).min(16))
        .min(HOST_BACKOFF_MAX);
    let ms = base.as_millis() as u64;
    Duration::from_millis(ms + jitter(salt ^ u64::from(failures)) % (ms / 4 + 1))
}

/// Cheap pseudo-random spread, so retries of many URLs do not come back at once.
fn jitter(seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&(seed ^ now_ms()).to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_bounded_jitter() {
        for attempts in 0..6 {
            let base = 500u64 << attempts;
            let wait = retry_delay(attempts, None, 7);
            assert!(
                (base..=base + base / 2).contains(&wait),
                "{attempts}: {wait}"
            );
        }
        assert!(retry_delay(40, None, 1) <= RETRY_MAX.as_millis() as u64 * 3 / 2);
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        assert_eq!(retry_delay(0, Some(Duration::from_secs(7)), 1), 7000);
        let huge = Some(Duration::from_secs(10 * 24 * 3600));
        assert_eq!(retry_delay(2, huge, 1), RETRY_MAX.as_millis() as u64);
    }

    #[test]
    fn hosts_back_off_from_the_second_failure_up_to_a_cap() {
        assert_eq!(host_backoff(0, 1), Duration::ZERO);
        assert_eq!(host_backoff(1, 1), Duration::ZERO);
        let second = host_backoff(2, 1);
        assert!(second >= Duration::from_secs(1) && second <= Duration::from_millis(1250));
        assert!(host_backoff(30, 1) <= HOST_BACKOFF_MAX + HOST_BACKOFF_MAX / 4);
    }
}
