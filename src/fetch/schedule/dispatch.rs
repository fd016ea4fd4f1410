//! Starting fetches: [`Scheduler::dispatch`] takes ready hosts in turn within the
//! global and per-host limits, fetches a host's robots.txt before anything else of it,
//! refuses what a down host or robots.txt forbids, and hands every outcome, its body
//! compressed, to the committer.

use std::cmp::Reverse;
use std::time::Instant;

use tokio::sync::mpsc;

use super::backoff::retry_delay;
use super::hosts::{Host, Job, RobotsState};
use super::outcome::{Event, Verdict};
use super::{Done, Scheduler, STALLED_AFTER};
use crate::fetch::robots::{robots_url, Robots};
use crate::fetch::{Fetched, Trust};
use crate::journal::{now_ms, pack_body, ErrorKind, JournalError, Outcome, PackedBody};
use crate::journal::{PageMeta, UrlEntry};
use crate::urls::redact;

impl Scheduler {
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

pub(super) fn failed(
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
