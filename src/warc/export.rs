//! `webspool export`: the journal's pages as WARC or as JSON lines, streaming.
//!
//! Pages are read one at a time in id order (`pages` tree), each with its body and
//! annotation, so memory holds one page whatever the journal's size. Reads only: the
//! journal is not written to.
//!
//! WARC, per page with a response: a `request` record (the journal does not keep the
//! request's headers: the method, target and `Host` are written), a `response` record
//! (status line; of the headers, those the journal keeps: `Content-Type`, `ETag`,
//! `Last-Modified`, `Date`, with `Content-Length` the body's and no
//! `Content-Encoding` or `Transfer-Encoding`, as the body is stored decoded), and, when
//! the page was parsed, a `metadata` record with the annotation as JSON. Failed pages
//! have no response: they are skipped and counted. A page's URL in the records is where
//! its redirects ended (the URL asked for is in the metadata). The journal never stores
//! a truncated body (a body over `--max-body` is `too_large`) nor the server's address,
//! so no record has `WARC-Truncated` or `WARC-IP-Address`. Record ids are derived from
//! the journal id, the page and its fetch time, so exporting again gives the same ids.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use regex::Regex;
use serde_json::json;

use super::digest::{Sha1Digest, Sha1Hasher};
use super::write::{warcinfo_member, OutRecord, WarcWriter};
use super::WarcError;
use crate::journal::{utc_fields, Journal, JournalError, Outcome, PageMeta, UrlEntry};
use crate::parse::Annotation;

/// Which pages to export.
#[derive(Clone, Debug, Default)]
struct ExportFilter {
    /// Only pages fetched at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only pages whose URL matches.
    pub include: Option<Regex>,
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportReport {
    /// Pages written.
    pub pages: u64,
    /// Pages without a response (WARC only: JSON lines include them).
    pub failed: u64,
    /// Pages left out by `--since` or `--include`.
    pub filtered: u64,
    /// Pages whose record or body is damaged: skipped (`webspool verify` names them).
    pub damaged: u64,
    /// The files written (WARC only).
    pub files: Vec<PathBuf>,
}

/// Where an export goes: what `export`'s flags say, with absolute paths, so that a
/// holder can run it for the command (`crate::holder`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum ExportTo {
    Warc {
        path: PathBuf,
        max_size: u64,
    },
    /// `path` None: the caller's standard output.
    Jsonl {
        path: Option<PathBuf>,
        with_body: bool,
    },
}

/// One `export`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ExportRequest {
    pub to: ExportTo,
    pub since_ms: Option<u64>,
    /// `--include`, as given (compiled where the export runs).
    pub include: Option<String>,
}

/// Runs `request` on `journal`; JSON lines for standard output go to `stdout`.
pub fn export(
    journal: &Journal,
    request: &ExportRequest,
    stdout: &mut dyn Write,
) -> Result<ExportReport, WarcError> {
    let include = match &request.include {
        Some(re) => Some(Regex::new(re).map_err(|e| io::Error::other(e.to_string()))?),
        None => None,
    };
    let filter = ExportFilter {
        since_ms: request.since_ms,
        include,
    };
    match &request.to {
        ExportTo::Warc { path, max_size } => export_warc(journal, path, *max_size, &filter),
        ExportTo::Jsonl {
            path: None,
            with_body,
        } => export_jsonl(journal, stdout, *with_body, &filter),
        ExportTo::Jsonl {
            path: Some(path),
            with_body,
        } => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| WarcError::io(path, e))?;
            let mut out = io::BufWriter::new(file);
            let report = export_jsonl(journal, &mut out, *with_body, &filter)?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(ExportReport {
                files: vec![path.clone()],
                ..report
            })
        }
    }
}

/// One page as the export reads it.
struct Page {
    id: u64,
    meta: PageMeta,
    url: UrlEntry,
}

