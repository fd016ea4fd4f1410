//! The bodies a compaction copies, a chunk at a time: each page record's kept older
//! versions, oldest first, then its own ([`Journal::live_chunk`]), then the versions of
//! pages without a record ([`Journal::orphan_chunk`]); every body read and checked, a
//! damaged one reported and left where it is.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::{CompactReport, CHUNK_BYTES, CHUNK_DROPPED, CHUNK_PAGES};
use crate::journal::prune::{CompactOptions, Dropped, Tombstone};
use crate::journal::record::{decode_page_parts, id_key, key_id, BodyRef};
use crate::journal::versions::split_version_key;
use crate::journal::{content_hash, decompress_body, entries_after, Journal};
use crate::journal::{JournalError, Outcome, PageMeta, Problem, UrlEntry};

/// A body to copy, and the record that points at it.
pub(super) struct Live {
    pub(super) id: u64,
    /// Where the record is.
    pub(super) slot: Slot,
    /// The record as read: it is rewritten only if it is still this.
    pub(super) record: sled::IVec,
    pub(super) meta: PageMeta,
    pub(super) url: UrlEntry,
    /// The stored (compressed) bytes, checked.
    pub(super) stored: Vec<u8>,
    pub(super) content_hash: u128,
    /// Stored before format 5: no entry described it.
    pub(super) upgraded: bool,
}

/// Where a record to rewrite is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// In `pages`: the page's current version.
    Page,
    /// In `versions`, under the page's id and this time.
    Version(u64),
}

/// What one chunk of a compaction writes.
#[derive(Default)]
pub(super) struct Chunk {
    pub(super) live: Vec<Live>,
    pub(super) dropped: Vec<Dropped>,
    pub(super) tombstones: Vec<Tombstone>,
    /// Stored bytes of `live`.
    pub(super) bytes: usize,
}

/// What a chunk reports and keeps as it goes.
pub(super) struct Left<'a, P> {
    /// The first segment of the new set.
    pub(super) from: u32,
    pub(super) kept: &'a mut Kept,
    pub(super) report: &'a mut CompactReport,
    pub(super) problem: &'a mut P,
}

/// Where the bodies of pages left behind (damaged) are: what must not be deleted.
#[derive(Default)]
pub(super) struct Kept {
    pub(super) segments: BTreeSet<u32>,
    pub(super) bodies_tree: bool,
    /// A record that does not decode: its body may be anywhere below the new set.
    pub(super) anywhere: bool,
}

/// What a page record asks of a compaction.
pub(super) enum Examined {
    /// Nothing to copy: no body, or its body is in the new set already.
    Stays,
    Copy(Box<Live>),
    /// Its body (or record) fails its check.
    Damaged {
        what: String,
        at: Holds,
        slot: Slot,
    },
}

/// Where a damaged page's body is.
pub(super) enum Holds {
    Segment(u32),
    BodiesTree,
    Unknown,
}

impl Journal {
    /// What to write for the page records after `after`: at most [`CHUNK_PAGES`]
    /// records or [`CHUNK_BYTES`] of bodies, each page's kept versions (oldest first)
    /// before its current one, so that a page's entries stay in the order of its
    /// versions. Also the last id read (None: no record was left to read).
    pub(super) fn live_chunk(
        &self,
        after: Option<u64>,
        options: &CompactOptions,
        left: &mut Left<'_, impl FnMut(&Problem)>,
    ) -> Result<(Chunk, Option<u64>), JournalError> {
        let mut chunk = Chunk::default();
        let mut last = None;
        for item in entries_after(&self.pages, after).take(CHUNK_PAGES) {
            let (key, record) = item?;
            let id = key_id(&key)?;
            last = Some(id);
            left.report.pages += 1;
            let gone = self.is_gone(id)?;
            let (kept, dropped) = self.split_versions(id, options.older_kept(gone))?;
            chunk.dropped.extend(dropped);
            for (key, version) in kept.into_iter().rev() {
                let (_, at) = split_version_key(&key)?;
                let examined = self.examine(id, Slot::Version(at), version, left.from)?;
                self.take(id, examined, &mut chunk, left)?;
            }
            let tombstone = match gone && options.drop_gone {
                true => self.tombstone(id, &record)?,
                false => None,
            };
            match tombstone {
                Some(tombstone) => chunk.tombstones.push(tombstone),
                None => {
                    let examined = self.examine(id, Slot::Page, record, left.from)?;
                    self.take(id, examined, &mut chunk, left)?;
                }
            }
            if chunk.bytes >= CHUNK_BYTES || chunk.dropped.len() >= CHUNK_DROPPED {
                break;
            }
        }
        Ok((chunk, last))
    }

