//! What a journal directory holds before sled touches it: the path checks, and the
//! marker file `webspool-journal`, which keeps sled from passing a damaged journal off
//! as a smaller or an empty one.
//!
//! sled 0.34 cannot tell a damaged log from a torn one: opening a database, it replays
//! the log from its last snapshot (`snap.*`), takes the first record that does not
//! check out for the end of the log, overwrites the rest of that segment and every
//! later one, and writes a new snapshot. One bad byte early in `db` with the snapshot
//! file gone turns a full journal into an empty one, silently; a bad byte after the
//! snapshot's position drops everything after it. So:
//!
//! - Before sled opens: a directory with the marker was a whole journal (database,
//!   sled's `conf`, a snapshot) when the marker was written, and must still hold those
//!   files, or it is reported as damaged and left exactly as it is.
//! - After sled opens: the marker holds values that only grow (the next URL id, the
//!   parsed pages, the end of the body segments) as they were, durable, when webspool
//!   last finished a command on the journal. sled must have recovered at least those,
//!   or the journal is reported as damaged. sled has written by then; webspool writes
//!   nothing more, and in particular does not cut the body segments back to the end
//!   sled recovered.
//!
//! The marker is first written once a journal has been opened whole and sled has a
//! snapshot of it: a new journal right after its creation (which closes and reopens
//! the database for that), a journal from before the marker existed at its next
//! successful open. `Journal::checkpoint` rewrites it when a command has finished its
//! work. This module writes nothing but the marker, and deletes nothing but the
//! snapshots sled began and did not finish (see [`drop_unfinished_snapshots`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::segments::SegmentsEnd;
use super::{space, JournalError};

/// The marker file's name in the journal directory.
pub(super) const MARKER_FILE: &str = "webspool-journal";
/// The marker's first line.
const MARKER_MAGIC: &str = "webspool-journal";

/// What a directory holds, as far as can be told without opening sled.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// Nothing at that path.
    Missing,
    /// An empty directory.
    Empty,
    /// A journal that has its marker (and the sled files it promises).
    Marked(Marker),
    /// A sled database without the marker: a journal from before the marker existed, or
    /// one whose creation was cut short before its marker was written.
    Unmarked,
}

/// Looks at `dir` without writing anything.
pub(super) fn inspect(dir: &Path) -> Result<Found, JournalError> {
    let open_err = |message: String| JournalError::Open {
        path: dir.to_path_buf(),
        message,
    };
    let not_a_journal = |why: &str| JournalError::NotAJournal {
        path: dir.to_path_buf(),
        why: why.to_string(),
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(open_err(format!("cannot look at it: {e}"))),
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::metadata(dir) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let target = std::fs::read_link(dir)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "a path".into());
                return Err(open_err(format!(
                    "it is a symbolic link to {target}, which does not exist"
                )));
            }
            Err(e) => return Err(open_err(format!("cannot follow the symbolic link: {e}"))),
        },
        Ok(_) => {}
    }
    if !dir.is_dir() {
        return Err(not_a_journal(if dir.is_file() {
            "it is a file, not a directory"
        } else {
            "it is not a directory"
        }));
    }
    let mut entries =
        std::fs::read_dir(dir).map_err(|e| open_err(format!("cannot read the directory: {e}")))?;
    if entries.next().is_none() {
        return Ok(Found::Empty);
    }
    if dir.join(super::recover::SWITCH_FILE).exists() {
        return Err(open_err(
            "a `webspool recover` was interrupted: run it again to finish".into(),
        ));
    }
    let marker = dir.join(MARKER_FILE);
    match std::fs::read(&marker) {
        Ok(text) => {
            let found = Marker::parse(&text).ok_or_else(|| {
                damaged(
                    dir,
                    format!(
                        "its marker file {} is not one webspool wrote",
                        marker.display()
                    ),
                )
            })?;
            check_sled_files(dir)?;
            Ok(Found::Marked(found))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("conf").is_file() {
                Ok(Found::Unmarked)
            } else if super::segments::Segments::new(dir).has_files()? {
                Err(damaged(
                    dir,
                    "its database files are missing, but `segments/` holds page bodies".into(),
                ))
            } else {
                Err(not_a_journal(
                    "the directory holds other files and no journal database",
                ))
            }
        }
        Err(e) => Err(open_err(format!("cannot read {}: {e}", marker.display()))),
    }
}

