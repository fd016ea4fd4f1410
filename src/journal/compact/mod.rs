//! `webspool compact`: the space of body bytes that no page record uses any more (the
//! older versions of a page it drops, a page fetched again after `verify --repair`,
//! damaged stretches, dropped pages) given back, and older bodies upgraded to
//! self-describing entries on the way. It must never delete a segment file that a
//! record may point into, nor point a record at bytes that are not synced.
//!
//! Every live body (each page record's, in id order, a chunk at a time) is read,
//! checked, and copied into new segments, numbered after every segment written so far,
//! as a format-5 entry; the chunk's page records are rewritten to point there in the
//! transaction that records the new `segments_end`. Once every record points into the
//! new segments, the old segment files are deleted and the `bodies` tree cleared.
//! Bodies of formats 2 to 4 (bare in a segment, or in `bodies`) become entries too, so
//! that `recover` can restore their pages afterwards.
//!
//! While it runs, the default tree holds `compact` (a versioned [`CompactState`]): the
//! first segment of the new set. It is written, with a `segments_end` at the start of
//! that segment, and flushed before anything is copied, and removed once the old
//! segments are gone. So a kill at any moment leaves records that point either at old
//! bytes, which are deleted only after a flush made every record point elsewhere, or at
//! new bytes, synced before the transaction that records them; bytes appended and not
//! recorded are cut off when the journal is next opened. Run again, `compact` finds the
//! state, copies what is still below the new set, and deletes what is left of the old.
//!
//! A journal whose segments hold nothing but live entries, no body stored before
//! format 5, and nothing the flags drop, is left as it is ([`Journal::unused_bytes`],
//! [`Journal::has_drops`]): a second run in a row does nothing.
//!
//! A body that fails its check is not copied: the page is reported (and recorded in
//! `damaged`) and left for `verify --repair`, and the old segment it lies in is kept,
//! with the state, until a later run finds nothing pointing there.
//!
//! The list of bodies to copy is built by [`Journal::live_chunk`]: for each page
//! record, the bodies of the older versions `--keep-versions` keeps (`versions.rs`),
//! oldest first, then the page's own, so that a page's entries stay in the order of its
//! versions; then ([`Journal::orphan_chunk`]) the versions of pages without a record
//! (put back to be fetched again by `verify --repair`), all kept. The records of the
//! versions beyond `--keep-versions`, and with `--drop-gone` the bodies of gone pages
//! (`prune.rs`), are removed in the transaction that rewrites the chunk's records, so
//! they go before the retirement deletes their bytes, and a kill leaves each version
//! either kept (pointing at old bytes, or at new synced ones) or dropped. A version
//! whose body fails its check is reported as its page's older version and kept with its
//! segment, as a damaged page is (but not recorded as the page's damage); `verify
//! --repair` drops it. A resumed compaction applies its own flags: a version that the
//! interrupted run copied and this one drops leaves its bytes in the new set until the
//! next compaction.

mod chunk;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::prune::CompactOptions;
use super::record::{decode, decode_page_parts, encode, encode_entry_header, encode_page};
use super::record::{encode_segments_end, id_key, key_id, BodyRef, StoredBody};
use super::segments::{Entry, SegmentsEnd, FRAME_BYTES};
use super::sync::mark_for_sync;
use super::versions::{count_version, split_version_key, version_key};
use super::{
    bump, counter, flatten, DiskFull, Journal, JournalError, MinFree, Problem, SEGMENTS_END,
};
use chunk::{Chunk, Kept, Left, Slot};

/// Key in the default tree while a compaction is under way.
const COMPACT: &str = "compact";
/// Page records read per chunk, at most.
const CHUNK_PAGES: usize = 256;
/// Stored bytes copied per chunk, at most (a larger body still goes alone).
const CHUNK_BYTES: usize = 32 * 1024 * 1024;
/// Version records dropped per chunk, at most (a page's all go in the chunk of its
/// record, so a page with more still goes alone).
const CHUNK_DROPPED: usize = 8192;

/// A compaction under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CompactState {
    /// The first segment of the compacted set: bodies below it are copied, and the
    /// segments below it deleted once no record points into them.
    pub from: u32,
}

/// Versioned envelope of [`CompactState`] under `compact` in the default tree.
#[derive(Serialize, Deserialize)]
enum CompactRecord {
    V1(CompactState),
}

