//! The fetch side of the journal: fetch results recorded (or rescheduled), pages out.

use std::collections::BTreeMap;

use sled::Transactional;

use super::frontier::{frontier_key, retry_key};
use super::record::{decode_page, decode_pending, decode_url, encode_page, encode_pending};
use super::record::{id_key, key_id};
use super::segments::{decode_stored_body, encode_end, encode_location, StoredBody};
use super::sync::mark_for_sync;
use super::{
    abort, bump, counter, decompress_body, flatten, FetchedPage, Journal, JournalError, Outcome,
    PageMeta, UrlEntry, SEGMENTS_END,
};

impl Journal {
    /// Records finished fetches in one atomic step: page records, bodies, the move out
    /// of `pending_fetch` and the frontier, and the counters. A page with a retry time
    /// is not recorded: it moves from the frontier to `retry_queue` with one more
    /// attempt. A page that is no longer pending (already recorded) is left as it is, so
    /// replaying a batch changes nothing.
    pub fn record_fetches(&self, batch: &[FetchedPage]) -> Result<(), JournalError> {
        self.guarded(|| {
            let mut encoded = Vec::with_capacity(batch.len());
            for page in batch {
                encoded.push(encode_page(&page.meta)?);
            }
            // The bodies go to the segments first, synced, so the locations recorded
            // below always point at durable bytes.
            let stored: Vec<&[u8]> = batch
                .iter()
                .filter(|page| page.retry_at_ms.is_none())
                .filter_map(|page| page.compressed_body.as_deref())
                .collect();
            let (locations, end) = self.segments.append(&stored)?;
            let mut located = Vec::with_capacity(locations.len());
            for at in locations {
                located.push(encode_location(at)?);
            }
            let located = located.into_iter();
            let end = encode_end(end)?;
            let trees = (
                &self.pending_fetch,
                &self.frontier,
                &self.retry_queue,
                &self.pages,
                &self.bodies,
                &self.pending_parse,
                &*self.db,
                &self.sync_queue,
                &self.sync_seq,
                &self.counters,
            );
            let result = trees.transaction(
                |(
                    pending,
                    frontier,
                    retry,
                    pages,
                    bodies,
                    pending_parse,
                    meta,
                    queue,
                    seqs,
                    counters,
                )| {
                    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
                    let mut located = located.clone();
                    meta.insert(SEGMENTS_END, end.as_slice())?;
                    for (page, meta_bytes) in batch.iter().zip(&encoded) {
                        // In the order of `stored`: every page with a body and no retry.
                        let location = match (&page.compressed_body, page.retry_at_ms) {
                            (Some(_), None) => located.next(),
                            _ => None,
                        };
                        let key = id_key(page.id);
                        let Some(waiting) = pending.get(key)? else {
                            continue;
                        };
                        let mut waiting = match decode_pending(&waiting) {
                            Ok(entry) => entry,
                            Err(e) => return abort(e),
                        };
                        frontier.remove(frontier_key(&waiting.host, page.id))?;
                        if waiting.not_before_ms > 0 {
                            retry.remove(&retry_key(waiting.not_before_ms, page.id))?;
                        }
                        if let Some(at) = page.retry_at_ms {
                            waiting.attempts += 1;
                            waiting.not_before_ms = at.max(1);
                            match encode_pending(&waiting) {
                                Ok(bytes) => pending.insert(&key, bytes)?,
                                Err(e) => return abort(e),
                            };
                            retry.insert(&retry_key(waiting.not_before_ms, page.id), &[])?;
                            continue;
                        }
                        pending.remove(&key)?;
                        pages.insert(&key, meta_bytes.as_slice())?;
                        match &page.meta.outcome {
                            Outcome::Response { body_len, .. } => {
                                *deltas.entry(counter::FETCHED.into()).or_default() += 1;
                                *deltas.entry(counter::RAW_BYTES.into()).or_default() +=
                                    *body_len as i64;
                                let body = page.compressed_body.as_deref().unwrap_or_default();
                                *deltas.entry(counter::STORED_BODY_BYTES.into()).or_default() +=
                                    body.len() as i64;
                                if let Some(location) = location {
                                    bodies.insert(&key, location.as_slice())?;
                                }
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
        match self.compressed_body(id)? {
            None => Ok(None),
            Some(compressed) => decompress_body(id, &compressed).map(Some),
        }
    }

    /// The body as stored: one zstd frame, from its segment or (journals written before
    /// format 3) from the `bodies` tree itself.
    pub(super) fn compressed_body(&self, id: u64) -> Result<Option<Vec<u8>>, JournalError> {
        let Some(value) = self.bodies.get(id_key(id))? else {
            return Ok(None);
        };
        match decode_stored_body(id, &value)? {
            StoredBody::Inline(compressed) => Ok(Some(compressed.to_vec())),
            StoredBody::At(at) => self.segments.read(at).map(Some),
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
