//! Compressed bodies in append-only segment files beside the sled database
//! (`<journal>/segments/NNNNNNNN.seg`), so that sled holds only small records: a body
//! in sled costs a copy of its node on every insert and doubles the bytes on disk.
//!
//! Only the committer appends, a group at a time: [`Segments::append`] writes the
//! group's bodies, syncs them, and returns where each one went and where the segments
//! now end. The caller then records the locations (in the page records) and that end
//! (under `segments_end` in the default tree) in the transaction that records the
//! pages, and flushes. So a location in the journal always points at synced bytes, and
//! after a crash the bytes past the recorded end belong to no durable page: opening
//! cuts them off.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::JournalError;

/// A segment is closed once it holds this many bytes and the next one is started.
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

/// Where a body is: its segment, offset and length (compressed bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyLocation {
    pub segment: u32,
    pub offset: u64,
    pub len: u64,
}

/// The end of the appended bytes: the segment being written and its length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentsEnd {
    pub segment: u32,
    pub len: u64,
}

struct Active {
    end: SegmentsEnd,
    /// Opened on the first append.
    file: Option<File>,
}

pub(super) struct Segments {
    dir: PathBuf,
    active: Mutex<Active>,
    /// Read handles by segment number (a few: one per 256 MiB of bodies).
    readers: Mutex<HashMap<u32, Arc<File>>>,
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> JournalError {
    move |e| JournalError::Segments(format!("{what}: {e}"))
}

impl Segments {
    /// The segments of the journal in `journal_dir`, not yet checked: see
    /// [`Segments::recover`].
    pub fn new(journal_dir: &Path) -> Segments {
        Segments {
            dir: journal_dir.join("segments"),
            active: Mutex::new(Active {
                end: SegmentsEnd::default(),
                file: None,
            }),
            readers: Mutex::new(HashMap::new()),
        }
    }

    /// Takes up the segments of a journal whose durable state ends at `end`, cutting
    /// off whatever a crash left past it. Called once, when the journal is opened.
    pub fn recover(&mut self, end: SegmentsEnd) -> Result<(), JournalError> {
        let dir = &self.dir;
        if dir.is_dir() {
            for entry in std::fs::read_dir(dir).map_err(io_error(dir.display().to_string()))? {
                let entry = entry.map_err(io_error(dir.display().to_string()))?;
                let name = entry.file_name();
                let Some(number) = segment_number(&name.to_string_lossy()) else {
                    continue;
                };
                let path = entry.path();
                if number > end.segment {
                    std::fs::remove_file(&path).map_err(io_error(path.display().to_string()))?;
                } else if number == end.segment {
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_error(path.display().to_string()))?;
                    let len = file
                        .metadata()
                        .map_err(io_error(path.display().to_string()))?
                        .len();
                    if len < end.len {
                        return Err(JournalError::Damaged {
                            what: format!(
                                "{} holds {len} bytes, the journal expects {}",
                                path.display(),
                                end.len
                            ),
                        });
                    }
                    if len > end.len {
                        file.set_len(end.len)
                            .map_err(io_error(path.display().to_string()))?;
                        file.sync_all()
                            .map_err(io_error(path.display().to_string()))?;
                    }
                }
            }
        }
        let last = self.path(end.segment);
        if end.len > 0 && !last.is_file() {
            return Err(JournalError::Damaged {
                what: format!("{} is missing", last.display()),
            });
        }
        self.active = Mutex::new(Active { end, file: None });
        Ok(())
    }

    /// Whether any segment file exists: page bodies were recorded in this journal.
    pub fn has_files(&self) -> Result<bool, JournalError> {
        let dir = &self.dir;
        match std::fs::read_dir(dir) {
            Ok(entries) => Ok(entries
                .filter_map(Result::ok)
                .any(|entry| segment_number(&entry.file_name().to_string_lossy()).is_some())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(dir.display().to_string())(e)),
        }
    }

    fn path(&self, segment: u32) -> PathBuf {
        self.dir.join(format!("{segment:08}.seg"))
    }

