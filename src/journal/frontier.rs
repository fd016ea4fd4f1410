//! The frontier: URLs waiting to be fetched, kept on disk and grouped by host, so the
//! scheduler can take work host by host without holding the crawl's URLs in memory.
//!
//! A pending URL is in exactly one of two trees, with its [`PendingEntry`] (host,
//! attempts, retry time, and the URL's record) as the value:
//!
//! - `frontier`, key `host 0x00 id` (ready: it can be fetched as soon as its host
//!   allows), or
//! - `retry_queue`, key `not_before_ms id` (a transient failure; it goes back to the
//!   frontier once that time has passed, see [`Journal::promote_retries`]).
//!
//! Both moves happen in the transaction that records the fetch, so a restart keeps the
//! retry schedule. Format 3 and older also kept the entry in a `pending_fetch` tree and
//! the URL's record in `urls`, both by id; format 4 writes neither (three fewer writes
//! per URL, and the scheduler reads nothing but the frontier) and moves their entries
//! here when it opens such a journal. `hosts` keeps what is known about a host across
//! runs: its robots.txt, its backoff, and how many URLs link following has added for it.

use std::collections::BTreeMap;

use sled::transaction::TransactionalTree;
use sled::Transactional;
use url::Url;

use super::record::{decode_host, decode_pending, encode_host, encode_pending, id_key, key_id};
use super::{
    abort, bump, counter, flatten, read_u64, AddReport, HostEntry, Journal, JournalError,
    PendingEntry, TxResult, UrlEntry, Via,
};
use crate::urls::host_key;

/// A URL to add to the journal.
#[derive(Clone, Debug)]
pub struct NewUrl {
    /// Normalized (see [`crate::urls::normalize`]).
    pub url: String,
    pub host: String,
    pub source_key: Option<String>,
    pub depth: u32,
    pub via: Via,
}

impl NewUrl {
    pub fn new(url: &Url, source_key: Option<String>, depth: u32, via: Via) -> NewUrl {
        NewUrl {
            url: url.as_str().to_string(),
            host: host_key(url),
            source_key,
            depth,
            via,
        }
    }

    /// A URL the user gave.
    pub fn given(url: &Url, source_key: Option<String>) -> NewUrl {
        NewUrl::new(url, source_key, 0, Via::Given)
    }
}

/// A URL ready to fetch, as the scheduler loads it.
#[derive(Clone, Debug)]
pub struct Ready {
    pub id: u64,
    pub entry: UrlEntry,
    pub attempts: u32,
}

/// A URL moved from `retry_queue` back to the frontier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promoted {
    pub id: u64,
    pub entry: PendingEntry,
}

pub(super) fn frontier_key(host: &str, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(host.len() + 9);
    key.extend_from_slice(host.as_bytes());
    key.push(0);
    key.extend_from_slice(&id_key(id));
    key
}

pub(super) fn retry_key(not_before_ms: u64, id: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&not_before_ms.to_be_bytes());
    key[8..].copy_from_slice(&id_key(id));
    key
}

/// The trees a new URL is written to, inside a transaction.
pub(super) struct AddTrees<'a> {
    pub meta: &'a TransactionalTree,
    pub index: &'a TransactionalTree,
    pub frontier: &'a TransactionalTree,
}

impl AddTrees<'_> {
    /// Adds `new` unless the URL is known already; returns whether it was added. The
    /// caller bumps the `urls` counter.
    pub fn add(&self, new: &NewUrl, added_at_ms: u64) -> TxResult<bool> {
        if self.index.get(new.url.as_bytes())?.is_some() {
            return Ok(false);
        }
        let id = match read_u64(self.meta.get("next_id")?) {
            Ok(v) => v.max(1),
            Err(e) => return abort(e),
        };
        self.meta.insert("next_id", &(id + 1).to_be_bytes())?;
        let pending = PendingEntry {
            host: new.host.clone(),
            attempts: 0,
            not_before_ms: 0,
            url: UrlEntry {
                url: new.url.clone(),
                source_key: new.source_key.clone(),
                added_at_ms,
                depth: new.depth,
                via: new.via,
            },
        };
        let pending = match encode_pending(&pending) {
            Ok(bytes) => bytes,
            Err(e) => return abort(e),
        };
        self.index.insert(new.url.as_bytes(), &id_key(id))?;
        self.frontier.insert(frontier_key(&new.host, id), pending)?;
        Ok(true)
    }
}

impl Journal {
    /// Adds URLs that are not known yet, in one atomic step, as pending fetch.
    /// URLs already in the journal, whatever their state, count as duplicates.
    pub fn add_urls(&self, batch: &[NewUrl]) -> Result<AddReport, JournalError> {
        let added_at_ms = super::now_ms();
        self.guarded(|| {
            let trees = (&*self.db, &self.url_index, &self.frontier, &self.counters);
            let result = trees.transaction(|(meta, index, frontier, counters)| {
                let add = AddTrees {
                    meta,
                    index,
                    frontier,
                };
                let mut report = AddReport::default();
                for new in batch {
                    if add.add(new, added_at_ms)? {
                        report.added += 1;
                    } else {
                        report.duplicates += 1;
                    }
                }
                let deltas = BTreeMap::from([(counter::URLS.to_string(), report.added as i64)]);
                bump(counters, &deltas)?;
                Ok(report)
            });
            flatten(result)
        })
    }

