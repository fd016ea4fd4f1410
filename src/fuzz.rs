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
use crate::fetch::robots::{Robots, RobotsFetch, RobotsSource};
use crate::journal::compact::{decode_compact, encode_compact};
use crate::journal::hints::{decode_hint, encode_hint};
use crate::journal::parse::{decode_reparse, encode_reparse};
use crate::journal::record::{decode_annotation, decode_host, decode_page, decode_url};
use crate::journal::record::{decode_entry_header, encode_entry_header, encode_segments_end};
use crate::journal::record::{decode_page_and_body, decode_page_parts, decode_page_with_url};
use crate::journal::record::{decode_pending, decode_pending_v1, decode_segments_end};
use crate::journal::record::{encode_annotation, encode_host, encode_page, encode_pending};
use crate::journal::record::{id_key, key_id, BodyRef};
use crate::journal::recrawl::{decode_policy, decode_schedule, encode_policy, encode_schedule};
use crate::journal::rules::{decode_rules, encode_rules};
use crate::journal::sync::{decode_last_sync, encode_last_sync};
use crate::journal::versions::{split_version_key, version_key};
use crate::journal::{scan_whole_segment, Scanned, FRAME_BYTES, MAX_HEADER_BYTES};
use crate::journal::{ErrorKind, KeptHeaders, Outcome, PageMeta, UrlEntry, Via};
use crate::parse::{annotate, Rules, MAX_TEXT_EXTRACT};
use crate::urls::normalize;
use crate::warc::WarcReader;

mod alloc;
use alloc::peak_during;
pub use alloc::CountingAlloc;

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

/// What decoding one input of `n` bytes may allocate at its peak in
/// [`journal_records`]: a constant, because serde preallocates a sequence from its length
/// prefix up to 1 MiB (bincode checks a string's or byte buffer's length against the
/// bytes left, so those never exceed the input), plus a multiple of the input for what
/// is decoded and encoded again.
pub fn journal_records_alloc_bound(n: usize) -> usize {
    (4 << 20) + 64 * n
}

/// Every journal record decoder fed the same bytes, as a damaged journal would feed
/// them: never a panic, never more memory than [`journal_records_alloc_bound`] (measured
/// by [`CountingAlloc`], which must be the global allocator), and what decodes encodes
/// as the current version and decodes back to the same value.
pub fn journal_records(data: &[u8]) {
    let peak = peak_during(|| decode_every_record(data));
    let bound = journal_records_alloc_bound(data.len());
    assert!(
        peak <= bound,
        "{peak} bytes allocated to decode {} bytes (bound {bound})",
        data.len()
    );
}

