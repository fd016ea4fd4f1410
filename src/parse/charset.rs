//! Decodes an HTML body to UTF-8 text, choosing its encoding the way a browser would
//! (the HTML standard's "determining the character encoding").
//!
//! Order (first that answers wins):
//! 1. a byte order mark (UTF-8, UTF-16LE/BE);
//! 2. the `charset` parameter of the HTTP `Content-Type` header;
//! 3. a `<meta charset>` or `<meta http-equiv=content-type content="...charset=...">`
//!    in the first 1024 bytes, found with the WHATWG prescan (a declared UTF-16 means
//!    UTF-8, `x-user-defined` means windows-1252);
//! 4. only when nothing is declared, detection: valid UTF-8 is UTF-8, otherwise
//!    chardetng guesses (helped by the TLD);
//! 5. windows-1252 when there is nothing to go on (empty or pure ASCII bodies).
//!
//! A declaration is never second-guessed by detection, as in a browser: a page declared
//! UTF-8 with a stray `\xA9` keeps every good character and gets one U+FFFD, where
//! overriding it by a guess would turn the whole page into mojibake; a page whose
//! declaration is wrong reads as a browser shows it. Labels for the `replacement`
//! encoding (ISO-2022-KR, HZ, ...) are ignored rather than turning the whole page into
//! one U+FFFD. Decoding never fails: bytes invalid in the chosen encoding become U+FFFD
//! where they are, and `had_errors` says so.

use std::borrow::Cow;

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252, X_USER_DEFINED};

/// How many bytes the `<meta>` prescan looks at (the WHATWG number).
const PRESCAN_BYTES: usize = 1024;
/// How many bytes chardetng sees; more costs time without improving guesses.
const DETECT_BYTES: usize = 256 * 1024;

/// Where the chosen encoding came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharsetSource {
    Bom,
    Header,
    Meta,
    Detected,
    Default,
}

/// A body decoded to UTF-8 (borrowed when no conversion was needed).
#[derive(Debug)]
pub struct Decoded<'a> {
    pub text: Cow<'a, str>,
    pub encoding: &'static Encoding,
    pub source: CharsetSource,
    /// Some bytes were invalid in `encoding` and became U+FFFD.
    pub had_errors: bool,
}

/// Decodes `body`. `content_type` is the raw `Content-Type` header value, `tld` the
/// last label of the page's host name (`b"jp"`), used only to help detection.
pub fn decode_html<'a>(
    body: &'a [u8],
    content_type: Option<&str>,
    tld: Option<&[u8]>,
) -> Decoded<'a> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(body) {
        let rest = body.get(bom_len..).unwrap_or_default();
        return decode_with(rest, encoding, CharsetSource::Bom);
    }
    if let Some(encoding) = content_type.and_then(header_charset) {
        return decode_with(body, encoding, CharsetSource::Header);
    }
    if let Some(encoding) = meta_charset(body) {
        return decode_with(body, encoding, CharsetSource::Meta);
    }
    let (encoding, source) = detect(body, tld);
    decode_with(body, encoding, source)
}

fn decode_with<'a>(
    body: &'a [u8],
    encoding: &'static Encoding,
    source: CharsetSource,
) -> Decoded<'a> {
    let (text, had_errors) = encoding.decode_without_bom_handling(body);
    Decoded {
        text,
        encoding,
        source,
        had_errors,
    }
}

/// The encoding named by the `charset` parameter of a `Content-Type` header value, if it
/// names one: `text/html; Charset="ISO-8859-1"` gives windows-1252. Tolerates case,
/// quotes, spaces and junk; unknown labels give `None`.
pub fn header_charset(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let value = value.trim_start();
        let label = match value.strip_prefix(['"', '\'']) {
            Some(quoted) => quoted.split(['"', '\'']).next().unwrap_or_default(),
            None => value.split([' ', '\t', ',']).next().unwrap_or_default(),
        };
        Encoding::for_label_no_replacement(label.trim().as_bytes())
    })
}

