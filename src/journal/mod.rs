//! The crash-safe local journal that joins the stages: a sled database in one directory.
//!
//! # Trees and keys
//!
//! | tree            | key                      | value                                   |
//! |-----------------|--------------------------|-----------------------------------------|
//! | default (meta)  | `format`, `version`, `journal_id`, `next_id` | format marker, u32 BE, 16 bytes, u64 BE |
//! | `url_index`     | normalized URL bytes     | id (u64 BE)                             |
//! | `urls`          | id (u64 BE)              | journals before format 4: [`UrlEntry`], versioned |
//! | `frontier`      | host `0x00` id           | [`PendingEntry`] (with the [`UrlEntry`]): ready to fetch (see `frontier.rs`) |
//! | `retry_queue`   | not-before ms (u64 BE) id | [`PendingEntry`]: waiting to be retried |
//! | `hosts`         | host key (`host:port`)   | [`HostEntry`]: robots.txt, backoff, budget |
//! | `pages`         | id                       | [`PageMeta`], where the body is in the segments, and the [`UrlEntry`], versioned |
//! | `bodies`        | id                       | journals before format 3: the zstd body |
//! | `pending_parse` | id                       | empty: fetched, not yet parsed          |
//! | `counters`      | counter name             | u64 BE                                  |
//! | `damaged`       | id                       | what a stage found wrong with the page (`damage.rs`) |
//! | `given_origins` | origin (`scheme://host[:port]`) | empty: the user gave URLs of it (see `grants.rs`) |
//! | `versions`      | id, fetch time (ms, u64 BE) | an older version's page record, until `compact` drops it (see `versions.rs`) |
//! | `hints`         | id                       | a sitemap's lastmod and changefreq of the page, for recrawl (see `hints.rs`) |
//!
//! The owner-only file `credentials` beside sled holds the userinfo of given URLs,
//! which stored URLs never carry (`grants.rs`).
//!
//! Bodies (one zstd frame each, the exact decoded bytes) live outside sled, in
//! append-only segment files (`segments.rs`), so that scans of `pages` never read them
//! and sled's nodes stay small. Beside sled's files (`db`, `conf`, `snap.*`, `blobs/`)
//! and `segments/`, the directory holds the marker file `webspool-journal`, which lets
//! an open tell a damaged journal from an empty or smaller one (`directory.rs`), and the
//! reserve `webspool-reserve`, which makes room for sled to open the journal on a full
//! disk (`space.rs`), and while a process holds the journal its socket `webspool.sock`
//! (`crate::holder`). Ids are assigned from `next_id` in increasing order, so
//! every scan in id order sees new URLs after old ones.
//!
//! # State machine of a URL
//!
//! `new -> pending (frontier <-> retry_queue) -> (fetched | failed) [-> pending_parse]`.
//! The move out of the frontier happens in one sled transaction together with the
//! page record (with the body's location), the `pending_parse` entry and the counters,
//! so no crash can leave a page half recorded. A transient failure moves the URL from `frontier` to
//! `retry_queue` in the same kind of transaction, so the retry schedule survives
//! restarts.
//!
//! Format version 2 added `frontier`, `retry_queue`, `hosts`, [`PendingEntry`] values
//! and `UrlEntry` V2. Format 3 moved new bodies to segment files; older journals keep
//! their bodies where they are. Format 4 stopped writing two trees by id: the
//! `pending_fetch` tree (id -> pending entry) and `urls` (id -> [`UrlEntry`]). Format 5
//! writes each body as a self-describing segment entry with checksums (`segments.rs`),
//! checked on every read; `verify.rs` checks a whole journal, `recover.rs` rebuilds
//! the database from the entries, and `compact.rs` copies the live bodies into new
//! segments and deletes the old ones. Format 6 adds the `versions` tree, whose
//! records point into the segments too: a format-5 `compact` would delete their bytes,
//! so older builds must not open it. A URL's
//! record and pending entry are the value of its `frontier` or `retry_queue` key while
//! it is pending, and its record moves into its page record when the fetch is
//! recorded. Older journals are upgraded in place when opened (see
//! `Journal::move_pending_entries`); their `urls` tree stays and is still read.
//!
//! # Durability
//!
//! Nothing written here is durable until [`Journal::flush`] returns `Ok`; callers report
//! a page as fetched only after that. A failed write or flush poisons the journal
//! (sticky error, as sled itself does): every later write is refused, so the process can
//! never report progress it did not make; when the write failed for lack of space, every
//! refusal says so ([`DiskFull`]). Recovery is sled's: on open, the journal is
//! exactly the state of some flush or later, and everything still in the frontier or
//! the retry queue is fetched again.

