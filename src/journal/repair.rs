//! Repairs after damage: a damaged page put back in the frontier to be fetched again
//! or dropped (`verify --repair`), and every counter rewritten from what the trees hold
//! (after a repair, or a `recover`).

use sled::Transactional;

use super::frontier::frontier_key;
use super::record::{decode_page_and_body, decode_page_with_url, encode_pending, id_key, key_id};
use super::record::{PendingEntry, UrlEntry, Via};
use super::status::counter;
use super::verify::{Counts, Repair};
use super::versions::as_version;
use super::{flatten, Journal, JournalError};

impl Journal {
    /// Puts damaged page `id` back in the frontier to be fetched again (true), or drops
    /// it from the journal (false: `Repair::Drop`, or its URL is lost).
    pub(super) fn requeue_or_drop(&self, id: u64, repair: Repair) -> Result<bool, JournalError> {
        let key = id_key(id);
        let url = match self.pages.get(key)? {
            Some(record) => decode_page_with_url(&record).ok().and_then(|(_, url)| url),
            None => None,
        };
        let url = match url {
            Some(url) => Some(url),
            None => self.url_of(id)?.map(|url| UrlEntry {
                url,
                source_key: None,
                added_at_ms: super::now_ms(),
                depth: 0,
                via: Via::Link,
            }),
        };
        let requeue = match (&url, repair) {
            (Some(entry), Repair::Refetch) => url::Url::parse(&entry.url)
                .ok()
                .map(|u| crate::urls::host_key(&u)),
            _ => None,
        };
        let frontier_value = match (&requeue, url) {
            (Some(host), Some(url)) => Some(encode_pending(&PendingEntry {
                host: host.clone(),
                attempts: 0,
                not_before_ms: 0,
                url,
            })?),
            _ => None,
        };
        // A page put back keeps its older versions (it gets a current one again); a
        // dropped page loses them.
        let versions: Vec<sled::IVec> = match requeue {
            Some(_) => Vec::new(),
            None => self
                .versions
                .scan_prefix(key)
                .keys()
                .collect::<Result<_, _>>()?,
        };
        self.guarded(|| {
            let trees = (
                &self.pages,
                &self.annotations,
                &self.pending_parse,
                &self.sync_queue,
                &self.sync_seq,
                &self.damaged,
                &self.frontier,
                &self.url_index,
                &self.schedule,
                &self.checked,
                &self.versions,
            );
            let result = trees.transaction(
                |(
                    pages,
                    annotations,
                    pending,
                    queue,
                    seqs,
                    damaged,
                    frontier,
                    index,
                    schedule,
                    checked,
                    old_versions,
                )| {
                    for version in &versions {
                        old_versions.remove(version)?;
                    }
                    let old = pages.remove(&key)?;
                    schedule.remove(&key)?;
                    checked.remove(&key)?;
                    annotations.remove(&key)?;
                    pending.remove(&key)?;
                    if let Some(seq) = seqs.remove(&key)? {
                        queue.remove(seq)?;
                    }
                    damaged.remove(&key)?;
                    match (&requeue, &frontier_value) {
                        (Some(host), Some(bytes)) => {
                            frontier.insert(frontier_key(host, id), bytes.as_slice())?;
                        }
                        _ => {
                            if let Some(record) = old {
                                if let Ok((_, Some(url))) = decode_page_with_url(&record) {
                                    index.remove(url.url.as_bytes())?;
                                }
                            }
                        }
                    }
                    Ok(())
                },
            );
            flatten(result)
        })?;
        Ok(requeue.is_some())
    }

    /// Rewrites every counter from what the trees hold (after a repair, or a
    /// recover). Reads records, not bodies.
    pub(super) fn recount(&self) -> Result<(), JournalError> {
        let mut counts = Counts::default();
        for item in self.pages.iter() {
            let (key, record) = item?;
            if let Ok((meta, body)) = decode_page_and_body(&record) {
                self.count_page(key_id(&key)?, &meta.outcome, body, &mut counts)?;
            }
        }
        for item in self.versions.iter() {
            let (_, record) = item?;
            if let Some((_, stored)) = as_version(&record) {
                counts.add(counter::VERSIONS, 1);
                counts.add(counter::VERSION_BYTES, stored);
            }
        }
        self.check_trees(&mut counts, false)?;
        self.guarded(|| {
            for name in self.counters.iter().keys().collect::<Result<Vec<_>, _>>()? {
                let name = String::from_utf8_lossy(&name).into_owned();
                if !counts.values.contains_key(&name) {
                    self.counters.insert(name.as_bytes(), &0u64.to_be_bytes())?;
                }
            }
            for (name, n) in &counts.values {
                self.counters.insert(name.as_bytes(), &n.to_be_bytes())?;
            }
            Ok(())
        })
    }
}
