use super::*;

const SITEMAP: &[u8] = include_bytes!("../../../tests/fixtures/xml/sitemap.xml");
const SITEMAP_GZ: &[u8] = include_bytes!("../../../tests/fixtures/xml/sitemap.xml.gz");
const SITEMAP_INDEX: &[u8] = include_bytes!("../../../tests/fixtures/xml/sitemap-index.xml");
const RSS: &[u8] = include_bytes!("../../../tests/fixtures/xml/rss.xml");
const ATOM: &[u8] = include_bytes!("../../../tests/fixtures/xml/atom.xml");
const RDF: &[u8] = include_bytes!("../../../tests/fixtures/xml/rdf.xml");
const MALFORMED: &[u8] = include_bytes!("../../../tests/fixtures/xml/malformed.xml");
const LATIN1: &[u8] = include_bytes!("../../../tests/fixtures/xml/latin1-sitemap.xml");
const BOMB: &[u8] = include_bytes!("../../../tests/fixtures/xml/gzip-bomb.xml.gz");

const MIB: u64 = 1024 * 1024;

fn page(url: &str) -> Url {
    Url::parse(url).expect("test URL")
}

fn parse(body: &[u8], url: &str) -> XmlDoc {
    parse_xml(body, None, &page(url))
}

fn urls(doc: &XmlDoc) -> Vec<&str> {
    doc.links.iter().map(|l| l.url.as_str()).collect()
}

fn link(url: &str, text: &str, lastmod: Option<&str>) -> Link {
    Link {
        url: url.into(),
        text: text.into(),
        nofollow: false,
        lastmod: lastmod.map(Into::into),
    }
}

#[test]
fn sitemap_locs_lastmods_entities_relative_duplicates() {
    let doc = parse(SITEMAP, "https://example.com/sitemap.xml");
    assert_eq!(doc.kind, DocKind::Sitemap);
    assert_eq!(doc.error, None);
    assert_eq!(doc.title, None);
    assert_eq!(
        doc.links,
        vec![
            link("https://example.com/", "", Some("2024-01-15")),
            link(
                "https://example.com/search?q=rust&page=2",
                "",
                Some("2024-02-01T10:30:00+00:00")
            ),
            // relative, fragment dropped; the image:loc inside is not a page link
            link("https://example.com/relative/page.html", "", None),
            // the duplicate of https://example.com/ and the ftp URL are gone;
            // character references decoded and the URL normalized
            link("https://example.com/caf%C3%A9/1", "", None),
        ]
    );
    assert_eq!(doc.links_dropped, 0);
}

#[test]
fn gzipped_sitemap_roundtrips() {
    assert!(is_gzip(SITEMAP_GZ));
    assert!(!is_gzip(SITEMAP));
    let inflated = gunzip_capped(SITEMAP_GZ, 50 * MIB).expect("valid gzip");
    assert_eq!(inflated, SITEMAP);
    assert!(looks_like_xml_doc(&inflated));
    // exactly the size is allowed, one byte less is not
    let len = SITEMAP.len() as u64;
    assert!(gunzip_capped(SITEMAP_GZ, len).is_ok());
    let err = gunzip_capped(SITEMAP_GZ, len - 1).unwrap_err();
    assert_eq!(err, format!("gzip inflates to more than {} bytes", len - 1));
}

