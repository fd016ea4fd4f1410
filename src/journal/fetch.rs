//! The fetch side of the journal: fetch results recorded (or rescheduled), pages out.

use std::collections::BTreeMap;

use sled::Transactional;

use super::frontier::{frontier_key, retry_key};
use super::record::{
    decode_page, decode_page_and_body, decode_page_with_url, decode_pending, decode_url,
};
use super::record::{encode_page, encode_pending, encode_segments_end};
use super::record::{id_key, key_id};
use super::segments::BodyLocation;
use super::sync::mark_for_sync;
use super::{
    abort, bump, counter, decompress_body, flatten, FetchedPage, Journal, JournalError, Outcome,
    PageMeta, UrlEntry, SEGMENTS_END,
};

impl Journal {
    /// Records finished fetches in one atomic step: page records (with where the body
    /// went in the segments, appended and synced just before), the move out of the
    /// frontier, and the counters. A page with a retry time is not recorded: it moves
    /// from the frontier to `retry_queue` with one more attempt. A page that is not in
    /// the frontier (already recorded, or waiting for a retry, which the scheduler never
    /// fetches) is left as it is, so replaying a batch changes nothing.
    pub fn record_fetches(&self, batch: &[FetchedPage]) -> Result<(), JournalError> {
        self.guarded(|| {
            // The bodies go to the segments first, synced, so the locations recorded
            // below always point at durable bytes.
            let stored: Vec<&[u8]> = batch
                .iter()
                .filter(|page| page.retry_at_ms.is_none())
                .filter_map(|page| page.compressed_body.as_deref())
                .collect();
            let (locations, end) = self.segments.append(&stored)?;
            let mut locations = locations.into_iter();
            let mut encoded = Vec::with_capacity(batch.len());
            for page in batch {
                // In the order of `stored`: every page with a body and no retry.
                let body = match (&page.compressed_body, page.retry_at_ms) {
                    (Some(_), None) => locations.next(),
                    _ => None,
                };
                encoded.push(encode_page(&page.meta, body, &page.url)?);
            }
            let end = encode_segments_end(end)?;
            let trees = (
                &self.frontier,
                &self.retry_queue,
                &self.pages,
                &self.pending_parse,
                &*self.db,
                &self.sync_queue,
                &self.sync_seq,
                &self.counters,
            );
            let result = trees.transaction(
                |(frontier, retry, pages, pending_parse, meta, queue, seqs, counters)| {
                    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
                    meta.insert(SEGMENTS_END, end.as_slice())?;
                    for (page, meta_bytes) in batch.iter().zip(&encoded) {
                        let key = id_key(page.id);
                        let Some(ready) = frontier.remove(frontier_key(&page.host, page.id))?
                        else {
                            continue;
                        };
                        if let Some(at) = page.retry_at_ms {
                            let mut waiting = match decode_pending(&ready) {
                                Ok(entry) => entry,
                                Err(e) => return abort(e),
                            };
                            waiting.attempts += 1;
                            waiting.not_before_ms = at.max(1);
                            match encode_pending(&waiting) {
                                Ok(bytes) => retry
                                    .insert(&retry_key(waiting.not_before_ms, page.id), bytes)?,
                                Err(e) => return abort(e),
                            };
                            *deltas.entry(counter::RETRY_WAITING.into()).or_default() += 1;
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

    /// The record of URL `id`: from its page record once fetched (format 4 on), else
    /// from `urls` (URLs added by older formats), else from its pending entry (a scan:
    /// see [`Journal::pending`]).
    pub fn url(&self, id: u64) -> Result<Option<UrlEntry>, JournalError> {
        if let Some(record) = self.pages.get(id_key(id))? {
            if let (_, Some(url)) = decode_page_with_url(&record)? {
                return Ok(Some(url));
            }
        }
        if let Some(url) = self.older_url(id)? {
            return Ok(Some(url));
        }
        Ok(self.pending(id)?.map(|p| p.url))
    }

    /// The page record of `id` and its URL's record, if its fetch has been recorded.
    pub fn page_with_url(&self, id: u64) -> Result<Option<(PageMeta, UrlEntry)>, JournalError> {
        let Some(record) = self.pages.get(id_key(id))? else {
            return Ok(None);
        };
        let (meta, url) = decode_page_with_url(&record)?;
        let url = match url {
            Some(url) => url,
            None => self.older_url(id)?.ok_or_else(|| JournalError::Damaged {
                what: format!("page {id} has no url record"),
            })?,
        };
        Ok(Some((meta, url)))
    }

    /// The record of a URL added by a journal format before 4, from `urls`.
    fn older_url(&self, id: u64) -> Result<Option<UrlEntry>, JournalError> {
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

    /// The body as stored (one zstd frame), if `id` has a page record.
    pub(super) fn compressed_body(&self, id: u64) -> Result<Option<Vec<u8>>, JournalError> {
        match self.pages.get(id_key(id))? {
            None => Ok(None),
            Some(record) => {
                let (_, body) = decode_page_and_body(&record)?;
                self.stored_body(id, body)
            }
        }
    }

    /// The compressed body of page `id` whose record says `body`: from its segment, or
    /// (pages written before format 3) from the `bodies` tree.
    pub(super) fn stored_body(
        &self,
        id: u64,
        body: Option<BodyLocation>,
    ) -> Result<Option<Vec<u8>>, JournalError> {
        match body {
            Some(at) => self.segments.read(at).map(Some),
            None => Ok(self.bodies.get(id_key(id))?.map(|b| b.to_vec())),
        }
    }

    pub fn is_pending_fetch(&self, id: u64) -> Result<bool, JournalError> {
        Ok(self.pending(id)?.is_some())
    }

    /// Every id whose fetch has been recorded, in id order.
    pub fn recorded_ids(&self) -> impl Iterator<Item = Result<u64, JournalError>> + '_ {
        self.pages
            .iter()
            .keys()
            .map(|k| k.map_err(JournalError::from).and_then(|k| key_id(&k)))
    }
}