    /// Appends `bodies` (in order) and syncs them; returns their locations and the new
    /// end, which the caller records with them.
    pub fn append(
        &self,
        bodies: &[&[u8]],
    ) -> Result<(Vec<BodyLocation>, SegmentsEnd), JournalError> {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        if bodies.is_empty() {
            return Ok((Vec::new(), active.end));
        }
        if active.file.is_none() || active.end.len >= SEGMENT_BYTES {
            if active.end.len >= SEGMENT_BYTES || active.end.segment == 0 {
                active.end = SegmentsEnd {
                    segment: active.end.segment + 1,
                    len: 0,
                };
            }
            std::fs::create_dir_all(&self.dir).map_err(io_error(self.dir.display().to_string()))?;
            let path = self.path(active.end.segment);
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&path)
                .map_err(io_error(path.display().to_string()))?;
            // A new file's directory entry must survive a crash as well as its bytes.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error(self.dir.display().to_string()))?;
            active.file = Some(file);
        }
        let mut locations = Vec::with_capacity(bodies.len());
        let mut buf = Vec::with_capacity(bodies.iter().map(|b| b.len()).sum());
        for body in bodies {
            locations.push(BodyLocation {
                segment: active.end.segment,
                offset: active.end.len + buf.len() as u64,
                len: body.len() as u64,
            });
            buf.extend_from_slice(body);
        }
        let path = self.path(active.end.segment);
        let Some(file) = active.file.as_ref() else {
            return Err(JournalError::Segments("no segment open".into()));
        };
        // At the recorded end, not the file's: bytes of a failed earlier write are
        // overwritten.
        file.write_all_at(&buf, active.end.len)
            .and_then(|()| file.sync_data())
            .map_err(io_error(path.display().to_string()))?;
        active.end.len += buf.len() as u64;
        Ok((locations, active.end))
    }

    /// The compressed body at `at`.
    pub fn read(&self, at: BodyLocation) -> Result<Vec<u8>, JournalError> {
        let file = {
            let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            match readers.get(&at.segment) {
                Some(file) => file.clone(),
                None => {
                    let path = self.path(at.segment);
                    let file = Arc::new(File::open(&path).map_err(|e| JournalError::Damaged {
                        what: format!("{}: {e}", path.display()),
                    })?);
                    readers.insert(at.segment, file.clone());
                    file
                }
            }
        };
        // Checked against the file before allocating: a damaged length must not make
        // us allocate more than the segment holds.
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let len = at
            .offset
            .checked_add(at.len)
            .filter(|&end| end <= size)
            .and_then(|_| usize::try_from(at.len).ok())
            .ok_or_else(|| JournalError::Damaged {
                what: format!(
                    "segment {} ({size} bytes) has no {} bytes at {}",
                    at.segment, at.len, at.offset
                ),
            })?;
        let mut out = vec![0; len];
        file.read_exact_at(&mut out, at.offset)
            .map_err(|e| JournalError::Damaged {
                what: format!(
                    "segment {} has no {} bytes at {}: {e}",
                    at.segment, at.len, at.offset
                ),
            })?;
        Ok(out)
    }

    /// Bytes in all segment files.
    pub fn size_on_disk(&self) -> Result<u64, JournalError> {
        let mut total = 0;
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error(self.dir.display().to_string())(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error(self.dir.display().to_string()))?;
            if segment_number(&entry.file_name().to_string_lossy()).is_some() {
                total += entry
                    .metadata()
                    .map_err(io_error(self.dir.display().to_string()))?
                    .len();
            }
        }
        Ok(total)
    }
}

fn segment_number(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, end: SegmentsEnd) -> Segments {
        let mut segments = Segments::new(dir);
        segments.recover(end).unwrap();
        segments
    }

    #[test]
    fn appended_bodies_read_back_and_a_crash_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let segments = open(dir.path(), SegmentsEnd::default());
        let (first, end) = segments.append(&[b"one", b"two!"]).unwrap();
        assert_eq!(end, SegmentsEnd { segment: 1, len: 7 });
        assert_eq!(segments.read(first[1]).unwrap(), b"two!");
        // Appended but never recorded: the end the journal knows is still `end`.
        let (lost, _) = segments.append(&[b"unrecorded"]).unwrap();
        drop(segments);
        let segments = open(dir.path(), end);
        assert_eq!(segments.size_on_disk().unwrap(), 7);
        assert!(segments.read(lost[0]).is_err());
        let absurd = BodyLocation {
            len: u64::MAX,
            ..first[0]
        };
        assert!(matches!(
            segments.read(absurd),
            Err(JournalError::Damaged { .. })
        ));
        let (next, end) = segments.append(&[b"three"]).unwrap();
        assert_eq!(next[0].offset, 7);
        assert_eq!(end.len, 12);
        assert_eq!(segments.read(first[0]).unwrap(), b"one");
        assert_eq!(segments.read(next[0]).unwrap(), b"three");
    }

    #[test]
    fn a_segment_shorter_than_recorded_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let segments = open(dir.path(), SegmentsEnd::default());
        let (_, end) = segments.append(&[b"abc"]).unwrap();
        drop(segments);
        let longer = SegmentsEnd {
            len: end.len + 1,
            ..end
        };
        let err = Segments::new(dir.path()).recover(longer).unwrap_err();
        assert!(matches!(err, JournalError::Damaged { .. }), "{err:?}");
    }
}
