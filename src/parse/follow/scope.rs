//! Which hosts a crawl may follow links to, given as `--scope`-style text.
//!
//! Scopes compare hosts only: `http://a.com/` and `https://a.com:8443/` are the same
//! host, since a site serving both is one site to its owner and to politeness.

use std::fmt;
use std::str::FromStr;

use url::{Host, Url};

use super::FollowError;

/// The hosts links may lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Follow no links: fetch only the URLs given.
    None,
    /// Links to the host of the page they were found on.
    SameHost,
    /// Links within the registrable domain (public suffix + 1 label) of the page they
    /// were found on: `a.example.co.uk` and `b.example.co.uk` share one, while
    /// `a.github.io` and `b.github.io` do not, as `github.io` is a public suffix. IP
    /// addresses and hosts that have none (`localhost`) compare as exact hosts.
    SameDomain,
    /// Links to these hosts (ASCII, lowercased; exact, not their subdomains),
    /// wherever they were found.
    Hosts(Vec<String>),
}

impl Scope {
    /// Whether a link from `from` to `to` stays in scope.
    pub fn contains(&self, from: &Url, to: &Url) -> bool {
        let Some(host) = to.host_str() else {
            return false;
        };
        match self {
            Scope::None => false,
            Scope::SameHost => from.host_str() == Some(host),
            Scope::SameDomain => site(from).is_some_and(|site| Some(site) == self::site(to)),
            Scope::Hosts(hosts) => hosts.iter().any(|h| h == host),
        }
    }
}

/// The registrable domain of `url`'s host, or the host itself where it has none.
fn site(url: &Url) -> Option<&str> {
    match url.host()? {
        Host::Domain(domain) => Some(psl::domain_str(domain).unwrap_or(domain)),
        Host::Ipv4(_) | Host::Ipv6(_) => url.host_str(),
    }
}

const KEYWORDS: [&str; 3] = ["none", "same-host", "same-domain"];

impl FromStr for Scope {
    type Err = FollowError;

    /// `none`, `same-host`, `same-domain`, or a comma-separated list of hosts
    /// (IDNA names are converted to ASCII, IPv6 addresses go in brackets).
    fn from_str(text: &str) -> Result<Scope, FollowError> {
        let error = |reason: String| FollowError::Scope {
            given: text.to_string(),
            reason,
        };
        match text.trim() {
            "none" => return Ok(Scope::None),
            "same-host" => return Ok(Scope::SameHost),
            "same-domain" => return Ok(Scope::SameDomain),
            "" => {
                return Err(error(
                    "give none, same-host, same-domain or a comma-separated list of hosts".into(),
                ))
            }
            _ => {}
        }
        let mut hosts = Vec::new();
        for entry in text.split(',').map(str::trim) {
            if entry.is_empty() {
                return Err(error("an empty host in the list".into()));
            }
            if KEYWORDS.contains(&entry) {
                return Err(error(format!(
                    "`{entry}` cannot be combined with other hosts"
                )));
            }
            if entry.contains(['/', ':']) && !entry.starts_with('[') {
                return Err(error(format!(
                    "`{entry}` is not a host name: give hosts like example.com, \
                     without a scheme, port or path"
                )));
            }
            let host = Host::parse(entry)
                .map_err(|e| error(format!("`{entry}` is not a host name ({e})")))?;
            hosts.push(host.to_string());
        }
        hosts.sort();
        hosts.dedup();
        Ok(Scope::Hosts(hosts))
    }
}

/// The text [`Scope::from_str`] reads back.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::None => f.write_str("none"),
            Scope::SameHost => f.write_str("same-host"),
            Scope::SameDomain => f.write_str("same-domain"),
            Scope::Hosts(hosts) => f.write_str(&hosts.join(",")),
        }
    }
}
