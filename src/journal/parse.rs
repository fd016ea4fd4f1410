//! The parse side of the journal: pages to annotate out, annotations in, and the pages
//! whose annotation changed marked for sync.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::frontier::{AddTrees, NewUrl};
use super::hints::{record_hints, Hint};
use super::prune::is_tombstone;
use super::record::Annotation;
use super::record::{decode_annotation, decode_host, decode_page, decode_page_and_body};
use super::record::{encode_annotation, encode_host};
use super::record::{id_key, key_id};
use super::sync::mark_for_sync;
use super::{
    abort, bump, counter, entries_after, flatten, read_u64, HostEntry, Journal, JournalError,
    Outcome, PageMeta, TxResult,
};
use sled::transaction::TransactionalTree;

/// A page as the parser needs it. The body stays compressed until a worker thread
/// decompresses it with [`super::decompress_body`].
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

pub(crate) fn encode_reparse(state: ReparseState) -> Result<Vec<u8>, JournalError> {
    super::record::encode(&ReparseRecord::V1(state))
}

pub(crate) fn decode_reparse(bytes: &[u8]) -> Result<ReparseState, JournalError> {
    let ReparseRecord::V1(state) = super::record::decode("default (reparse)", bytes)?;
    Ok(state)
}

/// What [`Journal::record_annotations`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnnotationReport {
    /// Annotations written because they were new or different.
    pub changed: u64,
    /// Discovered URLs added to the frontier.
    pub discovered: u64,
    /// Discovered URLs left out because a page budget was spent.
    pub over_budget: u64,
}

