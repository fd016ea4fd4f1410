//! Free space under a journal: the `--min-free` watermark the writing commands check
//! before they take on more work, what a full disk turns into ([`DiskFull`]), and the
//! reserve file that lets a journal be opened on a disk that filled up anyway.
//!
//! - **The watermark** ([`MinFree`], like Elasticsearch's flood stage): one `statvfs`
//!   per check, cheap enough to run every 100 ms or every chunk. Below it a command
//!   stops starting work, commits what it has and says so; it never writes on until
//!   the disk is full.
//! - **A full disk anyway** (another process filled it, or `--min-free 0`): every write
//!   that fails with ENOSPC or EDQUOT becomes [`DiskFull::NoSpace`], naming the journal
//!   directory; the journal refuses further writes as after any failed write, and what
//!   was flushed before is whole.
//! - **The reserve** (`webspool-reserve`, [`RESERVE_FILE`]): sled cannot open a database
//!   without writing (it fills the rest of its last log segment, up to 512 KiB, and
//!   writes a new snapshot), so a journal on a full disk could not even be shown by
//!   `status`. Every open keeps a file of allocated bytes (`reserve_len`: twice sled's
//!   snapshot and 1 MiB, at least 4 MiB) when there is room for twice that, and an open
//!   that finds less free space than that deletes it first, giving sled the room it
//!   needs (as CockroachDB's emergency ballast file).
//!
//! This module never writes anything but the reserve file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use fs2::FileExt;

use super::JournalError;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// `--min-free` when not given.
pub const DEFAULT_MIN_FREE: u64 = 256 * MIB;
/// The reserve file's name in the journal directory.
pub const RESERVE_FILE: &str = "webspool-reserve";
/// The reserve's smallest size.
const MIN_RESERVE: u64 = 4 * MIB;
/// Room for the rest of sled's last log segment (512 KiB) and more.
const SEGMENT_ROOM: u64 = MIB;

/// The disk under a journal is full: below the watermark, or out of space.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskFull {
    /// Less than `--min-free` is free: the command stopped before the disk filled up.
    #[error(
        "disk full: {} free under {} (--min-free {})",
        Size(*free),
        dir.display(),
        Size(*min_free)
    )]
    BelowMinFree {
        dir: PathBuf,
        free: u64,
        min_free: u64,
    },
    /// A write failed for lack of space (ENOSPC, EDQUOT).
    #[error("disk full: no space left under {} (writing {writing})", dir.display())]
    NoSpace { dir: PathBuf, writing: String },
}

impl DiskFull {
    /// The journal directory whose disk is full.
    pub fn dir(&self) -> &Path {
        match self {
            DiskFull::BelowMinFree { dir, .. } | DiskFull::NoSpace { dir, .. } => dir,
        }
    }
}

/// Whether a failed write failed for lack of space.
pub(super) fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Bytes free for this process under `dir` (`statvfs`: `f_bavail × f_frsize`).
pub fn free_space(dir: &Path) -> Result<u64, JournalError> {
    fs2::available_space(dir).map_err(|e| JournalError::Open {
        path: dir.to_path_buf(),
        message: format!("cannot tell the free space under it: {e}"),
    })
}

/// The free-space watermark under a journal (`--min-free`); 0 turns it off. Cheap to
/// check: one `statvfs`, nothing kept between checks.
#[derive(Clone, Debug)]
pub struct MinFree {
    dir: PathBuf,
    bytes: u64,
}

impl MinFree {
    pub fn new(dir: &Path, bytes: u64) -> MinFree {
        MinFree {
            dir: dir.to_path_buf(),
            bytes,
        }
    }

    /// `Ok` while at least the watermark is free under the journal (always, when it is
    /// 0); else [`DiskFull::BelowMinFree`] with what is free.
    pub fn check(&self) -> Result<(), JournalError> {
        if self.bytes == 0 {
            return Ok(());
        }
        let free = free_space(&self.dir)?;
        if free < self.bytes {
            return Err(JournalError::DiskFull(DiskFull::BelowMinFree {
                dir: self.dir.clone(),
                free,
                min_free: self.bytes,
            }));
        }
        Ok(())
    }
}

/// A size for people: `512 bytes`, `12 KiB`, `256 MiB`, `1.5 GiB` (rounded down).
#[derive(Clone, Copy, Debug)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= GIB {
            let tenths = u128::from(n) * 10 / u128::from(GIB);
            match tenths % 10 {
                0 => write!(f, "{} GiB", tenths / 10),
                tenth => write!(f, "{}.{tenth} GiB", tenths / 10),
            }
        } else if n >= MIB {
            write!(f, "{} MiB", n / MIB)
        } else if n >= KIB {
            write!(f, "{} KiB", n / KIB)
        } else {
            write!(f, "{n} bytes")
        }
    }
}

