//! Request headers: the defaults, the user's (`crawl --header "Name: value"`), and URL
//! credentials, put together for each hop of a fetch.
//!
//! User header values may be secrets (tokens, cookies): they are marked sensitive, never
//! shown by `Debug`, never echoed in an error, and sent only to the origins the user
//! gave URLs of (the URL list, `--from-mysql`, a `--sitemap`'s own URL; the journal's
//! [`Grants`]), not to the other hosts a sitemap lists or a page links to. The
//! credential headers among them (`Authorization`, `Proxy-Authorization`, `Cookie`) are
//! moreover not sent on when a redirect leads to another origin than the URL fetched.
//! Credentials written in a given URL are sent as Basic auth to that URL's origin only.

use std::fmt;

use base64::Engine;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::journal::{Grants, Validators};

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

/// The user's `--header`s, and whether they go to every origin.
pub(crate) struct User<'a> {
    pub(crate) headers: &'a [UserHeader],
    pub(crate) all_origins: bool,
}

/// The headers of one request to `target` in a fetch of `first`: the defaults, the
/// Basic auth granted to `target`'s origin, then the user's headers (replacing defaults
/// of the same name) if the user gave URLs of that origin (or sends them to all), their
/// credential headers only while `target` has the origin of `first`.
/// Adds the conditional headers of a stored version (values a server sent, so only
/// those that are valid header values).
pub(crate) fn conditional(headers: &mut HeaderMap, validators: &Validators) {
    let pairs = [
        (header::IF_NONE_MATCH, &validators.etag),
        (header::IF_MODIFIED_SINCE, &validators.last_modified),
    ];
    for (name, value) in pairs {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
}

pub(crate) fn for_hop(
    user_agent: &HeaderValue,
    user: &User<'_>,
    grants: &Grants,
    first: &Url,
    target: &Url,
) -> HeaderMap {
    let User {
        headers: user,
        all_origins,
    } = *user;
    let mut headers = HeaderMap::new();
    headers.insert(header::USER_AGENT, user_agent.clone());
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    if user.is_empty() && !grants.has_credentials() && !has_userinfo(first) {
        return headers;
    }
    let same_origin = target.origin() == first.origin();
    let origin = target.origin().ascii_serialization();
    // URLs stored by older versions still hold their credentials.
    let auth = match has_userinfo(first) {
        true => basic_auth(first.username(), first.password()).filter(|_| same_origin),
        false => grants.userinfo(&origin).and_then(|info| {
            let (name, password) = info.split_once(':').unwrap_or((&info, ""));
            basic_auth(name, Some(password))
        }),
    };
    if let Some(auth) = auth {
        headers.insert(header::AUTHORIZATION, auth);
    }
    // A journal that cannot answer sends nothing: fail closed.
    if user.is_empty() || !(all_origins || grants.is_given(&origin).unwrap_or(false)) {
        return headers;
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

fn has_userinfo(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Percent-encoded URL credentials become a Basic header (sensitive, like the user's).
fn basic_auth(name: &str, password: Option<&str>) -> Option<HeaderValue> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!("{}:{}", decode(name), decode(password.unwrap_or("")));
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

    fn user(headers: &[UserHeader], all_origins: bool) -> User<'_> {
        User {
            headers,
            all_origins,
        }
    }

    /// A journal's grants, with `given` granted and `http://al%40ice:p%3Ass@creds.example`'s
    /// credentials kept.
    fn grants(given: &[&str]) -> (tempfile::TempDir, std::sync::Arc<Grants>) {
        let dir = tempfile::tempdir().unwrap();
        let journal = crate::journal::Journal::open(&dir.path().join("j")).unwrap();
        let grants = journal.grants();
        for url in given {
            grants.grant(&Url::parse(url).unwrap(), None).unwrap();
        }
        let (url, info) =
            crate::urls::normalize_given("http://al%40ice:p%3Ass@creds.example/").unwrap();
        grants.grant(&url, info.as_ref()).unwrap();
        (dir, grants)
    }

    #[test]
    fn url_credentials_become_basic_auth_at_their_origin_only() {
        let (_dir, grants) = grants(&[]);
        let url = Url::parse("http://creds.example/x").unwrap();
        let sent = for_hop(&ua(), &user(&[], false), &grants, &url, &url);
        let want = base64::engine::general_purpose::STANDARD.encode("al@ice:p:ss");
        assert_eq!(
            sent[header::AUTHORIZATION],
            format!("Basic {want}").as_str()
        );
        assert_eq!(sent[header::USER_AGENT], "test-agent");
        for other in [
            "https://creds.example/x",
            "http://creds.example:81/",
            "http://b.example/",
        ] {
            let other = Url::parse(other).unwrap();
            let sent = for_hop(&ua(), &user(&[], false), &grants, &url, &other);
            assert!(!sent.contains_key(header::AUTHORIZATION), "{other}");
        }
        // A URL stored with its credentials by an older version keeps them.
        let old = Url::parse("http://bob:pw@old.example/").unwrap();
        let sent = for_hop(&ua(), &user(&[], false), &grants, &old, &old);
        let want = base64::engine::general_purpose::STANDARD.encode("bob:pw");
        assert_eq!(
            sent[header::AUTHORIZATION],
            format!("Basic {want}").as_str()
        );
    }

    #[test]
    fn user_headers_go_only_to_given_origins_and_credentials_stay_at_their_origin() {
        let headers: Vec<UserHeader> = [
            "Authorization: Bearer t0ken",
            "Cookie: a=1",
            "X-Trace: 1",
            "X-Trace: 2",
            "User-Agent: mine",
        ]
        .iter()
        .map(|h| UserHeader::parse(h).unwrap())
        .collect();
        let (_dir, grants) = grants(&["https://a.example/seed", "https://b.example/other"]);
        let first = Url::parse("https://a.example/start").unwrap();
        let same = for_hop(
            &ua(),
            &user(&headers, false),
            &grants,
            &first,
            &Url::parse("https://a.example/b").unwrap(),
        );
        assert_eq!(same[header::AUTHORIZATION], "Bearer t0ken");
        assert_eq!(same.get_all(header::AUTHORIZATION).iter().count(), 1);
        assert_eq!(same[header::COOKIE], "a=1");
        assert_eq!(same[header::USER_AGENT], "mine");
        let traces: Vec<_> = same.get_all("x-trace").iter().collect();
        assert_eq!(traces, ["1", "2"]);
        // A redirect to another given origin: its headers, not the credential ones.
        let given = for_hop(
            &ua(),
            &user(&headers, false),
            &grants,
            &first,
            &Url::parse("https://b.example/").unwrap(),
        );
        for name in CREDENTIALS {
            assert!(!given.contains_key(&name), "{name} sent to another origin");
        }
        assert_eq!(given.get_all("x-trace").iter().count(), 2);
        // Origins the user never gave get none of the user's headers.
        for other in [
            "https://c.example/",
            "http://a.example/",
            "https://a.example:8443/",
        ] {
            let target = Url::parse(other).unwrap();
            for first in [&first, &target] {
                let sent = for_hop(&ua(), &user(&headers, false), &grants, first, &target);
                assert!(!sent.contains_key(header::AUTHORIZATION), "{other}");
                assert!(!sent.contains_key(header::COOKIE), "{other}");
                assert!(!sent.contains_key("x-trace"), "{other}");
                assert_eq!(sent[header::USER_AGENT], "test-agent", "{other}");
            }
            // Unless the user sends them to all: then only a redirect withholds the
            // credential ones.
            let sent = for_hop(&ua(), &user(&headers, true), &grants, &target, &target);
            assert_eq!(sent[header::AUTHORIZATION], "Bearer t0ken", "{other}");
            assert_eq!(sent.get_all("x-trace").iter().count(), 2, "{other}");
            let sent = for_hop(&ua(), &user(&headers, true), &grants, &first, &target);
            assert!(!sent.contains_key(header::AUTHORIZATION), "{other}");
            assert!(!sent.contains_key(header::COOKIE), "{other}");
            assert_eq!(sent.get_all("x-trace").iter().count(), 2, "{other}");
        }
    }
}