#[test]
fn gzip_corrupt_truncated_or_not_gzip() {
    let truncated = &SITEMAP_GZ[..SITEMAP_GZ.len() - 12];
    let err = gunzip_capped(truncated, 50 * MIB).unwrap_err();
    assert!(err.starts_with("corrupt or truncated gzip"), "{err}");
    // trailer only missing: data inflates fully but the CRC/length is not there
    let no_trailer = &SITEMAP_GZ[..SITEMAP_GZ.len() - 8];
    assert!(gunzip_capped(no_trailer, 50 * MIB).is_err());
    let mut bad_crc = SITEMAP_GZ.to_vec();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;
    assert!(gunzip_capped(&bad_crc, 50 * MIB).is_err());
    let mut bad_data = SITEMAP_GZ.to_vec();
    for b in &mut bad_data[20..40] {
        *b = 0xff;
    }
    assert!(gunzip_capped(&bad_data, 50 * MIB).is_err());
    assert!(gunzip_capped(b"", 50 * MIB).is_err());
    assert!(gunzip_capped(b"\x1f\x8b", 50 * MIB).is_err());
    assert!(gunzip_capped(SITEMAP, 50 * MIB).is_err());
}

#[test]
fn gzip_bomb_stops_at_cap() {
    assert!(BOMB.len() < 200 * 1024);
    assert!(is_gzip(BOMB));
    let err = gunzip_capped(BOMB, MIB).unwrap_err();
    assert_eq!(err, format!("gzip inflates to more than {MIB} bytes"));
    let err = gunzip_capped(BOMB, 50 * MIB).unwrap_err();
    assert_eq!(
        err,
        format!("gzip inflates to more than {} bytes", 50 * MIB)
    );
}

#[test]
fn sitemap_index_with_prefixed_names() {
    let doc = parse(SITEMAP_INDEX, "https://example.com/sitemaps/index.xml");
    assert_eq!(doc.kind, DocKind::SitemapIndex);
    assert_eq!(doc.error, None);
    assert_eq!(
        doc.links,
        vec![
            link(
                "https://example.com/sitemap-posts.xml.gz",
                "",
                Some("2024-04-01T00:00:00Z")
            ),
            link("https://example.com/sitemaps/sitemap-pages.xml", "", None),
        ]
    );
}

#[test]
fn rss_items_titles_dates_guid_fallback() {
    let doc = parse(RSS, "https://news.example.com/rss.xml");
    assert_eq!(doc.kind, DocKind::Rss);
    assert_eq!(doc.error, None);
    assert_eq!(doc.title.as_deref(), Some("Example News & Notes"));
    assert_eq!(
        doc.links,
        vec![
            link(
                "https://news.example.com/2024/first-post",
                "First <b>post</b>",
                Some("Mon, 06 May 2024 08:00:00 GMT")
            ),
            link(
                "https://news.example.com/2024/second-post?utm=rss",
                "Second post & more",
                Some("2024-05-07T09:00:00Z")
            ),
            link(
                "https://news.example.com/2024/third",
                "Third: guid only",
                Some("Wed, 08 May 2024 10:00:00 GMT")
            ),
        ]
    );
}

#[test]
fn rdf_rss_1_0() {
    let doc = parse(RDF, "https://rdf.example.com/index.rdf");
    assert_eq!(doc.kind, DocKind::Rss);
    assert_eq!(doc.error, None);
    assert_eq!(doc.title.as_deref(), Some("RDF Site"));
    assert_eq!(
        doc.links,
        vec![
            link(
                "https://rdf.example.com/a",
                "Item A",
                Some("2024-01-01T00:00:00Z")
            ),
            link("https://rdf.example.com/b", "Item B", None),
        ]
    );
}

#[test]
fn atom_alternate_links_xml_base_titles() {
    let doc = parse(ATOM, "https://feeds.example.org/blog/atom.xml");
    assert_eq!(doc.kind, DocKind::Atom);
    assert_eq!(doc.error, None);
    assert_eq!(doc.title.as_deref(), Some("Example Blog"));
    assert_eq!(
        doc.links,
        vec![
            // rel=self and rel=enclosure skipped; xml:base of the feed applies
            link(
                "https://blog.example.org/posts/hello",
                "Hello <World>",
                Some("2024-05-02T00:00:00Z")
            ),
            // rel absent means alternate; the entry's own xml:base applies; the title
            // comes after the links and is xhtml
            link(
                "https://other.example.net/base/two",
                "Second entry",
                Some("2024-05-03T00:00:00Z")
            ),
            link(
                "https://blog.example.org/de/zwei",
                "Second entry",
                Some("2024-05-03T00:00:00Z")
            ),
        ]
    );
}