pub(crate) fn encode_compact(state: CompactState) -> Result<Vec<u8>, JournalError> {
    encode(&CompactRecord::V1(state))
}

pub(crate) fn decode_compact(bytes: &[u8]) -> Result<CompactState, JournalError> {
    let CompactRecord::V1(state) = decode("default (compact)", bytes)?;
    Ok(state)
}

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Page records read.
    pub pages: u64,
    /// Bodies copied into the new segments (older versions' among them).
    pub moved: u64,
    /// Their stored (compressed) bytes.
    pub moved_bytes: u64,
    /// Of those, bodies stored before format 5 (bare, or in the `bodies` tree), now
    /// self-describing entries.
    pub upgraded: u64,
    /// Pages whose body (or an older version's) failed its check: left where they
    /// are, for `verify --repair`.
    pub damaged: u64,
    /// Older versions dropped (beyond `--keep-versions`, or of dropped gone pages).
    pub versions_dropped: u64,
    /// Gone pages whose body was dropped (`--drop-gone`).
    pub gone_dropped: u64,
    /// Old segment files deleted.
    pub retired: u64,
    /// Old segment files kept because a damaged page still points into them.
    pub kept: Vec<u32>,
    /// The run went on with a compaction that an earlier run left unfinished.
    pub resumed: bool,
    /// Every byte of the segments belonged to a live entry and no body was stored the
    /// old way: nothing was done.
    pub nothing_to_reclaim: bool,
    /// `status`'s `disk_bytes` before and after.
    pub disk_before: u64,
    pub disk_after: u64,
    /// Less than `--min-free` was free: the compaction stopped before its next chunk,
    /// with what it had copied flushed; run again, it goes on.
    pub disk_full: Option<DiskFull>,
}

/// What a chunk's transaction did.
#[derive(Default)]
struct Done {
    /// Stored bytes of each body moved, and whether it was upgraded.
    moved: Vec<(u64, bool)>,
    versions_dropped: u64,
    gone_dropped: u64,
}

/// The watermark's verdict: `Some` when less than it is free.
fn below(space: &MinFree) -> Result<Option<DiskFull>, JournalError> {
    match space.check() {
        Ok(()) => Ok(None),
        Err(JournalError::DiskFull(full)) => Ok(Some(full)),
        Err(e) => Err(e),
    }
}

impl Journal {
    /// Copies every live body below a new set of segments into it (the current version
    /// of each page and the older versions `options` keeps), drops what `options` drops,
    /// then deletes the old segments (see the module doc). Each damaged page is handed
    /// to `problem`, the page records read so far to `progress`. `space` is checked
    /// before the compaction starts and before each chunk: below it, the compaction
    /// stops there.
    pub fn compact(
        &self,
        options: &CompactOptions,
        space: &MinFree,
        mut problem: impl FnMut(&Problem),
        mut progress: impl FnMut(u64),
    ) -> Result<CompactReport, JournalError> {
        self.check_writable()?;
        let mut report = CompactReport {
            disk_before: self.status()?.disk_bytes,
            ..CompactReport::default()
        };
        let from = match self.compact_state()? {
            Some(state) => {
                report.resumed = true;
                state.from
            }
            None if !self.has_drops(options)? && self.unused_bytes()? == Some(0) => {
                report.nothing_to_reclaim = true;
                report.disk_after = report.disk_before;
                return Ok(report);
            }
            None => {
                if let Some(full) = below(space)? {
                    report.disk_full = Some(full);
                    report.disk_after = report.disk_before;
                    return Ok(report);
                }
                self.begin_compaction()?
            }
        };
        let mut kept = Kept::default();
        // The pages, each with its versions; then the versions of pages without a
        // record (put back to be fetched again by `verify --repair`), all kept.
        let (mut after, mut after_orphan) = (None, None);
        let mut orphans = false;
        loop {
            if let Some(full) = below(space)? {
                report.disk_full = Some(full);
                break;
            }
            let mut left = Left {
                from,
                kept: &mut kept,
                report: &mut report,
                problem: &mut problem,
            };
            let chunk = if orphans {
                let (chunk, last) = self.orphan_chunk(after_orphan.as_ref(), &mut left)?;
                let Some(last) = last else { break };
                after_orphan = Some(last);
                chunk
            } else {
                let (chunk, last) = self.live_chunk(after, options, &mut left)?;
                match last {
                    Some(last) => after = Some(last),
                    None => {
                        orphans = true;
                        continue;
                    }
                }
                chunk
            };
            self.commit_chunk(chunk, &mut report)?;
            progress(report.pages);
        }
        self.flush_blocking()?;
        if report.disk_full.is_none() {
            self.retire(from, &kept, &mut report)?;
        }
        report.disk_after = self.status()?.disk_bytes;
        Ok(report)
    }

