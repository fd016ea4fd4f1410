//! The SSRF guard: links found on pages (and every redirect hop from them) must not
//! reach private, loopback or other non-public addresses unless `--allow-private`.
//!
//! The check is made on the addresses actually connected to, never on a name: the
//! [`Resolver`] drops refused addresses from each DNS answer before hyper-util's
//! `HttpConnector` sees it (so a name that resolves to a public address when checked
//! and to 127.0.0.1 when connected cannot exist: there is one lookup and the connector
//! uses its filtered answer), and [`Guarded`] refuses IP-literal hosts, which the
//! connector would connect to without asking the resolver. Both run for every
//! connection of the guarded client, so every redirect hop is checked. Pooled
//! connections are never shared with the trusted client (each has its own pool).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use tower::Service;

/// Why `ip` must not be connected to for a discovered link, or `None` if it may.
pub(crate) fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        _ if a == 0 => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        _ if a == 100 && (64..128).contains(&b) => "shared address space (CGNAT)",
        _ if ip.is_multicast() => "multicast",
        // 240.0.0.0/4, reserved, ends with the broadcast address.
        _ if a >= 240 => "broadcast or reserved",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some("cloud metadata");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64
    // (64:ff9b::a.b.c.d) addresses reach the IPv4 address they embed.
    let embeds_v4 =
        s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if embeds_v4 {
        let [.., hi, lo] = s;
        let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
        return refused_v4(v4);
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "unique local",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// A connection refused by the guard: the host and the addresses it would have used.
#[derive(Debug)]
pub(crate) struct Blocked {
    host: String,
    addrs: Vec<(IpAddr, &'static str)>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self
            .addrs
            .iter()
            .take(4)
            .map(|(ip, why)| format!("{ip} ({why})"))
            .collect();
        let more = self.addrs.len().saturating_sub(addrs.len());
        write!(f, "refused to connect to {}", addrs.join(", "))?;
        if more > 0 {
            write!(f, " and {more} more")?;
        }
        if self
            .addrs
            .first()
            .is_none_or(|(ip, _)| ip.to_string() != self.host)
        {
            write!(f, " for {}", self.host)?;
        }
        write!(
            f,
            ": discovered links are not fetched from non-public addresses \
             (crawl --allow-private allows it)"
        )
    }
}

impl std::error::Error for Blocked {}

/// hyper-util's getaddrinfo resolver, dropping refused addresses from each answer when
/// `guard` is on; an answer with nothing left is a [`Blocked`] error.
#[derive(Clone)]
pub(crate) struct Resolver {
    inner: GaiResolver,
    guard: bool,
}

impl Resolver {
    pub(crate) fn new(guard: bool) -> Resolver {
        Resolver {
            inner: GaiResolver::new(),
            guard,
        }
    }
}

type Resolving = Pin<Box<dyn Future<Output = io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.guard;
        let host = name.as_str().to_string();
        let lookup = self.inner.call(name);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = lookup.await?.collect();
            if !guard {
                return Ok(addrs.into_iter());
            }
            let (allowed, refused): (Vec<_>, Vec<_>) = addrs
                .into_iter()
                .map(|addr| (addr, refused(addr.ip())))
                .partition(|(_, why)| why.is_none());
            if allowed.is_empty() && !refused.is_empty() {
                let addrs = refused
                    .into_iter()
                    .filter_map(|(addr, why)| Some((addr.ip(), why?)))
                    .collect();
                return Err(io::Error::other(Blocked { host, addrs }));
            }
            Ok(allowed
                .into_iter()
                .map(|(addr, _)| addr)
                .collect::<Vec<_>>()
                .into_iter())
        })
    }
}

/// A connector that, when `guard` is on, refuses a URI whose host is a refused IP
/// literal before `inner` connects to it (names go through the [`Resolver`]).
#[derive(Clone)]
pub(crate) struct Guarded<C> {
    inner: C,
    guard: bool,
}

impl<C> Guarded<C> {
    pub(crate) fn new(inner: C, guard: bool) -> Guarded<C> {
        Guarded { inner, guard }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> Service<Uri> for Guarded<C>
where
    C: Service<Uri>,
    C::Response: Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if self.guard {
            if let Some(blocked) = literal_refused(&uri) {
                return Box::pin(std::future::ready(Err(blocked.into())));
            }
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

/// The host of `uri` as HttpConnector reads it: an IP literal (brackets stripped) is
/// connected to directly.
pub(crate) fn literal_refused(uri: &Uri) -> Option<Blocked> {
    let host = uri.host()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = bare.parse().ok()?;
    let why = refused(ip)?;
    Some(Blocked {
        host: ip.to_string(),
        addrs: vec![(ip, why)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(ip: &str) -> Option<&'static str> {
        refused(ip.parse().unwrap())
    }

    #[test]
    fn non_public_addresses_are_refused() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.1.1", "link-local"),
            ("169.254.169.254", "cloud metadata"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.255", "shared address space (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast or reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("::127.0.0.1", "loopback"),
            ("::192.168.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "cloud metadata"),
        ];
        for (ip, want) in cases {
            assert_eq!(why(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(why(ip), None, "{ip}");
        }
    }

    #[test]
    fn ip_literals_are_read_as_the_connector_reads_them() {
        let blocked = |uri: &str| literal_refused(&uri.parse().unwrap()).map(|b| b.to_string());
        let v6 = blocked("http://[::1]:8080/x").unwrap();
        assert!(
            v6.starts_with("refused to connect to ::1 (loopback): "),
            "{v6}"
        );
        assert!(v6.contains("--allow-private"), "{v6}");
        assert!(blocked("http://169.254.169.254/latest/meta-data/")
            .unwrap()
            .contains("cloud metadata"));
        assert_eq!(blocked("http://8.8.8.8/"), None);
        assert_eq!(
            blocked("http://localhost/"),
            None,
            "names go to the resolver"
        );
    }

    #[test]
    fn a_blocked_name_names_its_addresses() {
        let blocked = Blocked {
            host: "localhost".into(),
            addrs: vec![
                ("127.0.0.1".parse().unwrap(), "loopback"),
                ("::1".parse().unwrap(), "loopback"),
            ],
        };
        let text = blocked.to_string();
        assert!(
            text.starts_with(
                "refused to connect to 127.0.0.1 (loopback), ::1 (loopback) for localhost"
            ),
            "{text}"
        );
    }
}
