//! URL normalization and redaction, shared by every stage.
//!
//! A URL is stored in a normalized form: what `url::Url` gives it (scheme and host
//! lowercased, IDNA hosts in ASCII, default port dropped, dot segments resolved,
//! an empty path made `/`), without its fragment, which is never sent to a server,
//! and with the escapes in path and query normalized as RFC 3986 section 6.2.2.2
//! says: hex digits uppercased, escapes of unreserved characters
//! (`A-Z a-z 0-9 - . _ ~`) decoded, reserved characters never decoded. Dedup compares
//! these forms, so [`normalize`] must stay idempotent.
//!
//! A stored URL carries no userinfo: the page is identified without it, so the
//! credentials a user writes into a URL (`https://user:pass@host/`) never reach the
//! journal's records or MySQL. [`normalize_given`] hands them back separately, for the
//! journal's owner-only credentials file. Text that failed to parse is shown only
//! through [`redact_text`], which hides anything that may be userinfo.

use std::fmt;

use url::Url;

/// Longest URL accepted, in bytes; longer lines are reported, not stored.
pub const MAX_URL_LEN: usize = 8 * 1024;

/// Parses and normalizes one URL, dropping any userinfo.
pub fn normalize(text: &str) -> Result<Url, String> {
    normalize_given(text).map(|(url, _)| url)
}

/// Userinfo (`user:password` or `user`, percent-encoded as written) taken out of a URL
/// the user gave. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Userinfo(String);

impl Userinfo {
    pub fn new(text: String) -> Userinfo {
        Userinfo(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Userinfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Userinfo(***)")
    }
}

/// A URL the user gave on the command line, its userinfo taken out.
#[derive(Clone, Debug)]
pub struct GivenUrl {
    pub url: Url,
    pub userinfo: Option<Userinfo>,
}

/// Parses and normalizes one URL given by the user: the URL without userinfo, and the
/// userinfo if it had any.
pub fn normalize_given(text: &str) -> Result<(Url, Option<Userinfo>), String> {
    let mut url = normalize_stored(text)?;
    let userinfo = take_userinfo(&mut url);
    Ok((url, userinfo))
}

/// Parses and normalizes a URL read back from the journal, keeping its userinfo: URLs
/// stored by webspool before 0.1 (journal format 4) may hold the credentials they are
/// fetched with.
pub fn normalize_stored(text: &str) -> Result<Url, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} bytes"));
    }
    let mut url = Url::parse(text).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    url.set_fragment(None);
    normalize_escapes(&mut url);
    // Escaping can make the URL grow (a byte that is not UTF-8 becomes `%EF%BF%BD`):
    // one that no longer fits would be stored but could never be read back.
    if url.as_str().len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} bytes once escaped"));
    }
    Ok(url)
}

/// Uppercases the hex digits of every escape in path and query and decodes the
/// escapes of unreserved characters.
fn normalize_escapes(url: &mut Url) {
    if let Some(path) = normalized_escapes(url.path()) {
        url.set_path(&path);
    }
    if let Some(query) = url.query().and_then(normalized_escapes) {
        url.set_query(Some(&query));
    }
}

/// The component with its escapes normalized, or `None` if that changes nothing.
///
/// A component holding a `%` that starts no escape keeps its escapes undecoded (only
/// uppercased): decoding `%%34%31` to `%41` would make a new escape out of text,
/// changing what the server sees and what a second pass would do.
fn normalized_escapes(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let escape_at = |i: usize| {
        bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    };
    if !text.contains('%') {
        return None;
    }
    let percents = || bytes.iter().enumerate().filter(|(_, &b)| b == b'%');
    let decode = percents().all(|(i, _)| escape_at(i));
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    // Escapes never overlap: the two bytes after a `%` that starts one are hex digits.
    for (i, _) in percents().filter(|&(i, _)| escape_at(i)) {
        out.push_str(&text[done..i]);
        let byte = hex_value(bytes[i + 1], bytes[i + 2]);
        if decode && is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
        }
        done = i + 3;
    }
    out.push_str(&text[done..]);
    (out != text).then_some(out)
}

/// The byte two ASCII hex digits stand for.
fn hex_value(high: u8, low: u8) -> u8 {
    let digit = |d: u8| match d {
        b'0'..=b'9' => d - b'0',
        _ => d.to_ascii_lowercase() - b'a' + 10,
    };
    digit(high) << 4 | digit(low)
}

/// RFC 3986 unreserved characters: the only ones whose escapes may be decoded.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Removes the userinfo of `url` and returns it, if it had any.
pub fn take_userinfo(url: &mut Url) -> Option<Userinfo> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let userinfo = match url.password() {
        Some(password) => format!("{}:{password}", url.username()),
        None => url.username().to_string(),
    };
    // Both fail only for URLs that cannot have userinfo, and this one has some.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(Userinfo(userinfo))
}

