//! `webspool verify`: every record and every body of a journal read and checked, and the
//! trees checked against each other; with `--repair`, damaged pages put back to be
//! fetched again (or dropped) and the counters recounted (`repair.rs`).
//!
//! It streams: one record at a time, lookups by key for the cross-checks, and counts,
//! so its memory does not grow with the journal.

use std::collections::BTreeMap;

use super::prune::is_tombstone;
use super::record::BodyRef;
use super::record::{decode_annotation, decode_page_and_body, decode_page_with_url};
use super::record::{decode_entry_header, decode_pending, id_key, key_id};
use super::segments::{BodyLocation, Scanned};
use super::status::counter;
use super::versions::{as_version, split_version_key};
use super::PageMeta;
use super::{decompress_body, read_u64, ErrorKind, Journal, JournalError, Outcome};

/// One thing found wrong. `id` names the page when the problem is one page's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub id: Option<u64>,
    /// The page's URL, when its record or the URL index tells it.
    pub url: Option<String>,
    pub what: String,
}

/// What a verify pass read and found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub pages: u64,
    /// Older versions of pages read (their bodies are among `bodies`).
    pub versions: u64,
    pub bodies: u64,
    /// Stored (compressed) body bytes read.
    pub body_bytes: u64,
    pub entries: u64,
    /// Bytes of damaged segment entries that no page uses any more: nothing is lost.
    pub unused_damaged_bytes: u64,
    pub problems: u64,
    /// Pages put back to be fetched again (`--repair`).
    pub refetch: u64,
    /// Pages dropped from the journal (`--repair --drop`).
    pub dropped: u64,
    /// Damaged older versions dropped (`--repair`: an old version cannot be fetched
    /// again).
    pub versions_dropped: u64,
}

/// What `verify` does with the damaged pages it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Report only: the journal is not changed.
    None,
    /// Damaged pages are fetched again by the next crawl; counters are recounted.
    Refetch,
    /// Damaged pages leave the journal; counters are recounted.
    Drop,
}

/// Counts as the trees hold them, to compare with (or write to) the counters.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) values: BTreeMap<String, u64>,
}

impl Counts {
    pub(super) fn add(&mut self, name: &str, n: u64) {
        *self.values.entry(name.to_string()).or_default() += n;
    }
}

impl Journal {
    /// Checks the whole journal, handing each problem to `problem` as it is found and
    /// the pages read so far to `progress`. With a `repair`, damaged pages are put back
    /// in the frontier or dropped, and the counters are rewritten from the trees.
    pub fn verify(
        &self,
        repair: Repair,
        problem: impl FnMut(&Problem),
        progress: impl FnMut(u64),
    ) -> Result<VerifyReport, JournalError> {
        self.verify_with(repair, false, problem, progress)
    }

    /// [`Journal::verify`] without a repair, while other tasks of this process write to
    /// the journal (the holder's, for `verify` from another process): every record and
    /// body is checked as it is read, against the end of the segments as it is then,
    /// but what moves while the pass runs is not compared: the counters, sync queue
    /// entries against their sequence numbers, frontier entries against page records.
    pub fn verify_in_use(
        &self,
        problem: impl FnMut(&Problem),
        progress: impl FnMut(u64),
    ) -> Result<VerifyReport, JournalError> {
        self.verify_with(Repair::None, true, problem, progress)
    }

