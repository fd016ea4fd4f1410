//! robots.txt rules for one origin, per RFC 9309, and the form the journal caches.
//!
//! What the fetch of `/robots.txt` gave decides the rules ([`Robots::from_fetch`]):
//!
//! | outcome                        | rules                                        |
//! |--------------------------------|----------------------------------------------|
//! | 2xx                            | the body's, matched by `texting_robots`      |
//! | 2xx whose body fails to parse  | allow all, with [`Robots::problem`] saying so |
//! | 4xx (401, 403 and 404 too)     | allow all                                    |
//! | 5xx, 429, other or fetch error | unreachable: disallow all until retried      |
//!
//! Only the first [`MAX_BODY`] bytes of a body count (RFC 9309 section 2.5); a rule cut
//! in half there is dropped with the rest. The fetch follows up to five redirects
//! (section 2.3.1.2); that, and retrying an unreachable origin, is the caller's part.
//! `/robots.txt` itself is always allowed.
//!
//! [`RobotsSource`] is what is stored: the status and the capped body (or the
//! unreachable message), so rules are rebuilt from it rather than serialized, and a
//! fixed matcher applies to a cached file too. This module never fetches anything.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::{Position, Url};

/// Bytes of a robots.txt body that are read (RFC 9309 asks for at least 500 KiB).
pub const MAX_BODY: usize = 500 * 1024;

/// Longest crawl delay honoured: a site asking for more gets one request a minute,
/// which already takes a day for 1,440 pages; a larger value is more likely a mistake
/// (or hostile) than a wish to be crawled that slowly.
pub const MAX_CRAWL_DELAY: Duration = Duration::from_secs(60);

/// How long a parsed or allow-all result is used before fetching robots.txt again
/// (RFC 9309 section 2.4: caches should not be kept longer than 24 hours).
pub const FRESH_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// How long an unreachable result stands before the first retry; backing off further
/// is the caller's business.
pub const UNREACHABLE_RETRY: Duration = Duration::from_secs(5 * 60);

/// Characters of a parse error kept in [`Robots::problem`].
const MAX_DETAIL: usize = 200;

/// What fetching `/robots.txt` gave.
#[derive(Debug, Clone, Copy)]
pub enum RobotsFetch<'a> {
    /// A final response (redirects already followed), body possibly not capped yet.
    Response { status: u16, body: &'a [u8] },
    /// No response: a connection, TLS or timeout error, or too many redirects.
    Failed { message: &'a str },
}

/// The rules for one origin and one user agent.
#[derive(Debug)]
pub struct Robots {
    rules: Rules,
}

#[derive(Debug)]
enum Rules {
    Parsed(texting_robots::Robot),
    AllowAll { problem: Option<String> },
    Unreachable { problem: String },
}

impl Robots {
    /// The rules `outcome` gives for the product token `agent` (see [`agent_token`]).
    pub fn from_fetch(outcome: RobotsFetch<'_>, agent: &str) -> Robots {
        let rules = match outcome {
            RobotsFetch::Response { status, body } if (200..300).contains(&status) => {
                let body = &body[..body.len().min(MAX_BODY)];
                match texting_robots::Robot::new(agent, body) {
                    Ok(robot) => Rules::Parsed(robot),
                    Err(e) => {
                        // The error quotes the failing rule, which the server chose.
                        let detail: String = format!("{e:#}").chars().take(MAX_DETAIL).collect();
                        Rules::AllowAll {
                            problem: Some(format!(
                                "unparseable robots.txt ({detail}): allowing all"
                            )),
                        }
                    }
                }
            }
            RobotsFetch::Response { status, .. } if is_unreachable(status) => Rules::Unreachable {
                problem: format!("robots.txt answered HTTP {status}"),
            },
            RobotsFetch::Response { .. } => Rules::AllowAll { problem: None },
            RobotsFetch::Failed { message } => Rules::Unreachable {
                problem: format!("robots.txt unreachable: {message}"),
            },
        };
        Robots { rules }
    }

    /// The rules a stored fetch gives.
    pub fn from_source(source: &RobotsSource, agent: &str) -> Robots {
        Robots::from_fetch(source.as_fetch(), agent)
    }

    /// Whether `url` (on this origin) may be fetched.
    pub fn allowed(&self, url: &Url) -> bool {
        let target = &url[Position::BeforePath..Position::AfterQuery];
        if target == "/robots.txt" {
            return true;
        }
        match &self.rules {
            Rules::Parsed(robot) => robot.allowed(target),
            Rules::AllowAll { .. } => true,
            Rules::Unreachable { .. } => false,
        }
    }

    /// The delay the site asks for between requests, at most [`MAX_CRAWL_DELAY`].
    pub fn crawl_delay(&self) -> Option<Duration> {
        let Rules::Parsed(robot) = &self.rules else {
            return None;
        };
        // The parser only gives finite or infinite values >= 0, never NaN.
        robot
            .delay
            .map(|secs| Duration::try_from_secs_f32(secs).unwrap_or(MAX_CRAWL_DELAY))
            .map(|delay| delay.min(MAX_CRAWL_DELAY))
    }

    /// The sitemaps the file names: absolute http(s) URLs only, normalized.
    pub fn sitemaps(&self) -> Vec<Url> {
        let Rules::Parsed(robot) = &self.rules else {
            return Vec::new();
        };
        robot
            .sitemaps
            .iter()
            .filter_map(|text| crate::urls::normalize(text).ok())
            .collect()
    }

    /// Whether the origin could not be asked, so that everything is disallowed for now.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.rules, Rules::Unreachable { .. })
    }

    /// Why these rules are not the file's own, if they are not: an unparseable file
    /// (allowing all) or an unreachable origin. Worth a log line, never fatal.
    pub fn problem(&self) -> Option<&str> {
        match &self.rules {
            Rules::Parsed(_) => None,
            Rules::AllowAll { problem } => problem.as_deref(),
            Rules::Unreachable { problem } => Some(problem),
        }
    }
}