#[test]
fn malformed_keeps_links_before_the_error() {
    let doc = parse(MALFORMED, "https://example.com/sitemap.xml");
    assert_eq!(doc.kind, DocKind::Sitemap);
    assert_eq!(
        urls(&doc),
        ["https://example.com/one", "https://example.com/two"]
    );
    assert_eq!(doc.links[1].lastmod.as_deref(), Some("2024-01-02"));
    let error = doc.error.expect("an error");
    // at the `</lastmod>` closing `<loc>` in the third entry
    let at = MALFORMED
        .windows(15)
        .position(|w| w == b"three</lastmod>")
        .expect("fixture")
        + "three".len();
    assert!(
        error.starts_with(&format!("malformed XML at byte {at}: ")),
        "{error}"
    );
    assert!(error.contains("loc"), "{error}");
}

#[test]
fn truncated_document() {
    let body =
        b"<urlset><url><loc>https://a.example/1</loc></url><url><loc>https://a.example/2</lo";
    let doc = parse(body, "https://a.example/");
    assert_eq!(urls(&doc), ["https://a.example/1"]);
    let error = doc.error.expect("an error");
    assert!(error.starts_with("malformed XML at byte 78: "), "{error}");

    let body = b"<urlset><url><loc>https://a.example/1</loc></url><url><loc>https://a.exa";
    let doc = parse(body, "https://a.example/");
    assert_eq!(urls(&doc), ["https://a.example/1"]);
    assert_eq!(
        doc.error.as_deref(),
        Some("truncated XML: 3 element(s) not closed at end of input (byte 72)")
    );
}

#[test]
fn latin1_declaration_decodes_body() {
    let doc = parse(LATIN1, "https://example.com/sitemap.xml");
    assert_eq!(doc.kind, DocKind::Sitemap);
    assert_eq!(doc.error, None);
    assert_eq!(
        doc.links,
        vec![
            link(
                "https://example.com/caf%C3%A9/men%C3%BC.html",
                "",
                Some("2024-07-01")
            ),
            link("https://example.com/plain", "", None),
        ]
    );
    // same bytes declared as windows-1252
    let at = LATIN1
        .windows(10)
        .position(|w| w == b"ISO-8859-1")
        .expect("fixture");
    let windows = [&LATIN1[..at], b"windows-1252", &LATIN1[at + 10..]].concat();
    let doc = parse(&windows, "https://example.com/sitemap.xml");
    assert_eq!(doc.error, None);
    assert_eq!(
        doc.links[0].url,
        "https://example.com/caf%C3%A9/men%C3%BC.html"
    );
    // read as UTF-8 without the declaration, the bytes are invalid and replaced
    let undeclared = &LATIN1[LATIN1.iter().position(|&b| b == b'\n').expect("fixture")..];
    let doc = parse(undeclared, "https://example.com/sitemap.xml");
    assert_eq!(
        doc.links[0].url,
        "https://example.com/caf%EF%BF%BD/men%EF%BF%BD.html"
    );
}