/// `text` without the userinfo of the URL it holds: for URLs read from records that
/// may predate [`normalize`] dropping it. Text without `@` is returned as it is.
pub fn without_userinfo(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('@') {
        return text.into();
    }
    match Url::parse(text) {
        Ok(mut url) => match take_userinfo(&mut url) {
            Some(_) => url.to_string().into(),
            None => text.into(),
        },
        Err(_) => redact_text(text).into(),
    }
}

/// The URL with any userinfo replaced by `***`, for logs and errors.
pub fn redact(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("***");
    shown.to_string()
}

/// Redaction of text that failed to parse as a URL (or may not be one): everything
/// from after `scheme://` (or from the start, without `://`) up to the last `@` is
/// hidden. A password may hold `/`, `#`, `?`, `:` or `@` unencoded, so no character
/// before the last `@` can be taken for the end of the userinfo; hiding a path that
/// holds an `@` too is the price of never showing a password. Without any `@`, a
/// `host:port` whose port is not a number may be `user:password` with its `@`
/// forgotten: everything after that `:` is hidden.
pub fn redact_text(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let rest = &text[start..];
    if let Some(at) = rest.rfind('@') {
        return format!("{}***{}", &text[..start], &rest[at..]);
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.find(':') {
        Some(colon)
            if !authority.starts_with('[')
                && !authority[colon + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{}{}:***", &text[..start], &authority[..colon])
        }
        _ => text.to_string(),
    }
}

/// The key that per-host limits apply to: host and port.
pub fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Passwords holding each character that a URL parser may take for the end of the
/// userinfo, or for an escape: test data for every place that must hide them.
#[cfg(test)]
pub(crate) const TRICKY_PASSWORDS: [&str; 6] = [
    "ab/SECRET",
    "ab#SECRET",
    "ab?SECRET",
    "a@SECRET",
    "a:SECRET",
    "SECRET%",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_ports_dots_and_fragments() {
        let url = normalize("HTTP://Example.COM:80/a/./b/../c?q=1#frag").unwrap();
        assert_eq!(url.as_str(), "http://example.com/a/c?q=1");
    }

    #[test]
    fn adds_the_root_path_and_converts_idna_hosts() {
        let url = normalize("http://Example.com").unwrap();
        assert_eq!(url.as_str(), "http://example.com/");
        let url = normalize("https://EXAMPLE.com:443?x").unwrap();
        assert_eq!(url.as_str(), "https://example.com/?x");
        let url = normalize("http://BÜCHER.example:8080/").unwrap();
        assert_eq!(url.as_str(), "http://xn--bcher-kva.example:8080/");
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded_and_hex_uppercased() {
        let url = normalize("http://a/%7Euser/%41%62%2D%2e%5f%30?q=%7e%2d").unwrap();
        assert_eq!(url.as_str(), "http://a/~user/Ab-._0?q=~-");
        let url = normalize("http://a/x%2fy%3a?k=%2b%c3%a4").unwrap();
        assert_eq!(url.as_str(), "http://a/x%2Fy%3A?k=%2B%C3%A4");
    }

    #[test]
    fn escapes_of_reserved_characters_stay_escaped() {
        let text = "http://a/%2F%3F%23%25%26%3D%2B%20%3A%40%21%24%27%28%29%2A%2C%3B%5B%5D\
                    ?k=%26%3D%23%25%2B%20";
        assert_eq!(normalize(text).unwrap().as_str(), text);
    }

    #[test]
    fn escaped_dot_segments_are_resolved() {
        let url = normalize("http://a/b/%2e%2E/c/%2E/d").unwrap();
        assert_eq!(url.as_str(), "http://a/c/d");
        // An escaped dot inside a segment is just a dot.
        assert_eq!(
            normalize("http://a/x%2Ey").unwrap().as_str(),
            "http://a/x.y"
        );
    }

    #[test]
    fn a_stray_percent_keeps_its_component_undecoded() {
        // Decoding would turn `%%34%31` into the new escape `%41`.
        let url = normalize("http://a/%%34%31/%7e?q=%7e").unwrap();
        assert_eq!(url.as_str(), "http://a/%%34%31/%7E?q=~");
        let url = normalize("http://a/100%?q=50%&r=%2f").unwrap();
        assert_eq!(url.as_str(), "http://a/100%?q=50%&r=%2F");
    }

    #[test]
    fn the_fragment_is_dropped_but_a_query_kept() {
        let url = normalize("http://a/p?#frag").unwrap();
        assert_eq!(url.as_str(), "http://a/p?");
        assert_eq!(normalize("http://a/#x").unwrap().as_str(), "http://a/");
    }

    proptest::proptest! {
        #[test]
        fn normalize_is_idempotent(
            scheme in "[hH][tT][tT][pP][sS]?",
            host in "([a-zA-Z0-9-]{1,6}\\.){0,2}[a-zA-Z]{1,4}|127\\.0\\.0\\.1|\\[::1\\]",
            port in proptest::option::of(0u16..),
            path in "(/([a-zA-Z0-9._~!$&'()*+,;=:@ -]|%[0-9a-fA-F]{2}|%|\\.\\.|\\.|[äß])*){0,5}",
            query in proptest::option::of("([a-zA-Z0-9._~!$&'()*+,;=:@/? -]|%[0-9a-fA-F]{2}|%)*"),
            fragment in proptest::option::of("[a-z%#]*"),
        ) {
            let mut text = format!("{scheme}://{host}");
            if let Some(port) = port {
                text.push_str(&format!(":{port}"));
            }
            text.push_str(&path);
            if let Some(query) = query {
                text.push_str(&format!("?{query}"));
            }
            if let Some(fragment) = fragment {
                text.push_str(&format!("#{fragment}"));
            }
            let once = normalize(&text).map_err(proptest::test_runner::TestCaseError::fail)?;
            let twice = normalize(once.as_str())
                .map_err(proptest::test_runner::TestCaseError::fail)?;
            proptest::prop_assert_eq!(once.as_str(), twice.as_str());
            proptest::prop_assert!(once.fragment().is_none());
            for part in [once.path(), once.query().unwrap_or("")] {
                for escape in part.as_bytes().windows(3).filter(|w| {
                    w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit()
                }) {
                    proptest::prop_assert!(!escape.iter().any(u8::is_ascii_lowercase), "{}", once);
                }
            }
        }
    }

    /// Found by fuzzing: a URL under the limit that escaping takes over it was accepted,
    /// and then refused when read back from the journal.
    #[test]
    fn a_url_that_escaping_takes_over_the_limit_is_refused() {
        let text = format!("http://a/{}", "\u{7f}".repeat(MAX_URL_LEN / 3));
        assert!(text.len() <= MAX_URL_LEN);
        let err = normalize(&text).unwrap_err();
        assert!(err.contains("once escaped"), "{err}");
    }

    #[test]
    fn refuses_other_schemes_and_missing_hosts() {
        assert!(normalize("ftp://example.com/")
            .unwrap_err()
            .contains("scheme"));
        assert!(normalize("not a url").is_err());
        assert!(normalize("http://").is_err());
        assert!(normalize(&format!("http://a/{}", "x".repeat(MAX_URL_LEN))).is_err());
    }

    #[test]
    fn stored_urls_carry_no_userinfo() {
        let (url, userinfo) = normalize_given("https://bob:s%40cret@Example.com/x").unwrap();
        assert_eq!(url.as_str(), "https://example.com/x");
        let userinfo = userinfo.unwrap();
        assert_eq!(userinfo.as_str(), "bob:s%40cret");
        assert_eq!(format!("{userinfo:?}"), "Userinfo(***)");
        let (url, userinfo) = normalize_given("http://bob@example.com/").unwrap();
        assert_eq!(url.as_str(), "http://example.com/");
        assert_eq!(userinfo.unwrap().as_str(), "bob");
        assert_eq!(normalize_given("http://a/").unwrap().1, None);
        assert_eq!(normalize("http://u:p@a/x").unwrap().as_str(), "http://a/x");
        assert_eq!(
            normalize_stored("http://u:p@a/x").unwrap().as_str(),
            "http://u:p@a/x"
        );
        assert_eq!(without_userinfo("http://u:p@a/x?y@z"), "http://a/x?y@z");
        assert_eq!(without_userinfo("http://a/x"), "http://a/x");
        assert_eq!(
            without_userinfo("http://u:ab/SECRET@a:x/"),
            "http://***@a:x/"
        );
    }

    #[test]
    fn redaction_hides_userinfo() {
        let url = Url::parse("https://bob:secret@example.com/x").unwrap();
        assert_eq!(redact(&url), "https://***@example.com/x");
        assert_eq!(
            redact_text("https://bob:secret@ex ample.com/x"),
            "https://***@ex ample.com/x"
        );
        assert_eq!(redact_text("garbage"), "garbage");
        assert_eq!(redact_text("mysql//bob:secret@h"), "***@h");
        // Characters a password may hold unencoded end no userinfo early.
        for secret in TRICKY_PASSWORDS {
            for text in [
                format!("http://user:{secret}@host/x@y"),
                format!("user:{secret}@host"),
            ]
            .into_iter()
            // The `@` forgotten: only a password without `@` can be told apart.
            .chain((!secret.contains('@')).then(|| format!("http://user:{secret}/x")))
            {
                let shown = redact_text(&text);
                assert!(!shown.contains("SECRET"), "{text}: {shown}");
            }
        }
        assert_eq!(redact_text("http://host:8o/x"), "http://host:***");
        assert_eq!(redact_text("http://[::1]:80/ x"), "http://[::1]:80/ x");
    }
}