    /// Up to `limit` hosts with URLs in the frontier, in key order, strictly after `after`.
    pub fn frontier_hosts_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, JournalError> {
        let mut out = Vec::new();
        // Every key of a host starts with `host 0x00`: the first key not below
        // `host 0x01` belongs to the next host.
        let mut from = after.map(|h| [h.as_bytes(), &[1]].concat());
        while out.len() < limit {
            let next = match &from {
                None => self.frontier.first()?,
                Some(from) => self.frontier.range(from.as_slice()..).next().transpose()?,
            };
            let Some((key, _)) = next else { break };
            let host = host_of_key(&key)?;
            from = Some([host.as_bytes(), &[1]].concat());
            out.push(host);
        }
        Ok(out)
    }

    /// Up to `limit` ready URLs of `host`, in id order, with ids strictly after `after`.
    pub fn frontier_of(
        &self,
        host: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Ready>, JournalError> {
        let start = frontier_key(host, after.map_or(0, |id| id.saturating_add(1)));
        let end = [host.as_bytes(), &[1]].concat();
        let mut out = Vec::new();
        for item in self.frontier.range(start..end) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            let id = key_id(&key[key.len().saturating_sub(8)..])?;
            let pending = decode_pending(&value)?;
            out.push(Ready {
                id,
                entry: pending.url,
                attempts: pending.attempts,
            });
        }
        Ok(out)
    }

    /// The pending entry of `id`, if it waits in the frontier or in `retry_queue`. For
    /// checks and tools only: both trees are keyed by something else than the id, so
    /// this scans them.
    pub fn pending(&self, id: u64) -> Result<Option<PendingEntry>, JournalError> {
        let id = id_key(id);
        for tree in [&self.frontier, &self.retry_queue] {
            for item in tree.iter() {
                let (key, value) = item?;
                if key.ends_with(&id) {
                    return decode_pending(&value).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// Moves up to `limit` URLs whose retry time has come back to the frontier and
    /// returns them. Not flushed: a crash only leaves them waiting in `retry_queue`.
    pub fn promote_retries(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Promoted>, JournalError> {
        let due: Vec<sled::IVec> = self
            .retry_queue
            .range(..retry_key(now_ms.saturating_add(1), 0))
            .keys()
            .take(limit)
            .collect::<Result<_, _>>()?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        self.guarded(|| {
            let trees = (&self.retry_queue, &self.frontier, &self.counters);
            let result = trees.transaction(|(retry, frontier, counters)| {
                let mut moved = Vec::with_capacity(due.len());
                for key in &due {
                    let Some(bytes) = retry.remove(key)? else {
                        continue;
                    };
                    let (id, mut entry) = match (key_id(&key[8..]), decode_pending(&bytes)) {
                        (Ok(id), Ok(entry)) => (id, entry),
                        (Err(e), _) | (_, Err(e)) => return abort(e),
                    };
                    entry.not_before_ms = 0;
                    match encode_pending(&entry) {
                        Ok(bytes) => frontier.insert(frontier_key(&entry.host, id), bytes)?,
                        Err(e) => return abort(e),
                    };
                    moved.push(Promoted { id, entry });
                }
                let left = -(moved.len() as i64);
                let deltas = BTreeMap::from([(counter::RETRY_WAITING.to_string(), left)]);
                bump(counters, &deltas)?;
                Ok(moved)
            });
            flatten(result)
        })
    }

    /// The earliest retry time waiting in `retry_queue`, if any.
    pub fn next_retry_ms(&self) -> Result<Option<u64>, JournalError> {
        Ok(match self.retry_queue.first()? {
            Some((key, _)) => Some(read_u64(Some(key.subslice(0, 8)))?),
            None => None,
        })
    }

    pub fn host(&self, host: &str) -> Result<Option<HostEntry>, JournalError> {
        self.hosts
            .get(host.as_bytes())?
            .map(|v| decode_host(&v))
            .transpose()
    }

    /// Changes what is kept about `host` (atomically against the parse stage's budget
    /// counts). Not flushed: this is a cache and a courtesy, not a durability point.
    pub fn update_host(
        &self,
        host: &str,
        change: impl Fn(&mut HostEntry),
    ) -> Result<(), JournalError> {
        self.guarded(|| {
            let result = self.hosts.transaction(|hosts| {
                let mut entry = match hosts.get(host.as_bytes())?.map(|v| decode_host(&v)) {
                    None => HostEntry::default(),
                    Some(Ok(entry)) => entry,
                    Some(Err(e)) => return abort(e),
                };
                change(&mut entry);
                match encode_host(&entry) {
                    Ok(bytes) => hosts.insert(host.as_bytes(), bytes)?,
                    Err(e) => return abort(e),
                };
                Ok(())
            });
            flatten(result)
        })
    }
}

fn host_of_key(key: &[u8]) -> Result<String, JournalError> {
    let host = key
        .len()
        .checked_sub(9)
        .filter(|&at| key[at] == 0)
        .and_then(|at| std::str::from_utf8(&key[..at]).ok())
        .ok_or_else(|| JournalError::Damaged {
            what: "frontier key is not `host 0x00 id`".into(),
        })?;
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_keys_split_back_into_host_and_id() {
        let key = frontier_key("example.com:443", 42);
        assert_eq!(host_of_key(&key).unwrap(), "example.com:443");
        assert_eq!(key_id(&key[key.len() - 8..]).unwrap(), 42);
        assert!(host_of_key(b"short").is_err());
    }
}
