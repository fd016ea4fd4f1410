//! `webspool show`: everything the journal knows about one URL, gathered from its trees
//! into one [`PageView`] (state, response, versions, recrawl schedule, annotation, sync
//! state), and the URL looked up as `crawl` stored it.
//!
//! Read-only, and never shows a secret: stored URLs carry no userinfo (journals before
//! format 5 may hold some in theirs: shown through [`crate::urls::redact_text`]).

use serde::{Deserialize, Serialize};

use super::record::{decode_page_with_url, id_key};
use super::{Journal, JournalError, KeptHeaders, Outcome, PageMeta, Redirect};
use crate::parse::Annotation;
use crate::urls::{redact_text, without_userinfo};

/// Where a URL is in its life, as the journal tells it. A URL a running crawl is
/// fetching right now is still `pending`: the journal records a fetch only when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    /// In the frontier: to be fetched (or being fetched).
    Pending,
    /// In the retry queue after a transient failure.
    RetryWaiting,
    /// A response was stored (any status).
    Fetched,
    /// The fetch ended without a usable response.
    Failed,
    /// The last recrawl check answered 404 or 410.
    Gone,
    /// A stage found its record or body damaged (see `verify`).
    Damaged,
}

/// What `show` prints about one URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageView {
    pub url: String,
    pub id: u64,
    pub state: PageState,
    pub added_at_ms: u64,
    /// Links followed from a seed to reach it (0: a seed).
    pub depth: u32,
    /// Still to be fetched: attempts so far, and when a retry is due (ms, 0: now).
    pub pending: Option<PendingView>,
    /// The stored version's fetch, once recorded.
    pub fetch: Option<FetchView>,
    /// Older versions kept by `recrawl`, oldest first.
    pub versions: Vec<VersionView>,
    pub recrawl: Option<RecrawlView>,
    pub annotation: Option<Annotation>,
    pub sync: SyncView,
    /// What a stage found wrong with the page.
    pub damage: Option<DamageView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    pub attempts: u32,
    pub retry_at_ms: u64,
}

/// One fetch: its response, or why there was none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchView {
    pub fetched_at_ms: u64,
    pub duration_ms: u64,
    /// HTTP status; `None` for a fetch that failed.
    pub status: Option<u16>,
    pub http_version: Option<String>,
    pub final_url: Option<String>,
    /// The response headers the journal keeps.
    pub headers: Option<KeptHeaders>,
    /// Bytes of the body after content-decoding.
    pub size: Option<u64>,
    pub redirects: Vec<Redirect>,
    /// Why the fetch failed: its kind (as in `status`) and message.
    pub error: Option<FetchErrorView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchErrorView {
    pub kind: String,
    pub message: String,
}

/// An older version: `key` is what `show --body --version KEY` takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    pub key: u64,
    pub fetched_at_ms: u64,
    pub status: Option<u16>,
    pub size: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecrawlView {
    /// When it was last checked (its first fetch counts).
    pub checked_at_ms: u64,
    /// Its current interval (the policy's until a check adapts it).
    pub interval_ms: u64,
    /// When the next `recrawl` takes it (already due when in the past).
    pub next_due_ms: u64,
    /// When a check last found it changed (`None`: never).
    pub changed_at_ms: Option<u64>,
    pub gone: bool,
    /// Back in the frontier for a check not recorded yet.
    pub queued: bool,
}

/// Whether MySQL has the page's latest state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncView {
    /// Its latest state waits for the next sync.
    pub pending: bool,
    /// A recrawl check that kept the stored version waits to be written (its time).
    pub check_pending_ms: Option<u64>,
    /// The fetch time of the version MySQL has: the stored one once synced; `None` when
    /// not known (the journal does not record which version an earlier pass wrote).
    pub synced_version_ms: Option<u64>,
    /// When this journal last completed a sync pass.
    pub last_sync_at_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageView {
    pub found_at_ms: u64,
    pub what: String,
}

/// The `url_index` keys `url` may be stored under: normalized as `crate::urls` does for
/// `crawl`, then (journals before format 5) with its userinfo. An error is text that
/// is not a URL webspool fetches, redacted.
fn lookup_keys(url: &str) -> Result<Vec<String>, String> {
    let (normalized, userinfo) = crate::urls::normalize_given(url)
        .map_err(|e| format!("`{}` is not a URL webspool fetches: {e}", redact_text(url)))?;
    let mut keys = vec![normalized.as_str().to_string()];
    // Journals before format 5 stored URLs with the userinfo they were given with.
    if userinfo.is_some() {
        if let Ok(stored) = crate::urls::normalize_stored(url) {
            keys.push(stored.as_str().to_string());
        }
    }
    Ok(keys)
}

impl Journal {
    /// The id of `url` (any form the user may type: normalized as `crawl` does), or
    /// [`JournalError::NotFound`].
    pub fn id_of(&self, url: &str) -> Result<u64, JournalError> {
        let keys = lookup_keys(url).map_err(|what| JournalError::NotFound { what })?;
        for key in &keys {
            if let Some(id) = self.find(key)? {
                return Ok(id);
            }
        }
        Err(JournalError::NotFound {
            what: format!(
                "no URL {} in journal {}",
                redact_text(url),
                self.path().display()
            ),
        })
    }

