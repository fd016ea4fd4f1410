//! Compressed bodies in append-only segment files beside the sled database
//! (`<journal>/segments/NNNNNNNN.seg`), so that sled holds only small records: a body
//! in sled costs a copy of its node on every insert and doubles the bytes on disk.
//!
//! From format 5 on, each body is written as a self-describing entry, so that the
//! segments alone are enough to rebuild the journal (`webspool recover`):
//!
//! ```text
//! magic "WSE\x01" | header length u32 LE | body length u64 LE
//!   | header checksum u64 LE | body checksum u64 LE | header | body
//! ```
//!
//! The header is a versioned record (the page's id, URL record, fetch result and
//! content hash: `record::EntryHeader`), the body the stored (compressed) bytes, and
//! each checksum the xxh3-64 of its bytes. The page record keeps the body's location
//! and checksum, and every read checks it ([`Segments::read_checked`]). Segments
//! written before format 5 (numbered below the journal's `framed_from`) hold bare
//! bodies, one after the other, that only their page records describe.
//!
//! Only the committer appends, a group at a time (and `compact`, which has the journal
//! to itself, a chunk at a time): [`Segments::append`] writes the
//! group's entries, syncs them, and returns where each body went and where the
//! segments now end. The caller then records the locations (in the page records) and that end
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
use xxhash_rust::xxh3::xxh3_64;

use super::JournalError;

/// A segment is closed once it holds this many bytes and the next one is started.
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

/// The first bytes of every entry: "WSE" and the version of the framing.
const ENTRY_MAGIC: [u8; 4] = *b"WSE\x01";
/// Magic, header length, body length and the two checksums.
pub(crate) const FRAME_BYTES: u64 = 32;
/// A header longer than this is damage: a URL is at most 8 KiB and the fetch result
/// keeps a few headers and at most a few redirects.
pub(crate) const MAX_HEADER_BYTES: u32 = 1 << 20;
/// How far a scan reads at a time while it looks for the next entry after damage.
const RESYNC_CHUNK: usize = 1 << 20;

/// The checksum kept with every stored body and entry header: xxh3-64 of the bytes.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// One page's entry for [`Segments::append`]: its encoded header and stored body.
pub(crate) struct Entry<'a> {
    pub header: &'a [u8],
    pub body: &'a [u8],
}

/// Where an appended body went, and the checksum of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Appended {
    pub at: BodyLocation,
    pub checksum: u64,
}

