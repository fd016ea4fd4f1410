//! Retry timing: when a URL that failed transiently is tried again, and how long a
//! host that keeps failing waits; exponential, capped, with jitter.

use std::time::Duration;

use crate::journal::now_ms;

/// First retry delay; doubled at each attempt, with jitter.
pub(super) const RETRY_BASE: Duration = Duration::from_millis(500);
/// Longest wait between attempts, and the most of a `Retry-After` that is honored.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(3600);
/// Longest backoff of a host that keeps failing.
pub(super) const HOST_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Wait before attempt `attempts + 1`: the server's Retry-After if it gave one, else
/// exponential from [`RETRY_BASE`] with jitter of up to half again.
pub(super) fn retry_delay(attempts: u32, retry_after: Option<Duration>, salt: u64) -> u64 {
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
pub(super) fn host_backoff(failures: u32, salt: u64) -> Duration {
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
