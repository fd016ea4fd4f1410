//! Sitemap hints for recrawl: a sitemap's `<lastmod>` and `<changefreq>` of a page the
//! journal knows, kept in the `hints` tree by the page's id, written in the parse
//! transaction of the sitemap that gave them (`parse.rs`); a later parse of a sitemap
//! that lists the page replaces them. A recrawl reads them when it decides what is due
//! (`recrawl.rs`): a changefreq shortens the page's interval (never below the policy's
//! minimum), a lastmod after the page's last check makes it due now. A lastmod later
//! than the parse that recorded it is not kept: a sitemap that claims the future would
//! otherwise make its pages due at every recrawl.

use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;

use super::record::{decode, encode, id_key, key_id};
use super::{Journal, JournalError, TxResult};

/// What a sitemap said of one of its URLs, as times in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hint {
    /// The URL as the sitemap gave it (resolved, not yet normalized).
    pub url: String,
    pub lastmod_ms: Option<u64>,
    /// `always` is 0: the policy's minimum.
    pub changefreq_ms: Option<u64>,
}

/// A hint as stored, under its page's id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredHint {
    pub lastmod_ms: Option<u64>,
    pub changefreq_ms: Option<u64>,
}

/// Versioned envelope of [`StoredHint`] in the `hints` tree.
#[derive(Serialize, Deserialize)]
enum HintRecord {
    V1(StoredHint),
}

pub(crate) fn encode_hint(hint: StoredHint) -> Result<Vec<u8>, JournalError> {
    encode(&HintRecord::V1(hint))
}

pub(crate) fn decode_hint(bytes: &[u8]) -> Result<StoredHint, JournalError> {
    let HintRecord::V1(hint) = decode("hints", bytes)?;
    Ok(hint)
}

/// Records `hints` of pages the journal knows (inside the parse transaction, after the
/// URLs it adds): each URL normalized and looked up in `index`.
pub(super) fn record_hints(
    index: &TransactionalTree,
    tree: &TransactionalTree,
    hints: &[Hint],
    now_ms: u64,
) -> TxResult<()> {
    for hint in hints {
        let Ok(url) = crate::urls::normalize(&hint.url) else {
            continue;
        };
        let Some(id) = index.get(url.as_str().as_bytes())? else {
            continue;
        };
        let stored = StoredHint {
            lastmod_ms: hint.lastmod_ms.filter(|&at| at <= now_ms),
            changefreq_ms: hint.changefreq_ms,
        };
        if stored == StoredHint::default() {
            continue;
        }
        match encode_hint(stored) {
            Ok(bytes) => tree.insert(&id, bytes)?,
            Err(e) => return super::abort(e),
        };
    }
    Ok(())
}

impl Journal {
    /// The sitemap hint of page `id`, if a sitemap gave one.
    pub(crate) fn hint(&self, id: u64) -> Result<Option<StoredHint>, JournalError> {
        self.hints
            .get(id_key(id))?
            .map(|bytes| decode_hint(&bytes))
            .transpose()
    }

    /// Every hint's key and whether it decodes, for `verify`.
    pub(super) fn undecodable_hints(&self) -> Result<Vec<(u64, String)>, JournalError> {
        let mut bad = Vec::new();
        for item in self.hints.iter() {
            let (key, value) = item?;
            if let Err(e) = decode_hint(&value) {
                bad.push((key_id(&key)?, e.to_string()));
            }
        }
        Ok(bad)
    }
}
