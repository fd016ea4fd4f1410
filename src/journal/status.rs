//! `status`: the journal's counters as of one moment, and its sizes.
//!
//! The counters live in the `counters` tree and move in the same transactions as the
//! records they count, so a reader that takes them in one transaction sees a state that
//! some commit left: what the crawl's "is anything left?" check relies on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rules::StoredRules;
use super::sync::LastSync;
use super::{abort, flatten, read_u64, ErrorKind, Journal, JournalError};

/// Counts and sizes; the JSON field names are a contract (see README).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub urls: u64,
    pub pending_fetch: u64,
    /// Of `pending_fetch`, the URLs waiting in `retry_queue` for their retry time.
    pub retry_waiting: u64,
    pub fetched: u64,
    pub failed: u64,
    pub pending_parse: u64,
    pub parsed: u64,
    pub pending_sync: u64,
    /// Pages found damaged (a record that does not decode, a body that fails its
    /// check), skipped by parse and sync: see `webspool verify`.
    pub damaged: u64,
    /// Recrawl checks recorded: how many, and how many found the page unchanged,
    /// changed, or gone (404/410).
    pub checked: u64,
    pub unchanged: u64,
    pub changed: u64,
    pub gone: u64,
    /// Older versions of recrawled pages kept (`compact --keep-versions`), and their
    /// stored (compressed) body bytes, which `stored_body_bytes` does not count.
    pub versions: u64,
    pub version_bytes: u64,
    /// Pages due for a recrawl check: counted by the `status` command (a scan), not
    /// by [`Journal::status`].
    pub due: Option<u64>,
    /// The extraction rules kept in the journal: filled by the `status` command, not by
    /// [`Journal::status`] (which the crawl reads often).
    pub rules: Option<RulesShown>,
    /// Body bytes as received after content-decoding.
    pub raw_bytes: u64,
    /// Body bytes as stored, zstd-compressed.
    pub stored_body_bytes: u64,
    /// The journal's size on disk.
    pub disk_bytes: u64,
    pub errors: BTreeMap<String, u64>,
    /// The last sync that committed, if any.
    pub last_sync: Option<LastSync>,
    /// What each proxy carried (`--proxy`, or the environment's): filled by the
    /// `status` command, not by [`Journal::status`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<super::ProxyCount>,
}

/// The kept rules as `status` names them: the file and the hash (16 hex digits, the
/// form `reparse` logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesShown {
    pub file: String,
    pub hash: String,
}

impl From<&StoredRules> for RulesShown {
    fn from(rules: &StoredRules) -> Self {
        RulesShown {
            file: rules.file.clone(),
            hash: format!("{:016x}", rules.hash),
        }
    }
}

pub(super) mod counter {
    pub const URLS: &str = "urls";
    pub const FETCHED: &str = "fetched";
    pub const FAILED: &str = "failed";
    pub const PENDING_PARSE: &str = "pending_parse";
    pub const PARSED: &str = "parsed";
    pub const PENDING_SYNC: &str = "pending_sync";
    pub const RETRY_WAITING: &str = "retry_waiting";
    pub const RAW_BYTES: &str = "raw_bytes";
    pub const STORED_BODY_BYTES: &str = "stored_body_bytes";
    pub const DAMAGED: &str = "damaged";
    /// Pages queued for a recrawl check, not recorded yet (part of `pending_fetch`).
    pub const RECHECKS: &str = "rechecks";
    pub const CHECKED: &str = "checked";
    pub const UNCHANGED: &str = "unchanged";
    pub const CHANGED: &str = "changed";
    pub const GONE: &str = "gone";
    pub const CHECK_FAILED: &str = "check_failed";
    /// Older versions of pages kept in `versions`, and their stored body bytes.
    pub const VERSIONS: &str = "versions";
    pub const VERSION_BYTES: &str = "version_bytes";
    pub const ERROR_PREFIX: &str = "error.";
}

