//! Opening a journal: finding or creating it in its directory (`directory.rs` tells a
//! journal from anything else), opening sled, checking the format records and
//! upgrading an older format in place.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sled::Transactional;

use super::directory::{self, Found};
use super::status::counter;
use super::{flatten, CACHE_CAPACITY, FORMAT_MARKER, FORMAT_VERSION, FRAMED_FROM, SEGMENTS_END};
use super::{frontier, record, segments, space, Grants, Journal, JournalError, PendingEntry};

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