/// Whether a response with `status` leaves the origin unreachable: anything but 2xx
/// and 4xx, and 429 Too Many Requests (RFC 9309 section 2.3.1.4).
fn is_unreachable(status: u16) -> bool {
    !(200..300).contains(&status) && (!(400..500).contains(&status) || status == 429)
}

/// The product token of a User-Agent header, the name matched against robots.txt
/// `User-agent` lines: its leading run of `a-z A-Z _ -`, lowercased (RFC 9309
/// section 2.2.1), so `webspool/0.1.0 (+http://x)` gives `webspool`. A header that
/// starts with anything else gives `*`: only the groups for all crawlers apply then.
pub fn agent_token(user_agent: &str) -> String {
    let token: String = user_agent
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || matches!(c, '_' | '-'))
        .collect();
    if token.is_empty() {
        "*".into()
    } else {
        token.to_ascii_lowercase()
    }
}

/// The robots.txt URL for `url`'s origin: same scheme, host and port, no userinfo.
pub fn robots_url(url: &Url) -> Url {
    let mut robots = url.clone();
    // Both only fail on URLs that cannot have a host, which the caller never has.
    let _ = robots.set_username("");
    let _ = robots.set_password(None);
    robots.set_path("/robots.txt");
    robots.set_query(None);
    robots.set_fragment(None);
    robots
}

/// A robots.txt fetch as the journal stores it. Serialized with bincode inside the
/// journal's versioned records: append variants and fields only in a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotsSource {
    /// When the fetch finished, in milliseconds since the Unix epoch.
    pub fetched_at_ms: u64,
    pub kind: SourceKind,
}

/// What a stored fetch gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    /// A response; the body is kept (capped at [`MAX_BODY`]) for 2xx only.
    Response { status: u16, body: Vec<u8> },
    /// No response, with the error's message.
    Failed { message: String },
}

impl RobotsSource {
    /// The stored form of `outcome`, fetched at `fetched_at_ms`.
    pub fn new(outcome: RobotsFetch<'_>, fetched_at_ms: u64) -> RobotsSource {
        let kind = match outcome {
            RobotsFetch::Response { status, body } => SourceKind::Response {
                status,
                body: if (200..300).contains(&status) {
                    body[..body.len().min(MAX_BODY)].to_vec()
                } else {
                    Vec::new()
                },
            },
            RobotsFetch::Failed { message } => SourceKind::Failed {
                message: message.to_string(),
            },
        };
        RobotsSource {
            fetched_at_ms,
            kind,
        }
    }

    /// The stored form read back from a host record; `None` when it does not decode
    /// (a damaged journal), which makes the scheduler fetch robots.txt again.
    pub fn decode(bytes: &[u8]) -> Option<RobotsSource> {
        bincode::deserialize(bytes).ok()
    }

    /// The fetch this was stored from (with its body capped).
    pub fn as_fetch(&self) -> RobotsFetch<'_> {
        match &self.kind {
            SourceKind::Response { status, body } => RobotsFetch::Response {
                status: *status,
                body,
            },
            SourceKind::Failed { message } => RobotsFetch::Failed { message },
        }
    }

    /// When to fetch robots.txt again: after [`FRESH_FOR`], or [`UNREACHABLE_RETRY`]
    /// if the origin was unreachable.
    pub fn expires_at_ms(&self) -> u64 {
        let ttl = match &self.kind {
            SourceKind::Response { status, .. } if !is_unreachable(*status) => FRESH_FOR,
            _ => UNREACHABLE_RETRY,
        };
        self.fetched_at_ms.saturating_add(ttl.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests;