    fn verify_with(
        &self,
        repair: Repair,
        live: bool,
        mut problem: impl FnMut(&Problem),
        mut progress: impl FnMut(u64),
    ) -> Result<VerifyReport, JournalError> {
        let mut report = VerifyReport::default();
        let mut report_problem = |report: &mut VerifyReport, p: Problem| {
            report.problems += 1;
            problem(&p);
        };
        let mut counts = Counts::default();
        let mut damaged_ids = Vec::new();
        let end = self.segments_end()?;
        for item in self.pages.iter() {
            let (key, record) = item?;
            let id = key_id(&key)?;
            report.pages += 1;
            if report.pages % 1024 == 0 {
                progress(report.pages);
            }
            let end = if live { self.segments_end()? } else { end };
            if let Some(what) = self.check_page(id, &record, end, &mut counts, &mut report)? {
                report_problem(
                    &mut report,
                    Problem {
                        id: Some(id),
                        url: self.url_of(id)?,
                        what,
                    },
                );
                damaged_ids.push(id);
            }
        }
        progress(report.pages);
        let damaged_versions =
            self.check_versions(end, live, &mut counts, &mut report, |r, p| {
                report_problem(r, p)
            })?;
        for problem in self.check_trees(&mut counts, live)? {
            if let Some(id) = problem.id {
                damaged_ids.push(id);
            }
            report_problem(&mut report, problem);
        }
        let mut known = damaged_ids.clone();
        known.sort_unstable();
        for problem in self.check_entries(end, &known, &mut report)? {
            if let Some(id) = problem.id {
                damaged_ids.push(id);
            }
            report_problem(&mut report, problem);
        }
        if !live {
            for problem in self.check_counters(&counts)? {
                report_problem(&mut report, problem);
            }
        }
        // Only a hint: a repair drops it, the page stays.
        let bad_hints = self.undecodable_hints()?;
        for (id, what) in &bad_hints {
            let url = self.url_of(*id)?;
            let what = format!("its sitemap hint {what}");
            report_problem(
                &mut report,
                Problem {
                    id: None,
                    url,
                    what,
                },
            );
        }
        if repair != Repair::None && report.problems > 0 {
            damaged_ids.sort_unstable();
            damaged_ids.dedup();
            for id in damaged_ids {
                if self.requeue_or_drop(id, repair)? {
                    report.refetch += 1;
                } else {
                    report.dropped += 1;
                }
            }
            for key in damaged_versions {
                self.guarded(|| Ok(self.versions.remove(key)?))?;
                report.versions_dropped += 1;
            }
            for (id, _) in bad_hints {
                self.guarded(|| Ok(self.hints.remove(id_key(id))?))?;
            }
            self.recount()?;
            self.flush_blocking()?;
        }
        Ok(report)
    }

    /// One page record: it decodes, its body lies inside the synced part of its
    /// segment, its bytes pass their checksum, decompress to the recorded length and
    /// (from format 5 on) content hash. Counts it. The problem, if any.
    fn check_page(
        &self,
        id: u64,
        record: &[u8],
        end: super::segments::SegmentsEnd,
        counts: &mut Counts,
        report: &mut VerifyReport,
    ) -> Result<Option<String>, JournalError> {
        let (meta, body) = match decode_page_and_body(record) {
            Ok(decoded) => decoded,
            Err(e) => return Ok(Some(e.to_string())),
        };
        self.count_page(id, &meta.outcome, body, counts)?;
        if is_tombstone(record) {
            return Ok(None);
        }
        self.check_body(id, &meta, body, end, report)
    }

    /// The body of a page record or version (`meta`, `body`): inside the synced part of
    /// its segment, its bytes pass their checksum, decompress to the recorded length
    /// and (from format 5 on) content hash. The problem, if any.
    fn check_body(
        &self,
        id: u64,
        meta: &PageMeta,
        body: Option<BodyRef>,
        end: super::segments::SegmentsEnd,
        report: &mut VerifyReport,
    ) -> Result<Option<String>, JournalError> {
        let Outcome::Response { body_len, .. } = meta.outcome else {
            return Ok(None);
        };
        let location = match body {
            Some(BodyRef::Checked(stored)) => Some(stored.at),
            Some(BodyRef::Unchecked(at)) => Some(at),
            None => None,
        };
        if let Some(at) = location {
            if let Some(what) = self.outside_synced_part(at, end)? {
                return Ok(Some(what));
            }
        }
        let stored = match self.stored_body(id, body) {
            Ok(Some(stored)) => stored,
            Ok(None) => return Ok(Some("its body is missing".into())),
            Err(JournalError::PageDamaged { what, .. }) => return Ok(Some(what)),
            Err(e) => return Err(e),
        };
        report.bodies += 1;
        report.body_bytes += stored.len() as u64;
        let decoded = match decompress_body(id, &stored) {
            Ok(decoded) => decoded,
            Err(e) => return Ok(Some(e.to_string())),
        };
        if decoded.len() as u64 != body_len {
            return Ok(Some(format!(
                "its body decompresses to {} bytes, its record says {body_len}",
                decoded.len()
            )));
        }
        if let Some(BodyRef::Checked(stored)) = body {
            if super::content_hash(&decoded) != stored.content_hash {
                return Ok(Some(
                    "its body does not match the content hash recorded with it".into(),
                ));
            }
        }
        Ok(None)
    }

