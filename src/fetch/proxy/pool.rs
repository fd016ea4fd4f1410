//! Which proxy a request goes through: the pool of `--proxy` values, or the
//! environment's proxies, or none.
//!
//! In a pool each host sticks to one proxy by rendezvous hashing (the proxy with the
//! highest hash of host and proxy), so no map of hosts is kept: memory stays the size
//! of the pool whatever the crawl. A proxy whose connects fail is rested (1 s, doubling
//! with each failure in a row, at most [`MAX_REST`]); while it rests its hosts hash to
//! the others, and they come back when it does. A request that finds every proxy
//! resting fails at once with error kind `proxy`, which is retried as a connect error
//! is. Counts per proxy ([`Stats`]) are kept for `status`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use url::Url;

use super::{Matcher, Proxy, ViaProxy};
use crate::journal::{now_ms, ProxyCount};

/// The longest rest of a failing proxy.
pub(crate) const MAX_REST: Duration = Duration::from_secs(60);
/// Characters of a proxy's last error kept for `status`.
const LAST_ERROR_CHARS: usize = 300;

pub(crate) type ProxyClient = Client<HttpsConnector<ViaProxy>, Empty<Bytes>>;

/// One proxy with its clients (one per trust, as for direct connections) and counts.
pub(crate) struct Route {
    pub(crate) proxy: Proxy,
    pub(crate) given: ProxyClient,
    pub(crate) discovered: ProxyClient,
    pub(crate) stats: Arc<Stats>,
}

/// What happened through one proxy, and whether it rests.
#[derive(Default)]
pub(crate) struct Stats {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Failed connects in a row.
    streak: AtomicU32,
    rest_until_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Stats {
    pub(crate) fn requested(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connected(&self) {
        self.streak.store(0, Ordering::Relaxed);
    }

    /// Counts an error of the proxy; `rest`: the proxy itself failed (unreachable,
    /// credentials refused), so it rests and its hosts move to another.
    pub(crate) fn failed(&self, message: &str, rest: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message.chars().take(LAST_ERROR_CHARS).collect());
        }
        if rest {
            let streak = self.streak.fetch_add(1, Ordering::Relaxed).min(16);
            let rest = Duration::from_secs(1 << streak).min(MAX_REST);
            let until = now_ms() + rest.as_millis() as u64;
            self.rest_until_ms.fetch_max(until, Ordering::Relaxed);
        }
    }

    fn resting_until(&self, now_ms: u64) -> Option<u64> {
        let until = self.rest_until_ms.load(Ordering::Relaxed);
        (until > now_ms).then_some(until)
    }
}

/// Where one request goes.
pub(crate) enum Pick {
    Direct,
    Via(Arc<Route>),
    /// Every proxy that would take it is resting, the first until `until_ms`.
    Resting {
        proxies: usize,
        until_ms: u64,
    },
}

/// Builds a route for a proxy the environment names, when first used.
pub(crate) type MakeRoute = Box<dyn Fn(Proxy) -> Route + Send + Sync>;

pub(crate) enum Routes {
    Direct,
    Pool(Vec<Arc<Route>>),
    Env(Box<EnvRoutes>),
}

/// hyper-util's matcher over the environment; the proxy for `http://` and the one for
/// `https://` URLs, built on first use (the same route when they are the same).
pub(crate) struct EnvRoutes {
    pub(crate) matcher: Matcher,
    pub(crate) slots: [OnceLock<Option<Arc<Route>>>; 2],
    pub(crate) make: MakeRoute,
}

impl Routes {
    pub(crate) fn pick(&self, url: &Url) -> Pick {
        let now = now_ms();
        match self {
            Routes::Direct => Pick::Direct,
            Routes::Pool(routes) => {
                let host = url.host_str().unwrap_or("");
                let best = routes
                    .iter()
                    .filter(|r| r.stats.resting_until(now).is_none())
                    .max_by_key(|r| weight(host, &r.proxy));
                match best {
                    Some(route) => Pick::Via(route.clone()),
                    None => Pick::Resting {
                        proxies: routes.len(),
                        until_ms: routes
                            .iter()
                            .filter_map(|r| r.stats.resting_until(now))
                            .min()
                            .unwrap_or(now),
                    },
                }
            }
            Routes::Env(env) => {
                let EnvRoutes {
                    matcher,
                    slots,
                    make,
                } = &**env;
                let Ok(uri) = http::Uri::try_from(url.as_str()) else {
                    return Pick::Direct;
                };
                let Some(intercept) = matcher.intercept(&uri) else {
                    return Pick::Direct;
                };
                let index = usize::from(url.scheme() == "https");
                let route = slots[index].get_or_init(|| {
                    let proxy = Proxy::from_intercept(&intercept)?;
                    let other = slots[1 - index].get().cloned().flatten();
                    Some(match other.filter(|r| r.proxy == proxy) {
                        Some(same) => same,
                        None => Arc::new(make(proxy)),
                    })
                });
                match route {
                    None => Pick::Direct,
                    Some(route) => match route.stats.resting_until(now) {
                        Some(until_ms) => Pick::Resting {
                            proxies: 1,
                            until_ms,
                        },
                        None => Pick::Via(route.clone()),
                    },
                }
            }
        }
    }

