//! The parse side of the journal: pages to annotate out, annotations in, and the pages
//! whose annotation changed marked for sync.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::record::{decode_annotation, decode_page, encode_annotation, id_key, key_id};
use super::sync::mark_for_sync;
use super::{
    abort, bump, counter, entries_after, flatten, Journal, JournalError, Outcome, PageMeta,
};
use crate::parse::Annotation;

/// A page as the parser needs it. The body stays compressed until a worker thread
/// decompresses it with [`decompress_body`].
pub struct ParseInput {
    pub id: u64,
    pub meta: PageMeta,
    pub compressed_body: Vec<u8>,
}

/// Where an interrupted `reparse` stands; stored under `reparse` in the default tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReparseState {
    pub parser_version: u32,
    pub rules_hash: u64,
    /// Every page with an id up to this one has been re-annotated.
    pub done_through: u64,
}

#[derive(Serialize, Deserialize)]
enum ReparseRecord {
    V1(ReparseState),
}

/// What [`Journal::record_annotations`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnnotationReport {
    /// Annotations written because they were new or different.
    pub changed: u64,
}

/// Bodies whose frame header states a size up to this are decompressed in one call into
/// a buffer of that size; others (and frames without a size) are streamed, so that a
/// damaged header cannot make us allocate its claim.
const ONE_CALL_LIMIT: u64 = 64 << 20;

thread_local! {
    /// One zstd context per thread, reused, instead of a new context and stream buffers
    /// for every body.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Decompresses a body read from the journal.
pub fn decompress_body(id: u64, compressed: &[u8]) -> Result<Vec<u8>, JournalError> {
    let damaged = |e: std::io::Error| JournalError::Damaged {
        what: format!("body of id {id} does not decompress: {e}"),
    };
    match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(len)) if len <= ONE_CALL_LIMIT => DECOMPRESSOR.with_borrow_mut(|slot| {
            let decompressor = match slot {
                Some(d) => d,
                None => slot.insert(zstd::bulk::Decompressor::new().map_err(damaged)?),
            };
            decompressor
                .decompress(compressed, len as usize)
                .map_err(damaged)
        }),
        _ => zstd::stream::decode_all(compressed).map_err(damaged),
    }
}

impl Journal {
    /// Up to `limit` ids pending parse, in id order, strictly after `after`.
    pub fn pending_parse_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, JournalError> {
        entries_after(&self.pending_parse, after)
            .keys()
            .take(limit)
            .map(|k| k.map_err(JournalError::from).and_then(|k| key_id(&k)))
            .collect()
    }