mod body;
pub(crate) mod compact;
mod damage;
mod directory;
mod fetch;
mod frontier;
mod grants;
pub(crate) mod hints;
mod import;
mod open;
pub(crate) mod parse;
mod proxies;
mod prune;
pub(crate) mod record;
mod recover;
pub(crate) mod recrawl;
mod repair;
pub(crate) mod rules;
mod segments;
mod show;
pub mod space;
mod status;
pub(crate) mod sync;
mod verify;
pub(crate) mod versions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

pub use body::{content_hash, decompress_body, decompress_body_into, pack_body, PackedBody};
pub use compact::CompactReport;
pub use frontier::{NewUrl, Ready};
pub use grants::Grants;
pub use hints::Hint;
pub use import::{ImportReport, ImportedPage};
pub use parse::ReparseState;
pub use parse::{AnnotationReport, Budget, ParseInput};
pub use proxies::{merge_proxy_counts, ProxyCount};
pub use prune::CompactOptions;
pub use record::PendingEntry;
pub use record::{Annotation, DocKind, Field, Link};
pub use record::{ErrorKind, HostDown, HostEntry, KeptHeaders, Outcome, PageMeta};
pub use record::{Redirect, UrlEntry, Via};
pub use recover::{recover, utc_fields, RecoverReport};
pub use recrawl::{CheckedItem, RecrawlPolicy, Validators};
pub use rules::StoredRules;
pub use show::{
    DamageView, FetchErrorView, FetchView, PageState, PageView, PendingView, RecrawlView, SyncView,
    VersionView,
};
pub use space::{DiskFull, MinFree};
use status::counter;
pub use status::{RulesShown, Status};
pub use sync::{LastSync, SyncItem};
pub use verify::{Problem, Repair, VerifyReport};
pub use versions::Version;
// For the `segment_entries` fuzz check (`crate::fuzz`): a scan of one segment file.
pub(crate) use segments::{scan_whole_segment, Scanned, FRAME_BYTES, MAX_HEADER_BYTES};

/// Marker stored under `format` in the default tree of every webspool journal.
const FORMAT_MARKER: &[u8] = b"webspool-journal";
/// The journal layout version this build writes and the newest it can read.
pub const FORMAT_VERSION: u32 = 6;
/// Key in the default tree: the end of the body segments as of the last group.
const SEGMENTS_END: &str = "segments_end";
/// Key in the default tree (journals upgraded to format 5): the first segment that holds
/// self-describing entries; those before it hold bare bodies. Absent: all do.
const FRAMED_FROM: &str = "framed_from";
/// sled's page cache: small on purpose, memory must not grow with the journal.
const CACHE_CAPACITY: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {message}")]
    Open { path: PathBuf, message: String },
    /// Another process has the journal open (sled's lock on `db`): its holder, which
    /// other commands ask through its socket (`crate::holder`).
    #[error("journal {path}: it is in use by another webspool process")]
    InUse { path: PathBuf },
    #[error("journal {path} is not a webspool journal: {why}")]
    NotAJournal { path: PathBuf, why: String },
    #[error(
        "journal {path} has format version {found}; this webspool reads up to {FORMAT_VERSION}"
    )]
    UnknownVersion { path: PathBuf, found: u32 },
    #[error("no webspool journal at {path}{detail} (run `webspool crawl` to create one)")]
    NoJournal { path: PathBuf, detail: &'static str },
    #[error("journal is damaged: {what}")]
    Damaged { what: String },
    /// What `show` was asked for is not in the journal (a URL, a version, a body); the
    /// text names it, its userinfo redacted.
    #[error("{what}")]
    NotFound { what: String },
    /// One page's record or body is damaged: the stages skip it and go on.
    #[error("page {page} is damaged: {what}")]
    PageDamaged { page: String, what: String },
    #[error(
        "journal {path} is damaged: {what}; `webspool recover --journal {path}` rebuilds \
         it from its body segments"
    )]
    DamagedJournal { path: PathBuf, what: String },
    /// Not a `#[from]`: that would make the sled error a source too, and `{:#}` would
    /// print its reason twice.
    #[error("journal storage error: {0}")]
    Storage(sled::Error),
    #[error("cannot encode a journal record: {0}")]
    Encode(String),
    #[error("journal body segments: {0}")]
    Segments(String),
    #[error("journal {0}")]
    Credentials(String),
    #[error("the journal refused the write because an earlier write or flush failed; nothing after the last successful flush was kept")]
    Poisoned,
    #[error(transparent)]
    DiskFull(#[from] DiskFull),
    /// A write failed for lack of space, before the journal directory is known: the
    /// journal's methods turn it into [`DiskFull::NoSpace`] (see `JournalError::in_dir`).
    #[error("disk full: no space left on the journal's disk (writing {writing})")]
    NoSpace { writing: String },
}

