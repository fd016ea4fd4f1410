//! The sync side of the journal: a queue of pages whose latest state is not in MySQL
//! yet, ordered by a sync sequence number, and its cleanup once MySQL has them.
//!
//! Marking a page (in the fetch or parse transaction that changed it) gives it the next
//! sequence number from `next_sync_seq`; a page marked again moves to the end of the
//! queue. Writers serialize on `next_sync_seq`, so sequence numbers follow commit
//! order. MySQL keeps, per journal, the highest sequence number whose batch committed
//! (the watermark); everything up to it is done, whatever the local queue says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::record::{id_key, key_id};
use super::{counter, flatten, read_u64, Journal, JournalError, TxResult};

/// One page to sync: its queue position and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncItem {
    pub seq: u64,
    pub id: u64,
}

/// The last successful sync, as this journal saw it; shown by `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSync {
    pub at_ms: u64,
    pub watermark: u64,
    pub pages: u64,
}

#[derive(Serialize, Deserialize)]
enum LastSyncRecord {
    V1(LastSync),
}

pub(crate) fn encode_last_sync(last: &LastSync) -> Result<Vec<u8>, JournalError> {
    super::record::encode(&LastSyncRecord::V1(last.clone()))
}

pub(crate) fn decode_last_sync(bytes: &[u8]) -> Result<LastSync, JournalError> {
    let LastSyncRecord::V1(last) = super::record::decode("default (last_sync)", bytes)?;
    Ok(last)
}

/// Puts `key` (an id) at the end of the sync queue, inside a transaction.
pub(super) fn mark_for_sync(
    meta: &TransactionalTree,
    queue: &TransactionalTree,
    seqs: &TransactionalTree,
    key: &[u8; 8],
    deltas: &mut BTreeMap<String, i64>,
) -> TxResult<()> {
    let seq = match read_u64(meta.get("next_sync_seq")?) {
        Ok(v) => v.max(1),
        Err(e) => return super::abort(e),
    };
    meta.insert("next_sync_seq", &(seq + 1).to_be_bytes())?;
    match seqs.insert(key, &seq.to_be_bytes())? {
        Some(old) => {
            queue.remove(old)?;
        }
        None => *deltas.entry(counter::PENDING_SYNC.into()).or_default() += 1,
    }
    queue.insert(&seq.to_be_bytes(), key)?;
    Ok(())
}

impl Journal {
    /// This journal's id, as hex: the key of its watermark in MySQL.
    pub fn journal_id(&self) -> Result<String, JournalError> {
        let id = self
            .db
            .get("journal_id")?
            .ok_or_else(|| JournalError::Damaged {
                what: "journal id missing".into(),
            })?;
        Ok(id.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Up to `limit` queued pages with a sequence number above `watermark`, in order.
    pub fn sync_queue_after(
        &self,
        watermark: u64,
        limit: usize,
    ) -> Result<Vec<SyncItem>, JournalError> {
        if watermark == u64::MAX {
            return Ok(Vec::new());
        }
        self.sync_queue
            .range((watermark + 1).to_be_bytes()..)
            .take(limit)
            .map(|item| {
                let (seq, id) = item?;
                Ok(SyncItem {
                    seq: key_id(&seq)?,
                    id: key_id(&id)?,
                })
            })
            .collect()
    }

    /// Drops the queue entries up to `watermark` (MySQL has them). A page marked again
    /// since keeps its newer entry. Idempotent; not flushed, because MySQL's watermark
    /// is the truth and the next sync repeats this cleanup.
    pub fn complete_sync(&self, watermark: u64) -> Result<u64, JournalError> {
        let mut removed = 0;
        loop {
            let done: Vec<(sled::IVec, sled::IVec)> = self
                .sync_queue
                .range(..=watermark.to_be_bytes())
                .take(1024)
                .collect::<Result<_, _>>()?;
            if done.is_empty() {
                return Ok(removed);
            }
            removed += done.len() as u64;
            self.guarded(|| {
                let trees = (&self.sync_queue, &self.sync_seq, &self.counters);
                flatten(trees.transaction(|(queue, seqs, counters)| {
                    let mut gone = 0i64;
                    for (seq, id) in &done {
                        queue.remove(seq)?;
                        if seqs.get(id)?.as_deref() == Some(seq.as_ref()) {
                            seqs.remove(id)?;
                            gone += 1;
                        }
                    }
                    let deltas = BTreeMap::from([(counter::PENDING_SYNC.to_string(), -gone)]);
                    super::bump(counters, &deltas)
                }))
            })?;
        }
    }

    /// The sync sequence number the latest page queued for sync got (0: none ever
    /// was): once MySQL's watermark reaches it, everything queued until now is synced.
    pub fn last_sync_seq(&self) -> Result<u64, JournalError> {
        Ok(read_u64(self.db.get("next_sync_seq")?)?.saturating_sub(1))
    }

    pub fn record_last_sync(&self, last: &LastSync) -> Result<(), JournalError> {
        let bytes = encode_last_sync(last)?;
        self.guarded(|| {
            self.db.insert("last_sync", bytes)?;
            Ok(())
        })
    }

    pub fn last_sync(&self) -> Result<Option<LastSync>, JournalError> {
        self.db
            .get("last_sync")?
            .map(|bytes| decode_last_sync(&bytes))
            .transpose()
    }

    /// Puts every recorded page back in the sync queue (after the database lost rows).
    pub fn mark_all_for_sync(&self) -> Result<u64, JournalError> {
        let mut after = None;
        let mut marked = 0;
        loop {
            let ids: Vec<u64> = super::entries_after(&self.pages, after)
                .keys()
                .take(1024)
                .map(|k| k.map_err(JournalError::from).and_then(|k| key_id(&k)))
                .collect::<Result<_, _>>()?;
            let Some(last) = ids.last().copied() else {
                return Ok(marked);
            };
            after = Some(last);
            marked += ids.len() as u64;
            self.guarded(|| {
                let trees = (&*self.db, &self.sync_queue, &self.sync_seq, &self.counters);
                flatten(trees.transaction(|(meta, queue, seqs, counters)| {
                    let mut deltas = BTreeMap::new();
                    for id in &ids {
                        mark_for_sync(meta, queue, seqs, &id_key(*id), &mut deltas)?;
                    }
                    super::bump(counters, &deltas)
                }))
            })?;
        }
    }
}
