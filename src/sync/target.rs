//! The MySQL/MariaDB URL: parsed into connection options once, shown only redacted.
//!
//! The password goes into the options and nowhere else: [`Target`]'s `Display` and
//! `Debug` print the URL without it, and errors name the target by that form.

use std::fmt;
use std::time::Duration;

use mysql_async::{Opts, OptsBuilder};
use url::Url;

use super::SyncError;

#[derive(Clone)]
pub struct Target {
    opts: Opts,
    shown: String,
}

impl Target {
    /// Parses `mysql://user:password@host:port/database`.
    pub fn parse(text: &str) -> Result<Target, SyncError> {
        let url = Url::parse(text).map_err(|e| {
            SyncError::Config(format!(
                "the MySQL URL {} is not a URL: {e}",
                crate::urls::redact_text(text)
            ))
        })?;
        let shown = crate::urls::redact(&url);
        let bad = |why: &str| SyncError::Config(format!("the MySQL URL {shown} {why}"));
        if !matches!(url.scheme(), "mysql" | "mariadb") {
            return Err(bad("must start with mysql://"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let database = url.path().trim_start_matches('/');
        if database.is_empty() || database.contains('/') {
            return Err(bad("must name one database, as in mysql://host/db"));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("has credentials that are not UTF-8"))
        };
        let user = Some(decode(url.username())?).filter(|u| !u.is_empty());
        let pass = url.password().map(decode).transpose()?;
        let opts = OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(url.port().unwrap_or(3306))
            .user(user)
            .pass(pass)
            .db_name(Some(decode(database)?))
            .prefer_socket(false)
            .stmt_cache_size(64)
            .conn_ttl(Some(Duration::from_secs(600)))
            // Timestamps are written and read in UTC whatever the server's zone.
            .init(vec!["SET time_zone = '+00:00'"]);
        Ok(Target {
            opts: opts.into(),
            shown,
        })
    }

    pub fn opts(&self) -> &Opts {
        &self.opts
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_used_but_never_shown() {
        let t = Target::parse("mysql://bob:s%40cret@db.example:3307/crawl").unwrap();
        assert_eq!(t.opts().pass(), Some("s@cret"));
        assert_eq!(t.opts().tcp_port(), 3307);
        assert_eq!(t.opts().db_name(), Some("crawl"));
        assert!(!format!("{t} {t:?}").contains("cret"));
        let err = Target::parse("postgres://bob:s3cret@h/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret") && err.contains("mysql://"), "{err}");
        let err = Target::parse("mysql://bob:s3cret@h/")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        let err = Target::parse("mysql//bob:s3cret@h")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
