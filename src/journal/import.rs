//! Pages from elsewhere (`webspool import`): recorded as if this journal had fetched
//! them, through the same path as a crawl's pages.
//!
//! An imported page goes in the way a fetched one does: its URL enters `url_index` and
//! the frontier (a new URL), or a stored page whose body differs goes back to the
//! frontier; then [`Journal::record_fetches`] moves it out of the frontier into `pages`,
//! its body into a segment entry, `pending_parse` and the counters, in one transaction,
//! and [`Journal::flush_blocking`] makes the batch durable. A page is left out (and
//! counted unchanged) when its URL already has a stored body, current or kept as an
//! older version, with the same content hash: so importing a file twice changes nothing.
//! A kill between the two steps leaves the URLs of one batch in the frontier; importing
//! again records them (a `crawl` run first would fetch them).

use url::Url;

use super::frontier::frontier_key;
use super::record::{decode_page_and_body, decode_page_with_url, decode_pending, encode_pending};
use super::record::{id_key, BodyRef};
use super::{
    flatten, FetchedPage, Journal, JournalError, NewUrl, PackedBody, PageMeta, PendingEntry,
};
use sled::Transactional;

/// A page read from elsewhere, ready for the journal.
#[derive(Clone, Debug)]
pub struct ImportedPage {
    /// Normalized (see [`crate::urls::normalize`]).
    pub url: Url,
    pub meta: PageMeta,
    pub body: PackedBody,
}

/// What one batch of [`Journal::import_pages`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Recorded: new URLs, or new bodies of known ones.
    pub recorded: u64,
    /// Left out: the URL has this body already (current or an older version).
    pub unchanged: u64,
    /// Left out: the URL waits in the retry queue of a crawl.
    pub waiting: u64,
}

impl Journal {
    /// Records `batch` as fetched pages, durably (flushed) when it returns `Ok`. The
    /// URLs of a batch must differ from each other.
    pub fn import_pages(&self, batch: Vec<ImportedPage>) -> Result<ImportReport, JournalError> {
        let mut report = ImportReport::default();
        let new: Vec<NewUrl> = batch
            .iter()
            .map(|page| NewUrl::given(&page.url, None))
            .collect();
        self.add_urls(&new)?;
        let mut requeue = Vec::new();
        let mut fetched = Vec::with_capacity(batch.len());
        for (page, new) in batch.into_iter().zip(new) {
            let Some(id) = self.find(&new.url)? else {
                return Err(JournalError::Damaged {
                    what: format!("an imported URL is not in url_index: {}", new.url),
                });
            };
            let url = match self.pages.get(id_key(id))? {
                Some(record) => {
                    if self.has_body(id, &record, page.body.content_hash)? {
                        report.unchanged += 1;
                        continue;
                    }
                    let (_, url) = decode_page_with_url(&record)?;
                    let url = match url {
                        Some(url) => url,
                        None => self.url(id)?.ok_or_else(|| JournalError::Damaged {
                            what: format!("page {id} has no url record"),
                        })?,
                    };
                    requeue.push((
                        frontier_key(&new.host, id),
                        encode_pending(&PendingEntry {
                            host: new.host.clone(),
                            attempts: 0,
                            not_before_ms: 0,
                            url: url.clone(),
                        })?,
                    ));
                    url
                }
                None => match self.frontier.get(frontier_key(&new.host, id))? {
                    Some(pending) => decode_pending(&pending)?.url,
                    None => {
                        report.waiting += 1;
                        continue;
                    }
                },
            };
            fetched.push(FetchedPage {
                id,
                host: new.host,
                url,
                meta: page.meta,
                body: Some(page.body),
                retry_at_ms: None,
            });
        }
        if !requeue.is_empty() {
            self.guarded(|| {
                flatten((&self.frontier,).transaction(|(frontier,)| {
                    for (key, pending) in &requeue {
                        frontier.insert(key.as_slice(), pending.as_slice())?;
                    }
                    Ok(())
                }))
            })?;
        }
        report.recorded = fetched.len() as u64;
        self.record_fetches(&fetched)?;
        self.flush_blocking()?;
        Ok(report)
    }

    /// Whether page `id` (its record: `record`) has a stored body with `hash`, as its
    /// current version or a kept older one.
    fn has_body(&self, id: u64, record: &[u8], hash: u128) -> Result<bool, JournalError> {
        let holds = |record: &[u8]| -> Result<bool, JournalError> {
            let (_, body) = decode_page_and_body(record).map_err(|e| self.page_damaged(id, e))?;
            Ok(matches!(body, Some(BodyRef::Checked(s)) if s.content_hash == hash))
        };
        if holds(record)? {
            return Ok(true);
        }
        for version in self.versions.scan_prefix(id_key(id)).values() {
            if holds(&version?)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
