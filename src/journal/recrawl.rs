//! Recrawl: pages already fetched are asked for again when they come due, with the
//! validators of their stored version, and the schedule adapts to how often each page
//! changes (as Nutch's adaptive schedule does).
//!
//! A page's schedule is its record in the `schedule` tree (absent until its first
//! check: then it was checked when it was fetched, at the policy's interval).
//! [`Journal::queue_due`] puts due pages back in the frontier (marking them queued in
//! their schedule, counted by `rechecks`, so `pending_fetch` includes them and a run
//! ends only when they are done); the committer records each check
//! ([`super::fetch`]): a 304, or a 200 whose decoded body has the stored content hash,
//! is unchanged (the stored version stays); a 404 or 410 marks the page gone (its last
//! good version stays); anything else is a new version, parsed and synced as usual.
//! A sitemap's hints of a page (`hints.rs`) may bring it due sooner.

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::frontier::frontier_key;
use super::hints::StoredHint;
use super::record::{decode_page_with_url, encode_pending, id_key, key_id};
use super::{
    bump, counter, entries_after, flatten, Journal, JournalError, Outcome, PageMeta, PendingEntry,
};

const DAY_MS: u64 = 24 * 3600 * 1000;
/// Key in the default tree: the policy the last `recrawl` ran with.
const POLICY_KEY: &str = "recrawl_policy";

/// How often pages are checked: every page starts at `interval_ms`; a check that finds
/// it changed shortens its interval (x0.8), one that finds it unchanged lengthens it
/// (x1.4), within `min_ms..=max_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecrawlPolicy {
    pub interval_ms: u64,
    pub min_ms: u64,
    pub max_ms: u64,
}

impl Default for RecrawlPolicy {
    fn default() -> Self {
        RecrawlPolicy {
            interval_ms: DAY_MS,
            min_ms: 3600 * 1000,
            max_ms: 30 * DAY_MS,
        }
    }
}

impl RecrawlPolicy {
    /// The interval after a check of a page whose interval was `current`.
    pub fn next_interval(&self, current: u64, changed: bool) -> u64 {
        let factor = if changed { 0.8 } else { 1.4 };
        ((current as f64 * factor) as u64).clamp(self.min_ms, self.max_ms.max(self.min_ms))
    }
}

#[derive(Serialize, Deserialize)]
enum PolicyRecord {
    V1(RecrawlPolicy),
}

pub(crate) fn encode_policy(policy: RecrawlPolicy) -> Result<Vec<u8>, JournalError> {
    super::record::encode(&PolicyRecord::V1(policy))
}

pub(crate) fn decode_policy(bytes: &[u8]) -> Result<RecrawlPolicy, JournalError> {
    let PolicyRecord::V1(policy) = super::record::decode("default (policy)", bytes)?;
    Ok(policy)
}

/// A page's recrawl schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// When it was last checked (its first fetch counts).
    pub checked_at_ms: u64,
    /// Its current interval; 0 until its first check: the policy's.
    pub interval_ms: u64,
    /// When a check last found it changed (0: never).
    pub changed_at_ms: u64,
    /// The last check answered 404 or 410.
    pub gone: bool,
    /// In the frontier (or retry queue) for a check not recorded yet.
    pub queued: bool,
}

impl Schedule {
    /// The schedule of a page without a record: checked when fetched.
    fn first(meta: &PageMeta) -> Schedule {
        Schedule {
            checked_at_ms: meta.fetched_at_ms,
            ..Schedule::default()
        }
    }

    fn interval(&self, policy: &RecrawlPolicy) -> u64 {
        if self.interval_ms == 0 {
            policy.interval_ms
        } else {
            self.interval_ms
        }
    }

    /// When the page comes due, given the sitemap hint of it (`hints.rs`): a lastmod
    /// after its last check makes it due now, a changefreq shortens its interval (not
    /// below the policy's minimum).
    pub(super) fn due_at(&self, policy: &RecrawlPolicy, hint: Option<StoredHint>) -> u64 {
        let mut interval = self.interval(policy);
        if let Some(hint) = hint {
            if hint.lastmod_ms.is_some_and(|at| at > self.checked_at_ms) {
                return 0;
            }
            if let Some(every) = hint.changefreq_ms {
                interval = interval.min(every.max(policy.min_ms));
            }
        }
        self.checked_at_ms.saturating_add(interval)
    }
}

