//! Damaged pages: a page whose record does not decode or whose body fails its check is
//! recorded in the `damaged` tree when a stage finds it, so that `status` counts it and
//! the stage goes on without it (see ARCHITECTURE.md, "Faults").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::record::id_key;
use super::{bump, counter, flatten, Journal, JournalError};

/// What was found wrong with a page, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Damage {
    found_at_ms: u64,
    what: String,
}

/// Versioned envelope of [`Damage`] in the `damaged` tree.
#[derive(Serialize, Deserialize)]
enum DamageRecord {
    V1(Damage),
}

impl Journal {
    /// Records that page `id` is damaged (`what`): it leaves `pending_parse`, so the
    /// parse stage goes on without it, and `status` counts it. Recording it again
    /// changes nothing but the text.
    pub fn record_damage(&self, id: u64, what: &str) -> Result<(), JournalError> {
        let record = super::record::encode(&DamageRecord::V1(Damage {
            found_at_ms: super::now_ms(),
            what: what.to_string(),
        }))?;
        self.guarded(|| {
            let trees = (&self.damaged, &self.pending_parse, &self.counters);
            let result = trees.transaction(|(damaged, pending, counters)| {
                let key = id_key(id);
                let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
                if damaged.insert(&key, record.as_slice())?.is_none() {
                    deltas.insert(counter::DAMAGED.into(), 1);
                }
                if pending.remove(&key)?.is_some() {
                    deltas.insert(counter::PENDING_PARSE.into(), -1);
                }
                bump(counters, &deltas)
            });
            flatten(result)
        })
    }

    /// What a stage found wrong with page `id`, and when (ms), if it recorded damage.
    pub(super) fn damage_of(&self, id: u64) -> Result<Option<(u64, String)>, JournalError> {
        let Some(bytes) = self.damaged.get(id_key(id))? else {
            return Ok(None);
        };
        let DamageRecord::V1(damage) = super::record::decode("damaged", &bytes)?;
        Ok(Some((damage.found_at_ms, damage.what)))
    }
}