/// Whether this process can write to the journal in `dir` (the directory, and sled's
/// `db` file if there is one), checked before sled opens it: sled writes whenever it
/// opens a database (its log, a snapshot), and fails with an I/O error that names no
/// file. A journal on a read-only file system, or one this user may not write to, is
/// refused in one line that says which and what to do.
pub(super) fn check_writable(dir: &Path) -> Result<(), JournalError> {
    use std::os::unix::ffi::OsStrExt;
    for path in [dir.to_path_buf(), dir.join("db")] {
        let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: access(2) reads the NUL-terminated path and nothing else.
        if unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0 {
            continue;
        }
        let why = match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOENT) => continue,
            e if e.raw_os_error() == Some(libc::EROFS) => {
                "it is on a read-only file system".to_string()
            }
            e if e.raw_os_error() == Some(libc::EACCES) => {
                format!("this user may not write to {}", path.display())
            }
            e => format!("cannot write to {}: {e}", path.display()),
        };
        return Err(JournalError::Open {
            path: dir.to_path_buf(),
            message: format!(
                "{why}, and sled writes to a journal whenever it opens one, even to read \
                 it; to read it, copy the directory somewhere writable (cp -a) and run the \
                 command on the copy"
            ),
        });
    }
    Ok(())
}

/// The files sled needs to open a marked journal as it was: without them sled would
/// start over or rebuild from the log, and drop what it cannot read without a word.
fn check_sled_files(dir: &Path) -> Result<(), JournalError> {
    let problem = match std::fs::metadata(dir.join("db")) {
        Ok(meta) if meta.is_file() && meta.len() > 0 => None,
        Ok(meta) if meta.is_file() => Some("sled's database file `db` is empty"),
        _ => Some("sled's database file `db` is missing"),
    };
    let problem = match problem {
        None if !dir.join("conf").is_file() => Some("sled's configuration file `conf` is missing"),
        None if !has_snapshot(dir)? => Some("sled's snapshot file (`snap.*`) is missing"),
        other => other,
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(damaged(
            dir,
            format!(
                "{problem}, so sled would rebuild or restart it and silently drop what it \
                 cannot read; it was left as it is (nothing was written): keep a copy of \
                 the directory before any attempt to repair it"
            ),
        )),
    }
}

/// Whether sled has written a snapshot (`snap.` and its log position) in `dir`.
pub(super) fn has_snapshot(dir: &Path) -> Result<bool, JournalError> {
    Ok(snapshot_files(dir)?.iter().any(|name| !unfinished(name)))
}

/// The names of sled's snapshot files in `dir`, finished or not.
fn snapshot_files(dir: &Path) -> Result<Vec<String>, JournalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| JournalError::Open {
        path: dir.to_path_buf(),
        message: format!("cannot read the directory: {e}"),
    })?;
    Ok(entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("snap."))
        .collect())
}

/// A snapshot sled began and never renamed into place (`snap.N.generating`).
fn unfinished(name: &str) -> bool {
    name.ends_with(".generating")
}

