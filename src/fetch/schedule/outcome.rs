//! What finished tasks tell the scheduler: a page's verdict on its host (slow start,
//! backoff, taken for down) and a robots.txt answer (cached in the journal, its
//! `Crawl-delay` and `Sitemap:` lines applied).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backoff::{host_backoff, RETRY_MAX};
use super::hosts::{Host, RobotsState};
use super::{Scheduler, HOST_DOWN_AFTER, HOST_DOWN_FOR};
use crate::fetch::robots::{Robots, RobotsFetch, RobotsSource};
use crate::fetch::Fetched;
use crate::journal::{now_ms, ErrorKind, HostDown, JournalError, NewUrl, Outcome, Via};

/// What a finished task tells the scheduler.
pub(super) enum Event {
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
    /// The task has run longer than [`super::STALLED_AFTER`].
    Stalled { task: u64 },
}

/// What one fetch says about its host.
pub(super) enum Verdict {
    /// A response that is not a transient failure: the host works.
    Served,
    /// A transient status (408, 429, 5xx): the host answers, but is busy or erring.
    Busy { retry_after: Option<Duration> },
    /// No response at all (DNS, connect, TLS, timeout, protocol): maybe down.
    Silent { kind: ErrorKind, message: String },
    /// Says nothing about the host (too large, too many redirects, blocked, a proxy
    /// failure: the proxy is rested instead, see `fetch::proxy`).
    Neutral,
}

impl Verdict {
    pub(super) fn of(fetched: &Fetched) -> Verdict {
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
                | ErrorKind::Robots
                | ErrorKind::Proxy => Verdict::Neutral,
            },
        }
    }
}

impl Scheduler {
    pub(super) fn apply(&mut self, event: Event) -> Result<(), JournalError> {
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
    pub(super) fn take_down(
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
}

pub(super) fn robots_input(fetched: &Fetched) -> RobotsFetch<'_> {
    match &fetched.meta.outcome {
        Outcome::Response { status, .. } => RobotsFetch::Response {
            status: *status,
            body: fetched.body.as_deref().unwrap_or_default(),
        },
        Outcome::Error { message, .. } => RobotsFetch::Failed { message },
    }
}
