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
use crate::journal::{KeptHeaders, Outcome, PageMeta};
use crate::parse::{annotate, Rules, MAX_TEXT_EXTRACT};
use crate::robots::{Robots, RobotsFetch};
use crate::urls::normalize;

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