/// The reserve's size for the journal in `dir`: what sled may write when it opens it,
/// the rest of a log segment and a new snapshot, taken as twice the largest snapshot
/// there now plus 1 MiB, in whole MiB, at least [`MIN_RESERVE`].
fn reserve_len(dir: &Path) -> u64 {
    let snapshot = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("snap."))
        .filter_map(|entry| entry.metadata().ok())
        .map(|meta| meta.len())
        .max()
        .unwrap_or(0);
    (2 * snapshot + SEGMENT_ROOM)
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .max(MIN_RESERVE)
}

/// Before sled opens the journal in `dir`: with less free space than the reserve's
/// size, deletes the reserve so that sled has room to open it.
pub(super) fn release_reserve_if_full(dir: &Path) -> Result<(), JournalError> {
    let path = dir.join(RESERVE_FILE);
    let Ok(held) = std::fs::metadata(&path).map(|meta| meta.len()) else {
        return Ok(());
    };
    let free = free_space(dir)?;
    if free >= reserve_len(dir) {
        return Ok(());
    }
    std::fs::remove_file(&path).map_err(|e| JournalError::Open {
        path: dir.to_path_buf(),
        message: format!("cannot delete {} to make room: {e}", path.display()),
    })?;
    tracing::warn!(
        "the disk under {} is full ({} free): deleted the journal's {} reserve ({RESERVE_FILE}) \
         so that it opens; free some space before writing to it again",
        dir.display(),
        Size(free),
        Size(held)
    );
    Ok(())
}

/// After the journal in `dir` opened: grows the reserve to [`reserve_len`] when there
/// is room for twice that (so that the next open does not release it at once). A
/// reserve that cannot be allocated is left out, with a warning: it is a courtesy, and
/// the journal works without it.
pub(super) fn keep_reserve(dir: &Path) {
    let path = dir.join(RESERVE_FILE);
    let want = reserve_len(dir);
    let held = std::fs::metadata(&path).map_or(0, |meta| meta.len());
    let room = free_space(dir).is_ok_and(|free| free >= 2 * want);
    if held >= want || !room {
        return;
    }
    let allocated = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .and_then(|file| allocate(&file, want));
    if let Err(e) = allocated {
        // fs2 reports the error of posix_fallocate(3) through errno, which that
        // function does not set: the reason may be wrong, the failure is not.
        let _ = std::fs::remove_file(&path);
        tracing::warn!(
            "cannot keep a {} reserve in {} ({e}); without it, `webspool status` may \
             not open the journal once the disk is full",
            Size(want),
            dir.display()
        );
    }
}

/// Allocates `len` bytes to `file` (blocks, not a hole) and makes that durable.
fn allocate(file: &File, len: u64) -> std::io::Result<()> {
    file.allocate(len)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        for (n, shown) in [
            (0, "0 bytes"),
            (1023, "1023 bytes"),
            (12 * KIB + 5, "12 KiB"),
            (12 * MIB + 700 * KIB, "12 MiB"),
            (256 * MIB, "256 MiB"),
            (GIB, "1 GiB"),
            (3 * GIB / 2, "1.5 GiB"),
            (GIB + 1, "1 GiB"),
            (u64::MAX, "17179869183.9 GiB"),
        ] {
            assert_eq!(Size(n).to_string(), shown);
        }
    }

    #[test]
    fn the_watermark_names_the_free_space_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        MinFree::new(dir.path(), 0).check().unwrap();
        MinFree::new(dir.path(), 1).check().unwrap();
        let err = MinFree::new(dir.path(), u64::MAX).check().unwrap_err();
        let JournalError::DiskFull(full @ DiskFull::BelowMinFree { .. }) = &err else {
            panic!("{err}");
        };
        assert_eq!(full.dir(), dir.path());
        let shown = err.to_string();
        assert!(
            shown.starts_with("disk full: ")
                && shown.contains(&format!("free under {} (--min-free ", dir.path().display())),
            "{shown}"
        );
    }

    #[test]
    fn the_reserve_is_allocated_grown_to_the_snapshot_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESERVE_FILE);
        assert_eq!(reserve_len(dir.path()), MIN_RESERVE);
        keep_reserve(dir.path());
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), MIN_RESERVE);
        // Blocks, not a hole: a sparse file would hold no space at all.
        assert!(
            File::open(&path).unwrap().allocated_size().unwrap() >= MIN_RESERVE,
            "the reserve is sparse"
        );
        std::fs::write(
            dir.path().join("snap.00000000000000AA"),
            vec![1; 3 * MIB as usize],
        )
        .unwrap();
        assert_eq!(reserve_len(dir.path()), 7 * MIB);
        keep_reserve(dir.path());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 7 * MIB);
        // Plenty of room here: nothing to release (a full disk is in tests/disk_full.rs).
        release_reserve_if_full(dir.path()).unwrap();
        assert!(path.exists());
    }
}