    /// Everything the journal knows about `url`.
    pub fn show(&self, url: &str) -> Result<PageView, JournalError> {
        let id = self.id_of(url)?;
        let page = match self.pages.get(id_key(id))? {
            Some(record) => {
                let (meta, entry) =
                    decode_page_with_url(&record).map_err(|e| self.page_damaged(id, e))?;
                let entry = match entry {
                    Some(entry) => Some(entry),
                    None => self.older_url(id)?,
                };
                Some((meta, entry))
            }
            None => None,
        };
        let pending = self.pending(id)?;
        let entry = match (&page, &pending) {
            (Some((_, Some(entry))), _) => Some(entry.clone()),
            (_, Some(p)) => Some(p.url.clone()),
            _ => self.older_url(id)?,
        };
        let damage = self
            .damage_of(id)?
            .map(|(found_at_ms, what)| DamageView { found_at_ms, what });
        let recrawl = match &page {
            Some((meta, _)) => {
                let schedule = self.schedule_of(id, meta)?;
                let policy = self.recrawl_policy()?;
                Some(RecrawlView {
                    checked_at_ms: schedule.checked_at_ms,
                    interval_ms: if schedule.interval_ms == 0 {
                        policy.interval_ms
                    } else {
                        schedule.interval_ms
                    },
                    next_due_ms: schedule.due_at(&policy, self.hint(id)?),
                    changed_at_ms: (schedule.changed_at_ms != 0).then_some(schedule.changed_at_ms),
                    gone: schedule.gone,
                    queued: schedule.queued,
                })
            }
            None => None,
        };
        let state = if damage.is_some() {
            PageState::Damaged
        } else if recrawl.as_ref().is_some_and(|r| r.gone) {
            PageState::Gone
        } else {
            match (&page, &pending) {
                (Some((meta, _)), _) if meta.error_kind().is_none() => PageState::Fetched,
                (_, Some(p)) if p.not_before_ms != 0 => PageState::RetryWaiting,
                (_, Some(_)) => PageState::Pending,
                _ => PageState::Failed,
            }
        };
        let versions = self
            .versions(id)?
            .into_iter()
            .map(|v| {
                let fetch = fetch_view(&v.meta);
                VersionView {
                    key: v.key_ms,
                    fetched_at_ms: v.meta.fetched_at_ms,
                    status: fetch.status,
                    size: fetch.size,
                }
            })
            .collect();
        let sync_pending = self.sync_seq.get(id_key(id))?.is_some();
        let check_pending_ms = self
            .checked
            .get(id_key(id))?
            .map(|v| super::read_u64(Some(v)))
            .transpose()?;
        let fetch = page.as_ref().map(|(meta, _)| fetch_view(meta));
        Ok(PageView {
            url: entry.as_ref().map_or_else(
                || redact_text(url),
                |e| without_userinfo(&e.url).into_owned(),
            ),
            id,
            state,
            added_at_ms: entry.as_ref().map_or(0, |e| e.added_at_ms),
            depth: entry.as_ref().map_or(0, |e| e.depth),
            pending: pending.map(|p| PendingView {
                attempts: p.attempts,
                retry_at_ms: p.not_before_ms,
            }),
            versions,
            recrawl,
            annotation: self.annotation(id)?,
            sync: SyncView {
                pending: sync_pending,
                check_pending_ms,
                synced_version_ms: match (&fetch, sync_pending) {
                    (Some(fetch), false) => Some(fetch.fetched_at_ms),
                    _ => None,
                },
                last_sync_at_ms: self.last_sync()?.map(|last| last.at_ms),
            },
            fetch,
            damage,
        })
    }

    /// The stored body of `url` exactly as received after content-decoding: the current
    /// version, or the older one kept under `version` ([`VersionView::key`]).
    pub fn show_body(&self, url: &str, version: Option<u64>) -> Result<Vec<u8>, JournalError> {
        let id = self.id_of(url)?;
        let body = match version {
            None => self.body(id)?,
            Some(key) => self.version_body(id, key)?,
        };
        body.ok_or_else(|| JournalError::NotFound {
            what: match version {
                None => format!("{} has no stored body", redact_text(url)),
                Some(key) => format!("{} has no version {key}", redact_text(url)),
            },
        })
    }
}

fn fetch_view(meta: &PageMeta) -> FetchView {
    let redirects = meta
        .redirects
        .iter()
        .map(|r| Redirect {
            status: r.status,
            location: without_userinfo(&r.location).into_owned(),
        })
        .collect();
    let mut view = FetchView {
        fetched_at_ms: meta.fetched_at_ms,
        duration_ms: meta.duration_ms,
        status: None,
        http_version: None,
        final_url: None,
        headers: None,
        size: None,
        redirects,
        error: None,
    };
    match &meta.outcome {
        Outcome::Response {
            status,
            version,
            final_url,
            headers,
            body_len,
        } => {
            view.status = Some(*status);
            view.http_version = Some(version.clone());
            view.final_url = Some(without_userinfo(final_url).into_owned());
            view.headers = Some(headers.clone());
            view.size = Some(*body_len);
        }
        Outcome::Error { kind, message } => {
            view.error = Some(FetchErrorView {
                kind: kind.as_str().to_string(),
                message: message.clone(),
            });
        }
    }
    view
}