impl Journal {
    /// The counters as of one moment, and sizes. The counters are read in one
    /// transaction: read one by one, a parse commit between the read of `urls` and that
    /// of `pending_parse` could show a crawl with nothing pending while the URLs that
    /// commit discovered wait in the frontier.
    pub fn status(&self) -> Result<Status, JournalError> {
        // sled writes a batch marker for every transaction, one that only reads too: on
        // a full disk this fails as a write does.
        self.status_now().map_err(|e| e.in_dir(&self.path))
    }

    /// [`Journal::status`] with what only the `status` command shows: the pages due for
    /// a recrawl at `now_ms` (a scan) and the rules kept.
    pub fn full_status(&self, now_ms: u64) -> Result<Status, JournalError> {
        let mut status = self.status()?;
        status.due = Some(self.due_count(now_ms)?);
        status.rules = self.stored_rules()?.as_ref().map(Into::into);
        status.proxies = self.proxy_counts()?;
        Ok(status)
    }

    fn status_now(&self) -> Result<Status, JournalError> {
        let status = self.counters.transaction(|counters| {
            let get = |name: &str| match read_u64(counters.get(name)?) {
                Ok(n) => Ok(n),
                Err(e) => abort(e),
            };
            let urls = get(counter::URLS)?;
            let fetched = get(counter::FETCHED)?;
            let failed = get(counter::FAILED)?;
            let mut errors = BTreeMap::new();
            for kind in ErrorKind::ALL {
                let n = get(&format!("{}{}", counter::ERROR_PREFIX, kind.as_str()))?;
                if n > 0 {
                    errors.insert(kind.as_str().to_string(), n);
                }
            }
            Ok(Status {
                urls,
                pending_fetch: urls.saturating_sub(fetched + failed) + get(counter::RECHECKS)?,
                retry_waiting: get(counter::RETRY_WAITING)?,
                fetched,
                failed,
                pending_parse: get(counter::PENDING_PARSE)?,
                parsed: get(counter::PARSED)?,
                pending_sync: get(counter::PENDING_SYNC)?,
                damaged: get(counter::DAMAGED)?,
                checked: get(counter::CHECKED)?,
                unchanged: get(counter::UNCHANGED)?,
                changed: get(counter::CHANGED)?,
                gone: get(counter::GONE)?,
                versions: get(counter::VERSIONS)?,
                version_bytes: get(counter::VERSION_BYTES)?,
                raw_bytes: get(counter::RAW_BYTES)?,
                stored_body_bytes: get(counter::STORED_BODY_BYTES)?,
                errors,
                ..Status::default()
            })
        });
        Ok(Status {
            disk_bytes: self.db.size_on_disk()? + self.segments.size_on_disk()?,
            last_sync: self.last_sync()?,
            ..flatten(status)?
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::bump;
    use super::*;

    /// A crawl where each parse commit finds one new URL and each fetch commit records
    /// it: at every commit one URL is pending, to fetch or to parse. Read one counter at
    /// a time, `status` could see the `urls` of one commit and the `pending_parse` of
    /// the next, nothing pending, and the crawl would end with a URL unfetched.
    #[test]
    fn status_never_shows_a_crawl_between_two_commits_as_finished() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j")).unwrap();
        let step = |deltas: &[(&str, i64)]| {
            let deltas: BTreeMap<String, i64> =
                deltas.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            flatten(journal.counters.transaction(|c| bump(c, &deltas))).unwrap();
        };
        // One URL fetched, its page waiting to be parsed.
        step(&[
            (counter::URLS, 1),
            (counter::FETCHED, 1),
            (counter::PENDING_PARSE, 1),
        ]);
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                for _ in 0..2000 {
                    // The parse commit: the page parsed, a link to a new URL found.
                    step(&[(counter::PENDING_PARSE, -1), (counter::URLS, 1)]);
                    // The fetch commit: the new URL fetched, its page to be parsed.
                    step(&[(counter::FETCHED, 1), (counter::PENDING_PARSE, 1)]);
                }
            });
            while !writer.is_finished() {
                let s = journal.status().unwrap();
                assert_eq!(s.pending_fetch + s.pending_parse, 1, "{s:?}");
            }
        });
    }
}