/// Detection, for bodies without a usable declaration (and only for those).
fn detect(body: &[u8], tld: Option<&[u8]>) -> (&'static Encoding, CharsetSource) {
    let ascii = Encoding::ascii_valid_up_to(body) == body.len();
    if ascii && !body.contains(&0x1B) {
        // Nothing to detect from (an ESC could be ISO-2022-JP, which is 7-bit).
        return (WINDOWS_1252, CharsetSource::Default);
    }
    if !ascii && std::str::from_utf8(body).is_ok() {
        return (UTF_8, CharsetSource::Detected);
    }
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Allow);
    match body.get(..DETECT_BYTES) {
        Some(prefix) => detector.feed(prefix, false),
        None => detector.feed(body, true),
    };
    let tld = tld.filter(|t| {
        !t.is_empty()
            && t.iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    });
    (
        detector.guess(tld, Utf8Detection::Allow),
        CharsetSource::Detected,
    )
}

/// The WHATWG "prescan a byte stream to determine its encoding", over the first 1024
/// bytes. Anything cut off by the 1024-byte limit counts as not found.
pub fn meta_charset(body: &[u8]) -> Option<&'static Encoding> {
    let b = body.get(..PRESCAN_BYTES).unwrap_or(body);
    let mut pos = 0;
    while pos < b.len() {
        let rest = &b[pos..];
        if rest.starts_with(b"<!--") {
            // The `-->` may share its dashes with `<!--` (`<!-->`).
            pos += 2 + find(&rest[2..], b"-->")? + 3;
            continue;
        }
        if rest.len() > 5
            && rest[..5].eq_ignore_ascii_case(b"<meta")
            && matches!(rest[5], b'\t' | b'\n' | b'\x0C' | b'\r' | b' ' | b'/')
        {
            pos += 6;
            if let Some(encoding) = meta_attributes(b, &mut pos)? {
                return Some(encoding);
            }
            continue;
        }
        let after_lt = rest.get(1).copied();
        let letter_at = |i: usize| rest.get(i).is_some_and(u8::is_ascii_alphabetic);
        if rest[0] == b'<' && (letter_at(1) || (after_lt == Some(b'/') && letter_at(2))) {
            pos += b[pos..].iter().position(|c| is_space(*c) || *c == b'>')?;
            while get_attribute(b, &mut pos)?.is_some() {}
        } else if rest[0] == b'<' && matches!(after_lt, Some(b'!' | b'/' | b'?')) {
            pos += rest.iter().position(|c| *c == b'>')?;
        }
        pos += 1;
    }
    None
}

/// The attributes of one `<meta>`: `Ok(Some(enc))` if it declares a usable charset.
/// `None` (outer) means the input ended inside the tag.
fn meta_attributes(b: &[u8], pos: &mut usize) -> Option<Option<&'static Encoding>> {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let (mut got_pragma, mut need_pragma, mut charset) = (false, None, None);
    while let Some((name, value)) = get_attribute(b, pos)? {
        if seen.contains(&name) {
            continue;
        }
        match name.as_slice() {
            b"http-equiv" => got_pragma |= value == b"content-type",
            b"content" if charset.is_none() => {
                if let Some(e) = charset_from_content(&value) {
                    charset = Some(e);
                    need_pragma = Some(true);
                }
            }
            b"charset" => {
                charset = Encoding::for_label_no_replacement(&value);
                need_pragma = Some(false);
            }
            _ => {}
        }
        seen.push(name);
    }
    let usable = match need_pragma {
        None => false,
        Some(need) => !need || got_pragma,
    };
    Some(charset.filter(|_| usable).map(|e| {
        if e == UTF_16BE || e == UTF_16LE {
            UTF_8
        } else if e == X_USER_DEFINED {
            WINDOWS_1252
        } else {
            e
        }
    }))
}