/// The charset a server declares in `Content-Type` is what the document means, over
/// the XML declaration (RFC 7303, as browsers read XML); only a BOM beats it.
#[test]
fn content_type_charset_beats_the_xml_declaration() {
    let url = page("https://example.com/sitemap.xml");
    let first = |body: &[u8], ct: &str| parse_xml(body, Some(ct), &url).links[0].url.clone();
    let latin1 = "https://example.com/caf%C3%A9/men%C3%BC.html";
    let replaced = "https://example.com/caf%EF%BF%BD/men%EF%BF%BD.html";
    // Declared ISO-8859-1 in the document, UTF-8 by the server: read as UTF-8.
    assert_eq!(first(LATIN1, "text/xml; charset=utf-8"), replaced);
    assert_eq!(first(LATIN1, "text/xml"), latin1);
    // Not declared in the document, declared by the server.
    let undeclared = &LATIN1[LATIN1.iter().position(|&b| b == b'\n').expect("fixture")..];
    assert_eq!(
        first(undeclared, "application/xml; charset=ISO-8859-1"),
        latin1
    );
    assert_eq!(
        first(undeclared, "application/xml; charset=bogus"),
        replaced
    );
    // A BOM beats both.
    let bom = "\u{feff}<?xml version='1.0' encoding='ISO-8859-1'?><urlset><url><loc>/é</loc></url></urlset>";
    assert_eq!(
        first(bom.as_bytes(), "text/xml; charset=windows-1252"),
        "https://example.com/%C3%A9"
    );
}

#[test]
fn bom_and_declared_utf8() {
    let body = "\u{feff}<?xml version='1.0' encoding='UTF-8'?><urlset><url><loc>https://a.example/ü</loc></url></urlset>";
    let doc = parse(body.as_bytes(), "https://a.example/");
    assert_eq!(urls(&doc), ["https://a.example/%C3%BC"]);
    assert_eq!(doc.error, None);
    // invalid UTF-8 is replaced, not an error
    let doc = parse(
        b"<urlset><url><loc>https://a.example/\xff</loc></url></urlset>",
        "https://a.example/",
    );
    assert_eq!(urls(&doc), ["https://a.example/%EF%BF%BD"]);
    // the position of an error counts the BOM
    let doc = parse("\u{feff}<urlset></url>".as_bytes(), "https://a.example/");
    assert!(doc
        .error
        .expect("error")
        .starts_with("malformed XML at byte 11: "));
}

#[test]
fn not_a_sitemap_or_feed() {
    let doc = parse(
        b"<!DOCTYPE html><html><body><a href='/x'>x</a></body></html>",
        "https://a.example/",
    );
    assert_eq!(doc.kind, DocKind::Other);
    assert_eq!(
        doc.error.as_deref(),
        Some("not a sitemap or feed: root <html>")
    );
    assert!(doc.links.is_empty());
    let doc = parse(b"<x:foo xmlns:x='urn:x'/>", "https://a.example/");
    assert_eq!(
        doc.error.as_deref(),
        Some("not a sitemap or feed: root <x:foo>")
    );
    let doc = parse(b"  ", "https://a.example/");
    assert_eq!(doc.kind, DocKind::Other);
    assert_eq!(
        doc.error.as_deref(),
        Some("not a sitemap or feed: no root element")
    );
}

#[test]
fn lenient_text_details() {
    let body = b"<rss><channel><title>  A &nbsp; &unknown; &#x1F600;  </title>\
        <item><link>https://a.example/?a=1&b=2</link><title></title></item>\
        <item><link><![CDATA[ https://a.example/c?x=1&y=2 ]]></link></item></channel></rss>";
    let doc = parse(body, "https://a.example/");
    assert_eq!(doc.error, None);
    assert_eq!(doc.title.as_deref(), Some("A &unknown; \u{1F600}"));
    assert_eq!(
        urls(&doc),
        ["https://a.example/?a=1&b=2", "https://a.example/c?x=1&y=2"]
    );
    assert_eq!(doc.links[0].text, "");
}