    /// Up to `limit` ids of pages that have a body to parse (HTTP responses), strictly
    /// after `after`, in id order. Reads page records only, never bodies.
    pub fn parseable_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, JournalError> {
        let mut out = Vec::new();
        for item in entries_after(&self.pages, after) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            if matches!(decode_page(&value)?.outcome, Outcome::Response { .. }) {
                out.push(key_id(&key)?);
            }
        }
        Ok(out)
    }

    /// The page record and compressed body of `id`, if it is a stored response.
    pub fn parse_input(&self, id: u64) -> Result<Option<ParseInput>, JournalError> {
        let Some(meta) = self.page(id)? else {
            return Ok(None);
        };
        let compressed_body = self
            .bodies
            .get(id_key(id))?
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Ok(Some(ParseInput {
            id,
            meta,
            compressed_body,
        }))
    }

    pub fn annotation(&self, id: u64) -> Result<Option<Annotation>, JournalError> {
        self.annotations
            .get(id_key(id))?
            .map(|v| decode_annotation(&v))
            .transpose()
    }

    pub fn reparse_state(&self) -> Result<Option<ReparseState>, JournalError> {
        match self.db.get("reparse")? {
            None => Ok(None),
            Some(bytes) => match bincode::deserialize(&bytes) {
                Ok(ReparseRecord::V1(state)) => Ok(Some(state)),
                Err(e) => Err(JournalError::Damaged {
                    what: format!("undecodable reparse state: {e}"),
                }),
            },
        }
    }

    /// Ends a reparse pass: the next `reparse` starts from the first page again.
    pub fn finish_reparse(&self) -> Result<(), JournalError> {
        self.guarded(|| {
            self.db.remove("reparse")?;
            Ok(())
        })
    }

    /// Records annotations in one atomic step. A page leaves `pending_parse`; when its
    /// annotation is new or differs from the stored one it is written and the page
    /// becomes pending sync. With `reparse`, the pass's progress is saved in the same
    /// step, so a killed reparse resumes after the last recorded batch.
    pub fn record_annotations(
        &self,
        batch: &[(u64, Annotation)],
        reparse: Option<ReparseState>,
    ) -> Result<AnnotationReport, JournalError> {
        self.guarded(|| {
            let mut encoded = Vec::with_capacity(batch.len());
            for (_, annotation) in batch {
                encoded.push(encode_annotation(annotation)?);
            }
            let reparse = reparse
                .map(|state| bincode::serialize(&ReparseRecord::V1(state)))
                .transpose()
                .map_err(|e| JournalError::Encode(e.to_string()))?;
            let trees = (
                &*self.db,
                &self.annotations,
                &self.pending_parse,
                &self.sync_queue,
                &self.sync_seq,
                &self.counters,
            );
            let result =
                trees.transaction(|(meta, annotations, pending, queue, seqs, counters)| {
                    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
                    let mut report = AnnotationReport::default();
                    for ((id, annotation), bytes) in batch.iter().zip(&encoded) {
                        let key = id_key(*id);
                        if pending.remove(&key)?.is_some() {
                            *deltas.entry(counter::PENDING_PARSE.into()).or_default() -= 1;
                        }
                        let old = annotations.insert(&key, bytes.as_slice())?;
                        match &old {
                            None => *deltas.entry(counter::PARSED.into()).or_default() += 1,
                            Some(old) if old.as_ref() == bytes.as_slice() => continue,
                            // Same findings under a new parser version or rules hash: kept
                            // up to date, but nothing for sync to do.
                            Some(old) => match decode_annotation(old) {
                                Ok(old) if old.same_content(annotation) => continue,
                                Ok(_) => {}
                                Err(e) => return abort(e),
                            },
                        }
                        report.changed += 1;
                        mark_for_sync(meta, queue, seqs, &key, &mut deltas)?;
                    }
                    if let Some(state) = &reparse {
                        meta.insert("reparse", state.as_slice())?;
                    }
                    bump(counters, &deltas)?;
                    Ok(report)
                });
            flatten(result)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decompress_with_or_without_a_size_in_the_frame_and_damage_is_an_error() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        // As the crawl stores them: the frame states the size.
        let sized = zstd::bulk::compress(&body, 3).unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&sized).unwrap(),
            Some(200_000)
        );
        // Twice on one thread: the context is reused.
        assert_eq!(decompress_body(1, &sized).unwrap(), body);
        assert_eq!(decompress_body(1, &sized).unwrap(), body);
        assert_eq!(
            decompress_body(2, &zstd::bulk::compress(b"", 3).unwrap()).unwrap(),
            b""
        );
        // A streamed frame has no size and is streamed back.
        let mut streamed = Vec::new();
        let mut encoder = zstd::stream::Encoder::new(&mut streamed, 3).unwrap();
        std::io::Write::write_all(&mut encoder, &body).unwrap();
        encoder.finish().unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(),
            None
        );
        assert_eq!(decompress_body(3, &streamed).unwrap(), body);
        // A frame cut short is reported, and the context still works afterwards.
        let cut = &sized[..sized.len() / 2];
        assert!(matches!(
            decompress_body(4, cut),
            Err(JournalError::Damaged { .. })
        ));
        assert_eq!(decompress_body(5, &sized).unwrap(), body);
    }
}
