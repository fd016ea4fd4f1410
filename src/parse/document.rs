//! Chooses the parser for one stored page and fills the parts of its annotation that do
//! not depend on the document type.

use url::Url;

use super::{html, xml, Annotation, DocKind, Rules, PARSER_VERSION};
use crate::journal::{Hint, Outcome, PageMeta};

/// Largest decompressed size of a gzip-compressed sitemap (the sitemaps protocol
/// allows 50 MiB uncompressed).
const MAX_GUNZIPPED: u64 = 50 * 1024 * 1024;

enum Route {
    Html,
    Xml,
    Gzip,
    Other,
}

/// Annotates one page from its record and decoded body. Never fails: problems are
/// recorded in `error`.
pub fn annotate(meta: &PageMeta, body: &[u8], rules: &Rules) -> Annotation {
    annotate_with_hints(meta, body, rules).0
}

/// [`annotate`], and a sitemap's recrawl hints (`hints.rs`).
pub fn annotate_with_hints(meta: &PageMeta, body: &[u8], rules: &Rules) -> (Annotation, Vec<Hint>) {
    let mut hints = Vec::new();
    let mut out = Annotation {
        parser_version: PARSER_VERSION,
        rules_hash: rules.hash(),
        size: body.len() as u64,
        content_hash: format!("{:032x}", crate::journal::content_hash(body)),
        ..Annotation::default()
    };
    let Outcome::Response {
        final_url, headers, ..
    } = &meta.outcome
    else {
        out.error = Some("the fetch failed: nothing to parse".into());
        return (out, hints);
    };
    let base = match Url::parse(final_url) {
        Ok(url) => url,
        Err(e) => {
            out.error = Some(format!("final URL does not parse: {e}"));
            return (out, hints);
        }
    };
    let content_type = headers.content_type.as_deref();
    let essence = content_type.map(mime_essence).filter(|e| !e.is_empty());
    let route = match essence.as_deref() {
        Some("text/html" | "application/xhtml+xml") => Route::Html,
        Some("application/xml" | "text/xml") => Route::Xml,
        Some(e) if e.ends_with("+xml") => Route::Xml,
        // A `.xml.gz` served with `Content-Encoding: gzip` (Apache's default) arrives
        // decoded under its gzip type: then what the body is decides.
        Some("application/gzip" | "application/x-gzip") if xml::is_gzip(body) => Route::Gzip,
        Some("application/gzip" | "application/x-gzip") => sniff(body),
        None | Some("application/octet-stream" | "text/plain" | "binary/octet-stream") => {
            sniff(body)
        }
        Some(_) => Route::Other,
    };
    out.content_type = essence.or_else(|| {
        Some(
            match route {
                Route::Html => "text/html",
                Route::Xml => "application/xml",
                Route::Gzip => "application/gzip",
                Route::Other => "application/octet-stream",
            }
            .to_string(),
        )
    });
    match route {
        Route::Html => {
            out.kind = Some(DocKind::Html);
            html::parse_html(body, content_type, &base, rules, &mut out);
        }
        Route::Xml => {
            hints = apply_xml(xml::parse_xml(body, content_type, &base), &mut out);
        }
        Route::Gzip => match xml::gunzip_capped(body, MAX_GUNZIPPED) {
            Ok(inner) if xml::looks_like_xml_doc(&inner) => {
                // The header's charset, if any, is about the gzip bytes.
                hints = apply_xml(xml::parse_xml(&inner, None, &base), &mut out);
            }
            Ok(_) => out.kind = Some(DocKind::Other),
            Err(e) => {
                out.kind = Some(DocKind::Other);
                out.error = Some(format!("gzip: {e}"));
            }
        },
        Route::Other => out.kind = Some(DocKind::Other),
    }
    (out, hints)
}