/// What a scan of a segment finds, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// A whole entry: its header checked out; its body is at `body` (not yet read).
    Entry {
        offset: u64,
        header: Vec<u8>,
        body: BodyLocation,
        body_checksum: u64,
    },
    /// `len` bytes from `offset` that are not a whole entry (damage, or a torn end).
    Damage { offset: u64, len: u64 },
}

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
    move |e| match super::space::is_full(&e) {
        true => JournalError::NoSpace { writing: what },
        false => JournalError::Segments(format!("{what}: {e}")),
    }
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

    /// Appends `entries` (in order) and syncs them; returns where each body went, with
    /// its checksum, and the new end, which the caller records with them.
    pub fn append(
        &self,
        entries: &[Entry<'_>],
    ) -> Result<(Vec<Appended>, SegmentsEnd), JournalError> {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.is_empty() {
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
        let mut appended = Vec::with_capacity(entries.len());
        let size: u64 = entries
            .iter()
            .map(|e| FRAME_BYTES + e.header.len() as u64 + e.body.len() as u64)
            .sum();
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for entry in entries {
            let header_len = u32::try_from(entry.header.len())
                .ok()
                .filter(|&n| n <= MAX_HEADER_BYTES)
                .ok_or_else(|| {
                    JournalError::Encode(format!(
                        "a segment entry header of {} bytes",
                        entry.header.len()
                    ))
                })?;
            let body_checksum = checksum(entry.body);
            buf.extend_from_slice(&ENTRY_MAGIC);
            buf.extend_from_slice(&header_len.to_le_bytes());
            buf.extend_from_slice(&(entry.body.len() as u64).to_le_bytes());
            buf.extend_from_slice(&checksum(entry.header).to_le_bytes());
            buf.extend_from_slice(&body_checksum.to_le_bytes());
            buf.extend_from_slice(entry.header);
            appended.push(Appended {
                at: BodyLocation {
                    segment: active.end.segment,
                    offset: active.end.len + buf.len() as u64,
                    len: entry.body.len() as u64,
                },
                checksum: body_checksum,
            });
            buf.extend_from_slice(entry.body);
        }
        let path = self.path(active.end.segment);
        let Some(file) = active.file.as_ref() else {
            return Err(JournalError::Segments("no segment open".into()));
        };
        // At the recorded end, not the file's: bytes of a failed earlier write are
        // overwritten.
        if let Err(e) = file
            .write_all_at(&buf, active.end.len)
            .and_then(|()| file.sync_data())
        {
            // What a failed write left past the end belongs to no page: give its space
            // back now (a full disk), not at the next open.
            let _ = file.set_len(active.end.len);
            return Err(io_error(path.display().to_string())(e));
        }
        active.end.len += buf.len() as u64;
        Ok((appended, active.end))
    }

    /// Makes the next append start segment `number`, empty (it must come after every
    /// segment written so far): a compaction copies the live bodies into segments of
    /// their own, so that the old ones can be deleted whole. The caller has recorded
    /// that end first.
    pub fn start_segment(&self, number: u32) {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        if number > active.end.segment {
            active.end = SegmentsEnd {
                segment: number,
                len: 0,
            };
            active.file = None;
        }
    }

    /// Deletes segment file `number`, which no record may point into any more, and
    /// syncs the directory.
    pub fn remove(&self, number: u32) -> Result<(), JournalError> {
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&number);
        let path = self.path(number);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path.display().to_string())(e)),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(self.dir.display().to_string()))
    }

    /// The stored body at `at`, which must have the checksum `expected`.
    pub fn read_checked(&self, at: BodyLocation, expected: u64) -> Result<Vec<u8>, JournalError> {
        let bytes = self.read(at)?;
        if checksum(&bytes) != expected {
            return Err(JournalError::Damaged {
                what: format!(
                    "its {} stored bytes at offset {} of segment {} fail their checksum",
                    at.len, at.offset, at.segment
                ),
            });
        }
        Ok(bytes)
    }

    /// The read handle of segment `number`, opened on first use.
    fn reader(&self, number: u32) -> Result<Arc<File>, JournalError> {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = readers.get(&number) {
            return Ok(file.clone());
        }
        let path = self.path(number);
        let file = Arc::new(File::open(&path).map_err(|e| JournalError::Damaged {
            what: format!("{}: {e}", path.display()),
        })?);
        readers.insert(number, file.clone());
        Ok(file)
    }

    /// The stored body at `at`, unchecked: bodies of formats 3 and 4 have no checksum.
    pub fn read(&self, at: BodyLocation) -> Result<Vec<u8>, JournalError> {
        let file = self.reader(at.segment)?;
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

    /// The numbers of the segment files on disk, in order.
    pub fn numbers(&self) -> Result<Vec<u32>, JournalError> {
        let dir = &self.dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(dir.display().to_string())(e)),
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error(dir.display().to_string()))?;
            if let Some(number) = segment_number(&entry.file_name().to_string_lossy()) {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// The length of segment `number`'s file.
    pub fn file_len(&self, number: u32) -> Result<u64, JournalError> {
        let path = self.path(number);
        self.reader(number)?
            .metadata()
            .map(|m| m.len())
            .map_err(io_error(path.display().to_string()))
    }

    /// Scans the entries in the first `limit` bytes of segment `number` (format 5 on),
    /// handing `found` each whole entry and each stretch of bytes that is none, in
    /// order. After damage it goes on at the next place where an entry checks out.
    pub fn scan(
        &self,
        number: u32,
        limit: u64,
        mut found: impl FnMut(Scanned) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        let file = self.reader(number)?;
        let limit = limit.min(self.file_len(number)?);
        let read_error = |e: std::io::Error| JournalError::Damaged {
            what: format!("segment {number} cannot be read: {e}"),
        };
        let mut pos = 0;
        let mut damage_from = None;
        while pos < limit {
            match entry_at(&file, number, pos, limit).map_err(read_error)? {
                Some((entry, end)) => {
                    if let Some(from) = damage_from.take() {
                        found(Scanned::Damage {
                            offset: from,
                            len: pos - from,
                        })?;
                    }
                    found(entry)?;
                    pos = end;
                }
                None => {
                    damage_from.get_or_insert(pos);
                    pos = next_magic(&file, pos + 1, limit).map_err(read_error)?;
                }
            }
        }
        if let Some(from) = damage_from {
            found(Scanned::Damage {
                offset: from,
                len: limit - from,
            })?;
        }
        Ok(())
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

/// The entry at `pos` if a whole one with a good header lies there within `limit`, and
/// where it ends. Its body is not checked here.
fn entry_at(
    file: &File,
    number: u32,
    pos: u64,
    limit: u64,
) -> std::io::Result<Option<(Scanned, u64)>> {
    let mut frame = [0u8; FRAME_BYTES as usize];
    if pos + FRAME_BYTES > limit {
        return Ok(None);
    }
    file.read_exact_at(&mut frame, pos)?;
    let word = |at: usize| u64::from_le_bytes(frame[at..at + 8].try_into().unwrap_or_default());
    let header_len = u32::from_le_bytes(frame[4..8].try_into().unwrap_or_default());
    let (body_len, header_checksum, body_checksum) = (word(8), word(16), word(24));
    if frame[..4] != ENTRY_MAGIC || header_len > MAX_HEADER_BYTES {
        return Ok(None);
    }
    let body_at = pos + FRAME_BYTES + u64::from(header_len);
    let Some(end) = body_at.checked_add(body_len).filter(|&end| end <= limit) else {
        return Ok(None);
    };
    let mut header = vec![0; header_len as usize];
    file.read_exact_at(&mut header, pos + FRAME_BYTES)?;
    if checksum(&header) != header_checksum {
        return Ok(None);
    }
    let body = BodyLocation {
        segment: number,
        offset: body_at,
        len: body_len,
    };
    Ok(Some((
        Scanned::Entry {
            offset: pos,
            header,
            body,
            body_checksum,
        },
        end,
    )))
}

/// The first offset at or after `from` (and before `limit`) where the entry magic is,
/// or `limit`.
fn next_magic(file: &File, from: u64, limit: u64) -> std::io::Result<u64> {
    let mut buf = vec![0; RESYNC_CHUNK];
    let mut pos = from;
    while pos < limit {
        let n = usize::try_from(limit - pos).map_or(RESYNC_CHUNK, |left| left.min(RESYNC_CHUNK));
        file.read_exact_at(&mut buf[..n], pos)?;
        if let Some(at) = buf[..n]
            .windows(ENTRY_MAGIC.len())
            .position(|w| w == ENTRY_MAGIC)
        {
            return Ok(pos + at as u64);
        }
        if n < ENTRY_MAGIC.len() {
            break;
        }
        // The magic may straddle two chunks.
        pos += (n - (ENTRY_MAGIC.len() - 1)) as u64;
        if n < RESYNC_CHUNK {
            break;
        }
    }
    Ok(limit)
}

/// Everything [`Segments::scan`] finds in the whole of segment `number` of the journal
/// in `journal_dir`, in order. For the `segment_entries` fuzz check (`crate::fuzz`),
/// which writes arbitrary bytes there; the journal scans through its own [`Segments`].
pub(crate) fn scan_whole_segment(
    journal_dir: &Path,
    number: u32,
) -> Result<Vec<Scanned>, JournalError> {
    let mut found = Vec::new();
    Segments::new(journal_dir).scan(number, u64::MAX, |scanned| {
        found.push(scanned);
        Ok(())
    })?;
    Ok(found)
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

    fn entries<'a>(bodies: &[&'a [u8]]) -> Vec<Entry<'a>> {
        bodies
            .iter()
            .map(|body| Entry {
                header: b"header",
                body,
            })
            .collect()
    }

    fn entry_bytes(header: usize, body: usize) -> u64 {
        FRAME_BYTES + header as u64 + body as u64
    }

    #[test]
    fn appended_bodies_read_back_checked_and_a_crash_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let segments = open(dir.path(), SegmentsEnd::default());
        let (first, end) = segments.append(&entries(&[b"one", b"two!"])).unwrap();
        let len = entry_bytes(6, 3) + entry_bytes(6, 4);
        assert_eq!(end, SegmentsEnd { segment: 1, len });
        assert_eq!(
            segments
                .read_checked(first[1].at, first[1].checksum)
                .unwrap(),
            b"two!"
        );
        assert!(matches!(
            segments.read_checked(first[1].at, first[1].checksum ^ 1),
            Err(JournalError::Damaged { .. })
        ));
        // Appended but never recorded: the end the journal knows is still `end`.
        let (lost, _) = segments.append(&entries(&[b"unrecorded"])).unwrap();
        drop(segments);
        let segments = open(dir.path(), end);
        assert_eq!(segments.size_on_disk().unwrap(), len);
        assert!(segments.read(lost[0].at).is_err());
        let absurd = BodyLocation {
            len: u64::MAX,
            ..first[0].at
        };
        assert!(matches!(
            segments.read(absurd),
            Err(JournalError::Damaged { .. })
        ));
        let (next, end) = segments.append(&entries(&[b"three"])).unwrap();
        assert_eq!(next[0].at.offset, len + FRAME_BYTES + 6);
        assert_eq!(end.len, len + entry_bytes(6, 5));
        assert_eq!(segments.read(first[0].at).unwrap(), b"one");
        assert_eq!(segments.read(next[0].at).unwrap(), b"three");
    }

    #[test]
    fn a_segment_shorter_than_recorded_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let segments = open(dir.path(), SegmentsEnd::default());
        let (_, end) = segments.append(&entries(&[b"abc"])).unwrap();
        drop(segments);
        let longer = SegmentsEnd {
            len: end.len + 1,
            ..end
        };
        let err = Segments::new(dir.path()).recover(longer).unwrap_err();
        assert!(matches!(err, JournalError::Damaged { .. }), "{err:?}");
    }

    fn scan_all(segments: &Segments, limit: u64) -> Vec<Scanned> {
        let mut found = Vec::new();
        segments
            .scan(1, limit, |s| {
                found.push(s);
                Ok(())
            })
            .unwrap();
        found
    }

    /// A damaged header is skipped up to the next entry that checks out; a torn end is
    /// damage too; every whole entry is found with its body.
    #[test]
    fn a_scan_finds_every_whole_entry_around_damage() {
        let dir = tempfile::tempdir().unwrap();
        let segments = open(dir.path(), SegmentsEnd::default());
        let bodies: [&[u8]; 3] = [b"first body", b"second", b"third!"];
        let (appended, end) = segments.append(&entries(&bodies)).unwrap();
        let whole = scan_all(&segments, end.len);
        assert_eq!(whole.len(), 3);
        for (found, (appended, body)) in whole.iter().zip(appended.iter().zip(bodies)) {
            let Scanned::Entry {
                header,
                body: at,
                body_checksum,
                ..
            } = found
            else {
                panic!("{found:?}")
            };
            assert_eq!(
                (header.as_slice(), *at, *body_checksum),
                (&b"header"[..], appended.at, appended.checksum)
            );
            assert_eq!(segments.read(*at).unwrap(), body);
        }
        // One byte of the second entry's header flipped.
        let second = entry_bytes(6, bodies[0].len());
        let path = dir.path().join("segments/00000001.seg");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(second + FRAME_BYTES + 2) as usize] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let segments = open(dir.path(), end);
        let found = scan_all(&segments, end.len);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(
            found[1],
            Scanned::Damage {
                offset: second,
                len: entry_bytes(6, bodies[1].len())
            }
        );
        assert!(matches!(found[2], Scanned::Entry { body, .. } if body == appended[2].at));
        // A torn end: the last entry cut short.
        let found = scan_all(&segments, end.len - 1);
        assert!(
            matches!(found.last(), Some(Scanned::Damage { .. })),
            "{found:?}"
        );
    }
}
