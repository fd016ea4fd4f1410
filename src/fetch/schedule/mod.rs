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
//!
//! Here: the [`Scheduler`] and what it hands out. Its parts: `hosts.rs` (the hosts in
//! memory, their politeness state and the ready queue), `dispatch.rs` (starting
//! fetches), `outcome.rs` (what finished fetches tell about their hosts), `backoff.rs`
//! (retry and host backoff timing).

mod backoff;
mod dispatch;
mod hosts;
mod outcome;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::fetch::robots::agent_token;
use crate::fetch::{Fetched, Fetcher};
use crate::journal::{Journal, JournalError, PackedBody, UrlEntry};

use hosts::Host;
use outcome::Event;

/// Transient failures in a row, with no response at all, after which a host is taken
/// for down: its remaining URLs are recorded as failed without being sent.
pub const HOST_DOWN_AFTER: u32 = 8;
/// How long a host stays down (kept in the journal, so restarts respect it too).
pub const HOST_DOWN_FOR: Duration = Duration::from_secs(600);
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

    /// When the next sleeping host wakes, if any.
    pub fn next_wake(&self) -> Option<Instant> {
        self.sleeping.peek().map(|Reverse((at, _))| *at)
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
    pub(super) fn task_ended(&mut self, task: u64) {
        if !self.stalled.remove(&task) {
            self.active -= 1;
        }
    }

    fn acknowledge(&mut self, ids: &[u64]) {
        for id in ids {
            self.inflight.remove(id);
        }
    }
}
