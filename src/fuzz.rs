//! Fuzz checks: what each target in `fuzz/` runs on one input, and what
//! `tests/fuzz_corpus.rs` replays over every file of `fuzz/corpus/`, so a regression
//! that the fuzzer once found fails `cargo test` without cargo-fuzz.
//!
//! Each check feeds the bytes to one parser of input a server or a user controls and
//! panics only when a property fails (or the parser panics): a bad input as such is
//! never a failure. Not a stable API.

use http::header::{HeaderMap, HeaderValue, CONTENT_ENCODING};
use url::Url;

use crate::fetch::decode::Decoder;
use crate::journal::{decode_entry_header, encode_entry_header, scan_whole_segment};
use crate::journal::{KeptHeaders, Outcome, PageMeta, Scanned, FRAME_BYTES, MAX_HEADER_BYTES};
use crate::parse::{annotate, Rules, MAX_TEXT_EXTRACT};
use crate::robots::{Robots, RobotsFetch};
use crate::urls::normalize;

mod alloc;
pub use alloc::{peak_during, CountingAlloc};

/// URL normalization: never a panic; a normalized URL normalizes to itself again and
/// holds no userinfo and no fragment.
pub fn url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(once) = normalize(&text) else {
        return;
    };
    let twice =
        normalize(once.as_str()).unwrap_or_else(|e| panic!("{once} does not normalize again: {e}"));
    assert_eq!(
        once.as_str(),
        twice.as_str(),
        "normalizing twice changed it"
    );
    assert!(once.username().is_empty() && once.password().is_none());
    assert!(once.fragment().is_none());
}

/// Content types a page may be declared with; the first input byte picks one.
const CONTENT_TYPES: [Option<&str>; 10] = [
    None,
    Some("text/html"),
    Some("text/html; charset=utf-8"),
    Some("text/html; charset=windows-1252"),
    Some("text/html; charset=shift_jis"),
    Some("text/html; charset=utf-16le"),
    Some("text/html; charset=x-no-such-charset"),
    Some("application/xml; charset=iso-8859-1"),
    Some("application/rss+xml"),
    Some("application/gzip"),
];

/// The page annotator (HTML, sitemaps and feeds, gzip too), with any bytes under any
/// declared type and charset: never a panic; every link is an absolute http(s) URL, and
/// the text extract stays within [`MAX_TEXT_EXTRACT`].
pub fn page(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    let meta = PageMeta {
        fetched_at_ms: 0,
        duration_ms: 0,
        redirects: Vec::new(),
        outcome: Outcome::Response {
            status: 200,
            version: "HTTP/1.1".into(),
            final_url: "http://fuzz.test/dir/page".into(),
            headers: KeptHeaders {
                content_type: content_type.map(str::to_string),
                ..KeptHeaders::default()
            },
            body_len: body.len() as u64,
        },
    };
    let annotation = annotate(&meta, body, &Rules::default());
    for link in &annotation.links {
        let url = Url::parse(&link.url).unwrap_or_else(|e| panic!("link {:?}: {e}", link.url));
        assert!(matches!(url.scheme(), "http" | "https"), "{url}");
    }
    let text = annotation.text.len();
    assert!(text <= MAX_TEXT_EXTRACT, "text extract of {text} bytes");
}

/// robots.txt: never a panic, whatever the body; the sitemaps it names are http(s).
pub fn robots(data: &[u8]) {
    let robots = Robots::from_fetch(
        RobotsFetch::Response {
            status: 200,
            body: data,
        },
        "webspool",
    );
    for path in ["/", "/a/b?c=d", "/%7Euser/", "/*$"] {
        let url = Url::parse(&format!("http://fuzz.test{path}")).expect("a valid URL");
        robots.allowed(&url);
    }
    let _ = robots.crawl_delay();
    for sitemap in robots.sitemaps() {
        assert!(matches!(sitemap.scheme(), "http" | "https"), "{sitemap}");
    }
}

/// Cap on decoded bytes in [`content_decoding`]: small, so bombs reach it.
const DECODE_CAP: u64 = 1 << 20;

