//! Recrawl hints from a sitemap: each `<url>`'s `<lastmod>` (a W3C datetime) and
//! `<changefreq>`, as times in milliseconds. Not part of the annotation (whose record
//! they would change): the parse stage hands them to the journal beside it
//! (`journal::Hint`). Like the rest of this module, no clock: a lastmod in the future
//! is the journal's to refuse.

use std::collections::HashMap;

use super::xml::XmlDoc;
use super::DocKind;
use crate::journal::Hint;

const HOUR_MS: u64 = 3600 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// The hints of a sitemap's links that have a lastmod that parses or a changefreq
/// that is one of the protocol's words (other documents: none).
pub(super) fn sitemap_hints(doc: &XmlDoc) -> Vec<Hint> {
    if doc.kind != DocKind::Sitemap {
        return Vec::new();
    }
    let changefreqs: HashMap<&str, &str> = doc
        .changefreqs
        .iter()
        .map(|(url, freq)| (url.as_str(), freq.as_str()))
        .collect();
    doc.links
        .iter()
        .filter_map(|link| {
            let lastmod_ms = link.lastmod.as_deref().and_then(w3c_datetime_ms);
            let changefreq_ms = changefreqs
                .get(link.url.as_str())
                .and_then(|freq| changefreq_ms(freq));
            (lastmod_ms.is_some() || changefreq_ms.is_some()).then(|| Hint {
                url: link.url.clone(),
                lastmod_ms,
                changefreq_ms,
            })
        })
        .collect()
}

/// A sitemap's `changefreq` as an interval (`always`: 0, so the policy's minimum);
/// `never` and anything else: none.
fn changefreq_ms(text: &str) -> Option<u64> {
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "always" => 0,
        "hourly" => HOUR_MS,
        "daily" => DAY_MS,
        "weekly" => 7 * DAY_MS,
        "monthly" => 30 * DAY_MS,
        "yearly" => 365 * DAY_MS,
        _ => return None,
    })
}

/// A W3C datetime (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or that with `Thh:mm`, `:ss` and
/// fractions, and `Z` or `±hh:mm`) as milliseconds since the epoch; None if it is not
/// one or is before 1970.
pub(crate) fn w3c_datetime_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year: i64 = number(parts.next()?, 4)?;
    let month: u32 = parts.next().map_or(Some(1), |m| number(m, 2))?;
    let day: u32 = parts.next().map_or(Some(1), |d| number(d, 2))?;
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day).checked_mul(DAY_MS as i64)?;
    if let Some(time) = time {
        let (clock, offset_ms) = match time.find(['Z', '+', '-']) {
            Some(at) => (&time[..at], zone_offset_ms(&time[at..])?),
            None => return None,
        };
        let mut fields = clock.split(':');
        let hour: i64 = number(fields.next()?, 2)?;
        let minute: i64 = number(fields.next()?, 2)?;
        let second_ms = match fields.next() {
            None => 0,
            Some(second) => {
                let (whole, fraction) = second.split_once('.').unwrap_or((second, ""));
                let whole: i64 = number(whole, 2)?;
                let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
                if !fraction.chars().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                whole * 1000 + digits.parse::<i64>().ok()?
            }
        };
        if fields.next().is_some() || hour > 23 || minute > 59 || second_ms >= 61_000 {
            return None;
        }
        ms += (hour * 60 + minute) * 60_000 + second_ms - offset_ms;
    }
    u64::try_from(ms).ok()
}

/// `Z`, `+hh:mm` or `-hh:mm` as milliseconds east of UTC.
fn zone_offset_ms(zone: &str) -> Option<i64> {
    if zone == "Z" {
        return Some(0);
    }
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = zone.get(1..)?.split_once(':')?;
    let (hours, minutes): (i64, i64) = (number(hours, 2)?, number(minutes, 2)?);
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 60 + minutes) * 60_000)
}

/// `text`, exactly `digits` ASCII digits, as a number.
fn number<T: std::str::FromStr>(text: &str, digits: usize) -> Option<T> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_datetimes_of_every_precision() {
        assert_eq!(w3c_datetime_ms("1970-01-01"), Some(0));
        assert_eq!(w3c_datetime_ms("1970"), Some(0));
        assert_eq!(w3c_datetime_ms("1970-02"), Some(31 * DAY_MS));
        // 2024-02-29 23:59:59 UTC, a leap day.
        let leap = 1_709_251_199_000;
        assert_eq!(w3c_datetime_ms("2024-02-29T23:59:59Z"), Some(leap));
        assert_eq!(w3c_datetime_ms("2024-02-29T23:59:59.25Z"), Some(leap + 250));
        assert_eq!(w3c_datetime_ms(" 2024-03-01T01:59:59+02:00 "), Some(leap));
        // 21:59 two hours west of UTC is 23:59 UTC.
        assert_eq!(
            w3c_datetime_ms("2024-02-29T21:59-02:00"),
            Some(leap - 59_000)
        );
        for bad in [
            "",
            "24-02-29",
            "2024-13-01",
            "2024-02-29T25:00Z",
            "2024-02-29T10:00",
            "1969-12-31",
            "2024/02/29",
            "2024-02-29T10:00:00.x1Z",
        ] {
            assert_eq!(w3c_datetime_ms(bad), None, "{bad}");
        }
    }

    /// The inverse of the calendar conversion `recover` names its folders with.
    #[test]
    fn datetimes_round_trip_through_the_calendar() {
        for secs in [
            0,
            59,
            951_782_400,
            1_709_251_199,
            4_102_444_800,
            253_402_300_799,
        ] {
            let [y, mo, d, h, mi, s] = crate::journal::utc_fields(secs * 1000);
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
            assert_eq!(w3c_datetime_ms(&text), Some(secs * 1000), "{text}");
        }
    }

    #[test]
    fn changefreqs_are_intervals() {
        assert_eq!(changefreq_ms("always"), Some(0));
        assert_eq!(changefreq_ms(" Daily "), Some(DAY_MS));
        assert_eq!(changefreq_ms("never"), None);
        assert_eq!(changefreq_ms("sometimes"), None);
    }
}
