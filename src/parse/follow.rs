//! Which discovered links a crawl follows: scope, depth, include/exclude patterns and
//! spider-trap guards, decided per link as a pure function of the link, the page it
//! was found on and its depth.
//!
//! [`FollowPolicy::check`] tries these in order and answers with the first that fails,
//! so each skipped link is counted once, under the first reason (user rules first,
//! then the guards against traps):
//!
//! 1. `scheme`: only http and https links are followed;
//! 2. `out_of_scope`: the [`Scope`] does not contain the link's host;
//! 3. `too_deep`: the link's depth (a given URL has depth 0, a link found on it 1)
//!    exceeds the maximum;
//! 4. `excluded`: an exclude pattern matches (exclude wins over include);
//! 5. `not_included`: include patterns are given and none matches;
//! 6. `too_long`: the URL is longer than `max_url_len` bytes;
//! 7. `trap`: a path segment occurs more than `max_repeated_segments` times, as in
//!    `/a/b/a/b/a/b/a/b` or `/x/x/x/x`, the shape relative links on a page served
//!    under any path take when followed again and again.
//!
//! Patterns are regular expressions searched for in the whole normalized URL
//! (`https://host/path?query`), not only its path; anchor them with `^` and `$`
//! to match it all.

mod discover;
mod scope;

use std::fmt;

use regex::RegexSet;
use url::Url;

pub use discover::Follow;
pub use scope::Scope;

/// Longest URL followed by default, in bytes.
pub const DEFAULT_MAX_URL_LEN: usize = 2048;

/// How often one path segment may occur in a followed URL by default.
pub const DEFAULT_MAX_REPEATED_SEGMENTS: usize = 3;

/// An invalid follow setting, found before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("invalid scope `{given}`: {reason}")]
    Scope { given: String, reason: String },
    #[error("invalid --{option} pattern `{pattern}`: {message}")]
    Pattern {
        option: &'static str,
        pattern: String,
        message: String,
    },
}

/// Why a link is not followed; [`Skip::as_str`] names it for counts and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    Scheme,
    OutOfScope,
    TooDeep,
    Excluded,
    NotIncluded,
    TooLong,
    Trap,
}

impl Skip {
    /// Every reason, in the order [`FollowPolicy::check`] tries them.
    pub const ALL: [Skip; 7] = [
        Skip::Scheme,
        Skip::OutOfScope,
        Skip::TooDeep,
        Skip::Excluded,
        Skip::NotIncluded,
        Skip::TooLong,
        Skip::Trap,
    ];

    /// A stable name, fit for a counter or a database column.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Scheme => "scheme",
            Skip::OutOfScope => "out_of_scope",
            Skip::TooDeep => "too_deep",
            Skip::Excluded => "excluded",
            Skip::NotIncluded => "not_included",
            Skip::TooLong => "too_long",
            Skip::Trap => "trap",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rules a crawl follows links by.
#[derive(Debug, Clone)]
pub struct FollowPolicy {
    pub scope: Scope,
    /// Deepest link followed; `None` for no limit.
    pub max_depth: Option<u32>,
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
    pub max_url_len: usize,
    pub max_repeated_segments: usize,
}

impl FollowPolicy {
    /// A policy from raw settings, with the default guards; no patterns means none
    /// of that kind.
    pub fn new<S: AsRef<str>>(
        scope: Scope,
        max_depth: Option<u32>,
        include: &[S],
        exclude: &[S],
    ) -> Result<FollowPolicy, FollowError> {
        Ok(FollowPolicy {
            scope,
            max_depth,
            include: patterns("include", include)?,
            exclude: patterns("exclude", exclude)?,
            max_url_len: DEFAULT_MAX_URL_LEN,
            max_repeated_segments: DEFAULT_MAX_REPEATED_SEGMENTS,
        })
    }

    /// Whether to follow the link to `to` (normalized, see [`crate::urls::normalize`])
    /// found on `from`, `to` being at `depth`; `Err` says why not.
    pub fn check(&self, from: &Url, to: &Url, depth: u32) -> Result<(), Skip> {
        if !matches!(to.scheme(), "http" | "https") {
            Err(Skip::Scheme)
        } else if !self.scope.contains(from, to) {
            Err(Skip::OutOfScope)
        } else if self.max_depth.is_some_and(|max| depth > max) {
            Err(Skip::TooDeep)
        } else {
            self.check_seed(to)
        }
    }

    /// Whether to crawl `to`, listed in a sitemap: the scope and depth do not apply
    /// to seeds, the patterns and guards do.
    pub fn check_seed(&self, to: &Url) -> Result<(), Skip> {
        let text = to.as_str();
        if !matches!(to.scheme(), "http" | "https") {
            Err(Skip::Scheme)
        } else if self.exclude.as_ref().is_some_and(|set| set.is_match(text)) {
            Err(Skip::Excluded)
        } else if self.include.as_ref().is_some_and(|set| !set.is_match(text)) {
            Err(Skip::NotIncluded)
        } else if text.len() > self.max_url_len {
            Err(Skip::TooLong)
        } else if max_segment_count(to.path()) > self.max_repeated_segments {
            Err(Skip::Trap)
        } else {
            Ok(())
        }
    }
}

/// The patterns compiled into one set, or `None` if there are none.
fn patterns<S: AsRef<str>>(
    option: &'static str,
    given: &[S],
) -> Result<Option<RegexSet>, FollowError> {
    if given.is_empty() {
        return Ok(None);
    }
    // Compiled one by one first, so that an error names its pattern.
    for pattern in given.iter().map(AsRef::as_ref) {
        regex::Regex::new(pattern).map_err(|e| FollowError::Pattern {
            option,
            pattern: pattern.to_string(),
            message: regex_reason(&e),
        })?;
    }
    RegexSet::new(given)
        .map(Some)
        .map_err(|e| FollowError::Pattern {
            option,
            pattern: given
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(" "),
            message: regex_reason(&e),
        })
}

/// Why a pattern does not compile, on one line: the regex crate's syntax errors span
/// several (the pattern again, a caret under the place, then `error: why`).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_string,
        )
}

/// How often the most frequent segment of `path` occurs in it.
fn max_segment_count(path: &str) -> usize {
    let mut segments: Vec<&str> = path.split('/').skip(1).collect();
    segments.sort_unstable();
    segments
        .chunk_by(|a, b| a == b)
        .map(<[&str]>::len)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