#[test]
fn fields_are_capped() {
    let long = "word ".repeat(MAX_FIELD);
    let body = format!(
        "<feed><title>{long}</title><entry><title>é{long}</title><link href='/e'/></entry></feed>"
    );
    let doc = parse(body.as_bytes(), "https://a.example/");
    let title = doc.title.expect("title");
    assert!(title.len() <= MAX_FIELD && title.len() > MAX_FIELD - 5);
    assert!(title.starts_with("word word"));
    assert!(!title.ends_with(' '));
    assert!(doc.links[0].text.len() <= MAX_FIELD);
    // a URL longer than MAX_URL_LEN is skipped, not cut
    let path = "a".repeat(MAX_URL_LEN);
    let body = format!(
        "<urlset><url><loc>https://a.example/{path}</loc></url><url><loc>/ok</loc></url></urlset>"
    );
    let doc = parse(body.as_bytes(), "https://a.example/");
    assert_eq!(urls(&doc), ["https://a.example/ok"]);
}

#[test]
fn link_cap_counts_dropped_and_stays_linear() {
    let n = 50_000;
    let mut body = String::from(
        "<?xml version=\"1.0\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for i in 0..n {
        body.push_str(&format!(
            "<url><loc>https://a.example/p/{i}</loc><lastmod>2024-01-01</lastmod></url>\n"
        ));
    }
    body.push_str("</urlset>\n");
    let doc = parse(body.as_bytes(), "https://a.example/");
    assert_eq!(doc.error, None);
    assert_eq!(doc.links.len(), MAX_LINKS);
    assert_eq!(doc.links_dropped, (n - MAX_LINKS) as u64);
    assert_eq!(
        doc.links[MAX_LINKS - 1].url,
        format!("https://a.example/p/{}", MAX_LINKS - 1)
    );
}

#[test]
fn nesting_is_bounded() {
    let body = format!("<urlset>{}", "<a>".repeat(100_000));
    let doc = parse(body.as_bytes(), "https://a.example/");
    let error = doc.error.expect("error");
    assert!(
        error.starts_with(&format!("XML nested deeper than {MAX_DEPTH} elements")),
        "{error}"
    );
}

#[test]
fn sniffing() {
    assert!(looks_like_xml_doc(SITEMAP));
    assert!(looks_like_xml_doc(LATIN1));
    assert!(looks_like_xml_doc(b"\xEF\xBB\xBF\n  <urlset xmlns='x'>"));
    assert!(looks_like_xml_doc(b"<!-- hi --> <sitemapindex>"));
    assert!(looks_like_xml_doc(b"<rss version='2.0'>"));
    assert!(looks_like_xml_doc(
        b"<feed\nxmlns='http://www.w3.org/2005/Atom'>"
    ));
    assert!(looks_like_xml_doc(b"<rdf:RDF xmlns:rdf='x'>"));
    assert!(!looks_like_xml_doc(b"<!DOCTYPE html><html>"));
    assert!(!looks_like_xml_doc(b"<rssfeed>"));
    assert!(!looks_like_xml_doc(b"<!-- unterminated"));
    assert!(!looks_like_xml_doc(b""));
    assert!(!looks_like_xml_doc(b"{\"json\": true}"));
    let late = format!("{}<urlset>", " ".repeat(600));
    assert!(!looks_like_xml_doc(late.as_bytes()));
}

#[test]
fn never_panics_on_garbage() {
    let base = page("https://a.example/");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let fixtures = [SITEMAP, RSS, ATOM, RDF, LATIN1, SITEMAP_INDEX];
    for round in 0..400 {
        let mut body = fixtures[round % fixtures.len()].to_vec();
        for _ in 0..(round % 7 + 1) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % body.len();
            match seed % 3 {
                0 => body[at] = (seed >> 32) as u8,
                1 => body.truncate(at),
                _ => body.insert(at, b"<&>/\"'!?]"[(seed >> 40) as usize % 9]),
            }
            if body.is_empty() {
                body.push(b'<');
            }
        }
        let content_types = [
            None,
            Some("text/xml; charset=utf-16be"),
            Some("text/xml; charset=shift_jis"),
        ];
        let _ = parse_xml(&body, content_types[round % 3], &base);
        let _ = looks_like_xml_doc(&body);
        let _ = gunzip_capped(&body, MIB);
    }
}
