//! The MySQL/MariaDB URL: parsed into connection options once, shown only redacted.
//!
//! The password goes into the options and nowhere else: [`Target`]'s `Display` and
//! `Debug` print the URL without it, and errors name the target by that form.

use std::fmt;
use std::time::Duration;

use mysql_async::{Opts, OptsBuilder};

use super::SyncError;

#[derive(Clone)]
pub struct Target {
    opts: Opts,
    shown: String,
}

impl Target {
    /// Parses `mysql://user:password@host:port/database` (or `mariadb://`).
    ///
    /// The userinfo runs to the last `@`, so a password may hold `/`, `#`, `?`, `:` and
    /// `@` as they are, or percent-encoded. Errors say what is wrong and where, and
    /// never repeat any of the text: it may be, or hold, a password.
    pub fn parse(text: &str) -> Result<Target, SyncError> {
        let bad = |why: &str| {
            SyncError::Config(format!(
                "the MySQL URL (not shown: it may hold a password) {why}; \
                 the form is mysql://user:password@host:3306/database"
            ))
        };
        let Some((scheme, rest)) = text.trim().split_once("://") else {
            return Err(bad("has no `mysql://` at its start"));
        };
        if !matches!(scheme.to_ascii_lowercase().as_str(), "mysql" | "mariadb") {
            return Err(bad("must start with mysql:// or mariadb://"));
        }
        let (userinfo, location) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        // Options after `?` are not taken: mysql_async's own are set below.
        let location = location.split(['?', '#']).next().unwrap_or_default();
        let (authority, database) = location.split_once('/').ok_or_else(|| {
            bad("names no database: the part after `@` must be host:port/database")
        })?;
        let (host, port) = split_host_port(authority).map_err(|why| {
            bad(&format!(
                "has {why} in the part after the last `@`, which must be host:port/database"
            ))
        })?;
        let decode = |s: &str, what: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad(&format!("has a {what} that is not UTF-8 once decoded")))
        };
        let database = decode(database, "database name")?;
        if database.is_empty() || database.contains('/') {
            return Err(bad(
                "must name one database after the host, as in mysql://host/db",
            ));
        }
        let (user, pass) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((user, pass)) => (
                Some(decode(user, "user name")?).filter(|u| !u.is_empty()),
                Some(decode(pass, "password")?).filter(|p| !p.is_empty()),
            ),
            None => (None, None),
        };
        let shown = format!(
            "mysql://{}{authority}/{database}",
            if userinfo.is_some() { "***@" } else { "" },
        );
        Ok(Target::from_parts(TargetParts {
            host,
            port,
            user,
            pass,
            database,
            shown,
        }))
    }

    /// The target of `parts`, as [`Target::parse`] makes it.
    fn from_parts(parts: TargetParts) -> Target {
        let opts = OptsBuilder::default()
            .ip_or_hostname(parts.host)
            .tcp_port(parts.port)
            .user(parts.user)
            .pass(parts.pass)
            .db_name(Some(parts.database))
            .prefer_socket(false)
            .stmt_cache_size(64)
            .conn_ttl(Some(Duration::from_secs(600)))
            // Timestamps are written and read in UTC whatever the server's zone.
            .init(vec!["SET time_zone = '+00:00'"]);
        Target {
            opts: opts.into(),
            shown: parts.shown,
        }
    }

    pub fn opts(&self) -> &Opts {
        &self.opts
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, checked: the host must be a valid host
/// name or address and the port a number from 1 to 65535 (3306 when absent). The error
/// names what is wrong without repeating it.
fn split_host_port(authority: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("an unclosed `[`")?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or("text after the `]` of the host")?,
                ),
            };
            (host, port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("no host");
    }
    let checked = match authority.starts_with('[') {
        true => host.parse::<std::net::Ipv6Addr>().is_ok(),
        false => url::Host::parse(host).is_ok(),
    };
    if !checked {
        return Err("a host that is not a host name or address");
    }
    let port = match port {
        None => 3306,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0 && port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or("a port that is not a number from 1 to 65535")?,
    };
    Ok((host.to_string(), port))
}

/// What a [`Target`] is made of, password included: how it travels to the process
/// holding a journal, over its owner-only socket (`crate::holder`), and nowhere else.
#[derive(serde::Serialize, serde::Deserialize)]
struct TargetParts {
    host: String,
    port: u16,
    user: Option<String>,
    pass: Option<String>,
    database: String,
    shown: String,
}

impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TargetParts {
            host: self.opts.ip_or_hostname().to_string(),
            port: self.opts.tcp_port(),
            user: self.opts.user().map(str::to_string),
            pass: self.opts.pass().map(str::to_string),
            database: self.opts.db_name().unwrap_or_default().to_string(),
            shown: self.shown.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Target, D::Error> {
        TargetParts::deserialize(deserializer).map(Target::from_parts)
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
        assert_eq!(t.to_string(), "mysql://***@db.example:3307/crawl");
        assert!(!format!("{t} {t:?}").contains("cret"));
        let t = Target::parse("mariadb://[::1]/test").unwrap();
        assert_eq!(
            (t.opts().ip_or_hostname(), t.opts().tcp_port()),
            ("::1", 3306)
        );
        assert_eq!(t.to_string(), "mysql://[::1]/test");
    }

    #[test]
    fn a_target_travels_whole() {
        let t = Target::parse("mysql://bob:s%40cret@db.example:3307/crawl").unwrap();
        let back: Target = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back.opts(), t.opts());
        assert_eq!(back.to_string(), t.to_string());
    }

    #[test]
    fn passwords_may_hold_url_delimiters_unencoded() {
        for password in crate::urls::TRICKY_PASSWORDS {
            let text = format!("mysql://u:{password}@127.0.0.1:3306/db");
            let t = Target::parse(&text).unwrap();
            assert_eq!(t.opts().pass(), Some(password), "{text}");
            assert_eq!(t.opts().user(), Some("u"));
            assert_eq!(t.opts().db_name(), Some("db"));
            assert_eq!(t.to_string(), "mysql://***@127.0.0.1:3306/db");
        }
    }

    #[test]
    fn errors_never_repeat_the_url() {
        let bad = [
            "SECRET",
            "mysql//bob:SECRET@h/db",
            "postgres://bob:SECRET@h/db",
            "SECRET://h/db",
            "mysql://bob:SECRET@h/",
            "mysql://bob:SECRET@h",
            "mysql://bob:SECRET/db",
            "mysql://bob@SECRET:port/db",
            "mysql://bob:x@h:SECRET/db",
            "mysql://bob:x@h:99999/db",
            "mysql://bob:x@[SECRET/db",
            "mysql://bob:x@[::1]SECRET/db",
            "mysql://bob:x@SE CRET/db",
            "mysql://bob:%FF%SECRET@h/db",
        ];
        for text in bad {
            let err = Target::parse(text).unwrap_err().to_string();
            assert!(!err.contains("SECRET"), "{text}: {err}");
            assert!(err.contains("mysql://user:password@host"), "{text}: {err}");
        }
        let err = Target::parse("mysql://u:p@h:x/db").unwrap_err().to_string();
        assert!(err.contains("port"), "{err}");
    }
}