/// Fills `out` from a parsed XML document; returns its recrawl hints.
fn apply_xml(doc: xml::XmlDoc, out: &mut Annotation) -> Vec<Hint> {
    let hints = super::hints::sitemap_hints(&doc);
    out.kind = Some(doc.kind);
    out.title = doc.title;
    out.links = doc.links;
    out.links_dropped = doc.links_dropped;
    out.error = doc.error;
    hints
}

/// `Text/HTML; charset=x` -> `text/html`.
fn mime_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decides what a body without a useful content type is.
fn sniff(body: &[u8]) -> Route {
    if xml::is_gzip(body) {
        return Route::Gzip;
    }
    if xml::looks_like_xml_doc(body) {
        return Route::Xml;
    }
    let head = &body[..body.len().min(1024)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let start = head.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    let html_start = ["<!doctype html", "<html", "<head", "<body", "<!--"];
    if html_start.iter().any(|p| start.starts_with(p)) || head.contains("<html") {
        Route::Html
    } else {
        Route::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::KeptHeaders;

    fn page(content_type: Option<&str>) -> PageMeta {
        PageMeta {
            fetched_at_ms: 0,
            duration_ms: 0,
            redirects: Vec::new(),
            outcome: Outcome::Response {
                status: 200,
                version: "HTTP/1.1".into(),
                final_url: "http://example.test/dir/page".into(),
                headers: KeptHeaders {
                    content_type: content_type.map(str::to_string),
                    ..KeptHeaders::default()
                },
                body_len: 0,
            },
        }
    }

    #[test]
    fn routes_by_content_type_and_sniffs_without_one() {
        let rules = Rules::default();
        let html = b"<!DOCTYPE html><title>T</title><a href=x>x</a>";
        let a = annotate(&page(Some("Text/HTML; charset=utf-8")), html, &rules);
        assert_eq!(a.kind, Some(DocKind::Html));
        assert_eq!(a.content_type.as_deref(), Some("text/html"));
        assert_eq!(a.title.as_deref(), Some("T"));
        let a = annotate(&page(None), html, &rules);
        assert_eq!(a.kind, Some(DocKind::Html));

        let sitemap = b"<?xml version=\"1.0\"?><urlset><url><loc>/a</loc></url></urlset>";
        let a = annotate(&page(Some("text/xml")), sitemap, &rules);
        assert_eq!(a.kind, Some(DocKind::Sitemap));
        assert_eq!(a.links[0].url, "http://example.test/a");

        let a = annotate(&page(Some("application/pdf")), b"%PDF-1.4", &rules);
        assert_eq!((a.kind, a.size), (Some(DocKind::Other), 8));
        assert_eq!(a.content_type.as_deref(), Some("application/pdf"));
        assert_eq!(a.parser_version, PARSER_VERSION);
        assert_eq!(a.content_hash.len(), 32);
    }

    #[test]
    fn a_sitemap_decoded_from_its_content_coding_is_read_under_a_gzip_type() {
        let sitemap = b"<?xml version=\"1.0\"?><urlset><url><loc>/a</loc></url></urlset>";
        for content_type in ["application/x-gzip", "application/gzip"] {
            let a = annotate(&page(Some(content_type)), sitemap, &Rules::default());
            assert_eq!(a.kind, Some(DocKind::Sitemap), "{content_type}");
            assert_eq!(a.links[0].url, "http://example.test/a");
        }
    }

    #[test]
    fn failed_fetches_and_bad_gzip_get_an_error_not_a_panic() {
        let mut failed = page(None);
        failed.outcome = Outcome::Error {
            kind: crate::journal::ErrorKind::Timeout,
            message: "slow".into(),
        };
        assert!(annotate(&failed, b"", &Rules::default()).error.is_some());
        let a = annotate(
            &page(Some("application/gzip")),
            b"\x1f\x8bnot gzip",
            &Rules::default(),
        );
        assert_eq!(a.kind, Some(DocKind::Other));
        assert!(
            a.error.as_deref().unwrap_or("").starts_with("gzip"),
            "{a:?}"
        );
    }
}
