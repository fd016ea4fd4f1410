//! The hosts the scheduler holds in memory and its ready queue: each host's politeness
//! state (robots.txt, delay, slow-start window, failures in a row, down), loaded chunk
//! by chunk from the journal's frontier, and [`Scheduler::wake`], which puts a host in
//! the ready queue or to sleep until its next allowed time.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::dispatch::failed;
use super::{chunk, max_hosts, Scheduler};
use crate::fetch::robots::{Robots, RobotsFetch, RobotsSource};
use crate::journal::{now_ms, ErrorKind, JournalError, UrlEntry};
use crate::urls::{normalize_stored, redact_text};

pub(super) struct Job {
    pub(super) id: u64,
    /// `entry.url`, parsed.
    pub(super) url: Url,
    pub(super) entry: UrlEntry,
    pub(super) attempts: u32,
}

pub(super) enum RobotsState {
    Unknown,
    Fetching,
    Known(Arc<Robots>),
}

pub(super) struct Host {
    pub(super) queue: VecDeque<Job>,
    /// The last id loaded from this host's frontier.
    pub(super) cursor: Option<u64>,
    /// The last load filled the chunk: the frontier may hold more.
    pub(super) more: bool,
    pub(super) active: usize,
    /// Requests the host may have in flight: 1, plus one per page served since its last
    /// failure, at most `--per-host`.
    pub(super) window: usize,
    pub(super) next_at: Instant,
    pub(super) delay: Duration,
    pub(super) robots: RobotsState,
    pub(super) robots_failures: u32,
    /// Transient failures in a row (reset by any response).
    pub(super) failures: u32,
    /// The host has answered at least once in this run: then it is never taken for
    /// down, whatever fails on it (a server that serves some pages and stalls on others
    /// keeps serving the good ones).
    pub(super) answered: bool,
    /// Set when nothing more is sent to the host: how its remaining URLs fail.
    pub(super) down: Option<(ErrorKind, String)>,
    pub(super) in_ready: bool,
}

impl Scheduler {
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

    pub(super) fn admit_host(&mut self, key: &str) -> Result<(), JournalError> {
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
    pub(super) fn load(&mut self, key: &str, chunk: usize) -> Result<(), JournalError> {
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
    pub(super) fn forget(&mut self, key: &str) -> Result<(), JournalError> {
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
    pub(super) fn wake(&mut self, key: &str) {
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

    pub(super) fn after_task(&mut self, key: &str) -> Result<(), JournalError> {
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
