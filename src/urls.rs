//! URL normalization and redaction, shared by every stage.
//!
//! A URL is stored in the normalized form `url::Url` gives it (scheme and host
//! lowercased, default port dropped, dot segments resolved, percent-encoding
//! normalized) without its fragment, which is never sent to a server. Dedup compares
//! these forms. Credentials stay in the stored URL (they are needed to fetch it) but
//! never leave the process in a log line, an error or `status`: use [`redact`].

use url::Url;

/// Longest URL accepted, in bytes; longer lines are reported, not stored.
pub const MAX_URL_LEN: usize = 8 * 1024;

/// Parses and normalizes one URL given by the user.
pub fn normalize(text: &str) -> Result<Url, String> {
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
    Ok(url)
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

/// Best-effort redaction of text that failed to parse as a URL: anything between
/// `scheme://` and an `@` in the authority is hidden, and without `://`, anything
/// before an `@`.
pub fn redact_text(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        // No recognizable authority: hide whatever stands before an `@`.
        return match text.rfind('@') {
            Some(at) => format!("***{}", &text[at..]),
            None => text.to_string(),
        };
    };
    let authority_end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_ports_dots_and_fragments() {
        let url = normalize("HTTP://Example.COM:80/a/./b/../c?q=1#frag").unwrap();
        assert_eq!(url.as_str(), "http://example.com/a/c?q=1");
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
    fn redaction_hides_userinfo() {
        let url = normalize("https://bob:secret@example.com/x").unwrap();
        assert_eq!(redact(&url), "https://***@example.com/x");
        assert_eq!(
            redact_text("https://bob:secret@ex ample.com/x"),
            "https://***@ex ample.com/x"
        );
        assert_eq!(redact_text("garbage"), "garbage");
        assert_eq!(redact_text("mysql//bob:secret@h"), "***@h");
    }
}
