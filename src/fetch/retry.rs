//! Retry hints for the scheduler: whether a response status is worth trying again
//! later, and when (`Retry-After`). Which transport errors are transient is decided
//! where they are classified (`classify.rs`).

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap};

/// Statuses that say "not now" rather than "not ever": request timeout, too many
/// requests, and the server-side failures that are usually passing (internal error,
/// bad gateway, unavailable, gateway timeout).
pub(crate) fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The wait a `Retry-After` header asks for, from `now`: delta-seconds or an HTTP-date
/// (a date in the past is no wait). Unparseable values are ignored.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(value: &str, now: SystemTime) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, value.parse().unwrap());
        retry_after(&headers, now)
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(after(" 0 ", now), Some(Duration::ZERO));
        let date = "Wed, 21 Oct 2015 07:30:30 GMT";
        assert_eq!(after(date, now), Some(Duration::from_secs(150)));
        // The obsolete formats HTTP still requires a recipient to accept.
        let rfc850 = "Wednesday, 21-Oct-15 07:29:00 GMT";
        assert_eq!(after(rfc850, now), Some(Duration::from_secs(60)));
        let asctime = "Wed Oct 21 07:28:10 2015";
        assert_eq!(after(asctime, now), Some(Duration::from_secs(10)));
        let past = "Tue, 20 Oct 2015 07:28:00 GMT";
        assert_eq!(after(past, now), Some(Duration::ZERO));
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "99999999999999999999999",
            "Wed, 32 Oct 2015",
        ] {
            assert_eq!(after(bad, now), None, "{bad:?}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn only_passing_statuses_are_transient() {
        let transient: Vec<u16> = (100..600).filter(|s| transient_status(*s)).collect();
        assert_eq!(transient, [408, 429, 500, 502, 503, 504]);
    }
}