impl From<sled::Error> for JournalError {
    fn from(e: sled::Error) -> Self {
        match e {
            // sled keeps the kind of the error that stopped it, its text only as Debug.
            sled::Error::Io(io) if space::is_full(&io) => JournalError::NoSpace {
                writing: "sled's log".into(),
            },
            e => JournalError::Storage(e),
        }
    }
}

impl JournalError {
    /// Whether the disk under the journal is full (below `--min-free`, or out of
    /// space): free some or move the journal, then run the same command again.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            JournalError::DiskFull(_) | JournalError::NoSpace { .. }
        )
    }

    /// This error with a lack of space named as [`DiskFull`] under the journal `dir`.
    fn in_dir(self, dir: &Path) -> JournalError {
        match self {
            JournalError::NoSpace { writing } => JournalError::DiskFull(DiskFull::NoSpace {
                dir: dir.to_path_buf(),
                writing,
            }),
            other => other,
        }
    }
}

/// What [`Journal::add_urls`] did with a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddReport {
    pub added: u64,
    pub duplicates: u64,
}

/// A finished fetch, ready to be committed.
#[derive(Clone, Debug)]
pub struct FetchedPage {
    pub id: u64,
    /// The host key of its frontier entry ([`crate::urls::host_key`]).
    pub host: String,
    /// The URL's record, kept in the page record.
    pub url: UrlEntry,
    pub meta: PageMeta,
    /// The compressed body and its content hash, for responses.
    pub body: Option<PackedBody>,
    /// A transient failure to try again at this time (ms since the epoch) instead of
    /// recording it.
    pub retry_at_ms: Option<u64>,
}

pub struct Journal {
    path: PathBuf,
    db: sled::Db,
    url_index: sled::Tree,
    urls: sled::Tree,
    frontier: sled::Tree,
    retry_queue: sled::Tree,
    hosts: sled::Tree,
    pages: sled::Tree,
    bodies: sled::Tree,
    pending_parse: sled::Tree,
    annotations: sled::Tree,
    sync_queue: sled::Tree,
    sync_seq: sled::Tree,
    counters: sled::Tree,
    damaged: sled::Tree,
    schedule: sled::Tree,
    checked: sled::Tree,
    versions: sled::Tree,
    hints: sled::Tree,
    /// Compressed bodies (format 3 on), outside sled.
    segments: segments::Segments,
    /// Origins the user gave URLs of, and their credentials.
    grants: Arc<Grants>,
    poisoned: AtomicBool,
    /// Why the journal is poisoned, when it is for a full disk: later writes are refused
    /// with it, so whichever stage writes next says what went wrong.
    full: OnceLock<DiskFull>,
}

pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<JournalError>>;