/// Deletes the snapshots sled began and never finished, before it opens `dir`. sled
/// 0.34 writes a snapshot to `snap.N.generating`, renames it to `snap.N` once synced,
/// and only then deletes the older one; but when it opens a database it takes the
/// newest file of either name. One it could not finish (the disk filled up while
/// it opened the journal) would be read as the newest snapshot and the whole journal
/// taken for corrupted; the finished snapshot before it, with the log, holds everything.
/// Skipped while another process has the database open (its lock on `db`), which may
/// be writing one right now.
pub(super) fn drop_unfinished_snapshots(dir: &Path) -> Result<(), JournalError> {
    use fs2::FileExt;
    let unfinished: Vec<String> = snapshot_files(dir)?
        .into_iter()
        .filter(|name| unfinished(name))
        .collect();
    if unfinished.is_empty() {
        return Ok(());
    }
    let Ok(db) = std::fs::File::open(dir.join("db")) else {
        return Ok(());
    };
    if db.try_lock_exclusive().is_err() {
        return Ok(());
    }
    for name in unfinished {
        let path = dir.join(&name);
        std::fs::remove_file(&path).map_err(|e| JournalError::Open {
            path: dir.to_path_buf(),
            message: format!("cannot delete sled's unfinished snapshot {name}: {e}"),
        })?;
        tracing::info!("deleted {}, a snapshot sled did not finish", path.display());
    }
    // The lock goes with `db`, closed here: sled locks the file from a handle of its
    // own, and flock(2) locks conflict across handles even within one process.
    Ok(())
}

/// What the marker file says: which journal this is, and values that only grow, as
/// they were (durable) when it was written. sled must recover at least as much, or
/// its log has lost records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Marker {
    /// The journal id, as hex.
    pub journal_id: String,
    /// The next URL id: grows with every URL added.
    pub next_id: u64,
    /// Pages with an annotation: grows with every page parsed for the first time.
    pub parsed: u64,
    /// The end of the body segments: grows with every group of fetched pages.
    pub segments_end: SegmentsEnd,
}

impl Marker {
    fn text(&self) -> String {
        format!(
            "{MARKER_MAGIC}\njournal_id {}\nnext_id {}\nparsed {}\nsegments_end {} {}\n",
            self.journal_id,
            self.next_id,
            self.parsed,
            self.segments_end.segment,
            self.segments_end.len
        )
    }

    /// The marker in `text`, or None if it is not exactly what [`Marker::text`] writes.
    fn parse(text: &[u8]) -> Option<Marker> {
        let text = std::str::from_utf8(text).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MARKER_MAGIC {
            return None;
        }
        let mut field = |name: &str| lines.next()?.strip_prefix(name)?.strip_prefix(' ');
        let journal_id = field("journal_id")?.to_string();
        let next_id = field("next_id")?.parse().ok()?;
        let parsed = field("parsed")?.parse().ok()?;
        let (segment, len) = field("segments_end")?.split_once(' ')?;
        let segments_end = SegmentsEnd {
            segment: segment.parse().ok()?,
            len: len.parse().ok()?,
        };
        let hex = journal_id.len() == 32 && journal_id.bytes().all(|b| b.is_ascii_hexdigit());
        (hex && lines.next().is_none() && text.ends_with('\n')).then_some(Marker {
            journal_id,
            next_id,
            parsed,
            segments_end,
        })
    }

    /// What in `found` (sled's state now) is behind this marker, if anything.
    pub fn behind(&self, found: &Marker) -> Option<String> {
        let end = |e: &SegmentsEnd| (e.segment, e.len);
        if found.journal_id != self.journal_id {
            Some(format!(
                "its database belongs to journal {}, but its marker file names journal {}",
                found.journal_id, self.journal_id
            ))
        } else if found.next_id < self.next_id {
            Some(format!(
                "sled recovered {} URLs, but the journal had {}",
                found.next_id.saturating_sub(1),
                self.next_id.saturating_sub(1)
            ))
        } else if found.parsed < self.parsed {
            Some(format!(
                "sled recovered {} parsed pages, but the journal had {}",
                found.parsed, self.parsed
            ))
        } else if end(&found.segments_end) < end(&self.segments_end) {
            Some(format!(
                "sled recovered page bodies up to segment {} byte {}, but the journal had \
                 them up to segment {} byte {}",
                found.segments_end.segment,
                found.segments_end.len,
                self.segments_end.segment,
                self.segments_end.len
            ))
        } else {
            None
        }
    }
}

