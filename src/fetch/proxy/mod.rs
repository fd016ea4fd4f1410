//! Proxies: which proxy (if any) a request goes through, and how it gets there.
//!
//! Three sources, in this order: `--no-proxy` (never a proxy), `--proxy URL`
//! (repeatable) and `--proxy-file FILE` (one URL a line), which make a pool, or else
//! the environment as curl reads it (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`, either case), through hyper-util's [`Matcher`]. A proxy is `http://`
//! (plain requests in absolute form, HTTPS through `CONNECT`), `https://` (the same
//! over TLS to the proxy), `socks5://` (names resolved here) or `socks5h://` (names
//! resolved by the proxy). The connectors are hyper-util's `Tunnel` and `SocksV5`
//! (`connect.rs`); the pool (`pool.rs`) sticks each host to one proxy and rests a
//! proxy whose connects fail.
//!
//! Credentials (`http://user:pass@proxy:3128`) are sent as `Proxy-Authorization: Basic`
//! or as SOCKS5 user/password, and never shown: a [`Proxy`] is displayed (in errors,
//! logs, `status` and the journal) as its scheme, host and port only.

mod connect;
mod pool;

use std::fmt;

use http::HeaderValue;
use hyper_util::client::proxy::matcher::Intercept;

pub(crate) use connect::{ProxyFailure, ViaProxy};
pub(crate) use pool::{EnvRoutes, Pick, Route, Routes};

pub use hyper_util::client::proxy::matcher::Matcher;

/// Where the crawl's requests go.
#[derive(Clone, Debug, Default)]
pub enum ProxyChoice {
    /// The environment's proxies, as curl reads them (the default).
    #[default]
    Env,
    /// Straight to every server (`--no-proxy`).
    Off,
    /// Through these (`--proxy`, `--proxy-file`): each host sticks to one of them.
    Pool(Vec<Proxy>),
}

/// How a proxy is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Http,
    Https,
    /// SOCKS5, names resolved here (curl's `socks5://`).
    Socks5,
    /// SOCKS5, names sent to the proxy (curl's `socks5h://`).
    Socks5h,
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }

    /// The port curl assumes when a proxy URL names none.
    fn default_port(self) -> u16 {
        match self {
            ProxyKind::Https => 443,
            _ => 1080,
        }
    }

    /// Whether it speaks HTTP (absolute-form requests, `CONNECT`) rather than SOCKS.
    pub(crate) fn is_http(self) -> bool {
        matches!(self, ProxyKind::Http | ProxyKind::Https)
    }
}

/// One proxy. `Debug` and `Display` show its scheme, host and port, never its
/// credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    /// As in a URI: an IPv6 address in brackets.
    host: String,
    port: u16,
    auth: Option<Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
enum Credentials {
    /// User and password as given (percent-decoded): SOCKS5 sends them as they are,
    /// HTTP proxies as `Basic`.
    UserPass(String, String),
    /// A ready `Proxy-Authorization` value (hyper-util's parse of the environment).
    Header(HeaderValue),
}

/// Why a `--proxy` value (or a line of `--proxy-file`) was refused. The value is shown
/// with its credentials hidden.
#[derive(Debug, thiserror::Error)]
#[error("invalid proxy `{shown}`: {why}")]
pub struct ProxyParseError {
    shown: String,
    why: String,
}