    /// Every older version (`versions.rs`): its key and record decode, it has a body in
    /// a segment entry, and that body passes [`Journal::check_body`] (`live`: against
    /// the end of the segments as it is then, as pages are). Counts them; hands
    /// each problem to `problem`; returns the keys of the damaged ones.
    fn check_versions(
        &self,
        end: super::segments::SegmentsEnd,
        live: bool,
        counts: &mut Counts,
        report: &mut VerifyReport,
        mut problem: impl FnMut(&mut VerifyReport, Problem),
    ) -> Result<Vec<sled::IVec>, JournalError> {
        let mut damaged = Vec::new();
        for item in self.versions.iter() {
            let (key, record) = item?;
            report.versions += 1;
            let what = match (split_version_key(&key), decode_page_and_body(&record)) {
                (Err(e), _) | (_, Err(e)) => Some((None, e.to_string())),
                (Ok((id, at)), Ok((meta, body))) => {
                    let what = match as_version(&record) {
                        None => Some("it has no body in a segment entry".to_string()),
                        Some((_, stored)) => {
                            counts.add(counter::VERSIONS, 1);
                            counts.add(counter::VERSION_BYTES, stored);
                            let end = if live { self.segments_end()? } else { end };
                            self.check_body(id, &meta, body, end, report)?
                        }
                    };
                    what.map(|what| (Some(id), format!("its older version of {at} (ms): {what}")))
                }
            };
            if let Some((id, what)) = what {
                let url = match id {
                    Some(id) => self.url_of(id)?,
                    None => None,
                };
                problem(report, Problem { id, url, what });
                damaged.push(key);
            }
        }
        Ok(damaged)
    }

    /// Counts a page record the way the counters count it.
    pub(super) fn count_page(
        &self,
        id: u64,
        outcome: &Outcome,
        body: Option<BodyRef>,
        counts: &mut Counts,
    ) -> Result<(), JournalError> {
        match outcome {
            Outcome::Response { body_len, .. } => {
                counts.add(counter::FETCHED, 1);
                counts.add(counter::RAW_BYTES, *body_len);
                let stored = match body {
                    Some(BodyRef::Checked(stored)) => stored.at.len,
                    Some(BodyRef::Unchecked(at)) => at.len,
                    None => self.bodies.get(id_key(id))?.map_or(0, |b| b.len() as u64),
                };
                counts.add(counter::STORED_BODY_BYTES, stored);
            }
            Outcome::Error { kind, .. } => {
                counts.add(counter::FAILED, 1);
                counts.add(&format!("{}{}", counter::ERROR_PREFIX, kind.as_str()), 1);
            }
        }
        Ok(())
    }

    /// Why a body location is not inside the synced part of the segments, if it is not.
    fn outside_synced_part(
        &self,
        at: BodyLocation,
        end: super::segments::SegmentsEnd,
    ) -> Result<Option<String>, JournalError> {
        let limit = if at.segment == end.segment {
            end.len
        } else if at.segment < end.segment {
            match self.segments.file_len(at.segment) {
                Ok(len) => len,
                Err(JournalError::Damaged { what }) => return Ok(Some(what)),
                Err(e) => return Err(e),
            }
        } else {
            0
        };
        let inside = at.offset.checked_add(at.len).is_some_and(|e| e <= limit);
        Ok((!inside).then(|| {
            format!(
                "its body ({} bytes at offset {} of segment {}) lies past the synced end of \
                 the segments (segment {}, {} bytes)",
                at.len, at.offset, at.segment, end.segment, end.len
            )
        }))
    }

    /// The URL of page `id`: from its record, else from the URL index (a scan).
    pub(super) fn url_of(&self, id: u64) -> Result<Option<String>, JournalError> {
        if let Some(record) = self.pages.get(id_key(id))? {
            if let Ok((_, Some(url))) = decode_page_with_url(&record) {
                return Ok(Some(crate::urls::redact_text(&url.url)));
            }
        }
        for item in self.url_index.iter() {
            let (url, value) = item?;
            if key_id(&value).ok() == Some(id) {
                return Ok(Some(crate::urls::redact_text(&String::from_utf8_lossy(
                    &url,
                ))));
            }
        }
        Ok(None)
    }