    /// What to write for the versions after `after` whose page has no record: each is
    /// kept (its page waits to be fetched again). Also the last key read.
    pub(super) fn orphan_chunk(
        &self,
        after: Option<&sled::IVec>,
        left: &mut Left<'_, impl FnMut(&Problem)>,
    ) -> Result<(Chunk, Option<sled::IVec>), JournalError> {
        let mut chunk = Chunk::default();
        let mut last = None;
        let versions = match after {
            None => self.versions.iter(),
            Some(key) => self
                .versions
                .range::<&sled::IVec, _>((Bound::Excluded(key), Bound::Unbounded)),
        };
        for item in versions.take(CHUNK_PAGES) {
            let (key, version) = item?;
            last = Some(key.clone());
            let (id, at) = split_version_key(&key)?;
            if self.pages.contains_key(id_key(id))? {
                continue;
            }
            let examined = self.examine(id, Slot::Version(at), version, left.from)?;
            self.take(id, examined, &mut chunk, left)?;
            if chunk.bytes >= CHUNK_BYTES {
                break;
            }
        }
        Ok((chunk, last))
    }

    /// Adds what a record asks of the compaction to `chunk`; a damaged page (or
    /// version) is reported, a damaged page recorded, and the segment its body lies in
    /// kept.
    pub(super) fn take(
        &self,
        id: u64,
        examined: Examined,
        chunk: &mut Chunk,
        left: &mut Left<'_, impl FnMut(&Problem)>,
    ) -> Result<(), JournalError> {
        match examined {
            Examined::Stays => {}
            Examined::Copy(body) => {
                chunk.bytes += body.stored.len();
                chunk.live.push(*body);
            }
            Examined::Damaged { what, at, slot } => {
                match at {
                    Holds::Segment(number) => {
                        left.kept.segments.insert(number);
                    }
                    Holds::BodiesTree => left.kept.bodies_tree = true,
                    Holds::Unknown => left.kept.anywhere = true,
                }
                left.report.damaged += 1;
                let what = match slot {
                    Slot::Page => {
                        self.record_damage(id, &what)?;
                        what
                    }
                    Slot::Version(at) => format!("its older version of {at} (ms): {what}"),
                };
                (left.problem)(&Problem {
                    id: Some(id),
                    url: self.url_of(id)?,
                    what,
                });
            }
        }
        Ok(())
    }

    /// What a record of page `id` (at `slot`) asks of a compaction whose new set
    /// starts at `from`. A body of format 5 is checked against its checksum; an older
    /// one (which has none) must decompress to the length its record says, and gets its
    /// content hash. A version's body is always in a format-5 entry.
    pub(super) fn examine(
        &self,
        id: u64,
        slot: Slot,
        record: sled::IVec,
        from: u32,
    ) -> Result<Examined, JournalError> {
        let damaged = |what: String, at: Holds| Ok(Examined::Damaged { what, at, slot });
        let (meta, body, url) = match decode_page_parts(&record) {
            Ok(parts) => parts,
            Err(e) => return damaged(e.to_string(), Holds::Unknown),
        };
        if slot != Slot::Page && !matches!(body, Some(BodyRef::Checked(_))) {
            return damaged("it has no body in a segment entry".into(), Holds::Unknown);
        }
        let Outcome::Response { body_len, .. } = meta.outcome else {
            return Ok(Examined::Stays);
        };
        let (read, at) = match body {
            Some(BodyRef::Checked(stored)) if stored.at.segment >= from => {
                return Ok(Examined::Stays)
            }
            Some(BodyRef::Unchecked(at)) if at.segment >= from => return Ok(Examined::Stays),
            Some(BodyRef::Checked(stored)) => (
                self.segments.read_checked(stored.at, stored.checksum),
                Holds::Segment(stored.at.segment),
            ),
            Some(BodyRef::Unchecked(at)) => (self.segments.read(at), Holds::Segment(at.segment)),
            None => match self.bodies.get(id_key(id))? {
                None => return Ok(Examined::Stays),
                Some(bytes) => (Ok(bytes.to_vec()), Holds::BodiesTree),
            },
        };
        let stored = match read {
            Ok(stored) => stored,
            Err(JournalError::Damaged { what }) => return damaged(what, at),
            Err(e) => return Err(e),
        };
        let (hash, upgraded) = match body {
            Some(BodyRef::Checked(checked)) => (checked.content_hash, false),
            _ => match decompress_body(id, &stored) {
                Ok(decoded) if decoded.len() as u64 == body_len => (content_hash(&decoded), true),
                Ok(decoded) => {
                    let what = format!(
                        "its body decompresses to {} bytes, its record says {body_len}",
                        decoded.len()
                    );
                    return damaged(what, at);
                }
                Err(e) => return damaged(e.to_string(), at),
            },
        };
        let url = match url {
            Some(url) => url,
            None => match self.older_url(id)? {
                Some(url) => url,
                None => return damaged("its URL record is missing".into(), at),
            },
        };
        Ok(Examined::Copy(Box::new(Live {
            id,
            slot,
            record,
            meta,
            url,
            stored,
            content_hash: hash,
            upgraded,
        })))
    }
}
