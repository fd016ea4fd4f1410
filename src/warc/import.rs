//! `webspool import`: the responses of WARC files become pages of the journal, as if
//! fetched (then parsed and synced as usual: they wait in `pending_parse`).
//!
//! Record by record, streaming ([`WarcReader`]): a `response` record with an HTTP
//! message, or a `resource` record (taken for a 200 with the record's `Content-Type`),
//! becomes a page: its `WARC-Target-URI` normalized, its `WARC-Date` the fetch time, its
//! HTTP status and the headers the journal keeps, and its payload with the transfer
//! coding (chunked) and the content codings undone, as a crawl stores it, capped at
//! `--max-body` (decoded bytes counted). A `revisit` record takes the body and response
//! of the record it points to: the page of its `WARC-Refers-To-Target-URI` in the
//! journal, or else the record with its `WARC-Payload-Digest` imported earlier in the
//! same run (up to [`MAX_DIGESTS`] digests are remembered). Everything else is skipped
//! and counted: `request`, `metadata`, `warcinfo`, `conversion` and unknown records,
//! records that say `WARC-Truncated` (a crawl never stores a cut body), bodies over
//! the cap, payloads that do not decode, targets that are not http(s) URLs, and
//! revisits whose original is not found.
//!
//! Pages are committed in batches ([`Journal::import_pages`]: durable when it returns),
//! and the batch read so far is committed before an error is returned, so the records
//! before a fault in the file stay imported. Importing the same file again changes
//! nothing: a URL whose stored body (or a kept older version) has the same content
//! hash is left as it is.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::digest::Sha1Digest;
use super::read::{Record, WarcReader};
use super::WarcError;
use crate::fetch::decode::{DecodeError, Decoder};
use crate::journal::{pack_body, ImportedPage, Journal, KeptHeaders, Outcome, PageMeta};

/// Payload digests remembered for revisit records, at most.
pub const MAX_DIGESTS: usize = 200_000;

/// Pages per batch, at most.
const BATCH_PAGES: usize = 256;

/// Decoded body bytes per batch before it is committed.
const BATCH_BYTES: usize = 32 * 1024 * 1024;

/// What an import did, over every file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub files: u64,
    pub records: u64,
    /// Pages recorded (new URLs or new bodies).
    pub recorded: u64,
    /// Pages the journal had with the same body.
    pub unchanged: u64,
    /// Revisit records resolved to their original.
    pub revisits: u64,
    /// Records skipped, by why (`request`, `metadata`, `truncated`, ...).
    pub skipped: BTreeMap<String, u64>,
}

impl ImportSummary {
    fn skip(&mut self, why: &str) {
        *self.skipped.entry(why.to_string()).or_default() += 1;
    }
}

/// Imports every file in order; stops at the first file with an error (the records
/// before it are imported).
pub struct Importer<'a> {
    journal: &'a Journal,
    max_body: u64,
    batch: Vec<ImportedPage>,
    batch_urls: HashSet<String>,
    batch_bytes: usize,
    digests: HashMap<Sha1Digest, String>,
    pub summary: ImportSummary,
}

