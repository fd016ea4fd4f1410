//! Parsers of flag values (sizes, durations, seconds, URLs, scopes), each refusing
//! what no stage could use with a message that names the flag's form; `Unquoted` strips
//! the quotes a shell or config file may leave around a value first.

use std::time::Duration;

use crate::parse::follow::{FollowError, Scope};
use crate::sync::Target;
use crate::urls::GivenUrl;

/// A size in bytes: a number (decimals allowed) and a unit, `512MiB`, `1.5G`, `64k`,
/// `100MB`, `0`; no unit is bytes. `K`, `M`, `G`, `T`, alone or with `iB`, are powers of
/// 1024; `KB`, `MB`, `GB`, `TB` powers of 1000; `B` is bytes. Case does not matter.
pub(super) fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim_start();
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 512MiB, 1GiB or 0"))?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
            ))
        }
    };
    let bytes = (n * scale).round();
    if bytes < u64::MAX as f64 {
        Ok(bytes as u64)
    } else {
        Err(format!("`{s}` is too large"))
    }
}

pub(super) fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse().map_err(|e: FollowError| e.to_string())
}

/// A URL given on the command line, its userinfo taken out; the error shows the text
/// with anything that may be userinfo hidden.
pub(super) fn given_url(s: &str) -> Result<GivenUrl, String> {
    crate::urls::normalize_given(s)
        .map(|(url, userinfo)| GivenUrl { url, userinfo })
        .map_err(|e| format!("{}: {e}", crate::urls::redact_text(s)))
}

pub(super) fn delay_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err("must be a number of seconds from 0 to 3600".to_string()),
    }
}

/// `250ms`, `30s`, `5m`, `2h`, `1d`; a bare number is seconds. At most a week.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    duration_within(s, 7.0 * 86_400.0, "a week")
}

/// A recrawl interval: a duration of at most a year.
pub(super) fn parse_interval(s: &str) -> Result<Duration, String> {
    duration_within(s, 366.0 * 86_400.0, "a year")
}

pub(super) fn duration_within(s: &str, max_secs: f64, max_text: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 5m, 1h or 1d"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            ))
        }
    };
    if secs.is_finite() && secs > 0.0 && secs <= max_secs {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("`{s}` must be more than 0 and at most {max_text}"))
    }
}

/// Parses a flag's value with its function, with errors that name the flag and never
/// repeat the value: it may be a secret (`--header`, a MySQL URL's password) or hold
/// line breaks, and clap's own value errors would quote it whole.
#[derive(Clone)]
pub(super) struct Unquoted<T>(pub(super) fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Unquoted<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let parsed = match value.to_str() {
            Some(text) => (self.0)(text),
            None => Err("the value must be valid UTF-8".to_string()),
        };
        parsed.map_err(|e| {
            let flag = arg
                .and_then(|a| a.get_long())
                .map_or_else(|| "value".to_string(), |long| format!("--{long}"));
            let kind = clap::error::ErrorKind::ValueValidation;
            clap::Error::raw(kind, format!("invalid {flag}: {e}\n")).with_cmd(cmd)
        })
    }
}

/// A MySQL URL; the error shows it redacted (see [`Target::parse`]).
pub(super) fn mysql_target(s: &str) -> Result<Target, String> {
    Target::parse(s).map_err(|e| e.to_string())
}

/// The `User-Agent`, checked as the fetcher will use it: one header value.
pub(super) fn user_agent(s: &str) -> Result<String, String> {
    match http::HeaderValue::from_str(s) {
        Ok(_) => Ok(s.to_string()),
        Err(_) => {
            Err("a User-Agent must be one line of text without control characters".to_string())
        }
    }
}

pub(super) fn positive_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| "must be a number of seconds, such as 30 or 2.5".to_string())?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err("must be more than 0 and at most 86400 seconds (a day)".to_string())
    }
}

/// A date or date and time (W3C datetime, UTC unless it says otherwise) as ms since the
/// epoch.
pub(super) fn parse_date(s: &str) -> Result<u64, String> {
    crate::parse::hints::w3c_datetime_ms(s)
        .ok_or_else(|| format!("`{s}` is not a date like 2024-05-01 or 2024-05-01T12:00:00Z"))
}

pub(super) fn parse_regex(s: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| e.to_string())
}