/// Every page of `journal` that `filter` lets through, in id order; damaged ones are
/// counted in `report` and skipped.
fn each_page(
    journal: &Journal,
    filter: &ExportFilter,
    report: &mut ExportReport,
    mut each: impl FnMut(&Page, &mut ExportReport) -> Result<(), WarcError>,
) -> Result<(), WarcError> {
    for id in journal.recorded_ids() {
        let id = id?;
        let (meta, url) = match journal.page_with_url(id) {
            Ok(Some(page)) => page,
            Ok(None) => continue,
            Err(e @ JournalError::PageDamaged { .. }) => {
                tracing::warn!("export: skipped: {e}");
                report.damaged += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let early = filter
            .since_ms
            .is_some_and(|since| meta.fetched_at_ms < since);
        let excluded = filter
            .include
            .as_ref()
            .is_some_and(|re| !re.is_match(&url.url));
        if early || excluded {
            report.filtered += 1;
            continue;
        }
        each(&Page { id, meta, url }, report)?;
    }
    Ok(())
}

/// The body of page `id`, or None (counted) when it is damaged.
fn body_of(
    journal: &Journal,
    id: u64,
    report: &mut ExportReport,
) -> Result<Option<Vec<u8>>, WarcError> {
    match journal.body(id) {
        Ok(body) => Ok(Some(body.unwrap_or_default())),
        Err(e @ JournalError::PageDamaged { .. }) => {
            tracing::warn!("export: skipped: {e}");
            report.damaged += 1;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The annotation of page `id`; None when it has none or it does not decode (logged:
/// the page is exported without it).
fn annotation_of(journal: &Journal, id: u64) -> Result<Option<Annotation>, WarcError> {
    match journal.annotation(id) {
        Ok(annotation) => Ok(annotation),
        Err(e @ JournalError::Damaged { .. }) => {
            tracing::warn!("export: page {id} has no usable annotation: {e}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes the pages of `journal` to `first` (and numbered files after it, each at most
/// about `max_size` bytes).
fn export_warc(
    journal: &Journal,
    first: &Path,
    max_size: u64,
    filter: &ExportFilter,
) -> Result<ExportReport, WarcError> {
    let journal_id = journal.journal_id()?;
    let mut writer = WarcWriter::new(first, max_size);
    let mut report = ExportReport::default();
    let warcinfo = |name: &str| {
        let now = warc_date(crate::journal::now_ms());
        let fields = format!(
            "software: webspool/{}\r\nformat: WARC File Format 1.1\r\n\
             conformsTo: http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/\r\n\
             journal-id: {journal_id}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        warcinfo_member(
            vec![
                ("WARC-Type", "warcinfo".into()),
                ("WARC-Date", now),
                ("WARC-Filename", name.to_string()),
                (
                    "WARC-Record-ID",
                    record_id(&[journal_id.as_bytes(), name.as_bytes()]),
                ),
                (
                    "WARC-Block-Digest",
                    Sha1Digest::of(fields.as_bytes()).field(),
                ),
                ("Content-Type", "application/warc-fields".into()),
            ],
            &fields,
        )
    };
    each_page(journal, filter, &mut report, |page, report| {
        let Outcome::Response {
            status,
            version,
            final_url,
            headers,
            ..
        } = &page.meta.outcome
        else {
            report.failed += 1;
            return Ok(());
        };
        let Some(body) = body_of(journal, page.id, report)? else {
            return Ok(());
        };
        let annotation = annotation_of(journal, page.id)?;
        let target = final_url.as_str();
        let date = warc_date(page.meta.fetched_at_ms);
        let seed = |kind: &str| {
            record_id(&[
                journal_id.as_bytes(),
                &page.id.to_be_bytes(),
                &page.meta.fetched_at_ms.to_be_bytes(),
                kind.as_bytes(),
            ])
        };
        let (response_id, request_id, metadata_id) =
            (seed("response"), seed("request"), seed("metadata"));

        let mut head = format!("{version} {status} {}\r\n", reason(*status));
        for (name, value) in [
            ("Content-Type", &headers.content_type),
            ("ETag", &headers.etag),
            ("Last-Modified", &headers.last_modified),
            ("Date", &headers.date),
        ] {
            if let Some(value) = value {
                head.push_str(&format!("{name}: {}\r\n", value.replace(['\r', '\n'], " ")));
            }
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut block = Sha1Hasher::default();
        block.update(head.as_bytes());
        block.update(&body);
        let request = request_block(target);
        let request = OutRecord {
            headers: vec![
                ("WARC-Type", "request".into()),
                ("WARC-Record-ID", request_id),
                ("WARC-Date", date.clone()),
                ("WARC-Target-URI", target.to_string()),
                ("WARC-Concurrent-To", response_id.clone()),
                (
                    "WARC-Block-Digest",
                    Sha1Digest::of(request.as_bytes()).field(),
                ),
                ("Content-Type", "application/http;msgtype=request".into()),
            ],
            block: &[request.as_bytes()],
        };
        writer.write(&request, warcinfo)?;

        let response = OutRecord {
            headers: vec![
                ("WARC-Type", "response".into()),
                ("WARC-Record-ID", response_id.clone()),
                ("WARC-Date", date.clone()),
                ("WARC-Target-URI", target.to_string()),
                ("WARC-Payload-Digest", Sha1Digest::of(&body).field()),
                ("WARC-Block-Digest", block.finish().field()),
                ("Content-Type", "application/http;msgtype=response".into()),
            ],
            block: &[head.as_bytes(), &body],
        };
        writer.write(&response, warcinfo)?;

        if let Some(annotation) = &annotation {
            let json = metadata_json(page, annotation).to_string();
            let metadata = OutRecord {
                headers: vec![
                    ("WARC-Type", "metadata".into()),
                    ("WARC-Record-ID", metadata_id),
                    ("WARC-Date", date),
                    ("WARC-Target-URI", target.to_string()),
                    ("WARC-Concurrent-To", response_id),
                    ("WARC-Block-Digest", Sha1Digest::of(json.as_bytes()).field()),
                    ("Content-Type", "application/json".into()),
                ],
                block: &[json.as_bytes()],
            };
            writer.write(&metadata, warcinfo)?;
        }
        report.pages += 1;
        Ok(())
    })?;
    report.files = writer.finish()?;
    Ok(report)
}

/// Writes one JSON object per page to `out`, the body base64-encoded with `with_body`.
fn export_jsonl(
    journal: &Journal,
    out: &mut dyn Write,
    with_body: bool,
    filter: &ExportFilter,
) -> Result<ExportReport, WarcError> {
    let mut report = ExportReport::default();
    each_page(journal, filter, &mut report, |page, report| {
        let annotation = annotation_of(journal, page.id)?;
        let mut line = serde_json::Map::new();
        line.insert("url".into(), json!(page.url.url));
        let (status, final_url) = match &page.meta.outcome {
            Outcome::Response {
                status, final_url, ..
            } => (json!(status), json!(final_url)),
            Outcome::Error { kind, .. } => {
                line.insert("error".into(), json!(kind.as_str()));
                (json!(null), json!(null))
            }
        };
        line.insert("final_url".into(), final_url);
        line.insert("status".into(), status);
        line.insert(
            "fetched_at".into(),
            json!(warc_date(page.meta.fetched_at_ms)),
        );
        let a = annotation.as_ref();
        line.insert("title".into(), json!(a.and_then(|a| a.title.as_ref())));
        line.insert(
            "description".into(),
            json!(a.and_then(|a| a.description.as_ref())),
        );
        line.insert("lang".into(), json!(a.and_then(|a| a.lang.as_ref())));
        line.insert(
            "canonical".into(),
            json!(a.and_then(|a| a.canonical.as_ref())),
        );
        line.insert("links".into(), json!(a.map(|a| &a.links)));
        line.insert(
            "fields".into(),
            json!(a.map(|a| crate::sync::batch::fields_json(&a.fields))),
        );
        let wants_body = with_body || a.is_none();
        let body = match (&page.meta.outcome, wants_body) {
            (Outcome::Response { .. }, true) => match body_of(journal, page.id, report)? {
                Some(body) => Some(body),
                None => return Ok(()),
            },
            _ => None,
        };
        let hash = match (a, &body) {
            (Some(a), _) => Some(a.content_hash.clone()),
            (None, Some(body)) => Some(format!("{:032x}", crate::journal::content_hash(body))),
            (None, None) => None,
        };
        line.insert("content_hash".into(), json!(hash));
        if with_body {
            let encoded = body.map(|b| base64::engine::general_purpose::STANDARD.encode(b));
            line.insert("body".into(), json!(encoded));
        }
        serde_json::to_writer(&mut *out, &line).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
        report.pages += 1;
        Ok(())
    })?;
    out.flush()?;
    Ok(report)
}

/// The `metadata` record's JSON: the URL asked for, its redirects, the annotation.
fn metadata_json(page: &Page, annotation: &Annotation) -> serde_json::Value {
    json!({
        "url": page.url.url,
        "redirects": page.meta.redirects.iter()
            .map(|r| json!({"status": r.status, "location": r.location}))
            .collect::<Vec<_>>(),
        "annotation": annotation,
    })
}

/// A minimal request block: the journal keeps no request headers.
fn request_block(target: &str) -> String {
    let Ok(url) = url::Url::parse(target) else {
        return format!("GET {target} HTTP/1.1\r\n\r\n");
    };
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// A WARC-Date: UTC, to the millisecond (WARC/1.1 allows fractions of a second).
pub fn warc_date(ms: u64) -> String {
    let [y, mo, d, h, mi, s] = utc_fields(ms);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms % 1000
    )
}

/// A `<urn:uuid:...>` record id derived from `parts` (a name-based UUID, version 5
/// layout over SHA-1): the same page gets the same id in every export.
fn record_id(parts: &[&[u8]]) -> String {
    let mut h = Sha1Hasher::default();
    for part in parts {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&h.finish().0[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "<urn:uuid:{}-{}-{}-{}-{}>",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ids() {
        assert_eq!(warc_date(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(warc_date(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        let id = record_id(&[b"a", b"b"]);
        assert_eq!(id.len(), "<urn:uuid:>".len() + 36);
        assert_eq!(id, record_id(&[b"a", b"b"]));
        assert_ne!(id, record_id(&[b"ab"]));
        assert_eq!(
            request_block("http://h:8080/p?q=1#f"),
            "GET /p?q=1 HTTP/1.1\r\nHost: h:8080\r\n\r\n"
        );
    }
}