impl Proxy {
    /// Reads a proxy URL as curl does: no scheme means `http://`; no port means 1080
    /// (443 for `https://`); the path is ignored.
    pub fn parse(text: &str) -> Result<Proxy, ProxyParseError> {
        let text = text.trim();
        let fail = |why: &str| ProxyParseError {
            shown: crate::urls::redact_text(text),
            why: why.to_string(),
        };
        let full = match text.contains("://") {
            true => text.to_string(),
            false => format!("http://{text}"),
        };
        let url = url::Url::parse(&full).map_err(|e| fail(&e.to_string()))?;
        let kind = match url.scheme() {
            "http" => ProxyKind::Http,
            "https" => ProxyKind::Https,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            other => {
                return Err(fail(&format!(
                    "scheme `{other}` is not supported (http, https, socks5, socks5h)"
                )))
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(host) => host.to_string(),
            None => return Err(fail("no host")),
        };
        if host.is_empty() {
            return Err(fail("no host"));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let auth = match (url.username(), url.password()) {
            ("", None) => None,
            (user, pass) => Some(Credentials::UserPass(
                decode(user),
                decode(pass.unwrap_or("")),
            )),
        };
        if let (ProxyKind::Socks5 | ProxyKind::Socks5h, Some(Credentials::UserPass(u, p))) =
            (kind, &auth)
        {
            if u.len() > 255 || p.len() > 255 {
                return Err(fail(
                    "SOCKS5 user names and passwords are 255 bytes at most",
                ));
            }
        }
        Ok(Proxy {
            kind,
            port: url.port().unwrap_or(kind.default_port()),
            host,
            auth,
        })
    }

    /// The proxy hyper-util's [`Matcher`] chose (from the environment).
    pub(crate) fn from_intercept(intercept: &Intercept) -> Option<Proxy> {
        let uri = intercept.uri();
        let kind = match uri.scheme_str()? {
            "http" => ProxyKind::Http,
            "https" => ProxyKind::Https,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            _ => return None,
        };
        let auth = match (intercept.basic_auth(), intercept.raw_auth()) {
            (Some(header), _) => Some(Credentials::Header(header.clone())),
            (None, Some((user, pass))) => {
                Some(Credentials::UserPass(user.to_string(), pass.to_string()))
            }
            (None, None) => None,
        };
        Some(Proxy {
            kind,
            host: uri.host()?.to_string(),
            port: uri.port_u16().unwrap_or(kind.default_port()),
            auth,
        })
    }

    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// Whether credentials were given with it.
    pub fn has_credentials(&self) -> bool {
        self.auth.is_some()
    }

    /// Where the TCP connection goes, as hyper-util's connectors take it: an `http://`
    /// URI (plain TCP) or, for an `https://` proxy, an `https://` one (TLS).
    pub(crate) fn connect_uri(&self) -> Result<http::Uri, http::Error> {
        let scheme = match self.kind {
            ProxyKind::Https => "https",
            _ => "http",
        };
        http::Uri::builder()
            .scheme(scheme)
            .authority(format!("{}:{}", self.host, self.port))
            .path_and_query("/")
            .build()
    }

    /// The `Proxy-Authorization` value for an HTTP proxy given credentials.
    pub(crate) fn basic(&self) -> Option<HeaderValue> {
        let mut value = match self.auth.as_ref()? {
            Credentials::Header(value) => value.clone(),
            Credentials::UserPass(user, pass) => {
                use base64::Engine;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                HeaderValue::from_str(&format!("Basic {token}")).ok()?
            }
        };
        value.set_sensitive(true);
        Some(value)
    }

    /// User and password for a SOCKS5 proxy given credentials.
    pub(crate) fn user_pass(&self) -> Option<(String, String)> {
        match self.auth.as_ref()? {
            Credentials::UserPass(user, pass) => Some((user.clone(), pass.clone())),
            Credentials::Header(_) => None,
        }
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.kind.scheme(), self.host, self.port)
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.auth.is_some() {
            " (credentials)"
        } else {
            ""
        };
        write!(f, "Proxy({self}{auth})")
    }
}

/// Reads `--proxy-file`: one proxy URL a line; blank lines and `#` comments skipped.
/// An invalid line is an error naming its number (and never its credentials).
pub fn read_proxy_file(path: &std::path::Path) -> Result<Vec<Proxy>, ProxyParseError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProxyParseError {
        shown: path.display().to_string(),
        why: format!("cannot read the proxy file: {e}"),
    })?;
    let mut proxies = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let proxy = Proxy::parse(line).map_err(|e| ProxyParseError {
            shown: format!("{}, line {}", path.display(), n + 1),
            why: e.to_string(),
        })?;
        proxies.push(proxy);
    }
    if proxies.is_empty() {
        return Err(ProxyParseError {
            shown: path.display().to_string(),
            why: "the proxy file lists no proxy".into(),
        });
    }
    Ok(proxies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_read_as_curl_reads_them() {
        let p = Proxy::parse("proxy.example:3128").unwrap();
        assert_eq!(
            (p.to_string(), p.kind()),
            ("http://proxy.example:3128".into(), ProxyKind::Http)
        );
        assert_eq!(
            Proxy::parse("http://p").unwrap().to_string(),
            "http://p:1080"
        );
        assert_eq!(
            Proxy::parse("https://p/").unwrap().to_string(),
            "https://p:443"
        );
        assert_eq!(
            Proxy::parse("socks5h://[::1]:9050").unwrap().to_string(),
            "socks5h://[::1]:9050"
        );
        let with = Proxy::parse("http://al%40ice:p%3Ass@p:8080").unwrap();
        assert_eq!(with.to_string(), "http://p:8080");
        assert_eq!(with.user_pass(), Some(("al@ice".into(), "p:ss".into())));
        // "al@ice:p:ss" in base64.
        assert_eq!(with.basic().unwrap(), "Basic YWxAaWNlOnA6c3M=");
        assert!(!format!("{with:?}").contains("p:ss"));
    }

    #[test]
    fn bad_proxies_are_refused_without_their_credentials() {
        for (text, want) in [
            ("ftp://u:hunter2@p:21", "scheme `ftp`"),
            ("socks4://u:hunter2@p", "scheme `socks4`"),
            ("http://u:hunter2@:3128", "invalid proxy `http://***@:3128`"),
        ] {
            let error = Proxy::parse(text).unwrap_err().to_string();
            assert!(error.contains(want), "{text}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn environment_proxies_keep_their_credentials_apart() {
        let uri: http::Uri = "https://example.com/".parse().unwrap();
        let matcher = Matcher::builder()
            .all("socks5://u:hunter2@127.0.0.1:1081")
            .build();
        let proxy = Proxy::from_intercept(&matcher.intercept(&uri).unwrap()).unwrap();
        assert_eq!(proxy.to_string(), "socks5://127.0.0.1:1081");
        assert_eq!(proxy.user_pass(), Some(("u".into(), "hunter2".into())));
        let matcher = Matcher::builder().https("u:hunter2@127.0.0.1:3128").build();
        let proxy = Proxy::from_intercept(&matcher.intercept(&uri).unwrap()).unwrap();
        assert_eq!(proxy.to_string(), "http://127.0.0.1:3128");
        assert_eq!(proxy.basic().unwrap(), "Basic dTpodW50ZXIy");
    }
}
