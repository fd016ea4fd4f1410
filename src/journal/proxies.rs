//! What each proxy carried, kept for `status`: one versioned record under `proxies` in
//! the default tree, a list of [`ProxyCount`]s (the proxy shown as scheme, host and
//! port: never its credentials). A crawl or recrawl writes it every few seconds and
//! when it ends, adding its own counts to those of earlier runs; it is durable with the
//! run's next flush. It is informational: a kill -9 loses the counts since the last
//! write, never a page.

use serde::{Deserialize, Serialize};

use super::record::{decode, encode};
use super::{Journal, JournalError};

/// Key in the default tree.
const PROXIES_KEY: &str = "proxies";

/// One proxy's counts, over every run that used it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCount {
    /// `scheme://host:port`, without credentials.
    pub proxy: String,
    /// Requests sent through it (each redirect hop counts).
    pub requests: u64,
    /// Requests it failed (error kind `proxy`).
    pub errors: u64,
    /// The last of those errors.
    pub last_error: Option<String>,
}

#[derive(Serialize, Deserialize)]
enum ProxiesRecord {
    V1(Vec<ProxyCount>),
}

/// `run`'s counts added to `before`'s, proxy by proxy (new proxies at the end).
pub fn merge_proxy_counts(before: &[ProxyCount], run: &[ProxyCount]) -> Vec<ProxyCount> {
    let mut merged = before.to_vec();
    for count in run {
        match merged.iter_mut().find(|c| c.proxy == count.proxy) {
            Some(c) => {
                c.requests += count.requests;
                c.errors += count.errors;
                if count.last_error.is_some() {
                    c.last_error.clone_from(&count.last_error);
                }
            }
            None => merged.push(count.clone()),
        }
    }
    merged
}

impl Journal {
    /// The proxies' counts kept in the journal (none if no run used a proxy).
    pub fn proxy_counts(&self) -> Result<Vec<ProxyCount>, JournalError> {
        match self.db.get(PROXIES_KEY)? {
            None => Ok(Vec::new()),
            Some(bytes) => {
                let ProxiesRecord::V1(counts) = decode("default (proxies)", &bytes)?;
                Ok(counts)
            }
        }
    }

    /// Replaces the proxies' counts; durable with the next flush.
    pub fn keep_proxy_counts(&self, counts: &[ProxyCount]) -> Result<(), JournalError> {
        let bytes = encode(&ProxiesRecord::V1(counts.to_vec()))?;
        self.guarded(|| {
            self.db.insert(PROXIES_KEY, bytes)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_counts_add_up_over_runs_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let count = |proxy: &str, requests, errors, last: Option<&str>| ProxyCount {
            proxy: proxy.into(),
            requests,
            errors,
            last_error: last.map(Into::into),
        };
        {
            let journal = Journal::open(&path).unwrap();
            assert!(journal.proxy_counts().unwrap().is_empty());
            let first = [count("http://a:1", 5, 1, Some("refused"))];
            journal.keep_proxy_counts(&first).unwrap();
            let second = [
                count("http://a:1", 2, 0, None),
                count("socks5://b:2", 3, 0, None),
            ];
            let merged = merge_proxy_counts(&journal.proxy_counts().unwrap(), &second);
            journal.keep_proxy_counts(&merged).unwrap();
            journal.checkpoint().unwrap();
        }
        let journal = Journal::open_existing(&path).unwrap();
        assert_eq!(
            journal.proxy_counts().unwrap(),
            [
                count("http://a:1", 7, 1, Some("refused")),
                count("socks5://b:2", 3, 0, None)
            ]
        );
    }
}