/// Content-decoding: the first line is the `Content-Encoding` (any list, any case), the
/// rest the body, fed in pieces of 1 to 64 bytes (the second byte picks): never a
/// panic, and the decoded body never passes the cap.
pub fn content_decoding(data: &[u8]) {
    let (coding, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(coding) {
        headers.insert(CONTENT_ENCODING, value);
    }
    let piece = usize::from(data.get(1).copied().unwrap_or(0) % 64) + 1;
    let mut decoder = Decoder::new(&headers, DECODE_CAP);
    let mut out = Vec::new();
    let fed = body
        .chunks(piece)
        .try_for_each(|chunk| decoder.push(chunk, &mut out));
    if fed.is_ok() {
        let _ = decoder.finish(&mut out);
    }
    assert!(
        out.len() as u64 <= DECODE_CAP,
        "{} bytes decoded",
        out.len()
    );
}

/// What decoding an entry header of `n` bytes may allocate at its peak in
/// [`segment_entries`]: serde preallocates a sequence (the redirects) from its length
/// prefix, up to 1 MiB whatever the input (bincode checks a string's length against the
/// bytes left, so strings never exceed the input), plus a multiple of the input for
/// the strings and a sequence that outgrows its preallocation.
pub fn entry_header_alloc_bound(n: usize) -> usize {
    (1 << 20) + 16 * n
}

/// Segment entries, as a damaged or hostile segment file holds them. The bytes are
/// decoded as an entry header: never a panic, never more memory than
/// [`entry_header_alloc_bound`] (measured by [`CountingAlloc`], which must be the global
/// allocator), and a header that decodes encodes and decodes back to itself. Then they
/// are written as a segment file and scanned as `verify` scans one: never a panic, the
/// entries and damaged stretches found cover the file exactly, in order, each entry is
/// what its frame says (magic, lengths, header checksum; its body inside the file), and
/// no damaged stretch holds the start of a whole entry, which the scan should have found.
pub fn segment_entries(data: &[u8]) {
    let mut decoded = None;
    let peak = peak_during(|| decoded = decode_entry_header(data).ok());
    let bound = entry_header_alloc_bound(data.len());
    assert!(
        peak <= bound,
        "{peak} bytes allocated to decode {} bytes (bound {bound})",
        data.len()
    );
    if let Some(header) = decoded {
        let bytes = encode_entry_header(header.id, &header.url, &header.meta, header.content_hash)
            .expect("encodes");
        assert_eq!(decode_entry_header(&bytes).expect("decodes"), header);
    }
    let scratch = ScratchJournal::new(data);
    let found = scan_whole_segment(&scratch.0, 1).unwrap_or_else(|e| panic!("scan: {e}"));
    let mut pos = 0;
    let mut after_damage = false;
    for scanned in found {
        match scanned {
            Scanned::Damage { offset, len } => {
                assert_eq!(
                    offset, pos,
                    "a damaged stretch where the last item did not end"
                );
                assert!(
                    len > 0 && !after_damage,
                    "damage at {offset} not in one stretch"
                );
                let end = offset.checked_add(len).expect("no overflow");
                for at in offset..end {
                    assert!(
                        whole_entry_at(data, at).is_none(),
                        "an entry at {at} missed"
                    );
                }
                pos = end;
                after_damage = true;
            }
            Scanned::Entry {
                offset,
                header,
                body,
                body_checksum,
            } => {
                assert_eq!(offset, pos, "an entry where the last item did not end");
                let frame = whole_entry_at(data, offset).expect("a whole entry");
                assert_eq!(header.as_slice(), frame.header, "the header at {offset}");
                assert_eq!(
                    (body.segment, body.offset, body.len, body_checksum),
                    (1, frame.body_at, frame.body_len, frame.body_checksum),
                    "the body of the entry at {offset}"
                );
                // A header that checks out may still be any bytes: an error, never a panic.
                let _ = decode_entry_header(&header);
                pos = frame.end;
                after_damage = false;
            }
        }
    }
    assert_eq!(pos, data.len() as u64, "the scan stopped before the end");
}

/// An entry as its frame describes it, read by the check itself.
struct Frame<'a> {
    header: &'a [u8],
    body_at: u64,
    body_len: u64,
    body_checksum: u64,
    end: u64,
}

/// The entry starting at `at` if its frame is whole, its header is not too long, its
/// header and body fit in `data` and its header checks out (a body is checked only when
/// read).
fn whole_entry_at(data: &[u8], at: u64) -> Option<Frame<'_>> {
    let rest = data.get(usize::try_from(at).ok()?..)?;
    let frame = rest.get(..FRAME_BYTES as usize)?;
    let word = |i: usize| frame[i..i + 8].try_into().map(u64::from_le_bytes).ok();
    let header_len = frame[4..8].try_into().map(u32::from_le_bytes).ok()? as usize;
    let (body_len, header_checksum, body_checksum) = (word(8)?, word(16)?, word(24)?);
    let header = rest.get(FRAME_BYTES as usize..)?.get(..header_len)?;
    let body_at = at + FRAME_BYTES + header_len as u64;
    let end = body_at.checked_add(body_len)?;
    let whole = &frame[..4] == b"WSE\x01"
        && header_len <= MAX_HEADER_BYTES as usize
        && end <= data.len() as u64
        && xxhash_rust::xxh3::xxh3_64(header) == header_checksum;
    whole.then_some(Frame {
        header,
        body_at,
        body_len,
        body_checksum,
        end,
    })
}

/// A journal directory holding `data` as its segment 1, removed when dropped.
struct ScratchJournal(std::path::PathBuf);

impl ScratchJournal {
    fn new(data: &[u8]) -> ScratchJournal {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("webspool-fuzz-segments-{}-{n}", std::process::id()));
        // Made first, so that whatever is created is removed, even after a failure.
        let scratch = ScratchJournal(dir);
        let segments = scratch.0.join("segments");
        std::fs::create_dir_all(&segments).expect("create a scratch journal");
        std::fs::write(segments.join("00000001.seg"), data).expect("write a segment");
        scratch
    }
}

impl Drop for ScratchJournal {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