/// Budgets for URLs that link following adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// No URL is added once the journal holds this many.
    pub max_urls: Option<u64>,
    /// No URL of a host is added once following has added this many for the host.
    pub per_host: Option<u64>,
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

    /// Up to `limit` ids of pages that have a body to parse (HTTP responses but
    /// dropped gone pages), strictly
    /// after `after`, in id order. Reads page records only, never bodies. A record that
    /// does not decode is among them: [`Journal::parse_input`] reports it as a damaged
    /// page, which the stage skips, instead of the whole pass failing here.
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
            // A dropped gone page has no body (see `prune.rs`).
            let parseable = decode_page(&value).map_or(true, |meta| {
                matches!(meta.outcome, Outcome::Response { .. })
            }) && !is_tombstone(&value);
            if parseable {
                out.push(key_id(&key)?);
            }
        }
        Ok(out)
    }

    /// The page record and compressed body of `id`, if it is a stored response. A
    /// damaged record or body is [`JournalError::PageDamaged`].
    pub fn parse_input(&self, id: u64) -> Result<Option<ParseInput>, JournalError> {
        let Some(record) = self.pages.get(id_key(id))? else {
            return Ok(None);
        };
        let (meta, body) = decode_page_and_body(&record).map_err(|e| self.page_damaged(id, e))?;
        let compressed_body = self.stored_body(id, body)?.unwrap_or_default();
        Ok(Some(ParseInput {
            id,
            meta,
            compressed_body,
        }))
    }

    /// The annotation of page `id`; one that does not decode is
    /// [`JournalError::PageDamaged`].
    pub fn annotation(&self, id: u64) -> Result<Option<Annotation>, JournalError> {
        self.annotations
            .get(id_key(id))?
            .map(|v| decode_annotation(&v).map_err(|e| self.page_damaged(id, e)))
            .transpose()
    }

    pub fn reparse_state(&self) -> Result<Option<ReparseState>, JournalError> {
        self.db
            .get("reparse")?
            .map(|bytes| decode_reparse(&bytes))
            .transpose()
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
    ///
    /// `discovered` URLs (links followed from these pages) are added as new pending
    /// fetches in the same step, within `budget`, so a crash never loses the links of a
    /// page whose annotation was kept; then the sitemaps' `hints` of the pages the
    /// journal knows are recorded (`hints.rs`).
    pub fn record_annotations(
        &self,
        batch: &[(u64, Annotation)],
        reparse: Option<ReparseState>,
        discovered: &[NewUrl],
        budget: Budget,
        hints: &[Hint],
    ) -> Result<AnnotationReport, JournalError> {
        let added_at_ms = super::now_ms();
        self.guarded(|| {
            let mut encoded = Vec::with_capacity(batch.len());
            for (_, annotation) in batch {
                encoded.push(encode_annotation(annotation)?);
            }
            let reparse = reparse.map(encode_reparse).transpose()?;
            let trees = (
                &*self.db,
                &self.annotations,
                &self.pending_parse,
                &self.sync_queue,
                &self.sync_seq,
                &self.counters,
                &self.url_index,
                &self.frontier,
                &self.hosts,
                &self.hints,
            );
            let result = trees.transaction(
                |(
                    meta,
                    annotations,
                    pending,
                    queue,
                    seqs,
                    counters,
                    index,
                    frontier,
                    hosts,
                    hint_tree,
                )| {
                    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
                    let mut report = AnnotationReport::default();
                    let add = AddTrees {
                        meta,
                        index,
                        frontier,
                    };
                    admit(
                        &add,
                        hosts,
                        counters,
                        discovered,
                        budget,
                        added_at_ms,
                        &mut report,
                    )?;
                    for ((id, annotation), bytes) in batch.iter().zip(&encoded) {
                        let key = id_key(*id);
                        if pending.remove(&key)?.is_some() {
                            *deltas.entry(counter::PENDING_PARSE.into()).or_default() -= 1;
                        }
                        // A reparse mostly finds what is stored: then nothing is written.
                        let old = annotations.get(key)?;
                        if old.as_deref() == Some(bytes.as_slice()) {
                            continue;
                        }
                        annotations.insert(&key, bytes.as_slice())?;
                        match &old {
                            None => *deltas.entry(counter::PARSED.into()).or_default() += 1,
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
                    record_hints(index, hint_tree, hints, added_at_ms)?;
                    if let Some(state) = &reparse {
                        meta.insert("reparse", state.as_slice())?;
                    }
                    bump(counters, &deltas)?;
                    Ok(report)
                },
            );
            flatten(result)
        })
    }
}

/// Adds the discovered URLs that are new and within the budgets, inside a transaction.
fn admit(
    add: &AddTrees<'_>,
    hosts: &TransactionalTree,
    counters: &TransactionalTree,
    discovered: &[NewUrl],
    budget: Budget,
    added_at_ms: u64,
    report: &mut AnnotationReport,
) -> TxResult<()> {
    if discovered.is_empty() {
        return Ok(());
    }
    let mut urls = match read_u64(counters.get(counter::URLS)?) {
        Ok(n) => n,
        Err(e) => return abort(e),
    };
    let mut spent: BTreeMap<&str, HostEntry> = BTreeMap::new();
    for new in discovered {
        if budget.max_urls.is_some_and(|max| urls >= max) {
            report.over_budget += 1;
            continue;
        }
        let host = match spent.entry(new.host.as_str()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let entry = match hosts.get(new.host.as_bytes())?.map(|v| decode_host(&v)) {
                    None => HostEntry::default(),
                    Some(Ok(entry)) => entry,
                    Some(Err(err)) => return abort(err),
                };
                e.insert(entry)
            }
        };
        if budget.per_host.is_some_and(|max| host.discovered >= max) {
            report.over_budget += 1;
            continue;
        }
        if add.add(new, added_at_ms)? {
            host.discovered += 1;
            urls += 1;
            report.discovered += 1;
        }
    }
    for (name, entry) in &spent {
        match encode_host(entry) {
            Ok(bytes) => hosts.insert(name.as_bytes(), bytes)?,
            Err(e) => return abort(e),
        };
    }
    counters.insert(counter::URLS, &urls.to_be_bytes())?;
    Ok(())
}
