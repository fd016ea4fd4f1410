//! The fetch side of the journal: fetch results recorded (or rescheduled), pages out.

use std::collections::BTreeMap;

use sled::Transactional;

use super::frontier::{frontier_key, retry_key};
use super::record::{
    decode_page, decode_page_and_body, decode_page_with_url, decode_pending, decode_url,
};
use super::record::{encode_entry_header, encode_page, encode_pending, encode_segments_end};
use super::record::{id_key, key_id, BodyRef, StoredBody};
use super::recrawl::{decode_schedule, encode_schedule, Check, RecrawlPolicy, Schedule};
use super::segments::Entry;
use super::sync::mark_for_sync;
use super::versions::keep_version;
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
    ///
    /// A page that already has a record is a recrawl check (see `recrawl.rs`): only a
    /// changed page gets a new version (body, record, parse), and its stored version
    /// moves to `versions` in the same transaction; every check updates its schedule.
    pub fn record_fetches(&self, batch: &[FetchedPage]) -> Result<(), JournalError> {
        self.guarded(|| {
            let policy = self.recrawl_policy()?;
            // What each page is: new, or a check of a stored one (read before the
            // transaction: only this committer writes the records of fetched pages).
            let mut checks: Vec<Option<Recheck>> = Vec::with_capacity(batch.len());
            for page in batch {
                checks.push(match page.retry_at_ms {
                    Some(_) => None,
                    None => self.recheck_of(page)?,
                });
            }
            // The bodies go to the segments first, each in an entry that describes its
            // page, synced, so the locations recorded below always point at durable
            // bytes. A check that found the page unchanged stores nothing.
            let keeps = |page: &FetchedPage, check: &Option<Recheck>| {
                page.retry_at_ms.is_none()
                    && page.body.is_some()
                    && check.as_ref().is_none_or(|c| c.check == Check::Changed)
            };
            let stored: Vec<&FetchedPage> = batch
                .iter()
                .zip(&checks)
                .filter(|(page, check)| keeps(page, check))
                .map(|(page, _)| page)
                .collect();
            let headers = stored
                .iter()
                .map(|page| {
                    let hash = page.body.as_ref().map_or(0, |b| b.content_hash);
                    encode_entry_header(page.id, &page.url, &page.meta, hash)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let entries: Vec<Entry<'_>> = stored
                .iter()
                .zip(&headers)
                .filter_map(|(page, header)| {
                    let body = &page.body.as_ref()?.bytes;
                    Some(Entry { header, body })
                })
                .collect();
            let (appended, end) = self.segments.append(&entries)?;
            let mut appended = appended.into_iter();
            let mut encoded = Vec::with_capacity(batch.len());
            for (page, check) in batch.iter().zip(&checks) {
                // In the order of `stored`.
                let body = match &page.body {
                    Some(packed) if keeps(page, check) => appended.next().map(|a| StoredBody {
                        at: a.at,
                        checksum: a.checksum,
                        content_hash: packed.content_hash,
                    }),
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
                &self.schedule,
                &self.checked,
                &self.versions,
            );
            let result = trees.transaction(
                |(
                    frontier,
                    retry,
                    pages,
                    pending_parse,
                    meta,
                    queue,
                    seqs,
                    counters,
                    schedules,
                    checked,
                    versions,
                )| {
                    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
                    meta.insert(SEGMENTS_END, end.as_slice())?;
                    for ((page, meta_bytes), check) in batch.iter().zip(&encoded).zip(&checks) {
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
                        if let Some(check) = check {
                            let schedule = match schedules.get(key)? {
                                Some(bytes) => match decode_schedule(&bytes) {
                                    Ok(s) => s,
                                    Err(e) => return abort(e),
                                },
                                None => check.schedule,
                            };
                            let next = check.next_schedule(schedule, &page.meta, &policy);
                            match encode_schedule(&next) {
                                Ok(bytes) => schedules.insert(&key, bytes)?,
                                Err(e) => return abort(e),
                            };
                            check.count(schedule.queued, &mut deltas);
                            match check.check {
                                // The stored version stays; MySQL learns the time of the
                                // check (see `Journal::checked_items`).
                                Check::Unchanged | Check::Gone => {
                                    checked.insert(&key, &next.checked_at_ms.to_be_bytes())?;
                                    continue;
                                }
                                Check::Failed => continue,
                                Check::Changed => {}
                            }
                            uncount(&check.old, &mut deltas);
                        }
                        // A changed page's stored version is kept (`versions.rs`).
                        if let Some(old) = pages.insert(&key, meta_bytes.as_slice())? {
                            keep_version(versions, page.id, &old, &mut deltas)?;
                        }
                        match &page.meta.outcome {
                            Outcome::Response { body_len, .. } => {
                                *deltas.entry(counter::FETCHED.into()).or_default() += 1;
                                *deltas.entry(counter::RAW_BYTES.into()).or_default() +=
                                    *body_len as i64;
                                let stored = page.body.as_ref().map_or(0, |b| b.bytes.len());
                                *deltas.entry(counter::STORED_BODY_BYTES.into()).or_default() +=
                                    stored as i64;
                                if pending_parse.insert(&key, &[])?.is_none() {
                                    *deltas.entry(counter::PENDING_PARSE.into()).or_default() += 1;
                                }
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

    /// The check that `page` is, if its id already has a record.
    fn recheck_of(&self, page: &FetchedPage) -> Result<Option<Recheck>, JournalError> {
        let Some(record) = self.pages.get(id_key(page.id))? else {
            return Ok(None);
        };
        let (old, body) =
            decode_page_and_body(&record).map_err(|e| self.page_damaged(page.id, e))?;
        let (old_hash, old_stored) = match body {
            Some(BodyRef::Checked(stored)) => (Some(stored.content_hash), stored.at.len),
            Some(BodyRef::Unchecked(at)) => (None, at.len),
            None => (
                None,
                self.bodies
                    .get(id_key(page.id))?
                    .map_or(0, |b| b.len() as u64),
            ),
        };
        let hash = page.body.as_ref().map(|b| b.content_hash);
        Ok(Some(Recheck {
            check: Check::of(&old, old_hash, &page.meta, hash),
            schedule: self.schedule_of(page.id, &old)?,
            old: Counted {
                outcome: old.outcome,
                stored: old_stored,
            },
        }))
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
        let (meta, url) = decode_page_with_url(&record).map_err(|e| self.page_damaged(id, e))?;
        let url = match url {
            Some(url) => url,
            None => self.older_url(id)?.ok_or_else(|| JournalError::Damaged {
                what: format!("page {id} has no url record"),
            })?,
        };
        Ok(Some((meta, url)))
    }

    /// The record of a URL added by a journal format before 4, from `urls`.
    pub(super) fn older_url(&self, id: u64) -> Result<Option<UrlEntry>, JournalError> {
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
            Some(compressed) => decompress_body(id, &compressed)
                .map(Some)
                .map_err(|e| self.page_damaged(id, e)),
        }
    }

    /// The body as stored (one zstd frame), if `id` has a page record. A record that
    /// does not decode or a body that fails its check is [`JournalError::PageDamaged`].
    pub(super) fn compressed_body(&self, id: u64) -> Result<Option<Vec<u8>>, JournalError> {
        match self.pages.get(id_key(id))? {
            None => Ok(None),
            Some(record) => {
                let (_, body) =
                    decode_page_and_body(&record).map_err(|e| self.page_damaged(id, e))?;
                self.stored_body(id, body)
            }
        }
    }

    /// The compressed body of page `id` whose record says `body`: from its segment
    /// (checked against its checksum from format 5 on), or (pages written before format
    /// 3) from the `bodies` tree. Damage is [`JournalError::PageDamaged`].
    pub(super) fn stored_body(
        &self,
        id: u64,
        body: Option<BodyRef>,
    ) -> Result<Option<Vec<u8>>, JournalError> {
        let read = match body {
            Some(BodyRef::Checked(stored)) => {
                self.segments.read_checked(stored.at, stored.checksum)
            }
            Some(BodyRef::Unchecked(at)) => self.segments.read(at),
            None => return Ok(self.bodies.get(id_key(id))?.map(|b| b.to_vec())),
        };
        read.map(Some).map_err(|e| self.page_damaged(id, e))
    }

    /// `error` about page `id` as [`JournalError::PageDamaged`], naming its URL if its
    /// record tells it. Errors that are not damage pass through.
    pub(super) fn page_damaged(&self, id: u64, error: JournalError) -> JournalError {
        let what = match error {
            JournalError::Damaged { what } => what,
            other => return other,
        };
        let page = match self.pages.get(id_key(id)) {
            Ok(Some(record)) => match decode_page_with_url(&record) {
                Ok((_, Some(url))) => crate::urls::redact_text(&url.url),
                _ => format!("id {id}"),
            },
            _ => format!("id {id}"),
        };
        JournalError::PageDamaged { page, what }
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

/// A fetch of a page that already had a record: what it found, and the stored version's
/// part in the counters.
struct Recheck {
    check: Check,
    /// The page's schedule as it was before this run's transactions.
    schedule: Schedule,
    old: Counted,
}

/// What a stored version adds to the counters.
struct Counted {
    outcome: Outcome,
    stored: u64,
}

impl Recheck {
    /// The page's schedule after this check.
    fn next_schedule(
        &self,
        current: Schedule,
        meta: &PageMeta,
        policy: &RecrawlPolicy,
    ) -> Schedule {
        let interval = if current.interval_ms == 0 {
            policy.interval_ms
        } else {
            current.interval_ms
        };
        let changed = self.check == Check::Changed;
        Schedule {
            checked_at_ms: meta.fetched_at_ms,
            interval_ms: match self.check {
                Check::Failed => interval,
                _ => policy.next_interval(interval, changed),
            },
            changed_at_ms: if changed {
                meta.fetched_at_ms
            } else {
                current.changed_at_ms
            },
            // A page that answers again (a 304 or its stored version, too) is back; a
            // dropped gone page's tombstone still answering 404 or 410 stays gone.
            gone: match self.check {
                Check::Gone => true,
                Check::Changed => false,
                Check::Unchanged => {
                    current.gone
                        && matches!(
                            meta.outcome,
                            Outcome::Response {
                                status: 404 | 410,
                                ..
                            }
                        )
                }
                Check::Failed => current.gone,
            },
            queued: false,
        }
    }

    fn count(&self, was_queued: bool, deltas: &mut BTreeMap<String, i64>) {
        if was_queued {
            *deltas.entry(counter::RECHECKS.into()).or_default() -= 1;
        }
        *deltas.entry(counter::CHECKED.into()).or_default() += 1;
        let name = match self.check {
            Check::Unchanged => counter::UNCHANGED,
            Check::Changed => counter::CHANGED,
            Check::Gone => counter::GONE,
            Check::Failed => counter::CHECK_FAILED,
        };
        *deltas.entry(name.into()).or_default() += 1;
    }
}

/// Takes a stored version's part out of the counters (it is being replaced).
fn uncount(old: &Counted, deltas: &mut BTreeMap<String, i64>) {
    match &old.outcome {
        Outcome::Response { body_len, .. } => {
            *deltas.entry(counter::FETCHED.into()).or_default() -= 1;
            *deltas.entry(counter::RAW_BYTES.into()).or_default() -= *body_len as i64;
            *deltas.entry(counter::STORED_BODY_BYTES.into()).or_default() -= old.stored as i64;
        }
        Outcome::Error { kind, .. } => {
            *deltas.entry(counter::FAILED.into()).or_default() -= 1;
            let name = format!("{}{}", counter::ERROR_PREFIX, kind.as_str());
            *deltas.entry(name).or_default() -= 1;
        }
    }
}