fn decode_every_record(data: &[u8]) {
    if let Ok(entry) = decode_url(data) {
        // Format 4 keeps URL records only inside page records.
        let page = encode_page(&fuzz_meta(), None, &entry).expect("encodes");
        let (_, back) = decode_page_with_url(&page).expect("decodes");
        assert_eq!(back, Some(entry), "URL record");
    }

    let pending = decode_pending(data);
    let pending_v1 = decode_pending_v1(data);
    if let Ok(entry) = pending {
        let old = pending_v1.expect("a pending entry is a pending_fetch value too");
        assert_eq!(
            (old.host.as_str(), old.attempts, old.not_before_ms),
            (entry.host.as_str(), entry.attempts, entry.not_before_ms)
        );
        let bytes = encode_pending(&entry).expect("encodes");
        assert_eq!(decode_pending(&bytes).expect("decodes"), entry, "pending");
    }

    if let Ok(host) = decode_host(data) {
        if let Some(source) = host.robots.as_deref().and_then(RobotsSource::decode) {
            robots_from_source(&source);
        }
        let bytes = encode_host(&host).expect("encodes");
        assert_eq!(decode_host(&bytes).expect("decodes"), host, "host");
    }
    if let Some(source) = RobotsSource::decode(data) {
        robots_from_source(&source);
    }

    if let Ok(end) = decode_segments_end(data) {
        let bytes = encode_segments_end(end).expect("encodes");
        assert_eq!(decode_segments_end(&bytes).expect("decodes"), end);
    }

    let meta = decode_page(data);
    let with_body = decode_page_and_body(data);
    let with_url = decode_page_with_url(data);
    let parts = decode_page_parts(data);
    assert_eq!(meta.is_ok(), with_body.is_ok(), "decode_page_and_body");
    assert_eq!(meta.is_ok(), with_url.is_ok(), "decode_page_with_url");
    assert_eq!(meta.is_ok(), parts.is_ok(), "decode_page_parts");
    if let (Ok(meta), Ok((meta_b, body)), Ok((meta_u, url))) = (meta, with_body, with_url) {
        assert!(
            meta == meta_b && meta == meta_u,
            "the page decoders disagree"
        );
        assert_eq!(
            parts.ok(),
            Some((meta.clone(), body, url.clone())),
            "decode_page_parts disagrees"
        );
        let url = url.unwrap_or_else(fuzz_url);
        // Only a checked body (format 5) can be written again: older ones had no checksum.
        let stored = match body {
            Some(BodyRef::Checked(stored)) => Some(stored),
            Some(BodyRef::Unchecked(_)) | None => None,
        };
        let bytes = encode_page(&meta, stored, &url).expect("encodes");
        let back = decode_page_and_body(&bytes).expect("decodes");
        assert_eq!(back, (meta, stored.map(BodyRef::Checked)));
        assert_eq!(decode_page_with_url(&bytes).expect("decodes").1, Some(url));
    }

    if let Ok(header) = decode_entry_header(data) {
        let bytes = encode_entry_header(header.id, &header.url, &header.meta, header.content_hash)
            .expect("encodes");
        assert_eq!(decode_entry_header(&bytes).expect("decodes"), header);
    }

    if let Ok(schedule) = decode_schedule(data) {
        let bytes = encode_schedule(&schedule).expect("encodes");
        assert_eq!(decode_schedule(&bytes).expect("decodes"), schedule);
    }

    if let Ok(policy) = decode_policy(data) {
        let bytes = encode_policy(policy).expect("encodes");
        assert_eq!(decode_policy(&bytes).expect("decodes"), policy);
    }

    if let Ok(rules) = decode_rules(data) {
        let bytes = encode_rules(&rules).expect("encodes");
        assert_eq!(decode_rules(&bytes).expect("decodes"), rules);
    }

    if let Ok(annotation) = decode_annotation(data) {
        let bytes = encode_annotation(&annotation).expect("encodes");
        assert_eq!(decode_annotation(&bytes).expect("decodes"), annotation);
    }

    if let Ok(last) = decode_last_sync(data) {
        let bytes = encode_last_sync(&last).expect("encodes");
        assert_eq!(decode_last_sync(&bytes).expect("decodes"), last);
    }

    if let Ok(hint) = decode_hint(data) {
        let bytes = encode_hint(hint).expect("encodes");
        assert_eq!(decode_hint(&bytes).expect("decodes"), hint);
    }

    if let Ok(state) = decode_compact(data) {
        let bytes = encode_compact(state).expect("encodes");
        assert_eq!(decode_compact(&bytes).expect("decodes"), state);
    }

    if let Ok(state) = decode_reparse(data) {
        let bytes = encode_reparse(state).expect("encodes");
        assert_eq!(decode_reparse(&bytes).expect("decodes"), state);
    }

    match key_id(data) {
        Ok(id) => assert_eq!(id_key(id).as_slice(), data, "id key"),
        Err(_) => assert_ne!(data.len(), 8, "an 8-byte key refused"),
    }

    match split_version_key(data) {
        Ok((id, at)) => assert_eq!(version_key(id, at).as_slice(), data, "version key"),
        Err(_) => assert_ne!(data.len(), 16, "a 16-byte key refused"),
    }
}

/// The scheduler's use of a stored robots.txt: rules rebuilt and asked.
fn robots_from_source(source: &RobotsSource) {
    let robots = Robots::from_source(source, "webspool");
    let url = Url::parse("http://fuzz.test/a?b").expect("a valid URL");
    robots.allowed(&url);
    let _ = source.expires_at_ms();
}

fn fuzz_meta() -> PageMeta {
    PageMeta {
        fetched_at_ms: 1,
        duration_ms: 2,
        redirects: Vec::new(),
        outcome: Outcome::Error {
            kind: ErrorKind::Timeout,
            message: "fuzz".into(),
        },
    }
}

fn fuzz_url() -> UrlEntry {
    UrlEntry {
        url: "http://fuzz.test/".into(),
        source_key: None,
        added_at_ms: 0,
        depth: 0,
        via: Via::Given,
    }
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

/// Blocks kept by [`warc_records`]'s reader; longer ones are skipped.
const WARC_CAP: u64 = 1 << 20;

/// WARC reading (plain or gzip, told by the first bytes): never a panic, and every
/// record read, written again as a plain record, reads back the same (version, header
/// fields, block); their offsets grow.
pub fn warc_records(data: &[u8]) {
    let read_all = |bytes: &[u8]| {
        let mut records = Vec::new();
        let Ok(mut reader) = WarcReader::new(bytes, WARC_CAP) else {
            return records;
        };
        while let Ok(Some(record)) = reader.next_record() {
            records.push(record);
        }
        records
    };
    let first = read_all(data);
    let mut plain = Vec::new();
    let mut last = None;
    for record in &first {
        assert!(last < Some(record.offset.stream), "offsets do not grow");
        last = Some(record.offset.stream);
        let Some(block) = &record.block else {
            continue;
        };
        assert_eq!(block.len() as u64, record.block_len);
        plain.extend_from_slice(record.version.as_bytes());
        plain.extend_from_slice(b"\r\n");
        for (name, value) in &record.headers {
            plain.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        plain.extend_from_slice(b"\r\n");
        plain.extend_from_slice(block);
        plain.extend_from_slice(b"\r\n\r\n");
    }
    let kept: Vec<_> = first.iter().filter(|r| r.block.is_some()).collect();
    let again = read_all(&plain);
    assert_eq!(kept.len(), again.len(), "records lost when written again");
    for (a, b) in kept.iter().zip(&again) {
        assert_eq!(
            (&a.version, &a.headers, &a.block),
            (&b.version, &b.headers, &b.block)
        );
    }
}
