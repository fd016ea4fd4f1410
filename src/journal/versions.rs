//! Older versions of recrawled pages, kept addressable until `compact` drops them.
//!
//! When a recrawl check finds a page changed, the record of its stored version moves
//! from `pages` into `versions`, keyed by the page's id and that version's fetch time
//! (both `u64` BE, so a page's versions are together, oldest first), in the transaction
//! that records the new version (`fetch.rs`): a kill leaves both or neither. The value
//! is the page record as it was in `pages` (`PageRecord::V4`: fetch result, where its
//! body is with its checksum and content hash, and the URL's record), so the version's
//! body stays in its segment entry, written when that version was fetched, and reads
//! back checked like a page's. Only a response with a body in a segment entry (format 5
//! on) is kept as a version; anything else is replaced as before.
//!
//! `compact --keep-versions N` keeps the newest N-1 versions of each page (with its
//! current one, N) and drops the records of the older ones, whose bytes go with the old
//! segments; `verify` reads every version's body and checks it as a page's, and counts
//! them (`versions`, `version_bytes`); `recover` makes a page's newest entry its page
//! record and its older entries its versions. This must never hold a version whose body
//! is not in a segment entry: nothing else keeps a version's bytes alive.

use std::collections::BTreeMap;

use sled::transaction::TransactionalTree;

use super::record::{decode_page_and_body, id_key, key_id, BodyRef};
use super::{abort, counter, decompress_body, Journal, JournalError, Outcome, PageMeta, TxResult};

/// A free key is looked for this many milliseconds on from a version's fetch time.
const MOST_TRIES: u64 = 1000;

/// The key of the version of page `id` fetched at `fetched_at_ms`.
pub(crate) fn version_key(id: u64, fetched_at_ms: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&id_key(id));
    key[8..].copy_from_slice(&fetched_at_ms.to_be_bytes());
    key
}

/// The page id and fetch time of a `versions` key.
pub(crate) fn split_version_key(key: &[u8]) -> Result<(u64, u64), JournalError> {
    if key.len() != 16 {
        return Err(JournalError::Damaged {
            what: format!("version key of {} bytes, expected 16", key.len()),
        });
    }
    Ok((key_id(&key[..8])?, key_id(&key[8..])?))
}

/// What a page record keeps as a version: its fetch time and stored body bytes, if it
/// is a response whose body is in a segment entry.
pub(crate) fn as_version(record: &[u8]) -> Option<(u64, u64)> {
    match decode_page_and_body(record).ok()? {
        (
            meta @ PageMeta {
                outcome: Outcome::Response { .. },
                ..
            },
            Some(BodyRef::Checked(stored)),
        ) => Some((meta.fetched_at_ms, stored.at.len)),
        _ => None,
    }
}

/// Adds a version's part to (`sign` 1) or takes it out of (`sign` -1) the counters.
pub(crate) fn count_version(stored: u64, sign: i64, deltas: &mut BTreeMap<String, i64>) {
    *deltas.entry(counter::VERSIONS.into()).or_default() += sign;
    *deltas.entry(counter::VERSION_BYTES.into()).or_default() += sign * stored as i64;
}

/// Keeps the page record `old` of page `id`, being replaced, as a version (inside a
/// transaction), if it is one ([`as_version`]). Two versions fetched in the same
/// millisecond (a clock set back) take the next free key.
pub(crate) fn keep_version(
    versions: &TransactionalTree,
    id: u64,
    old: &[u8],
    deltas: &mut BTreeMap<String, i64>,
) -> TxResult<()> {
    let Some((at, stored)) = as_version(old) else {
        return Ok(());
    };
    for at in at..at.saturating_add(MOST_TRIES) {
        let key = version_key(id, at);
        if versions.get(key)?.is_none() {
            versions.insert(&key, old)?;
            count_version(stored, 1, deltas);
            return Ok(());
        }
    }
    abort(JournalError::Damaged {
        what: format!("page {id} has {MOST_TRIES} versions fetched in the same second"),
    })
}

/// An older version of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Its key among the page's versions: when it was fetched (or the next free
    /// millisecond).
    pub key_ms: u64,
    pub meta: PageMeta,
}

impl Journal {
    /// The older versions of page `id` that the journal keeps, oldest first.
    pub fn versions(&self, id: u64) -> Result<Vec<Version>, JournalError> {
        self.versions
            .scan_prefix(id_key(id))
            .map(|item| {
                let (key, record) = item?;
                let (_, key_ms) = split_version_key(&key)?;
                let (meta, _) =
                    decode_page_and_body(&record).map_err(|e| self.page_damaged(id, e))?;
                Ok(Version { key_ms, meta })
            })
            .collect()
    }

    /// The body of the version of page `id` kept under `key_ms`, exactly as received
    /// after content-decoding; checked against its checksum.
    pub fn version_body(&self, id: u64, key_ms: u64) -> Result<Option<Vec<u8>>, JournalError> {
        let Some(record) = self.versions.get(version_key(id, key_ms))? else {
            return Ok(None);
        };
        let (_, body) = decode_page_and_body(&record).map_err(|e| self.page_damaged(id, e))?;
        let Some(BodyRef::Checked(stored)) = body else {
            return Err(self.page_damaged(
                id,
                JournalError::Damaged {
                    what: "a version without a body in a segment entry".into(),
                },
            ));
        };
        let compressed = self
            .segments
            .read_checked(stored.at, stored.checksum)
            .map_err(|e| self.page_damaged(id, e))?;
        decompress_body(id, &compressed)
            .map(Some)
            .map_err(|e| self.page_damaged(id, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_sort_by_page_then_time() {
        let keys = [
            version_key(1, 5),
            version_key(1, 700),
            version_key(2, 1),
            version_key(256, 0),
        ];
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(split_version_key(&keys[1]).unwrap(), (1, 700));
        assert!(split_version_key(&[0; 8]).is_err());
    }
}
