//! `webspool recover`: a journal's index (the sled database) rebuilt from its body
//! segments alone, when sled's files are damaged or gone.
//!
//! Every segment entry (format 5 on) describes its page: id, URL record, fetch result,
//! content hash, then the body with its checksum. Recovery reads them in order into a
//! new database built in `DIR/.recover-new`, then swaps it in:
//!
//! 1. `recover.switch` is written (new file, synced, renamed into place) naming the
//!    dated folder `replaced-YYYYMMDDTHHMMSSZ` and the phase;
//! 2. phase 1 moves the old index (everything but `segments/`, `credentials` and
//!    recovery's own files) into that folder;
//! 3. phase 2 (the switch file rewritten first) moves the new database in;
//! 4. `.recover-new` and the switch file are removed.
//!
//! Each move is a rename, so a kill leaves every file in one place or the other, and the
//! switch file says which way the rest goes: a journal with a switch file is refused
//! by every other command, and `recover` run again finishes the move (or, killed before
//! the switch file, builds the new database again from the start).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sled::Transactional;

use super::frontier::frontier_key;
use super::record::{decode_entry_header, encode_page, encode_pending, encode_segments_end};
use super::record::{id_key, EntryHeader, PendingEntry, StoredBody};
use super::segments::{Scanned, Segments, SegmentsEnd};
use super::{flatten, Journal, JournalError, FRAMED_FROM, SEGMENTS_END};

/// The file that marks a recovery between its two phases.
pub(super) const SWITCH_FILE: &str = "recover.switch";
/// Where the new database is built.
const NEW_DIR: &str = ".recover-new";
/// Prefix of the dated folders that keep what a recovery replaced.
const REPLACED_PREFIX: &str = "replaced-";
/// Entries restored per transaction.
const CHUNK: usize = 256;
/// The first bytes of a zstd frame: a segment that starts with them holds bare bodies
/// (formats 3 and 4), which no entry describes.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What a recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoverReport {
    /// Pages back as fetched (to be parsed and synced again).
    pub pages: u64,
    /// Pages whose entry was whole but whose body failed its checksum: back in the
    /// frontier, to be fetched again.
    pub refetch: u64,
    /// Stretches of bytes that were no whole entry, and entries whose header did not
    /// decode: the pages there are lost.
    pub damaged: u64,
    /// Segments written before format 5, whose bodies cannot be recovered.
    pub bare_segments: Vec<u32>,
    /// Where the replaced index was kept.
    pub replaced: Option<PathBuf>,
    /// The run only finished the switch of a recovery that was interrupted.
    pub finished_interrupted: bool,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |e| JournalError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Rebuilds the journal in `dir` from its segments (see the module doc).
pub fn recover(dir: &Path, mut progress: impl FnMut(u64)) -> Result<RecoverReport, JournalError> {
    if dir.join(SWITCH_FILE).exists() {
        let replaced = finish_switch(dir)?;
        return Ok(RecoverReport {
            replaced: Some(replaced),
            finished_interrupted: true,
            ..RecoverReport::default()
        });
    }
    let segments = Segments::new(dir);
    let numbers = segments.numbers()?;
    if numbers.is_empty() {
        return Err(JournalError::NoJournal {
            path: dir.to_path_buf(),
            detail: ": there are no body segments to recover from",
        });
    }
    // sled locks `db` while a process has the journal open: hold that lock throughout.
    let _lock = lock_index(dir)?;
    let new_dir = dir.join(NEW_DIR);
    if new_dir.exists() {
        std::fs::remove_dir_all(&new_dir).map_err(io_error(&new_dir))?;
    }
    let mut report = RecoverReport::default();
    {
        let journal = Journal::open(&new_dir)?;
        rebuild(&journal, &segments, &numbers, &mut report, &mut progress)?;
        journal.recount()?;
        journal.checkpoint()?;
    }
    let replaced = dir.join(format!("{REPLACED_PREFIX}{}", utc_stamp(super::now_ms())));
    write_switch(dir, 1, &replaced)?;
    report.replaced = Some(finish_switch(dir)?);
    Ok(report)
}