    /// The compaction under way, if any.
    pub(super) fn compact_state(&self) -> Result<Option<CompactState>, JournalError> {
        self.db
            .get(COMPACT)?
            .map(|bytes| decode_compact(&bytes))
            .transpose()
    }

    /// The bytes of the segments that no live entry holds, when a compaction would do
    /// nothing else than give them back (every version kept: see
    /// [`Journal::has_drops`]); None when it has more to do (a body stored before
    /// format 5 to upgrade, a record that does not decode to report). Reads
    /// records, not bodies: a live entry's size is its frame, its header (encoded again
    /// from the record, which holds what the entry's header does) and its body.
    fn unused_bytes(&self) -> Result<Option<u64>, JournalError> {
        if !self.bodies.is_empty() {
            return Ok(None);
        }
        let mut live = 0;
        for item in self.pages.iter() {
            let (key, record) = item?;
            let Ok((meta, body, url)) = decode_page_parts(&record) else {
                return Ok(None);
            };
            match (body, url) {
                (None, _) => {}
                (Some(BodyRef::Checked(stored)), Some(url)) => {
                    let id = key_id(&key)?;
                    let header = encode_entry_header(id, &url, &meta, stored.content_hash)?;
                    live += FRAME_BYTES + header.len() as u64 + stored.at.len;
                }
                (Some(_), _) => return Ok(None),
            }
        }
        for item in self.versions.iter() {
            let (key, record) = item?;
            let (id, _) = split_version_key(&key)?;
            let Ok((meta, Some(BodyRef::Checked(stored)), Some(url))) = decode_page_parts(&record)
            else {
                return Ok(None);
            };
            let header = encode_entry_header(id, &url, &meta, stored.content_hash)?;
            live += FRAME_BYTES + header.len() as u64 + stored.at.len;
        }
        Ok(self.segments.size_on_disk()?.checked_sub(live))
    }

    /// Records a new compaction whose set starts at the segment after the last one,
    /// with the segments' end at its start, flushed; returns that segment.
    fn begin_compaction(&self) -> Result<u32, JournalError> {
        let end = self.segments_end()?;
        let from = end
            .segment
            .checked_add(1)
            .ok_or_else(|| JournalError::Segments("no segment number is left".into()))?;
        let start = SegmentsEnd {
            segment: from,
            len: 0,
        };
        let mut batch = sled::Batch::default();
        batch.insert(SEGMENTS_END, encode_segments_end(start)?);
        batch.insert(COMPACT, encode_compact(CompactState { from })?);
        self.guarded(|| {
            self.db.apply_batch(batch)?;
            Ok(())
        })?;
        self.flush_blocking()?;
        self.segments.start_segment(from);
        Ok(from)
    }