    /// The trees against each other: annotations, the parse and sync queues, the
    /// frontier and retry queue. Counts what the counters count. `live`: other tasks
    /// write meanwhile, so what a commit moves between two reads is not compared.
    pub(super) fn check_trees(
        &self,
        counts: &mut Counts,
        live: bool,
    ) -> Result<Vec<Problem>, JournalError> {
        let mut problems = Vec::new();
        let mut page_problem = |id: u64, what: String| -> Result<(), JournalError> {
            problems.push(Problem {
                id: Some(id),
                url: self.url_of(id)?,
                what,
            });
            Ok(())
        };
        for item in self.annotations.iter() {
            let (key, value) = item?;
            let id = key_id(&key)?;
            counts.add(counter::PARSED, 1);
            if let Err(e) = decode_annotation(&value) {
                page_problem(id, format!("its annotation does not decode: {e}"))?;
            } else if !self.pages.contains_key(&key)? {
                page_problem(id, "it has an annotation but no page record".into())?;
            }
        }
        for item in self.pending_parse.iter() {
            let (key, _) = item?;
            counts.add(counter::PENDING_PARSE, 1);
            if !self.pages.contains_key(&key)? {
                page_problem(
                    key_id(&key)?,
                    "it is pending parse but has no page record".into(),
                )?;
            }
        }
        for item in self.sync_queue.iter() {
            let (seq, id_bytes) = item?;
            let id = key_id(&id_bytes)?;
            if self.sync_seq.get(&id_bytes)?.as_deref() != Some(seq.as_ref()) {
                if live {
                    continue;
                }
                page_problem(id, "its sync queue entry and sync sequence disagree".into())?;
            } else if !self.pages.contains_key(&id_bytes)? {
                page_problem(id, "it is queued for sync but has no page record".into())?;
            }
        }
        counts.add(counter::PENDING_SYNC, self.sync_seq.len() as u64);
        for item in self.schedule.iter() {
            let (key, value) = item?;
            match super::recrawl::decode_schedule(&value) {
                Ok(schedule) if schedule.queued => counts.add(counter::RECHECKS, 1),
                Ok(_) => {}
                Err(e) => page_problem(key_id(&key)?, format!("its recrawl schedule {e}"))?,
            }
        }
        for (tree, name) in [
            (&self.frontier, "frontier"),
            (&self.retry_queue, "retry_queue"),
        ] {
            for item in tree.iter() {
                let (key, value) = item?;
                if name == "retry_queue" {
                    counts.add(counter::RETRY_WAITING, 1);
                }
                if let Err(e) = decode_pending(&value) {
                    problems.push(Problem {
                        id: None,
                        url: None,
                        what: format!("an entry of `{name}` does not decode: {e}"),
                    });
                    continue;
                }
                let id = key.len().checked_sub(8).map(|at| key_id(&key[at..]));
                if let (Some(Ok(id)), false) = (id, live) {
                    if self.pages.contains_key(id_key(id))? {
                        problems.push(Problem {
                            id: None,
                            url: self.url_of(id)?,
                            what: format!("it is in `{name}` though its fetch is recorded"),
                        });
                    }
                }
            }
        }
        counts.add(counter::URLS, self.url_index.len() as u64);
        counts.add(counter::DAMAGED, self.damaged.len() as u64);
        Ok(problems)
    }

    /// The counters against the counts.
    fn check_counters(&self, counts: &Counts) -> Result<Vec<Problem>, JournalError> {
        let mut problems = Vec::new();
        for name in counted_names() {
            let stored = read_u64(self.counters.get(name.as_bytes())?)?;
            let counted = counts.values.get(&name).copied().unwrap_or(0);
            if stored != counted {
                problems.push(Problem {
                    id: None,
                    url: None,
                    what: format!("counter `{name}` is {stored}, the journal holds {counted}"),
                });
            }
        }
        Ok(problems)
    }