fn is_space(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | b'\x0C' | b'\r' | b' ')
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// WHATWG "get an attribute": `Some(None)` when the tag ends, `None` when the input does.
/// Names and values come back ASCII-lowercased.
fn get_attribute(b: &[u8], pos: &mut usize) -> Option<Option<(Vec<u8>, Vec<u8>)>> {
    while is_space(*b.get(*pos)?) || b[*pos] == b'/' {
        *pos += 1;
    }
    if b[*pos] == b'>' {
        return Some(None);
    }
    let mut name = Vec::new();
    loop {
        let c = *b.get(*pos)?;
        match c {
            b'=' if !name.is_empty() => break,
            c if is_space(c) => {
                while is_space(*b.get(*pos)?) {
                    *pos += 1;
                }
                if b[*pos] != b'=' {
                    return Some(Some((name, Vec::new())));
                }
                break;
            }
            b'/' | b'>' => return Some(Some((name, Vec::new()))),
            c => name.push(c.to_ascii_lowercase()),
        }
        *pos += 1;
    }
    *pos += 1; // the '='
    while is_space(*b.get(*pos)?) {
        *pos += 1;
    }
    let mut value = Vec::new();
    match *b.get(*pos)? {
        quote @ (b'"' | b'\'') => loop {
            *pos += 1;
            let c = *b.get(*pos)?;
            if c == quote {
                *pos += 1;
                break;
            }
            value.push(c.to_ascii_lowercase());
        },
        b'>' => {}
        _ => loop {
            let c = *b.get(*pos)?;
            if is_space(c) || c == b'>' {
                break;
            }
            value.push(c.to_ascii_lowercase());
            *pos += 1;
        },
    }
    Some(Some((name, value)))
}

