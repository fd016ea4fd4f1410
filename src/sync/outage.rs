//! A time MySQL cannot be used: retried with backoff, logged when it starts and when it
//! ends (never once per attempt), and given up after `--give-up-after` where the run
//! has an end (a one-shot `sync`, the end of `crawl --sync`).
//!
//! The give-up clock runs from the start of the first attempt that failed, or, while a
//! crawl being followed is still fetching, from the latest failure: a crawl is never
//! slowed by MySQL, and once it is done its sync gets the whole deadline to drain.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{SyncConfig, SyncControl, SyncError};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait after a failure; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Shortest deadline for an attempt to connect, however little is left of the
/// give-up deadline.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// The current outage, if any.
#[derive(Default)]
pub(super) struct Outages {
    current: Option<Outage>,
}

struct Outage {
    since: Instant,
    /// Where the give-up clock starts.
    clock: Instant,
    backoff: Duration,
}

impl Outages {
    /// After an attempt begun at `started` failed with the retryable `error`: how long
    /// to wait before the next one, or the error that ends the run once the give-up
    /// deadline has passed.
    pub(super) fn failed(
        &mut self,
        error: SyncError,
        started: Instant,
        config: &SyncConfig,
        control: &SyncControl,
    ) -> Result<Duration, SyncError> {
        let now = Instant::now();
        let following = following(control);
        let outage = match &mut self.current {
            Some(outage) => {
                tracing::debug!("sync: {} still unavailable: {error}", config.target);
                if following {
                    outage.clock = now;
                }
                outage
            }
            None => {
                let retrying = match (config.give_up_after, following) {
                    // A one-shot run says nothing until it succeeds or gives up.
                    (Some(_), false) => None,
                    (Some(limit), true) => Some(format!(
                        "retrying with backoff while the crawl goes on (at its end, the \
                         crawl waits at most {} for MySQL)",
                        shown(limit)
                    )),
                    (None, _) => Some("retrying with backoff until it answers".to_string()),
                };
                match retrying {
                    Some(retrying) => tracing::warn!(
                        "sync: {} is unavailable ({error}); {retrying}",
                        config.target
                    ),
                    None => tracing::debug!("sync: {} unavailable: {error}", config.target),
                }
                self.current.insert(Outage {
                    since: started,
                    clock: started,
                    backoff: FIRST_BACKOFF,
                })
            }
        };
        let mut wait = outage.backoff;
        outage.backoff = (outage.backoff * 2).min(MAX_BACKOFF);
        if let (Some(limit), false) = (config.give_up_after, following) {
            let waited = now.saturating_duration_since(outage.clock);
            if waited >= limit {
                return Err(SyncError::GaveUp {
                    after: shown(limit),
                    target: config.target.to_string(),
                    cause: match &error {
                        SyncError::Mysql {
                            context, message, ..
                        } => format!("{context}: {message}"),
                        other => other.to_string(),
                    },
                });
            }
            wait = wait.min(limit - waited);
        }
        Ok(wait)
    }

    /// MySQL took work again: the outage, if any, is over.
    pub(super) fn succeeded(&mut self, config: &SyncConfig) {
        if let Some(outage) = self.current.take() {
            tracing::info!(
                "sync: {} answers again, after {}",
                config.target,
                shown(outage.since.elapsed())
            );
        }
    }

    /// The deadline for an attempt to connect: the statement deadline, within what is
    /// left before the run gives up.
    pub(super) fn attempt_deadline(&self, config: &SyncConfig, control: &SyncControl) -> Duration {
        match config.give_up_after {
            Some(limit) if !following(control) => {
                let waited = self
                    .current
                    .as_ref()
                    .map_or(Duration::ZERO, |outage| outage.clock.elapsed());
                config
                    .op_timeout
                    .min(limit.saturating_sub(waited).max(MIN_ATTEMPT))
            }
            _ => config.op_timeout,
        }
    }
}

/// Whether the stage follows a crawl that is still fetching and parsing.
fn following(control: &SyncControl) -> bool {
    control.follow.load(Ordering::Acquire) && !control.upstream_done.load(Ordering::Acquire)
}

/// A duration as a person writes it: `2s`, `5m`, `1h 30m`, `1.5s`.
pub(super) fn shown(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, _) if d.subsec_millis() > 0 => format!("{:.1}s", d.as_secs_f64()),
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_shown_as_written() {
        for (d, text) in [
            (Duration::from_secs(2), "2s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(310), "5m 10s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5400), "1h 30m"),
        ] {
            assert_eq!(shown(d), text);
        }
    }
}
