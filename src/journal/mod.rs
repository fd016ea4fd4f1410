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
pub(crate) mod parse;
mod prune;
pub(crate) mod record;
mod recover;
pub(crate) mod recrawl;
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
use sled::Transactional;

pub use body::{content_hash, decompress_body, decompress_body_into, pack_body, PackedBody};
pub use compact::CompactReport;
pub use frontier::{NewUrl, Ready};
pub use grants::Grants;
pub use hints::Hint;
pub use parse::ReparseState;
pub use parse::{AnnotationReport, Budget, ParseInput};
pub use prune::CompactOptions;
pub use record::PendingEntry;
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

use directory::Found;

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
    /// Opens the journal in `dir`, creating it if `dir` does not exist or is an empty
    /// directory (`crawl`). Anything else that is not a webspool journal is refused with
    /// a clear error, and so is a journal whose files are missing (see `directory.rs`).
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        Journal::open_with(dir, true, true)
    }

    /// Opens the journal in `dir`, which must exist: every command but `crawl`. Creates
    /// nothing; a missing path or an empty directory is [`JournalError::NoJournal`].
    pub fn open_existing(dir: &Path) -> Result<Journal, JournalError> {
        Journal::open_with(dir, false, true)
    }

    /// [`Journal::open_existing`] for a command that only reads (`status`, `verify`):
    /// the reserve file is not grown back. sled still writes as it opens (its log and
    /// a snapshot), and so does webspool in what needs no command to finish: a segment
    /// tail past the last commit is cut off, a journal from before the marker file gets
    /// one, an older format is upgraded.
    pub fn open_to_read(dir: &Path) -> Result<Journal, JournalError> {
        Journal::open_with(dir, false, false)
    }

    /// Opens (`create`: or creates) the journal in `dir`; `reserve`: then grows the
    /// reserve file back.
    fn open_with(dir: &Path, create: bool, reserve: bool) -> Result<Journal, JournalError> {
        let journal = Journal::open_whole(dir, create).map_err(|e| e.in_dir(dir))?;
        if reserve {
            space::keep_reserve(dir);
        }
        Ok(journal)
    }

    fn open_whole(dir: &Path, create: bool) -> Result<Journal, JournalError> {
        let marker = match directory::inspect(dir)? {
            Found::Missing | Found::Empty if create => {
                create_journal(dir)?;
                None
            }
            Found::Missing => return Err(no_journal(dir, "")),
            Found::Empty => return Err(no_journal(dir, ": the directory is empty")),
            Found::Marked(marker) => Some(marker),
            Found::Unmarked => None,
        };
        directory::check_writable(dir)?;
        // sled writes when it opens a database: on a full disk, the reserve makes room.
        space::release_reserve_if_full(dir)?;
        directory::drop_unfinished_snapshots(dir)?;
        let db = open_db(dir)?;
        let mut journal = Journal {
            url_index: db.open_tree("url_index")?,
            urls: db.open_tree("urls")?,
            frontier: db.open_tree("frontier")?,
            retry_queue: db.open_tree("retry_queue")?,
            hosts: db.open_tree("hosts")?,
            pages: db.open_tree("pages")?,
            bodies: db.open_tree("bodies")?,
            pending_parse: db.open_tree("pending_parse")?,
            annotations: db.open_tree("annotations")?,
            sync_queue: db.open_tree("sync_queue")?,
            sync_seq: db.open_tree("sync_seq")?,
            counters: db.open_tree("counters")?,
            damaged: db.open_tree("damaged")?,
            schedule: db.open_tree("schedule")?,
            checked: db.open_tree("checked")?,
            versions: db.open_tree("versions")?,
            hints: db.open_tree("hints")?,
            segments: segments::Segments::new(dir),
            grants: Arc::new(Grants::open(&db, dir)?),
            db,
            path: dir.to_path_buf(),
            poisoned: AtomicBool::new(false),
            full: OnceLock::new(),
        };
        journal.check_format(marker.is_some())?;
        if let Some(marker) = &marker {
            if let Some(what) = marker.behind(&journal.marker_now()?) {
                return Err(directory::damaged(
                    dir,
                    format!(
                        "{what} when webspool last closed it: sled's log is damaged, and \
                         sled dropped what follows the damage when it opened the database \
                         (webspool wrote nothing)"
                    ),
                ));
            }
        }
        journal.count_retries_once()?;
        let end = journal.segments_end()?;
        journal.segments.recover(end)?;
        if marker.is_none() {
            // A new journal (`create_journal` closed the database, and opening it again
            // made sled write a snapshot), or one from before the marker existed.
            journal.mark()?;
        }
        Ok(journal)
    }

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

    /// Checks the format records: present, ours, and a version this build reads
    /// (upgrading an older one). `marked`: the directory has a marker file, so the
    /// records were there. Writes nothing unless all of that holds.
    fn check_format(&self, marked: bool) -> Result<(), JournalError> {
        let damaged = |what: String| directory::damaged(&self.path, what);
        match self.db.get("format")? {
            Some(marker) if marker.as_ref() == FORMAT_MARKER => {
                let found = self
                    .db
                    .get("version")?
                    .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| JournalError::Damaged {
                        what: "format version missing".into(),
                    })?;
                if found > FORMAT_VERSION {
                    return Err(JournalError::UnknownVersion {
                        path: self.path.clone(),
                        found,
                    });
                }
                if found < FORMAT_VERSION {
                    // Format 3 only added segment files for new bodies: the bodies already
                    // in the `bodies` tree stay there and are read as before. Format 4
                    // moved the pending entries into the frontier and the retry queue.
                    // Format 5 writes entries to new segments only. Format 6 only adds
                    // the `versions` tree (see `versions.rs`).
                    self.move_pending_entries()?;
                    let mut batch = sled::Batch::default();
                    if found < 5 {
                        self.start_framed_segments(&mut batch)?;
                    }
                    batch.insert("version", &FORMAT_VERSION.to_be_bytes());
                    self.db.apply_batch(batch)?;
                    self.db.flush()?;
                }
                Ok(())
            }
            Some(_) => Err(JournalError::NotAJournal {
                path: self.path.clone(),
                why: "its format marker belongs to something else".into(),
            }),
            None if marked => Err(damaged(format!(
                "its database has lost the journal's records (sled found no `format` key, \
                 though {} says a journal was created here): its log is damaged",
                directory::MARKER_FILE
            ))),
            None if self.segments.has_files()? => Err(damaged(
                "its database has lost the journal's records (sled found no `format` \
                 key), but `segments/` holds page bodies: its log is damaged"
                    .into(),
            )),
            None => Err(JournalError::NotAJournal {
                path: self.path.clone(),
                why: "its database has no webspool format marker: it is damaged, belongs to \
                      another program, or was left by a first run killed before it wrote \
                      anything (then delete it)"
                    .into(),
            }),
        }
    }

    /// Format 5: the segments from the next one on hold self-describing entries; the
    /// bare bodies written before stay where they are.
    fn start_framed_segments(&self, batch: &mut sled::Batch) -> Result<(), JournalError> {
        let end = self.segments_end()?;
        let first = if end.len > 0 {
            let next = segments::SegmentsEnd {
                segment: end.segment + 1,
                len: 0,
            };
            batch.insert(SEGMENTS_END, record::encode_segments_end(next)?);
            next.segment
        } else {
            end.segment.max(1)
        };
        batch.insert(FRAMED_FROM, &first.to_be_bytes());
        Ok(())
    }

    /// The first segment that holds self-describing entries.
    pub(crate) fn framed_from(&self) -> Result<u32, JournalError> {
        match self.db.get(FRAMED_FROM)? {
            None => Ok(0),
            Some(v) => <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| JournalError::Damaged {
                    what: format!("`{FRAMED_FROM}` of {} bytes, expected 4", v.len()),
                }),
        }
    }

    /// Journals written before the `retry_waiting` counter existed: count `retry_queue`
    /// once (not flushed on its own: until a flush covers it, the next open counts again).
    fn count_retries_once(&self) -> Result<(), JournalError> {
        if self.counters.get(counter::RETRY_WAITING)?.is_none() {
            let waiting = self.retry_queue.len() as u64;
            self.counters
                .insert(counter::RETRY_WAITING, &waiting.to_be_bytes())?;
        }
        Ok(())
    }

    /// Formats 1 to 3 kept pending URLs in `pending_fetch` by id (format 1 as bare ids,
    /// formats 2 and 3 with a `PendingEntryV1` and an empty `frontier` or `retry_queue`
    /// value) and their records in `urls`. Each entry, with its URL's record, moves
    /// into the value of its `frontier` or `retry_queue` key and leaves `pending_fetch`,
    /// a chunk per transaction, so a crash during the upgrade leaves every URL in one
    /// place or the other and opening the journal again finishes the move. `urls` stays
    /// as it is: [`Journal::url`] still reads the records of URLs added then.
    fn move_pending_entries(&self) -> Result<(), JournalError> {
        const CHUNK: usize = 1024;
        const OLD_TREE: &[u8] = b"pending_fetch";
        if !self.db.tree_names().iter().any(|name| name == OLD_TREE) {
            return Ok(());
        }
        let pending_fetch = self.db.open_tree(OLD_TREE)?;
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            for item in pending_fetch.iter().take(CHUNK) {
                let (key, value) = item?;
                let id = record::key_id(&key)?;
                let entry = self.upgraded_pending_entry(id, &value)?;
                chunk.push((
                    key,
                    id,
                    record::encode_pending(&entry)?,
                    entry.not_before_ms,
                    entry.host,
                ));
            }
            if chunk.is_empty() {
                self.db.drop_tree(OLD_TREE)?;
                return Ok(());
            }
            let trees = (&pending_fetch, &self.frontier, &self.retry_queue);
            let result = trees.transaction(|(pending, frontier, retry)| {
                for (key, id, value, not_before_ms, host) in &chunk {
                    if *not_before_ms == 0 {
                        frontier.insert(frontier::frontier_key(host, *id), value.as_slice())?;
                    } else {
                        retry
                            .insert(&frontier::retry_key(*not_before_ms, *id), value.as_slice())?;
                    }
                    pending.remove(key)?;
                }
                Ok(())
            });
            flatten(result)?;
        }
    }

    /// The format-4 pending entry of URL `id` from its `pending_fetch` value (empty in
    /// format 1: ready, no attempts) and its record in `urls`.
    fn upgraded_pending_entry(&self, id: u64, old: &[u8]) -> Result<PendingEntry, JournalError> {
        let url = self
            .urls
            .get(record::id_key(id))?
            .map(|v| record::decode_url(&v))
            .transpose()?
            .ok_or_else(|| JournalError::Damaged {
                what: format!("pending id {id} has no url record"),
            })?;
        if !old.is_empty() {
            let old = record::decode_pending_v1(old)?;
            return Ok(PendingEntry {
                host: old.host,
                attempts: old.attempts,
                not_before_ms: old.not_before_ms,
                url,
            });
        }
        let host = url::Url::parse(&url.url)
            .map(|u| crate::urls::host_key(&u))
            .map_err(|e| JournalError::Damaged {
                what: format!("id {id}: stored URL does not parse: {e}"),
            })?;
        Ok(PendingEntry {
            host,
            attempts: 0,
            not_before_ms: 0,
            url,
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

fn is_lock_error(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock")
}

/// Opens the sled database in `dir`, with errors that name the journal.
fn open_db(dir: &Path) -> Result<sled::Db, JournalError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_CAPACITY)
        .mode(sled::Mode::HighThroughput);
    open_sled(&config).map_err(|e| match e {
        sled::Error::Io(io) if is_lock_error(&io) => JournalError::InUse {
            path: dir.to_path_buf(),
        },
        sled::Error::Io(io) if space::is_full(&io) => JournalError::NoSpace {
            writing: "the snapshot sled writes when it opens a database".into(),
        },
        sled::Error::Io(io) => JournalError::Open {
            path: dir.to_path_buf(),
            message: io.to_string(),
        },
        sled::Error::Corruption { .. } => {
            directory::damaged(dir, "sled found corrupted data in its database".into())
        }
        other => directory::damaged(dir, format!("sled cannot read its database: {other}")),
    })
}

/// Opens the sled database. A lock still held by a handle being dropped in this process
/// (sled releases it from a background thread) or by a process that just exited is
/// waited for briefly; a lock held for longer means another live process.
fn open_sled(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        // sled reports most damage as an error, but a few corruptions panic inside it:
        // turn those into an error too, since the input is a directory the user gave us.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
            .unwrap_or(Err(sled::Error::Corruption { at: None, bt: () }));
        match result {
            Err(sled::Error::Io(io))
                if is_lock_error(&io) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Creates a journal in `dir` (missing or empty): the format records, written in one
/// batch and flushed, then the database closed, so that opening it again makes sled
/// write its first snapshot before the marker is written.
fn create_journal(dir: &Path) -> Result<(), JournalError> {
    std::fs::create_dir_all(dir).map_err(|e| JournalError::Open {
        path: dir.to_path_buf(),
        message: format!("cannot create the directory: {e}"),
    })?;
    let db = open_db(dir)?;
    let mut batch = sled::Batch::default();
    batch.insert("version", &FORMAT_VERSION.to_be_bytes());
    batch.insert("journal_id", &journal_id_seed());
    batch.insert("next_id", &1u64.to_be_bytes());
    // The format key goes last in the same atomic batch: a journal either has it with
    // everything else, or is still empty.
    batch.insert("format", FORMAT_MARKER);
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

fn no_journal(dir: &Path, detail: &'static str) -> JournalError {
    JournalError::NoJournal {
        path: dir.to_path_buf(),
        detail,
    }
}

fn flatten<T>(result: Result<T, TransactionError<JournalError>>) -> Result<T, JournalError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    })
}

/// 16 bytes that tell this journal apart from others syncing into the same database.
fn journal_id_seed() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        // RandomState is seeded from the OS's randomness for each instance.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    out
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