    /// How many proxies a request may be tried through (failover after a proxy fails).
    pub(crate) fn len(&self) -> usize {
        match self {
            Routes::Direct => 0,
            Routes::Pool(routes) => routes.len(),
            Routes::Env(_) => 1,
        }
    }

    /// The counts of every proxy used so far, as `status` shows them.
    pub(crate) fn counts(&self) -> Vec<ProxyCount> {
        let routes: Vec<Arc<Route>> = match self {
            Routes::Direct => Vec::new(),
            Routes::Pool(routes) => routes.clone(),
            Routes::Env(env) => {
                let mut used: Vec<Arc<Route>> = Vec::new();
                for route in env.slots.iter().filter_map(|s| s.get().cloned().flatten()) {
                    if !used.iter().any(|r| Arc::ptr_eq(r, &route)) {
                        used.push(route);
                    }
                }
                used
            }
        };
        routes
            .iter()
            .map(|r| ProxyCount {
                proxy: r.proxy.to_string(),
                requests: r.stats.requests.load(Ordering::Relaxed),
                errors: r.stats.errors.load(Ordering::Relaxed),
                last_error: r.stats.last_error.lock().ok().and_then(|l| l.clone()),
            })
            .collect()
    }
}

/// The rendezvous weight of `proxy` for `host`.
fn weight(host: &str, proxy: &Proxy) -> u64 {
    let key = format!("{host}\u{0}{proxy}");
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_spread_over_the_pool_and_move_only_off_a_resting_proxy() {
        let proxies: Vec<Proxy> = (0..4)
            .map(|i| Proxy::parse(&format!("http://10.0.0.{i}:3128")).unwrap())
            .collect();
        let hosts: Vec<String> = (0..400).map(|i| format!("host{i}.example")).collect();
        let choose = |live: &[bool], host: &str| {
            (0..proxies.len())
                .filter(|i| live[*i])
                .max_by_key(|i| weight(host, &proxies[*i]))
        };
        let before: Vec<_> = hosts.iter().map(|h| choose(&[true; 4], h)).collect();
        for i in 0..4 {
            let share = before.iter().filter(|c| **c == Some(i)).count();
            assert!(
                (50..150).contains(&share),
                "proxy {i} has {share} of 400 hosts"
            );
        }
        let after: Vec<_> = hosts
            .iter()
            .map(|h| choose(&[true, false, true, true], h))
            .collect();
        for (b, a) in before.iter().zip(&after) {
            match b {
                Some(1) => assert_ne!(a, &Some(1)),
                _ => assert_eq!(a, b, "a host of a live proxy moved"),
            }
        }
    }

    #[test]
    fn a_failing_proxy_rests_longer_each_time_and_a_connect_ends_it() {
        let stats = Stats::default();
        let now = now_ms();
        stats.failed("refused", true);
        let first = stats.resting_until(now).unwrap() - now;
        assert!((900..=1500).contains(&first), "{first}");
        stats.failed("refused", true);
        stats.failed("refused", true);
        let third = stats.resting_until(now).unwrap() - now;
        assert!((3900..=4600).contains(&third), "{third}");
        stats.failed("tunnel refused for one host", false);
        assert_eq!(stats.errors.load(Ordering::Relaxed), 4);
        stats.connected();
        assert_eq!(stats.streak.load(Ordering::Relaxed), 0);
        for _ in 0..40 {
            stats.failed("refused", true);
        }
        let longest = stats.resting_until(now).unwrap() - now;
        assert!(longest <= MAX_REST.as_millis() as u64 + 1000, "{longest}");
    }
}