    /// The self-describing entries of the segments (format 5 on). A stretch of bytes
    /// that is no whole entry, an entry whose header does not decode, or an entry whose
    /// frame disagrees with its page's record is a problem of that page: its body still
    /// reads back, but `webspool recover` could not restore it, so a repair fetches it
    /// again. A damaged stretch that no page uses any more is only counted.
    /// `known` (sorted) are the pages already reported.
    fn check_entries(
        &self,
        end: super::segments::SegmentsEnd,
        known: &[u64],
        report: &mut VerifyReport,
    ) -> Result<Vec<Problem>, JournalError> {
        // (segment, start, end, what), in order; bounded, so memory stays small.
        const MOST_SPANS: usize = 10_000;
        let mut spans: Vec<(u32, u64, u64, String)> = Vec::new();
        // Pages whose entry's frame disagrees with their record (bounded likewise).
        let mut frames: Vec<(u64, String)> = Vec::new();
        let first = self.framed_from()?;
        for number in self.segments.numbers()? {
            if number < first || number > end.segment {
                continue;
            }
            let limit = if number == end.segment {
                end.len
            } else {
                u64::MAX
            };
            self.segments.scan(number, limit, |found| {
                let span = match found {
                    Scanned::Entry {
                        offset,
                        header,
                        body,
                        body_checksum,
                    } => {
                        report.entries += 1;
                        match decode_entry_header(&header) {
                            Ok(entry) => {
                                let what = match frames.len() < MOST_SPANS {
                                    true => self.frame_disagrees(entry.id, body, body_checksum)?,
                                    false => None,
                                };
                                if let Some(what) = what {
                                    frames.push((
                                        entry.id,
                                        format!("its segment entry at offset {offset} of segment {number} {what}"),
                                    ));
                                }
                                return Ok(());
                            }
                            Err(e) => (
                                offset,
                                body.offset + body.len,
                                format!("its segment entry header {e}"),
                            ),
                        }
                    }
                    Scanned::Damage { offset, len } => (
                        offset,
                        offset + len,
                        format!(
                            "its segment entry is damaged ({len} bytes at offset {offset} of \
                             segment {number} are not a whole entry)"
                        ),
                    ),
                };
                if spans.len() < MOST_SPANS {
                    spans.push((number, span.0, span.1, span.2));
                }
                Ok(())
            })?;
        }
        let mut problems = Vec::new();
        for (id, what) in frames {
            if known.binary_search(&id).is_err() {
                problems.push(Problem {
                    id: Some(id),
                    url: self.url_of(id)?,
                    what,
                });
            }
        }
        if spans.is_empty() {
            return Ok(problems);
        }
        let mut used = vec![false; spans.len()];
        for item in self.pages.iter() {
            let (key, record) = item?;
            let id = key_id(&key)?;
            let Ok((_, Some(BodyRef::Checked(stored)))) = decode_page_and_body(&record) else {
                continue;
            };
            let at = stored.at;
            let after = spans.partition_point(|s| (s.0, s.1) <= (at.segment, at.offset));
            let Some(i) = after.checked_sub(1) else {
                continue;
            };
            let (segment, start, stop, what) = &spans[i];
            if *segment != at.segment || at.offset < *start || at.offset >= *stop {
                continue;
            }
            used[i] = true;
            if known.binary_search(&id).is_err() {
                problems.push(Problem {
                    id: Some(id),
                    url: self.url_of(id)?,
                    what: format!(
                        "{what}: its body reads back, but `webspool recover` could not \
                         restore the page"
                    ),
                });
            }
        }
        report.unused_damaged_bytes = spans
            .iter()
            .zip(&used)
            .filter(|(_, used)| !**used)
            .map(|(span, _)| span.2 - span.1)
            .sum();
        Ok(problems)
    }

    /// Why the frame of page `id`'s entry, whose body a scan found at `body` with the
    /// checksum `checksum`, disagrees with the page's record, when the record points at
    /// that body: no checksum covers the frame's body length and body checksum, so a
    /// damaged one is seen only here (a length too long swallows the entries after it,
    /// and the scan never sees them). An entry its page's record no longer points at
    /// (the page was fetched again after a repair) is not compared.
    fn frame_disagrees(
        &self,
        id: u64,
        body: BodyLocation,
        checksum: u64,
    ) -> Result<Option<String>, JournalError> {
        let Some(record) = self.pages.get(id_key(id))? else {
            return Ok(None);
        };
        let Ok((_, Some(BodyRef::Checked(stored)))) = decode_page_and_body(&record) else {
            return Ok(None);
        };
        let same_body = stored.at.segment == body.segment && stored.at.offset == body.offset;
        if !same_body || (stored.at.len == body.len && stored.checksum == checksum) {
            return Ok(None);
        }
        Ok(Some(format!(
            "says its body is {} bytes with checksum {checksum:016x}, the page's record says \
             {} bytes with checksum {:016x}: the entry's frame is damaged (`webspool recover` \
             could not read the pages there)",
            body.len, stored.at.len, stored.checksum
        )))
    }
}

/// The counters that count what the trees hold (the others, such as `checked`, count
/// events): verify compares them and a repair rewrites them.
fn counted_names() -> Vec<String> {
    let mut names: Vec<String> = [
        counter::URLS,
        counter::FETCHED,
        counter::FAILED,
        counter::PENDING_PARSE,
        counter::PARSED,
        counter::PENDING_SYNC,
        counter::RETRY_WAITING,
        counter::RAW_BYTES,
        counter::STORED_BODY_BYTES,
        counter::DAMAGED,
        counter::RECHECKS,
        counter::VERSIONS,
        counter::VERSION_BYTES,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend(
        ErrorKind::ALL
            .iter()
            .map(|kind| format!("{}{}", counter::ERROR_PREFIX, kind.as_str())),
    );
    names
}
