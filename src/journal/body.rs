//! Page bodies as the journal stores them: one zstd frame each, exact bytes after
//! content-decoding, with a hash of those decoded bytes. Compression runs in the fetch
//! tasks (see `schedule.rs`), so the committer's thread only writes; decompression runs
//! in the parse workers.

use std::cell::RefCell;

use zstd::bulk::{Compressor, Decompressor};

use super::JournalError;

/// zstd level for bodies: the fastest positive level. HTML still shrinks about 4.5
/// times; level 3 saved 3 % more disk on the docs crawl for about 10 % more crawl CPU.
const ZSTD_LEVEL: i32 = 1;

/// A body ready for the journal: its stored (compressed) bytes and the hash of its
/// decoded bytes, which tells an unchanged page from a changed one without
/// decompressing the stored body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedBody {
    pub bytes: Vec<u8>,
    pub content_hash: u128,
}

/// The hash of a decoded body kept with it: 128-bit xxh3 (not a cryptographic hash:
/// it detects change, it does not authenticate).
pub fn content_hash(body: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(body)
}

/// Compresses and hashes a body for the journal.
pub fn pack_body(body: &[u8]) -> Result<PackedBody, JournalError> {
    Ok(PackedBody {
        bytes: compress_body(body)?,
        content_hash: content_hash(body),
    })
}

/// Compresses a body for the journal, with a compression context kept per thread.
fn compress_body(body: &[u8]) -> Result<Vec<u8>, JournalError> {
    thread_local! {
        static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match &mut *cell {
            Some(c) => c,
            None => cell.insert(
                Compressor::new(ZSTD_LEVEL)
                    .map_err(|e| JournalError::Encode(format!("zstd: {e}")))?,
            ),
        };
        compressor
            .compress(body)
            .map_err(|e| JournalError::Encode(format!("zstd: {e}")))
    })
}

/// Largest body decompressed in one step into a buffer of the size its frame declares;
/// larger ones (or frames without a size) are streamed, so a damaged size field cannot
/// make us allocate more than this up front.
const MAX_ONE_STEP: u64 = 64 * 1024 * 1024;

/// Decompresses a body read from the journal.
pub fn decompress_body(id: u64, compressed: &[u8]) -> Result<Vec<u8>, JournalError> {
    let mut body = Vec::new();
    decompress_body_into(id, compressed, &mut body)?;
    Ok(body)
}

/// Decompresses a body read from the journal into `body` (replacing what it held), so
/// that a caller decompressing many can reuse one buffer. Bodies are written as one
/// zstd frame that records its size (`zstd::bulk::Compressor`), so the usual case is one
/// call with a decompression context kept per thread; anything else is streamed.
pub fn decompress_body_into(
    id: u64,
    compressed: &[u8],
    body: &mut Vec<u8>,
) -> Result<(), JournalError> {
    thread_local! {
        static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
    }
    body.clear();
    let size = zstd::zstd_safe::get_frame_content_size(compressed)
        .ok()
        .flatten();
    if let Some(size) = size.filter(|&s| s <= MAX_ONE_STEP) {
        body.reserve(size as usize);
        let one_step = DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            let decompressor = match &mut *cell {
                Some(d) => d,
                None => cell.insert(Decompressor::new().ok()?),
            };
            decompressor.decompress_to_buffer(compressed, body).ok()
        });
        // A failure here (several frames, damage) gets the streaming decoder's error.
        if one_step == Some(size as usize) {
            return Ok(());
        }
    }
    *body = zstd::stream::decode_all(compressed).map_err(|e| JournalError::Damaged {
        what: format!("body of id {id} does not decompress: {e}"),
    })?;
    Ok(())
}