#[derive(Serialize, Deserialize)]
enum ScheduleRecord {
    V1(Schedule),
}

pub(crate) fn encode_schedule(schedule: &Schedule) -> Result<Vec<u8>, JournalError> {
    super::record::encode(&ScheduleRecord::V1(*schedule))
}

pub(crate) fn decode_schedule(bytes: &[u8]) -> Result<Schedule, JournalError> {
    let ScheduleRecord::V1(schedule) = super::record::decode("schedule", bytes)?;
    Ok(schedule)
}

/// What a check of a stored page found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// 304, or the same content hash: the stored version stays.
    Unchanged,
    /// A new version: recorded, parsed and synced.
    Changed,
    /// 404 or 410: the last good version stays, marked gone.
    Gone,
    /// No response: the stored version stays; checked again next time.
    Failed,
}

impl Check {
    /// What the new fetch `meta` (with the content hash of its body) says of a page
    /// whose stored record is `old` (with the content hash of its stored body).
    pub(super) fn of(
        old: &PageMeta,
        old_hash: Option<u128>,
        meta: &PageMeta,
        hash: Option<u128>,
    ) -> Check {
        let old_status = match old.outcome {
            Outcome::Response { status, .. } => Some(status),
            Outcome::Error { .. } => None,
        };
        match meta.outcome {
            Outcome::Error { .. } => Check::Failed,
            Outcome::Response { status: 304, .. } => Check::Unchanged,
            Outcome::Response {
                status: 404 | 410, ..
            } if !matches!(old_status, Some(404 | 410)) => Check::Gone,
            // A gone page whose body `compact --drop-gone` dropped, still gone.
            Outcome::Response {
                status: 404 | 410, ..
            } if old_hash.is_none()
                && matches!(old.outcome, Outcome::Response { body_len: 0, .. }) =>
            {
                Check::Unchanged
            }
            Outcome::Response { status, .. }
                if Some(status) == old_status && hash.is_some() && hash == old_hash =>
            {
                Check::Unchanged
            }
            Outcome::Response { .. } => Check::Changed,
        }
    }
}

/// A check that found a page unchanged (or gone), for sync to record in MySQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedItem {
    pub id: u64,
    /// The page's URL as stored (its row's key is the hash of it).
    pub url: String,
    pub at_ms: u64,
    /// The page is gone (404 or 410) as of its latest check.
    pub gone: bool,
}

