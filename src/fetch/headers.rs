//! Request headers: the defaults, the user's (`crawl --header "Name: value"`), and URL
//! credentials, put together for each hop of a fetch.
//!
//! User header values may be secrets (tokens, cookies): they are marked sensitive, never
//! shown by `Debug`, never echoed in an error, and the credential headers among them
//! (`Authorization`, `Proxy-Authorization`, `Cookie`) are sent only to the origin of the
//! URL fetched, like the Basic auth made from the URL's userinfo.

use std::fmt;

use base64::Engine;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

/// One `--header`, checked. Its `Debug` shows the name only.
#[derive(Clone, PartialEq, Eq)]
pub struct UserHeader {
    name: HeaderName,
    value: HeaderValue,
}

/// Headers the user cannot set: they frame the message or the connection, or would
/// stop the body from being decoded (`Accept-Encoding` is chosen by the decoder).
const RESERVED: [HeaderName; 10] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::ACCEPT_ENCODING,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Headers that carry credentials: never sent to another origin than the URL's own.
const CREDENTIALS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
];

impl UserHeader {
    /// Parses `Name: value`. Errors never contain the value (nor anything past an
    /// invalid name), since it may be a secret.
    pub fn parse(text: &str) -> Result<UserHeader, String> {
        let Some((name, value)) = text.split_once(':') else {
            return Err("a header must be given as `Name: value`".into());
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            "a header name must be a non-empty HTTP token (letters, digits, `-`, ...) \
             before the `:`"
                .to_string()
        })?;
        if RESERVED.contains(&name) {
            return Err(format!(
                "header `{name}` cannot be set: webspool sets it for each request"
            ));
        }
        let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
            format!("the value of header `{name}` has characters not allowed in HTTP")
        })?;
        value.set_sensitive(true);
        Ok(UserHeader { name, value })
    }

    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

impl fmt::Debug for UserHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: <redacted>", self.name)
    }
}

/// The headers of one request to `target` in a fetch of `first`: the defaults, the
/// URL's credentials as Basic auth, then the user's headers (replacing defaults of the
/// same name); credentials only while `target` has the origin of `first`.
pub(crate) fn for_hop(
    user_agent: &HeaderValue,
    user: &[UserHeader],
    first: &Url,
    target: &Url,
) -> HeaderMap {
    let same_origin = target.origin() == first.origin();
    let mut headers = HeaderMap::new();
    headers.insert(header::USER_AGENT, user_agent.clone());
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    if let Some(auth) = basic_auth(first).filter(|_| same_origin) {
        headers.insert(header::AUTHORIZATION, auth);
    }
    let sent = user
        .iter()
        .filter(|h| same_origin || !CREDENTIALS.contains(&h.name));
    for h in sent.clone() {
        headers.remove(&h.name);
    }
    for h in sent {
        headers.append(h.name.clone(), h.value.clone());
    }
    headers
}

/// Credentials in the URL become a Basic header (sensitive, like the user's).
fn basic_auth(url: &Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or(""))
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    // Base64 is always a valid header value.
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ua() -> HeaderValue {
        HeaderValue::from_static("test-agent")
    }

    #[test]
    fn headers_parse_and_bad_ones_never_echo_the_value() {
        let h = UserHeader::parse("  X-Token :  s3cret value ").unwrap();
        assert_eq!(h.name(), "x-token");
        assert_eq!(h.value, "s3cret value");
        assert_eq!(format!("{h:?}"), "x-token: <redacted>");
        let bad = [
            "Authorization Bearer s3cret",
            "Bad Name: s3cret",
            ": s3cret",
            "X-Token: s3cret\u{7}",
            "Host: s3cret.example",
            "accept-encoding: s3cret",
        ];
        for text in bad {
            let err = UserHeader::parse(text).unwrap_err();
            assert!(!err.contains("s3cret"), "{text}: {err}");
        }
        assert!(UserHeader::parse("Host: x").unwrap_err().contains("`host`"));
        assert!(
            UserHeader::parse("X-Empty:").is_ok(),
            "empty values are valid"
        );
    }

    #[test]
    fn url_credentials_become_basic_auth() {
        let url = Url::parse("http://al%40ice:p%3Ass@example.com/x#frag").unwrap();
        let sent = for_hop(&ua(), &[], &url, &url);
        let want = base64::engine::general_purpose::STANDARD.encode("al@ice:p:ss");
        assert_eq!(
            sent[header::AUTHORIZATION],
            format!("Basic {want}").as_str()
        );
        assert_eq!(sent[header::USER_AGENT], "test-agent");
    }

    #[test]
    fn user_headers_replace_defaults_and_credentials_stay_at_their_origin() {
        let user: Vec<UserHeader> = [
            "Authorization: Bearer t0ken",
            "Cookie: a=1",
            "X-Trace: 1",
            "X-Trace: 2",
            "User-Agent: mine",
        ]
        .iter()
        .map(|h| UserHeader::parse(h).unwrap())
        .collect();
        let first = Url::parse("https://user:pw@a.example/start").unwrap();
        let same = for_hop(
            &ua(),
            &user,
            &first,
            &Url::parse("https://a.example/b").unwrap(),
        );
        assert_eq!(same[header::AUTHORIZATION], "Bearer t0ken", "user's wins");
        assert_eq!(same.get_all(header::AUTHORIZATION).iter().count(), 1);
        assert_eq!(same[header::COOKIE], "a=1");
        assert_eq!(same[header::USER_AGENT], "mine");
        let traces: Vec<_> = same.get_all("x-trace").iter().collect();
        assert_eq!(traces, ["1", "2"]);
        for other in [
            "https://b.example/",
            "http://a.example/",
            "https://a.example:8443/",
        ] {
            let sent = for_hop(&ua(), &user, &first, &Url::parse(other).unwrap());
            for name in CREDENTIALS {
                assert!(!sent.contains_key(&name), "{other}: {name} sent");
            }
            assert_eq!(sent.get_all("x-trace").iter().count(), 2, "{other}");
        }
    }
}
