//! The fetch side of the journal: URLs in, fetch results recorded, pending work out.

use std::collections::BTreeMap;

use sled::Transactional;

use super::record::{decode_page, decode_url, encode_page, encode_url, id_key, key_id};
use super::sync::mark_for_sync;
use super::{
    abort, bump, counter, decompress_body, flatten, now_ms, read_u64, AddReport, FetchedPage,
    Journal, JournalError, NewUrl, Outcome, PageMeta, UrlEntry,
};

impl Journal {
    /// Adds URLs that are not known yet, in one atomic step, as pending fetch.
    /// URLs already in the journal, whatever their state, count as duplicates.
    pub fn add_urls(&self, batch: &[NewUrl]) -> Result<AddReport, JournalError> {
        let added_at_ms = now_ms();
        self.guarded(|| {
            let trees = (
                &*self.db,
                &self.url_index,
                &self.urls,
                &self.pending_fetch,
                &self.counters,
            );
            let result = trees.transaction(|(meta, index, urls, pending, counters)| {
                let mut next_id = match read_u64(meta.get("next_id")?) {
                    Ok(v) => v.max(1),
                    Err(e) => return abort(e),
                };
                let mut report = AddReport::default();
                for new in batch {
                    if index.get(new.url.as_bytes())?.is_some() {
                        report.duplicates += 1;
                        continue;
                    }
                    let id = next_id;
                    next_id += 1;
                    let entry = UrlEntry {
                        url: new.url.clone(),
                        source_key: new.source_key.clone(),
                        added_at_ms,
                    };
                    let encoded = match encode_url(&entry) {
                        Ok(v) => v,
                        Err(e) => return abort(e),
                    };
                    index.insert(new.url.as_bytes(), &id_key(id))?;
                    urls.insert(&id_key(id), encoded)?;
                    pending.insert(&id_key(id), &[])?;
                    report.added += 1;
                }
                meta.insert("next_id", &next_id.to_be_bytes())?;
                let deltas = BTreeMap::from([(counter::URLS.to_string(), report.added as i64)]);
                bump(counters, &deltas)?;
                Ok(report)
            });
            flatten(result)
        })
    }

    /// Records finished fetches in one atomic step: page records, bodies, the move out
    /// of `pending_fetch` and the counters. A page that is no longer pending (already
    /// recorded) is left as it is, so replaying a batch changes nothing.
    pub fn record_fetches(&self, batch: &[FetchedPage]) -> Result<(), JournalError> {
        self.guarded(|| {
            let mut encoded = Vec::with_capacity(batch.len());
            for page in batch {
                encoded.push(encode_page(&page.meta)?);
            }
            let trees = (
                &self.pending_fetch,
                &self.pages,
                &self.bodies,
                &self.pending_parse,
                &*self.db,
                &self.sync_queue,
                &self.sync_seq,
                &self.counters,
            );
            let result = trees.transaction(
                |(pending, pages, bodies, pending_parse, meta, queue, seqs, counters)| {
                    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
                    for (page, meta_bytes) in batch.iter().zip(&encoded) {
                        let key = id_key(page.id);
                        if pending.remove(&key)?.is_none() {
                            continue;
                        }
                        pages.insert(&key, meta_bytes.as_slice())?;
                        match &page.meta.outcome {
                            Outcome::Response { body_len, .. } => {
                                *deltas.entry(counter::FETCHED.into()).or_default() += 1;
                                *deltas.entry(counter::RAW_BYTES.into()).or_default() +=
                                    *body_len as i64;
                                let body = page.compressed_body.as_deref().unwrap_or_default();
                                *deltas.entry(counter::STORED_BODY_BYTES.into()).or_default() +=
                                    body.len() as i64;
                                bodies.insert(&key, body)?;
                                pending_parse.insert(&key, &[])?;
                                *deltas.entry(counter::PENDING_PARSE.into()).or_default() += 1;
                            }
                            Outcome::Error { kind, .. } => {
                                *deltas.entry(counter::FAILED.into()).or_default() += 1;
                                let name = format!("{}{}", counter::ERROR_PREFIX, kind.as_str());
                                *deltas.entry(name).or_default() += 1;
                                // Nothing to parse: the failure itself is what gets synced.
                                mark_for_sync(meta, queue, seqs, &key, &mut deltas)?;
                            }
                        }
                    }
                    bump(counters, &deltas)
                },
            );
            flatten(result)
        })
    }

    /// Up to `limit` ids still pending fetch, in id order, strictly after `after`.
    pub fn pending_fetch_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, UrlEntry)>, JournalError> {
        let mut out = Vec::new();
        for item in super::entries_after(&self.pending_fetch, after) {
            if out.len() >= limit {
                break;
            }
            let (key, _) = item?;
            let id = key_id(&key)?;
            let entry = self.url(id)?.ok_or_else(|| JournalError::Damaged {
                what: format!("pending id {id} has no url record"),
            })?;
            out.push((id, entry));
        }
        Ok(out)
    }

    pub fn url(&self, id: u64) -> Result<Option<UrlEntry>, JournalError> {
        self.urls
            .get(id_key(id))?
            .map(|v| decode_url(&v))
            .transpose()
    }

    /// The id of a URL, given in the normalized form it was added with.
    pub fn find(&self, url: &str) -> Result<Option<u64>, JournalError> {
        self.url_index
            .get(url.as_bytes())?
            .map(|v| key_id(&v))
            .transpose()
    }

    pub fn page(&self, id: u64) -> Result<Option<PageMeta>, JournalError> {
        self.pages
            .get(id_key(id))?
            .map(|v| decode_page(&v))
            .transpose()
    }

    /// The body exactly as received after content-decoding.
    pub fn body(&self, id: u64) -> Result<Option<Vec<u8>>, JournalError> {
        match self.bodies.get(id_key(id))? {
            None => Ok(None),
            Some(compressed) => decompress_body(id, &compressed).map(Some),
        }
    }

    pub fn is_pending_fetch(&self, id: u64) -> Result<bool, JournalError> {
        Ok(self.pending_fetch.contains_key(id_key(id))?)
    }

    /// Every id whose fetch has been recorded, in id order.
    pub fn recorded_ids(&self) -> impl Iterator<Item = Result<u64, JournalError>> + '_ {
        self.pages
            .iter()
            .keys()
            .map(|k| k.map_err(JournalError::from).and_then(|k| key_id(&k)))
    }
}