/// WHATWG "extract a character encoding from a meta element" (`value` is lowercased).
fn charset_from_content(value: &[u8]) -> Option<&'static Encoding> {
    let mut pos = 0;
    loop {
        pos += find(value.get(pos..)?, b"charset")? + 7;
        while value.get(pos).is_some_and(|c| is_space(*c)) {
            pos += 1;
        }
        if value.get(pos) != Some(&b'=') {
            continue;
        }
        pos += 1;
        while value.get(pos).is_some_and(|c| is_space(*c)) {
            pos += 1;
        }
        let rest = value.get(pos..)?;
        let label = match rest.first()? {
            q @ (b'"' | b'\'') => {
                let end = rest[1..].iter().position(|c| c == q)?;
                &rest[1..1 + end]
            }
            _ => {
                let end = rest
                    .iter()
                    .position(|c| is_space(*c) || *c == b';')
                    .unwrap_or(rest.len());
                &rest[..end]
            }
        };
        return Encoding::for_label_no_replacement(label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{GB18030, GBK, ISO_8859_2, SHIFT_JIS};

    const W1252: &[u8] = include_bytes!("../../tests/fixtures/html/windows-1252.html");
    const SJIS: &[u8] = include_bytes!("../../tests/fixtures/html/shift_jis.html");
    const GBK_PAGE: &[u8] = include_bytes!("../../tests/fixtures/html/gbk.html");
    const WRONG: &[u8] = include_bytes!("../../tests/fixtures/html/wrong-charset.html");
    const BOM: &[u8] = include_bytes!("../../tests/fixtures/html/bom.html");

    fn meta(html: &str) -> Option<&'static str> {
        meta_charset(html.as_bytes()).map(Encoding::name)
    }

    #[test]
    fn bom_beats_header_and_meta() {
        let d = decode_html(BOM, Some("text/html; charset=iso-8859-2"), None);
        assert_eq!(
            (d.encoding, d.source, d.had_errors),
            (UTF_8, CharsetSource::Bom, false)
        );
        assert!(
            d.text.starts_with("<html><head>"),
            "BOM stripped: {:?}",
            &d.text[..12]
        );
        assert!(d.text.contains("<title>Grüße, 世界</title>"));

        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend("<p>hi é</p>".encode_utf16().flat_map(u16::to_le_bytes));
        let d = decode_html(&utf16, None, None);
        assert_eq!((d.encoding, d.source), (UTF_16LE, CharsetSource::Bom));
        assert_eq!(d.text, "<p>hi é</p>");

        let d = decode_html(b"\xEF\xBB\xBFa\xFFb", None, None);
        assert_eq!((d.text.as_ref(), d.had_errors), ("a\u{FFFD}b", true));
    }

    #[test]
    fn header_charset_is_tolerant() {
        let name = |ct: &str| header_charset(ct).map(Encoding::name);
        assert_eq!(name("text/html; charset=ISO-8859-1"), Some("windows-1252"));
        assert_eq!(name("Text/HTML; Charset=\"UTF-8\""), Some("UTF-8"));
        assert_eq!(name("text/html;charset='shift_jis'"), Some("Shift_JIS"));
        assert_eq!(name("text/html; charset=utf-8, text/plain"), Some("UTF-8"));
        assert_eq!(name("text/html; charset=\"koi8-r"), Some("KOI8-R"));
        assert_eq!(name("text/html; foo=bar; CHARSET = gbk ;x"), Some("GBK"));
        assert_eq!(name("charset=big5"), Some("Big5"));
        for none in [
            "text/html",
            "text/html; charset=",
            "text/html; charset=bogus",
            "text/html; charset=iso-2022-kr",
            "text/html; charset",
            ";;;=\"",
            "",
        ] {
            assert_eq!(name(none), None, "{none:?}");
        }
    }

    #[test]
    fn header_beats_meta() {
        // Shift_JIS bytes served as windows-1252: mojibake, but what the server said.
        let d = decode_html(SJIS, Some("text/html; charset=windows-1252"), None);
        assert_eq!(
            (d.encoding, d.source),
            (WINDOWS_1252, CharsetSource::Header)
        );
        let d = decode_html(
            b"<meta charset=koi8-r>\xE9",
            Some("text/html; charset=latin2"),
            None,
        );
        assert_eq!((d.encoding, d.source), (ISO_8859_2, CharsetSource::Header));
        assert_eq!(d.text, "<meta charset=koi8-r>é");
    }

    #[test]
    fn meta_declarations_from_fixtures() {
        let d = decode_html(W1252, Some("text/html"), None);
        assert_eq!(
            (d.encoding, d.source, d.had_errors),
            (WINDOWS_1252, CharsetSource::Meta, false)
        );
        assert!(
            d.text.contains("<title>Café “Déjà vu” – 5 €</title>"),
            "{}",
            d.text
        );
        assert!(d.text.contains("Crème brûlée: 5 € — “délicieux”."));

        let d = decode_html(SJIS, None, None);
        assert_eq!(
            (d.encoding, d.source, d.had_errors),
            (SHIFT_JIS, CharsetSource::Meta, false)
        );
        assert!(
            d.text.contains("<title>日本語のページ</title>"),
            "{}",
            d.text
        );
        assert!(d
            .text
            .contains("<h1>こんにちは世界</h1><p>これはテストです。</p>"));
    }

    #[test]
    fn detection_finds_undeclared_gbk() {
        for tld in [
            None,
            Some(&b"cn"[..]),
            Some(b"C.N"),
            Some(b"\xFF"),
            Some(b""),
        ] {
            let d = decode_html(GBK_PAGE, Some("text/html"), tld);
            assert!(
                d.encoding == GBK || d.encoding == GB18030,
                "{}",
                d.encoding.name()
            );
            assert_eq!((d.source, d.had_errors), (CharsetSource::Detected, false));
            assert!(d.text.contains("<title>中文网页</title>"), "{}", d.text);
            assert!(d.text.contains("今天的天气很好，我们一起去公园散步。"));
        }
    }

    /// The hostile-input review's page: one stray byte in a short page declared UTF-8
    /// turned the whole page into mojibake (`CafÃ© ðŸ˜€ naÃ¯ve`), because a share of
    /// U+FFFD overrode the declaration with a windows-1252 guess.
    #[test]
    fn a_stray_byte_does_not_turn_a_declared_utf8_page_into_mojibake() {
        let mut body = "<meta charset=\"utf-8\"><title>Café 😀 naïve</title><p>"
            .as_bytes()
            .to_vec();
        body.extend_from_slice(b"\xA9 2020</p>");
        let want = "<title>Café 😀 naïve</title><p>\u{FFFD} 2020</p>";
        for (ct, source) in [
            (None, CharsetSource::Meta),
            (Some("text/html"), CharsetSource::Meta),
            (Some("text/html; charset=UTF-8"), CharsetSource::Header),
        ] {
            let d = decode_html(&body, ct, Some(b"fr"));
            assert_eq!((d.encoding, d.source, d.had_errors), (UTF_8, source, true));
            assert!(d.text.ends_with(want), "{ct:?}: {}", d.text);
        }
        // However many bytes are invalid, each becomes one U+FFFD where it is.
        let d = decode_html(
            b"<meta charset=utf-8>\xE9t\xE9 \xFF\xFE \xC3\xA9",
            None,
            None,
        );
        assert_eq!((d.encoding, d.source), (UTF_8, CharsetSource::Meta));
        assert_eq!(
            d.text,
            "<meta charset=utf-8>\u{FFFD}t\u{FFFD} \u{FFFD}\u{FFFD} é"
        );
    }

    /// A wrong declaration is not second-guessed either: the page reads as a browser
    /// shows it (windows-1252 bytes declared UTF-8 become U+FFFD).
    #[test]
    fn a_declaration_wins_over_detection() {
        let wrong_title = "<title>Caf\u{FFFD} na\u{FFFD}ve r\u{FFFD}sum\u{FFFD}</title>";
        let d = decode_html(WRONG, None, None);
        assert_eq!(
            (d.encoding, d.source, d.had_errors),
            (UTF_8, CharsetSource::Meta, true)
        );
        assert!(d.text.contains(wrong_title), "{}", d.text);
        let d = decode_html(WRONG, Some("text/html; charset=utf-8"), None);
        assert_eq!((d.encoding, d.source), (UTF_8, CharsetSource::Header));
        assert!(d.text.contains(wrong_title), "{}", d.text);
        // The same bytes declared as what they are, in the header or the page.
        let d = decode_html(WRONG, Some("text/html; charset=windows-1252"), None);
        assert_eq!(
            (d.encoding, d.source, d.had_errors),
            (WINDOWS_1252, CharsetSource::Header, false)
        );
        assert!(d.text.contains("<title>Café naïve résumé</title>"));
        assert!(d.text.contains("Façade à la crème – £ 5."));
        let d = decode_html(W1252, Some("text/html; charset=cp1252"), None);
        assert_eq!(
            (d.encoding, d.source),
            (WINDOWS_1252, CharsetSource::Header)
        );
        // With nothing declared, detection decides.
        let undeclared = WRONG.strip_prefix(b"<html><head><meta charset=\"utf-8\">");
        let d = decode_html(undeclared.unwrap(), None, None);
        assert_eq!(
            (d.encoding, d.source, d.had_errors),
            (WINDOWS_1252, CharsetSource::Detected, false)
        );
        assert!(d.text.contains("<title>Café naïve résumé</title>"));
        // UTF-8 text declared windows-1252: mojibake, as declared.
        let d = decode_html(
            "<p>é</p>".as_bytes(),
            Some("text/html;charset=latin1"),
            None,
        );
        assert_eq!((d.encoding, d.text.as_ref()), (WINDOWS_1252, "<p>Ã©</p>"));
    }

    #[test]
    fn nothing_declared() {
        let d = decode_html(b"", None, None);
        assert_eq!(
            (d.encoding, d.source, d.text.as_ref()),
            (WINDOWS_1252, CharsetSource::Default, "")
        );
        let d = decode_html(b"<p>plain ascii</p>", None, Some(b"jp"));
        assert_eq!(
            (d.encoding, d.source),
            (WINDOWS_1252, CharsetSource::Default)
        );
        assert!(matches!(d.text, Cow::Borrowed("<p>plain ascii</p>")));
        let d = decode_html("<p>naïve ☺</p>".as_bytes(), None, None);
        assert_eq!((d.encoding, d.source), (UTF_8, CharsetSource::Detected));
        assert!(matches!(d.text, Cow::Borrowed("<p>naïve ☺</p>")));
    }

    #[test]
    fn prescan_follows_whatwg() {
        let pragma = r#"<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">"#;
        assert_eq!(meta(pragma), Some("KOI8-R"));
        assert_eq!(
            meta(r#"<meta content="text/html; charset=koi8-r">"#),
            None,
            "needs the pragma"
        );
        assert_eq!(
            meta(r#"<meta content='charset = "gbk"' http-equiv=content-type>"#),
            Some("GBK")
        );
        assert_eq!(
            meta("<meta content=\"xcharsetx charset=big5;\" http-equiv=Content-Type>"),
            Some("Big5")
        );
        assert_eq!(
            meta("<meta content=\"charset='big5\" http-equiv=content-type>"),
            None
        );
        assert_eq!(meta("<META CHARSET='Big5'>"), Some("Big5"));
        assert_eq!(meta("<meta charset=\"utf-16le\">"), Some("UTF-8"));
        assert_eq!(meta("<meta charset=UTF-16>"), Some("UTF-8"));
        assert_eq!(meta("<meta charset=x-user-defined>"), Some("windows-1252"));
        assert_eq!(meta("<meta/charset=koi8-r>"), Some("KOI8-R"));
        assert_eq!(
            meta("<meta name=x charset = windows-1251 >"),
            Some("windows-1251")
        );
        assert_eq!(
            meta("<meta charset=bogus charset=utf-8><meta charset=gbk>"),
            Some("GBK")
        );
        assert_eq!(
            meta("<meta charset=hz-gb-2312><meta charset=euc-jp>"),
            Some("EUC-JP")
        );
        assert_eq!(
            meta("<!-- <meta charset=koi8-r> --><meta charset=euc-jp>"),
            Some("EUC-JP")
        );
        assert_eq!(meta("<!--><meta charset=euc-jp>"), Some("EUC-JP"));
        assert_eq!(
            meta("<div title=\"<meta charset=koi8-r>\"><meta charset=iso-8859-2>"),
            Some("ISO-8859-2")
        );
        assert_eq!(
            meta("<!doctype html><?x <meta charset=koi8-r>?></p <meta charset=gbk>"),
            None
        );
        assert_eq!(
            meta("<metal charset=koi8-r><meta charset=gbk>"),
            Some("GBK")
        );
        assert_eq!(meta("<p>x</p><meta charset=\"koi8"), None, "cut off");
        assert_eq!(meta("<!-- never closed <meta charset=gbk>"), None);
        let late = format!("{}<meta charset=gbk>", " ".repeat(1020));
        assert_eq!(meta(&late), None, "beyond 1024 bytes");
        assert_eq!(meta(&late[20..]), Some("GBK"));
    }

    #[test]
    fn never_panics_on_any_bytes() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: &[&[u8]] = &[
            b"<",
            b">",
            b"<meta ",
            b"charset=",
            b"\"",
            b"'",
            b"=",
            b" ",
            b"/",
            b"<!--",
            b"-->",
            b"http-equiv=content-type",
            b"content=",
            b"utf-8",
            b"gbk",
            b"\xEF\xBB\xBF",
            b"\xFF",
            b"\xE9",
            b"\x1B$B",
            b"\x00",
            b"\xA4\xA2",
            b";",
            b"x",
        ];
        for _ in 0..5000 {
            let mut body = Vec::new();
            for _ in 0..(next() % 40) {
                body.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let cts = [
                None,
                Some("text/html; charset=utf-8"),
                Some("text/html; charset=\""),
            ];
            let ct = cts[(next() % 3) as usize];
            let d = decode_html(&body, ct, Some(b"jp"));
            assert!(d.text.len() <= body.len() * 3 + 3);
        }
        for fixture in [W1252, SJIS, GBK_PAGE, WRONG, BOM] {
            for end in 0..fixture.len() {
                decode_html(&fixture[..end], None, None);
            }
        }
    }
}
