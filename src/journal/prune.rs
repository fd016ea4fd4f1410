//! What a compaction drops besides unused bytes: the versions of a page beyond
//! `--keep-versions`, and with `--drop-gone` what a page a recrawl found gone still
//! keeps (its last good body, its versions, its annotation). It must never drop a
//! page's current version of a page that is not gone, nor leave a record pointing at
//! bytes that the retirement of the old segments deletes.
//!
//! A dropped gone page keeps a page record, the *tombstone*: a `V4` record without a
//! body whose fetch result is a `410` response of no bytes, at the time of the check
//! that found the page gone, with the page's URL record. So its URL stays known (a
//! follow crawl that finds a link to it again adds nothing), its schedule stays (a
//! recrawl checks it at its interval: a 404 or 410 again is unchanged, a page that came
//! back is a new version), parse and reparse skip it, `verify` expects no body, and it
//! is queued for sync, so MySQL's row becomes the tombstone (no body, no links, its
//! `gone_at` kept) instead of keeping the body that is gone.

use sled::IVec;

use super::record::key_id;
use super::record::{decode, decode_page_parts, encode_page, id_key, BodyRef, PageRecord};
use super::recrawl::decode_schedule;
use super::versions::{as_version, split_version_key};
use super::{Journal, JournalError, KeptHeaders, Outcome, PageMeta};

/// What a compaction keeps besides the current version of each page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactOptions {
    /// Versions kept per page, its current one included (at least 1: older versions
    /// are all dropped).
    pub keep_versions: u64,
    /// Pages a recrawl found gone (404, 410) lose their body, versions and annotation
    /// (see the module doc).
    pub drop_gone: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            keep_versions: 1,
            drop_gone: false,
        }
    }
}

impl CompactOptions {
    /// The older versions kept of a page (gone: `gone`, and `--drop-gone`).
    pub(super) fn older_kept(&self, gone: bool) -> u64 {
        if gone && self.drop_gone {
            0
        } else {
            self.keep_versions.saturating_sub(1)
        }
    }
}

/// A gone page's record to replace with its tombstone, and what it took from the
/// counters.
pub(super) struct Tombstone {
    pub id: u64,
    /// The record as read: it is replaced only if it is still this.
    pub record: IVec,
    pub tombstone: Vec<u8>,
    /// Its body's decoded and stored bytes.
    pub raw: u64,
    pub stored: u64,
}

/// A `versions` key and its record.
pub(super) type KeyRecord = (IVec, IVec);

/// A version record to remove, and its stored bytes.
pub(super) struct Dropped {
    pub key: IVec,
    pub record: IVec,
    pub stored: u64,
}

/// Whether a page record is a dropped gone page's tombstone: no body to read, parse or
/// check.
pub(crate) fn is_tombstone(record: &[u8]) -> bool {
    matches!(
        decode("pages", record),
        Ok(PageRecord::V4 {
            meta: PageMeta {
                outcome: Outcome::Response { .. },
                ..
            },
            body: None,
            ..
        })
    )
}

impl Journal {
    /// Whether a recrawl's last check of page `id` found it gone.
    pub(super) fn is_gone(&self, id: u64) -> Result<bool, JournalError> {
        match self.schedule.get(id_key(id))? {
            Some(bytes) => Ok(decode_schedule(&bytes)?.gone),
            None => Ok(false),
        }
    }

    /// The tombstone of gone page `id` whose record is `record`, if it still has a body
    /// to drop (a record that does not decode is left to the copy, which reports it).
    pub(super) fn tombstone(
        &self,
        id: u64,
        record: &IVec,
    ) -> Result<Option<Tombstone>, JournalError> {
        let Ok((meta, body, url)) = decode_page_parts(record) else {
            return Ok(None);
        };
        let Outcome::Response {
            body_len,
            version,
            final_url,
            ..
        } = &meta.outcome
        else {
            return Ok(None);
        };
        let stored = match body {
            Some(BodyRef::Checked(stored)) => stored.at.len,
            Some(BodyRef::Unchecked(at)) => at.len,
            None => match self.bodies.get(id_key(id))? {
                Some(bytes) => bytes.len() as u64,
                // A tombstone already, or a page without a body.
                None => return Ok(None),
            },
        };
        let Some(url) = url.map_or_else(|| self.older_url(id), |url| Ok(Some(url)))? else {
            return Ok(None);
        };
        let gone = PageMeta {
            fetched_at_ms: self.schedule_of(id, &meta)?.checked_at_ms,
            duration_ms: 0,
            redirects: Vec::new(),
            outcome: Outcome::Response {
                status: 410,
                version: version.clone(),
                final_url: final_url.clone(),
                headers: KeptHeaders::default(),
                body_len: 0,
            },
        };
        Ok(Some(Tombstone {
            id,
            record: record.clone(),
            tombstone: encode_page(&gone, None, &url)?,
            raw: *body_len,
            stored,
        }))
    }

    /// The versions of page `id`, newest first, split at `keep`: those kept (key and
    /// record) and those dropped.
    pub(super) fn split_versions(
        &self,
        id: u64,
        keep: u64,
    ) -> Result<(Vec<KeyRecord>, Vec<Dropped>), JournalError> {
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        for item in self.versions.scan_prefix(id_key(id)).rev() {
            let (key, record) = item?;
            if (kept.len() as u64) < keep {
                kept.push((key, record));
            } else {
                let stored = as_version(&record).map_or(0, |(_, stored)| stored);
                dropped.push(Dropped {
                    key,
                    record,
                    stored,
                });
            }
        }
        Ok((kept, dropped))
    }

    /// Whether a compaction with `options` has versions or gone pages to drop: a scan
    /// of `versions` newest first, and of the schedules of gone pages.
    pub(super) fn has_drops(&self, options: &CompactOptions) -> Result<bool, JournalError> {
        let mut last = None;
        let mut seen = 0;
        for item in self.versions.iter().rev() {
            let (key, _) = item?;
            let (id, _) = split_version_key(&key)?;
            if last != Some(id) {
                last = Some(id);
                seen = 0;
            }
            seen += 1;
            // A page without a record keeps its versions (`Journal::orphan_chunk`).
            if seen > options.older_kept(self.is_gone(id)?)
                && self.pages.contains_key(id_key(id))?
            {
                return Ok(true);
            }
        }
        if !options.drop_gone {
            return Ok(false);
        }
        for item in self.schedule.iter() {
            let (key, bytes) = item?;
            if decode_schedule(&bytes)?.gone {
                if let Some(record) = self.pages.get(&key)? {
                    if self.tombstone(key_id(&key)?, &record)?.is_some() {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}