impl<'a> Importer<'a> {
    pub fn new(journal: &'a Journal, max_body: u64) -> Importer<'a> {
        Importer {
            journal,
            max_body,
            batch: Vec::new(),
            batch_urls: HashSet::new(),
            batch_bytes: 0,
            digests: HashMap::new(),
            summary: ImportSummary::default(),
        }
    }

    /// Imports the records of one file (plain or gzip WARC).
    pub fn import_file(&mut self, path: &Path) -> Result<(), WarcError> {
        let file = File::open(path).map_err(|e| WarcError::io(path, e))?;
        let read = self.read_file(file);
        // What was read before a fault stays imported.
        let committed = self.commit();
        read.map_err(|e| match e {
            WarcError::Read(e) => WarcError::Bad {
                file: path.display().to_string(),
                offset: e.offset,
                what: e.what,
            },
            e => e,
        })?;
        committed?;
        self.summary.files += 1;
        Ok(())
    }

    fn read_file(&mut self, file: File) -> Result<(), WarcError> {
        // A block holds the HTTP head besides the body: room for one.
        let mut reader = WarcReader::new(file, self.max_body.saturating_add(1 << 20))?;
        while let Some(record) = reader.next_record()? {
            self.summary.records += 1;
            self.record(record)?;
        }
        Ok(())
    }

    fn record(&mut self, record: Record) -> Result<(), WarcError> {
        let kind = record.kind();
        if !matches!(kind.as_str(), "response" | "resource" | "revisit") {
            let why = match kind.as_str() {
                "request" | "metadata" | "warcinfo" | "conversion" => kind.as_str(),
                _ => "other",
            };
            self.summary.skip(why);
            return Ok(());
        }
        if record.header("WARC-Truncated").is_some() {
            self.summary.skip("truncated");
            return Ok(());
        }
        let Some(url) = record
            .header("WARC-Target-URI")
            .map(|u| u.trim_matches(['<', '>']))
            .and_then(|u| crate::urls::normalize(u).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
        else {
            self.summary.skip("not_http");
            return Ok(());
        };
        let fetched_at_ms = record
            .header("WARC-Date")
            .and_then(crate::parse::hints::w3c_datetime_ms)
            .unwrap_or_else(crate::journal::now_ms);
        let page = match kind.as_str() {
            "revisit" => match self.revisit(&record, &url)? {
                Some((mut meta, body)) => {
                    self.summary.revisits += 1;
                    meta.fetched_at_ms = fetched_at_ms;
                    if let Outcome::Response { final_url, .. } = &mut meta.outcome {
                        *final_url = url.to_string();
                    }
                    Some((meta, body))
                }
                None => {
                    self.summary.skip("revisit_unresolved");
                    None
                }
            },
            _ => self.response(&record, &kind, &url, fetched_at_ms),
        };
        let Some((meta, body)) = page else {
            return Ok(());
        };
        if kind != "revisit" {
            let digest = record
                .header("WARC-Payload-Digest")
                .and_then(Sha1Digest::parse)
                .unwrap_or_else(|| Sha1Digest::of(&body));
            if self.digests.len() < MAX_DIGESTS {
                self.digests.insert(digest, url.to_string());
            }
        }
        if self.batch_urls.contains(url.as_str()) {
            self.commit()?;
        }
        self.batch_urls.insert(url.to_string());
        self.batch_bytes += body.len();
        self.batch.push(ImportedPage {
            url,
            meta,
            body: pack_body(&body)?,
        });
        if self.batch.len() >= BATCH_PAGES || self.batch_bytes >= BATCH_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    /// A response or resource record as a page, or None (counted) when it cannot be.
    fn response(
        &mut self,
        record: &Record,
        kind: &str,
        url: &Url,
        fetched_at_ms: u64,
    ) -> Option<(PageMeta, Vec<u8>)> {
        let Some(block) = &record.block else {
            self.summary.skip("too_large");
            return None;
        };
        let http = match kind {
            "resource" => Http {
                status: 200,
                version: "HTTP/1.1".into(),
                headers: HeaderMap::new(),
                payload: block,
            },
            _ => match parse_http(block) {
                Some(http) => http,
                None => {
                    self.summary.skip("not_http");
                    return None;
                }
            },
        };
        let body = match decode_payload(&http.headers, http.payload, self.max_body) {
            Ok(body) => body,
            Err(why) => {
                self.summary.skip(why);
                return None;
            }
        };
        let header = |name: &str| {
            http.headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let content_type = match kind {
            "resource" => record.header("Content-Type").map(str::to_string),
            _ => header("content-type"),
        };
        let meta = PageMeta {
            fetched_at_ms,
            duration_ms: 0,
            redirects: Vec::new(),
            outcome: Outcome::Response {
                status: http.status,
                version: http.version,
                final_url: url.to_string(),
                headers: KeptHeaders {
                    content_type,
                    content_length: header("content-length"),
                    etag: header("etag"),
                    last_modified: header("last-modified"),
                    date: header("date"),
                },
                body_len: body.len() as u64,
            },
        };
        Some((meta, body))
    }

    /// The response and body a revisit record points to, if found.
    fn revisit(
        &mut self,
        record: &Record,
        url: &Url,
    ) -> Result<Option<(PageMeta, Vec<u8>)>, WarcError> {
        // The original may be in the batch not committed yet.
        self.commit()?;
        let refers = record
            .header("WARC-Refers-To-Target-URI")
            .and_then(|u| crate::urls::normalize(u.trim_matches(['<', '>'])).ok())
            .map(|u| u.to_string());
        let by_digest = record
            .header("WARC-Payload-Digest")
            .and_then(Sha1Digest::parse)
            .and_then(|d| self.digests.get(&d).cloned());
        let claimed = record
            .header("WARC-Payload-Digest")
            .and_then(Sha1Digest::parse);
        // Its own URL's stored page only if the body is the one the digest names.
        let candidates = refers
            .into_iter()
            .chain(by_digest)
            .map(|u| (u, false))
            .chain(claimed.map(|_| (url.to_string(), true)));
        for (original, check) in candidates {
            let Some(id) = self.journal.find(&original)? else {
                continue;
            };
            let Some((meta, _)) = self.journal.page_with_url(id)? else {
                continue;
            };
            if !matches!(meta.outcome, Outcome::Response { .. }) {
                continue;
            }
            let Some(body) = self.journal.body(id)? else {
                continue;
            };
            if !check || claimed == Some(Sha1Digest::of(&body)) {
                return Ok(Some((meta, body)));
            }
        }
        Ok(None)
    }

    /// Commits the batch read so far (durable when it returns).
    fn commit(&mut self) -> Result<(), WarcError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_urls.clear();
        self.batch_bytes = 0;
        let report = self.journal.import_pages(batch)?;
        self.summary.recorded += report.recorded;
        self.summary.unchanged += report.unchanged;
        if report.waiting > 0 {
            *self
                .summary
                .skipped
                .entry("retry_waiting".into())
                .or_default() += report.waiting;
        }
        Ok(())
    }
}

/// An HTTP response message from a record's block.
struct Http<'a> {
    status: u16,
    version: String,
    headers: HeaderMap,
    payload: &'a [u8],
}

/// Most bytes of an HTTP head in a record.
const MAX_HEAD: usize = 256 * 1024;

fn parse_http(block: &[u8]) -> Option<Http<'_>> {
    let window = &block[..block.len().min(MAX_HEAD)];
    let (head_len, sep) = match find(window, b"\r\n\r\n") {
        Some(at) => (at, 4),
        None => (find(window, b"\n\n")?, 2),
    };
    let head = String::from_utf8_lossy(&block[..head_len]);
    let mut lines = head.lines();
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next().filter(|v| v.starts_with("HTTP/"))?.to_string();
    let status: u16 = parts
        .next()?
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    Some(Http {
        status,
        version,
        headers,
        payload: &block[head_len + sep..],
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The payload as a crawl would store it: dechunked, content codings undone, at most
/// `cap` bytes. The error is the reason counted.
fn decode_payload(headers: &HeaderMap, payload: &[u8], cap: u64) -> Result<Vec<u8>, &'static str> {
    let chunked = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .to_ascii_lowercase()
                .contains("chunked")
        });
    let dechunked;
    let payload = match chunked {
        // Some tools store the message as sent, others dechunk it and keep the header:
        // a payload that does not parse as chunks is taken as it is.
        true => match dechunk(payload, cap) {
            Some(body) => {
                dechunked = body;
                &dechunked[..]
            }
            None => payload,
        },
        false => payload,
    };
    let mut decoder = Decoder::new(headers, cap);
    let mut body = Vec::new();
    let decoded = decoder
        .push(payload, &mut body)
        .and_then(|()| decoder.finish(&mut body));
    match decoded {
        Ok(()) => Ok(body),
        Err(DecodeError::TooLarge) => Err("too_large"),
        Err(DecodeError::Invalid(_)) => Err("undecodable"),
    }
}

/// A chunked payload's data, or None if it is not one (or passes `cap`).
fn dechunk(mut payload: &[u8], cap: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(payload, b"\r\n")?;
        let size_text = std::str::from_utf8(&payload[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        payload = &payload[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if payload.len() < size + 2 || (out.len() + size) as u64 > cap {
            return None;
        }
        out.extend_from_slice(&payload[..size]);
        payload = &payload[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_heads_and_chunks() {
        let http = parse_http(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\nbody")
            .expect("a response");
        assert_eq!((http.status, http.payload), (404, &b"body"[..]));
        assert_eq!(http.headers["content-type"], "text/html");
        assert!(parse_http(b"GET / HTTP/1.1\r\n\r\n").is_none());
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", 100).as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(dechunk(b"plain text", 100), None);
        assert_eq!(dechunk(b"5\r\nabcde\r\n0\r\n\r\n", 4), None);
    }
}