/// The validators of a stored version, for a conditional request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Journal {
    /// The policy the last `recrawl` ran with (the default if none did).
    pub fn recrawl_policy(&self) -> Result<RecrawlPolicy, JournalError> {
        match self.db.get(POLICY_KEY)? {
            None => Ok(RecrawlPolicy::default()),
            Some(bytes) => decode_policy(&bytes),
        }
    }

    /// Keeps `policy` for the checks this run records and for later `status` and
    /// `recrawl` runs without interval flags.
    pub fn set_recrawl_policy(&self, policy: RecrawlPolicy) -> Result<(), JournalError> {
        let bytes = encode_policy(policy)?;
        self.guarded(|| {
            self.db.insert(POLICY_KEY, bytes)?;
            Ok(())
        })
    }

    /// The stored validators of page `id`, if it has a stored response that sent any.
    pub fn validators(&self, id: u64) -> Result<Option<Validators>, JournalError> {
        let Some(record) = self.pages.get(id_key(id))? else {
            return Ok(None);
        };
        let (meta, _) = decode_page_with_url(&record).map_err(|e| self.page_damaged(id, e))?;
        Ok(match meta.outcome {
            Outcome::Response { headers, .. }
                if headers.etag.is_some() || headers.last_modified.is_some() =>
            {
                Some(Validators {
                    etag: headers.etag,
                    last_modified: headers.last_modified,
                })
            }
            _ => None,
        })
    }

    /// The schedule of page `id` (`meta`: its record's fetch result).
    pub(crate) fn schedule_of(&self, id: u64, meta: &PageMeta) -> Result<Schedule, JournalError> {
        match self.schedule.get(id_key(id))? {
            Some(bytes) => decode_schedule(&bytes),
            None => Ok(Schedule::first(meta)),
        }
    }

    /// Puts every page due at `now_ms` (every page, with `all`) that is not queued
    /// already back in the frontier, a chunk per transaction; returns how many.
    pub fn queue_due(&self, now_ms: u64, all: bool) -> Result<u64, JournalError> {
        const CHUNK: usize = 512;
        let policy = self.recrawl_policy()?;
        let mut after = None;
        let mut queued = 0;
        loop {
            let mut due = Vec::new();
            let mut seen = 0;
            for item in entries_after(&self.pages, after).take(CHUNK) {
                let (key, record) = item?;
                let id = key_id(&key)?;
                after = Some(id);
                seen += 1;
                let Ok((meta, Some(url))) = decode_page_with_url(&record) else {
                    continue;
                };
                let schedule = self.schedule_of(id, &meta)?;
                if schedule.queued || !(all || schedule.due_at(&policy, self.hint(id)?) <= now_ms) {
                    continue;
                }
                let Ok(parsed) = url::Url::parse(&url.url) else {
                    continue;
                };
                let host = crate::urls::host_key(&parsed);
                let pending = encode_pending(&PendingEntry {
                    host: host.clone(),
                    attempts: 0,
                    not_before_ms: 0,
                    url,
                })?;
                let schedule = encode_schedule(&Schedule {
                    queued: true,
                    ..schedule
                })?;
                due.push((id, host, pending, schedule));
            }
            if seen == 0 {
                return Ok(queued);
            }
            if due.is_empty() {
                continue;
            }
            queued += due.len() as u64;
            self.guarded(|| {
                let trees = (&self.frontier, &self.schedule, &self.counters);
                flatten(trees.transaction(|(frontier, schedules, counters)| {
                    for (id, host, pending, schedule) in &due {
                        frontier.insert(frontier_key(host, *id), pending.as_slice())?;
                        schedules.insert(&id_key(*id), schedule.as_slice())?;
                    }
                    let deltas = [(counter::RECHECKS.to_string(), due.len() as i64)]
                        .into_iter()
                        .collect();
                    bump(counters, &deltas)
                }))
            })?;
        }
    }

    /// Up to `limit` checks not yet recorded in MySQL, in id order.
    pub fn checked_items(&self, limit: usize) -> Result<Vec<CheckedItem>, JournalError> {
        let mut items = Vec::new();
        for item in self.checked.iter() {
            if items.len() >= limit {
                break;
            }
            let (key, value) = item?;
            let id = key_id(&key)?;
            let at_ms = key_id(&value)?;
            if let Some(url) = self.url(id)? {
                // Written with the check, in its transaction.
                let gone = match self.schedule.get(&key)? {
                    Some(bytes) => decode_schedule(&bytes)?.gone,
                    None => false,
                };
                items.push(CheckedItem {
                    id,
                    url: url.url,
                    at_ms,
                    gone,
                });
            }
        }
        Ok(items)
    }

    /// Forgets checks that MySQL has recorded; a page checked again since keeps its
    /// newer time.
    pub fn clear_checked(&self, items: &[CheckedItem]) -> Result<(), JournalError> {
        self.guarded(|| {
            for item in items {
                let at = item.at_ms.to_be_bytes();
                // A mismatch means a newer check: it stays for the next pass.
                let _ =
                    self.checked
                        .compare_and_swap(id_key(item.id), Some(&at[..]), None::<&[u8]>)?;
            }
            Ok(())
        })
    }

    /// Pages due at `now_ms` and not queued: a scan of the page records.
    pub fn due_count(&self, now_ms: u64) -> Result<u64, JournalError> {
        let policy = self.recrawl_policy()?;
        let mut due = 0;
        for item in self.pages.iter() {
            let (key, record) = item?;
            let Ok((meta, _)) = decode_page_with_url(&record) else {
                continue;
            };
            let id = key_id(&key)?;
            let schedule = self.schedule_of(id, &meta)?;
            if !schedule.queued && schedule.due_at(&policy, self.hint(id)?) <= now_ms {
                due += 1;
            }
        }
        Ok(due)
    }

    /// The earliest time a page not queued comes due (`None`: no page).
    pub fn next_due(&self) -> Result<Option<u64>, JournalError> {
        let policy = self.recrawl_policy()?;
        let mut next: Option<u64> = None;
        for item in self.pages.iter() {
            let (key, record) = item?;
            let Ok((meta, _)) = decode_page_with_url(&record) else {
                continue;
            };
            let id = key_id(&key)?;
            let schedule = self.schedule_of(id, &meta)?;
            if !schedule.queued {
                let at = schedule.due_at(&policy, self.hint(id)?);
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::KeptHeaders;

    fn response(status: u16) -> PageMeta {
        PageMeta {
            fetched_at_ms: 1,
            duration_ms: 1,
            redirects: Vec::new(),
            outcome: Outcome::Response {
                status,
                version: "HTTP/1.1".into(),
                final_url: "http://a/".into(),
                headers: KeptHeaders::default(),
                body_len: 1,
            },
        }
    }

    #[test]
    fn a_check_is_unchanged_changed_gone_or_failed() {
        let ok = response(200);
        assert_eq!(
            Check::of(&ok, Some(7), &response(304), None),
            Check::Unchanged
        );
        assert_eq!(
            Check::of(&ok, Some(7), &response(200), Some(7)),
            Check::Unchanged
        );
        assert_eq!(
            Check::of(&ok, Some(7), &response(200), Some(8)),
            Check::Changed
        );
        // Without a stored hash (an older format), a 200 is a new version.
        assert_eq!(
            Check::of(&ok, None, &response(200), Some(7)),
            Check::Changed
        );
        assert_eq!(
            Check::of(&ok, Some(7), &response(404), Some(1)),
            Check::Gone
        );
        assert_eq!(
            Check::of(&ok, Some(7), &response(410), Some(1)),
            Check::Gone
        );
        // A page that was a 404 and still is: the same version.
        let missing = response(404);
        assert_eq!(
            Check::of(&missing, Some(1), &response(404), Some(1)),
            Check::Unchanged
        );
        let failed = PageMeta {
            outcome: Outcome::Error {
                kind: crate::journal::ErrorKind::Timeout,
                message: "slow".into(),
            },
            ..ok.clone()
        };
        assert_eq!(Check::of(&ok, Some(7), &failed, None), Check::Failed);
        // A dropped gone page's tombstone (a 410 of no bytes, no body): still gone is
        // unchanged, back is a new version.
        let mut tombstone = response(410);
        if let Outcome::Response { body_len, .. } = &mut tombstone.outcome {
            *body_len = 0;
        }
        for status in [404, 410] {
            assert_eq!(
                Check::of(&tombstone, None, &response(status), Some(1)),
                Check::Unchanged
            );
        }
        assert_eq!(
            Check::of(&tombstone, None, &response(200), Some(1)),
            Check::Changed
        );
    }

    #[test]
    fn sitemap_hints_bring_a_page_due_sooner() {
        let policy = RecrawlPolicy {
            interval_ms: 1000,
            min_ms: 100,
            max_ms: 5000,
        };
        let schedule = Schedule {
            checked_at_ms: 10_000,
            ..Schedule::default()
        };
        let hint = |lastmod_ms, changefreq_ms| {
            Some(StoredHint {
                lastmod_ms,
                changefreq_ms,
            })
        };
        assert_eq!(schedule.due_at(&policy, None), 11_000);
        // `always` is the policy's minimum; a longer changefreq changes nothing.
        assert_eq!(schedule.due_at(&policy, hint(None, Some(0))), 10_100);
        assert_eq!(schedule.due_at(&policy, hint(None, Some(500))), 10_500);
        assert_eq!(schedule.due_at(&policy, hint(None, Some(2000))), 11_000);
        // Modified after the last check: due now; before it: as usual.
        assert_eq!(schedule.due_at(&policy, hint(Some(10_001), None)), 0);
        assert_eq!(schedule.due_at(&policy, hint(Some(9_000), None)), 11_000);
    }

    #[test]
    fn intervals_adapt_within_their_bounds() {
        let policy = RecrawlPolicy {
            interval_ms: 1000,
            min_ms: 700,
            max_ms: 1500,
        };
        assert_eq!(policy.next_interval(1000, true), 800);
        assert_eq!(policy.next_interval(800, true), 700);
        assert_eq!(policy.next_interval(1000, false), 1400);
        assert_eq!(policy.next_interval(1400, false), 1500);
    }
}