fn abort<T>(e: JournalError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn read_u64(value: Option<sled::IVec>) -> Result<u64, JournalError> {
    match value {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| JournalError::Damaged {
                what: format!("counter of {} bytes, expected 8", v.len()),
            })?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// Adds signed deltas to counters inside a transaction.
fn bump(counters: &TransactionalTree, deltas: &BTreeMap<String, i64>) -> TxResult<()> {
    for (name, delta) in deltas {
        if *delta == 0 {
            continue;
        }
        let old = match read_u64(counters.get(name.as_bytes())?) {
            Ok(v) => v,
            Err(e) => return abort(e),
        };
        let new = old.saturating_add_signed(*delta);
        counters.insert(name.as_bytes(), &new.to_be_bytes())?;
    }
    Ok(())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Journal {
    /// Records in the marker file what is durable now, so that a later open can tell
    /// whether sled recovered all of it: called after a command finished its work.
    /// Flushes first.
    pub fn checkpoint(&self) -> Result<(), JournalError> {
        self.flush_blocking()?;
        self.mark().map_err(|e| e.in_dir(&self.path))
    }

    /// Writes the marker with the state as it is, which must be durable; not before sled
    /// has a snapshot of the database (see `directory.rs`).
    fn mark(&self) -> Result<(), JournalError> {
        if directory::has_snapshot(&self.path)? {
            directory::write_marker(&self.path, &self.marker_now()?)?;
        }
        Ok(())
    }

    /// The marker's values as sled has them now.
    fn marker_now(&self) -> Result<directory::Marker, JournalError> {
        Ok(directory::Marker {
            journal_id: self.journal_id()?,
            next_id: read_u64(self.db.get("next_id")?)?,
            parsed: read_u64(self.counters.get(counter::PARSED)?)?,
            segments_end: self.segments_end()?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The origins the user gave URLs of, and the credentials given with them.
    pub fn grants(&self) -> Arc<Grants> {
        self.grants.clone()
    }

    /// The end of the body segments as of the last committed group.
    fn segments_end(&self) -> Result<segments::SegmentsEnd, JournalError> {
        match self.db.get(SEGMENTS_END)? {
            None => Ok(segments::SegmentsEnd::default()),
            Some(value) => record::decode_segments_end(&value),
        }
    }

    fn check_writable(&self) -> Result<(), JournalError> {
        if !self.poisoned.load(Ordering::Acquire) {
            Ok(())
        } else if let Some(full) = self.full.get() {
            Err(JournalError::DiskFull(full.clone()))
        } else {
            Err(JournalError::Poisoned)
        }
    }

    /// Runs a write, poisoning the journal if it fails for a storage reason (a full disk
    /// among them, named as such).
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T, JournalError>) -> Result<T, JournalError> {
        self.check_writable()?;
        f().map_err(|e| self.poison(e))
    }

    /// Poisons the journal if `e` is a storage error; returns it, a lack of space named
    /// under the journal directory.
    fn poison(&self, e: JournalError) -> JournalError {
        let e = e.in_dir(&self.path);
        match &e {
            JournalError::DiskFull(full) => {
                let _ = self.full.set(full.clone());
            }
            JournalError::Storage(_) | JournalError::Segments(_) => {}
            _ => return e,
        }
        self.poisoned.store(true, Ordering::Release);
        e
    }

    /// Makes every write so far durable. Only after this returns `Ok` may a page be
    /// reported as fetched.
    pub async fn flush(&self) -> Result<(), JournalError> {
        self.check_writable()?;
        match self.db.flush_async().await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.poison(e.into())),
        }
    }

    /// Blocking version of [`Journal::flush`], for stages that run on their own threads.
    pub fn flush_blocking(&self) -> Result<(), JournalError> {
        self.check_writable()?;
        match self.db.flush() {
            Ok(_) => Ok(()),
            Err(e) => Err(self.poison(e.into())),
        }
    }
}

/// Entries of an id-keyed tree with ids strictly after `after`, in id order.
fn entries_after(tree: &sled::Tree, after: Option<u64>) -> sled::Iter {
    match after {
        None => tree.iter(),
        // Ids start at 1 and never reach u64::MAX, so saturating is exact.
        Some(id) => tree.range(record::id_key(id.saturating_add(1))..),
    }
}

fn flatten<T>(result: Result<T, TransactionError<JournalError>>) -> Result<T, JournalError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `main` prints errors (`{:#}`, the whole chain): the reason once.
    #[test]
    fn a_storage_error_is_told_once() {
        let err = JournalError::from(sled::Error::Unsupported("no such thing".into()));
        let shown = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(shown.matches("no such thing").count(), 1, "{shown}");
    }
}
