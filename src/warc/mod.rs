//! WARC in and out (ISO 28500): `export` writes the journal's pages as WARC/1.1 (or as
//! JSON lines), `import` records the responses of WARC files as pages.
//!
//! `read.rs` reads any WARC file, plain or gzip, streaming; `write.rs` writes one gzip
//! member per record and rolls files over; `digest.rs` holds the SHA-1/base32
//! digests; `export.rs` and `import.rs` join them to the journal. Reading and writing
//! are written here rather than taken from the `warc` crate: it reads gzip as one
//! stream, so it cannot say at which member (file offset) a record or a fault is, and
//! it leaves the block's size to the caller's trust.

mod digest;
mod export;
mod import;
mod read;
mod write;

use std::path::Path;

pub use digest::Sha1Digest;
pub use export::{export, warc_date, ExportReport, ExportRequest, ExportTo};
pub use import::{ImportSummary, Importer, MAX_DIGESTS};
pub use read::{Offset, ReadError, Record, WarcReader, MAX_HEADER_BYTES};

use crate::journal::JournalError;

/// Why an export or import stopped.
#[derive(Debug, thiserror::Error)]
pub enum WarcError {
    /// A file that is not a WARC, or a fault in it, and where.
    #[error("{file}: at byte {offset}: {what}")]
    Bad {
        file: String,
        offset: u64,
        what: String,
    },
    /// A fault found by the reader, before the file's name is added.
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl WarcError {
    fn io(path: &Path, e: std::io::Error) -> WarcError {
        WarcError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    }
}