    /// Appends the chunk's bodies as entries (synced), then, in one transaction with
    /// the new segments end, points their records there, removes the dropped versions'
    /// records and writes the tombstones (see `prune.rs`). A record of the format-2 or
    /// format-3 era also leaves `bodies` and `urls`, whose content the new record and
    /// entry now hold. Nothing else writes while `compact` holds the journal; a record
    /// is rewritten or removed only if it is still the one read all the same, so that it
    /// is never replaced by a stale one.
    fn commit_chunk(&self, chunk: Chunk, report: &mut CompactReport) -> Result<(), JournalError> {
        let Chunk {
            live,
            dropped,
            tombstones,
            ..
        } = chunk;
        if live.is_empty() && dropped.is_empty() && tombstones.is_empty() {
            return Ok(());
        }
        let done = self.guarded(|| {
            let headers = live
                .iter()
                .map(|l| encode_entry_header(l.id, &l.url, &l.meta, l.content_hash))
                .collect::<Result<Vec<_>, _>>()?;
            let entries: Vec<Entry<'_>> = live
                .iter()
                .zip(&headers)
                .map(|(l, header)| Entry {
                    header,
                    body: &l.stored,
                })
                .collect();
            let (appended, end) = self.segments.append(&entries)?;
            let records = live
                .iter()
                .zip(&appended)
                .map(|(l, a)| {
                    let body = StoredBody {
                        at: a.at,
                        checksum: a.checksum,
                        content_hash: l.content_hash,
                    };
                    encode_page(&l.meta, Some(body), &l.url)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let end = encode_segments_end(end)?;
            let trees = (
                &self.pages,
                &*self.db,
                &self.bodies,
                &self.urls,
                &self.versions,
                &self.counters,
                &self.annotations,
                &self.pending_parse,
                &self.sync_queue,
                &self.sync_seq,
                &self.damaged,
            );
            let result = trees.transaction(
                |(
                    pages,
                    meta,
                    bodies,
                    urls,
                    versions,
                    counters,
                    annotations,
                    pending,
                    queue,
                    seqs,
                    damaged,
                )| {
                    let mut done = Done::default();
                    let mut deltas = BTreeMap::new();
                    meta.insert(SEGMENTS_END, end.as_slice())?;
                    for (l, record) in live.iter().zip(&records) {
                        let key = id_key(l.id);
                        match l.slot {
                            Slot::Page => {
                                if pages.get(key)?.as_ref() != Some(&l.record) {
                                    continue;
                                }
                                pages.insert(&key, record.as_slice())?;
                                bodies.remove(&key)?;
                                urls.remove(&key)?;
                            }
                            Slot::Version(at) => {
                                let key = version_key(l.id, at);
                                if versions.get(key)?.as_ref() != Some(&l.record) {
                                    continue;
                                }
                                versions.insert(&key, record.as_slice())?;
                            }
                        }
                        done.moved.push((l.stored.len() as u64, l.upgraded));
                    }
                    for d in &dropped {
                        if versions.get(&d.key)?.as_ref() == Some(&d.record) {
                            versions.remove(&d.key)?;
                            count_version(d.stored, -1, &mut deltas);
                            done.versions_dropped += 1;
                        }
                    }
                    for t in &tombstones {
                        let key = id_key(t.id);
                        if pages.get(key)?.as_ref() != Some(&t.record) {
                            continue;
                        }
                        pages.insert(&key, t.tombstone.as_slice())?;
                        bodies.remove(&key)?;
                        urls.remove(&key)?;
                        let mut less = |name: &str, n: i64| {
                            *deltas.entry(name.to_string()).or_default() -= n;
                        };
                        less(counter::RAW_BYTES, t.raw as i64);
                        less(counter::STORED_BODY_BYTES, t.stored as i64);
                        if annotations.remove(&key)?.is_some() {
                            less(counter::PARSED, 1);
                        }
                        if pending.remove(&key)?.is_some() {
                            less(counter::PENDING_PARSE, 1);
                        }
                        if damaged.remove(&key)?.is_some() {
                            less(counter::DAMAGED, 1);
                        }
                        mark_for_sync(meta, queue, seqs, &key, &mut deltas)?;
                        done.gone_dropped += 1;
                    }
                    bump(counters, &deltas)?;
                    Ok(done)
                },
            );
            flatten(result)
        })?;
        for (bytes, upgraded) in done.moved {
            report.moved += 1;
            report.moved_bytes += bytes;
            report.upgraded += u64::from(upgraded);
        }
        report.versions_dropped += done.versions_dropped;
        report.gone_dropped += done.gone_dropped;
        Ok(())
    }

    /// After a flush that made every record (but the damaged pages') point into the new
    /// set: deletes the old segments nothing points into, clears `bodies` if nothing
    /// needs it, and ends the compaction if nothing old is left.
    fn retire(
        &self,
        from: u32,
        kept: &Kept,
        report: &mut CompactReport,
    ) -> Result<(), JournalError> {
        for number in self.segments.numbers()? {
            if number >= from {
                break;
            }
            if kept.anywhere || kept.segments.contains(&number) {
                report.kept.push(number);
            } else {
                self.guarded(|| self.segments.remove(number))?;
                report.retired += 1;
            }
        }
        let holding = kept.anywhere || kept.bodies_tree;
        self.guarded(|| {
            if !holding {
                self.bodies.clear()?;
            }
            if !holding && report.kept.is_empty() {
                self.db.remove(COMPACT)?;
            }
            Ok(())
        })?;
        self.flush_blocking()
    }
}