/// Writes `marker` into `dir`, durably: a new file renamed into place, then the
/// directory synced.
pub(super) fn write_marker(dir: &Path, marker: &Marker) -> Result<(), JournalError> {
    let path = dir.join(MARKER_FILE);
    let temporary = dir.join(format!("{MARKER_FILE}.new"));
    let io_err = |what: &Path, e: std::io::Error| {
        if space::is_full(&e) {
            JournalError::NoSpace {
                writing: what.display().to_string(),
            }
        } else {
            JournalError::Open {
                path: dir.to_path_buf(),
                message: format!("cannot write {}: {e}", what.display()),
            }
        }
    };
    let mut file = std::fs::File::create(&temporary).map_err(|e| io_err(&temporary, e))?;
    if let Err(e) = file
        .write_all(marker.text().as_bytes())
        .and_then(|()| file.sync_all())
    {
        // A marker cut short by a full disk is no use to anyone.
        let _ = std::fs::remove_file(&temporary);
        return Err(io_err(&temporary, e));
    }
    std::fs::rename(&temporary, &path).map_err(|e| io_err(&path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

pub(super) fn damaged(dir: &Path, what: String) -> JournalError {
    JournalError::DamagedJournal {
        path: PathBuf::from(dir),
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Journal;

    fn marker() -> Marker {
        Marker {
            journal_id: "0123456789abcdef0123456789abcdef".into(),
            next_id: 5,
            parsed: 3,
            segments_end: SegmentsEnd {
                segment: 1,
                len: 600,
            },
        }
    }

    #[test]
    fn the_marker_reads_back_and_anything_else_is_refused() {
        let text = marker().text();
        assert_eq!(Marker::parse(text.as_bytes()), Some(marker()));
        for bad in [
            String::new(),
            "webspool-journal\n".into(),
            text.replace("journal_id 0123", "journal_id zz23"),
            text.replace("next_id 5", "next_id -5"),
            text.trim_end().to_string(),
            text.clone() + "more\n",
            text.replacen("webspool-journal", "sled", 1),
        ] {
            assert_eq!(Marker::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn sled_behind_the_marker_is_named() {
        let at_close = marker();
        assert_eq!(at_close.behind(&at_close), None);
        let mut grown = marker();
        grown.next_id += 10;
        grown.segments_end.len += 1;
        assert_eq!(at_close.behind(&grown), None);
        let mut other_journal = marker();
        other_journal.journal_id = "f".repeat(32);
        let mut fewer_urls = marker();
        fewer_urls.next_id = 1;
        let mut fewer_parsed = marker();
        fewer_parsed.parsed = 0;
        let mut shorter_bodies = marker();
        shorter_bodies.segments_end.len = 10;
        for (found, said) in [
            (other_journal, "belongs to journal"),
            (fewer_urls, "recovered 0 URLs, but the journal had 4"),
            (fewer_parsed, "recovered 0 parsed pages"),
            (shorter_bodies, "segment 1 byte 10"),
        ] {
            let why = at_close.behind(&found).expect("behind");
            assert!(why.contains(said), "{why}");
        }
    }

    #[test]
    fn paths_that_hold_no_journal_are_told_apart_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(inspect(&root.join("missing")).unwrap(), Found::Missing);
        assert_eq!(inspect(root).unwrap(), Found::Empty);
        std::fs::write(root.join("notes.txt"), "mine").unwrap();
        let err = inspect(root).unwrap_err().to_string();
        assert!(err.contains("holds other files"), "{err}");
        let err = inspect(&root.join("notes.txt")).unwrap_err().to_string();
        assert!(err.contains("it is a file"), "{err}");
        std::os::unix::fs::symlink(root.join("gone"), root.join("link")).unwrap();
        let err = inspect(&root.join("link")).unwrap_err().to_string();
        assert!(
            err.contains("symbolic link to") && err.contains("gone"),
            "{err}"
        );
        let names = |dir: &Path| {
            let mut names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(root), ["link", "notes.txt"]);
    }

    #[test]
    fn a_new_journal_has_its_marker_and_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let id = Journal::open(&path).unwrap().journal_id().unwrap();
        assert!(has_snapshot(&path).unwrap());
        let text = std::fs::read(path.join(MARKER_FILE)).unwrap();
        let marker = Marker::parse(&text).expect("a marker");
        assert_eq!((marker.journal_id, marker.next_id), (id, 1));
        assert!(matches!(inspect(&path).unwrap(), Found::Marked(_)));
    }

    #[test]
    fn a_journal_from_before_the_marker_gets_it_when_opened_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        drop(Journal::open(&path).unwrap());
        std::fs::remove_file(path.join(MARKER_FILE)).unwrap();
        assert_eq!(inspect(&path).unwrap(), Found::Unmarked);
        drop(Journal::open_existing(&path).unwrap());
        assert!(matches!(inspect(&path).unwrap(), Found::Marked(_)));
    }

    /// Regression: a snapshot sled could not finish (the disk filled up while it opened
    /// the journal) is the newest `snap.*` file, which sled took for the snapshot and
    /// reported as corrupted: the journal never opened again.
    #[test]
    fn a_snapshot_sled_did_not_finish_is_dropped_before_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Journal::open(&path).unwrap();
        let url = url::Url::parse("http://a.test/").unwrap();
        journal
            .add_urls(&[crate::journal::NewUrl::given(&url, None)])
            .unwrap();
        journal.checkpoint().unwrap();
        drop(journal);
        let unfinished = path.join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&unfinished, b"cut short by a full disk").unwrap();
        let journal = Journal::open_existing(&path).expect("opens");
        assert!(!unfinished.exists());
        assert_eq!(journal.status().unwrap().urls, 1);
        // Held open by sled: another process's snapshot may be under way; left alone.
        std::fs::write(&unfinished, b"being written").unwrap();
        drop_unfinished_snapshots(&path).unwrap();
        assert!(unfinished.exists());
    }

    /// The files a marked journal needs are looked for before sled opens it, and the
    /// directory is left as it was.
    #[test]
    fn a_marked_journal_missing_sled_files_is_damaged_and_left_alone() {
        for (remove, said) in [
            ("snap.", "snapshot file"),
            ("conf", "`conf` is missing"),
            ("db", "`db` is missing"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("j");
            drop(Journal::open(&path).unwrap());
            for entry in std::fs::read_dir(&path).unwrap() {
                let entry = entry.unwrap();
                if entry.file_name().to_string_lossy().starts_with(remove) {
                    std::fs::remove_file(entry.path()).unwrap();
                }
            }
            let before = listing(&path);
            for open in [Journal::open, Journal::open_existing] {
                let err = open(&path).err().expect("refused").to_string();
                assert!(err.contains("is damaged") && err.contains(said), "{err}");
                assert_eq!(listing(&path), before, "{remove}");
            }
        }
    }

    /// Marker present, sled's records gone: as when sled recovers nothing from a log
    /// damaged at its start. Here the database is replaced by another, empty one.
    #[test]
    fn a_marked_journal_whose_database_lost_its_records_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        drop(Journal::open(&path).unwrap());
        let other = dir.path().join("other");
        for _ in 0..2 {
            // Twice, so that sled writes a snapshot of the empty database.
            let db = sled::open(&other).unwrap();
            db.insert("unrelated", "x").unwrap();
            db.flush().unwrap();
        }
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "db" || name == "conf" || name.starts_with("snap.") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        for entry in std::fs::read_dir(&other).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), path.join(entry.file_name())).unwrap();
            }
        }
        let err = Journal::open_existing(&path)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("is damaged") && err.contains("lost the journal's records"),
            "{err}"
        );
    }

    /// File names and contents under `dir`, sorted.
    fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(listing(&path));
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
        out.sort();
        out
    }
}