/// Takes the lock sled takes on `db` (if there is one), so that no webspool process has
/// the journal open while its index is replaced.
fn lock_index(dir: &Path) -> Result<Option<File>, JournalError> {
    let path = dir.join("db");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path)(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::InUse {
            path: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(&path)(e)),
    }
}

/// `YYYYMMDDTHHMMSSZ` of a time in milliseconds since the epoch (UTC).
fn utc_stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Restores every entry of the segments into `journal`.
fn rebuild(
    journal: &Journal,
    segments: &Segments,
    numbers: &[u32],
    report: &mut RecoverReport,
    progress: &mut impl FnMut(u64),
) -> Result<(), JournalError> {
    let mut chunk: Vec<(EntryHeader, Option<StoredBody>)> = Vec::with_capacity(CHUNK);
    let mut end = SegmentsEnd::default();
    let mut framed_from = None;
    let mut next_id = 1;
    for &number in numbers {
        if is_bare(segments, number)? {
            report.bare_segments.push(number);
            continue;
        }
        framed_from.get_or_insert(number);
        end = SegmentsEnd {
            segment: number,
            len: 0,
        };
        let mut failed = None;
        segments.scan(number, u64::MAX, |found| {
            let (header, body, body_checksum) = match found {
                Scanned::Entry {
                    header,
                    body,
                    body_checksum,
                    ..
                } => (header, body, body_checksum),
                Scanned::Damage { .. } => {
                    report.damaged += 1;
                    return Ok(());
                }
            };
            end.len = body.offset + body.len;
            let Ok(header) = decode_entry_header(&header) else {
                report.damaged += 1;
                return Ok(());
            };
            next_id = next_id.max(header.id + 1);
            let stored = match segments.read_checked(body, body_checksum) {
                Ok(_) => {
                    report.pages += 1;
                    Some(StoredBody {
                        at: body,
                        checksum: body_checksum,
                        content_hash: header.content_hash,
                    })
                }
                Err(JournalError::Damaged { .. }) => {
                    report.refetch += 1;
                    None
                }
                Err(e) => return Err(e),
            };
            chunk.push((header, stored));
            if chunk.len() >= CHUNK {
                if let Err(e) = restore(journal, &std::mem::take(&mut chunk)) {
                    failed = Some(e);
                }
                progress(report.pages);
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    restore(journal, &chunk)?;
    progress(report.pages);
    let mut batch = sled::Batch::default();
    batch.insert(SEGMENTS_END, encode_segments_end(end)?);
    batch.insert(
        FRAMED_FROM,
        &framed_from.unwrap_or(end.segment).to_be_bytes(),
    );
    batch.insert("next_id", &next_id.to_be_bytes());
    journal.db.apply_batch(batch)?;
    Ok(())
}

/// Whether segment `number` holds bare bodies (formats 3 and 4).
fn is_bare(segments: &Segments, number: u32) -> Result<bool, JournalError> {
    let len = segments.file_len(number)?;
    if len < 4 {
        return Ok(false);
    }
    let head = segments.read(super::segments::BodyLocation {
        segment: number,
        offset: 0,
        len: 4,
    })?;
    Ok(head == ZSTD_MAGIC)
}

/// Records restored entries in one transaction: a page with a good body is fetched
/// (and pending parse); one whose body failed its checksum goes back to the frontier,
/// unless an earlier entry of the same page already restored it. A later entry of a
/// page replaces an earlier one.
fn restore(
    journal: &Journal,
    chunk: &[(EntryHeader, Option<StoredBody>)],
) -> Result<(), JournalError> {
    let mut encoded = Vec::with_capacity(chunk.len());
    for (header, stored) in chunk {
        let Ok(parsed) = url::Url::parse(&header.url.url) else {
            continue;
        };
        if header.url.via.trusted() {
            journal.grants.grant(&parsed, None)?;
        }
        let host = crate::urls::host_key(&parsed);
        let value = match stored {
            Some(body) => encode_page(&header.meta, Some(*body), &header.url)?,
            None => encode_pending(&PendingEntry {
                host: host.clone(),
                attempts: 0,
                not_before_ms: 0,
                url: header.url.clone(),
            })?,
        };
        encoded.push((
            header.id,
            header.url.url.as_str(),
            host,
            stored.is_some(),
            value,
        ));
    }
    let trees = (
        &journal.pages,
        &journal.url_index,
        &journal.pending_parse,
        &journal.frontier,
    );
    let result = trees.transaction(|(pages, index, pending, frontier)| {
        for (id, url, host, fetched, value) in &encoded {
            let key = id_key(*id);
            index.insert(url.as_bytes(), &key)?;
            if *fetched {
                pages.insert(&key, value.as_slice())?;
                pending.insert(&key, &[])?;
                frontier.remove(frontier_key(host, *id))?;
            } else if pages.get(key)?.is_none() {
                frontier.insert(frontier_key(host, *id), value.as_slice())?;
            }
        }
        Ok(())
    });
    flatten(result)
}

/// Writes the switch file: the phase and the folder for the replaced index.
fn write_switch(dir: &Path, phase: u8, replaced: &Path) -> Result<(), JournalError> {
    let name = replaced
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = dir.join(SWITCH_FILE);
    let temp = dir.join(format!("{SWITCH_FILE}.new"));
    let mut file = File::create(&temp).map_err(io_error(&temp))?;
    file.write_all(format!("phase {phase}\nreplaced {name}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(&temp))?;
    std::fs::rename(&temp, &path).map_err(io_error(&path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Reads the switch file: its phase and the replaced folder's path.
fn read_switch(dir: &Path) -> Result<(u8, PathBuf), JournalError> {
    let path = dir.join(SWITCH_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let fields: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once(' '))
        .collect();
    let phase = fields.get("phase").and_then(|p| p.parse().ok());
    let name = fields
        .get("replaced")
        .filter(|n| n.starts_with(REPLACED_PREFIX) && !n.contains('/'));
    match (phase, name) {
        (Some(phase), Some(name)) => Ok((phase, dir.join(name))),
        _ => Err(JournalError::DamagedJournal {
            path: dir.to_path_buf(),
            what: format!("{} is not one webspool wrote", path.display()),
        }),
    }
}

/// Files of the journal directory that belong to its index (sled's files and the
/// marker), not to the segments, the credentials, the free-space reserve or a recovery.
fn is_index_file(name: &str) -> bool {
    !(name == "segments"
        || name == super::grants::CREDENTIALS_FILE
        || name == super::space::RESERVE_FILE
        || name == NEW_DIR
        || name.starts_with(SWITCH_FILE)
        || name.starts_with(REPLACED_PREFIX))
}

/// Moves the old index out and the new one in, from wherever the switch file says the
/// move stands; returns the folder holding the old index.
fn finish_switch(dir: &Path) -> Result<PathBuf, JournalError> {
    let (phase, replaced) = read_switch(dir)?;
    let new_dir = dir.join(NEW_DIR);
    if phase == 1 {
        std::fs::create_dir_all(&replaced).map_err(io_error(&replaced))?;
        for name in names(dir)? {
            if is_index_file(&name) {
                let to = replaced.join(&name);
                std::fs::rename(dir.join(&name), &to).map_err(io_error(&to))?;
            }
        }
        sync_dir(&replaced)?;
        sync_dir(dir)?;
        write_switch(dir, 2, &replaced)?;
    }
    if new_dir.is_dir() {
        for name in names(&new_dir)? {
            if is_index_file(&name) {
                let to = dir.join(&name);
                std::fs::rename(new_dir.join(&name), &to).map_err(io_error(&to))?;
            }
        }
        sync_dir(dir)?;
        std::fs::remove_dir_all(&new_dir).map_err(io_error(&new_dir))?;
    }
    let switch = dir.join(SWITCH_FILE);
    std::fs::remove_file(&switch).map_err(io_error(&switch))?;
    sync_dir(dir)?;
    Ok(replaced)
}

/// The names in `dir`.
fn names(dir: &Path) -> Result<Vec<String>, JournalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        // 2024-02-29 23:59:59 UTC, a leap day.
        assert_eq!(utc_stamp(1_709_251_199_000), "20240229T235959Z");
        assert_eq!(utc_stamp(1_796_612_400_000), "20261207T030000Z");
    }
}
