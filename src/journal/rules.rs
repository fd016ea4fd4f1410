//! The extraction rules a journal's pages are parsed with, kept in the journal so that
//! a later `parse`, `reparse`, resumed `crawl` or `recrawl` uses them again without the
//! file: the rules' text is what is kept and used, with the file's name and the rules'
//! hash (`parse::Rules::hash`) to show in `status`.
//!
//! One versioned record under `rules` in the default tree, written when a run starts
//! parsing with rules given to it and removed by `--no-rules`; durable with the run's
//! next flush (the parse stage's first chunk, or the end of the command).

use serde::{Deserialize, Serialize};

use super::record::{decode, encode};
use super::{Journal, JournalError};

/// Key in the default tree: the rules the last run with `--rules` gave.
const RULES_KEY: &str = "rules";

/// Rules as the journal keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRules {
    /// The file they were read from, as an absolute path when it could be made one.
    pub file: String,
    /// `parse::Rules::hash` of the rules.
    pub hash: u64,
    /// The file's text: what later runs parse again.
    pub text: String,
}

#[derive(Serialize, Deserialize)]
enum RulesRecord {
    V1(StoredRules),
}

#[derive(Serialize)]
enum RulesRecordRef<'a> {
    V1(&'a StoredRules),
}

pub(crate) fn encode_rules(rules: &StoredRules) -> Result<Vec<u8>, JournalError> {
    encode(&RulesRecordRef::V1(rules))
}

pub(crate) fn decode_rules(bytes: &[u8]) -> Result<StoredRules, JournalError> {
    let RulesRecord::V1(rules) = decode("default (rules)", bytes)?;
    Ok(rules)
}

impl Journal {
    /// The rules kept in the journal, if a run gave any (and none dropped them since).
    pub fn stored_rules(&self) -> Result<Option<StoredRules>, JournalError> {
        self.db
            .get(RULES_KEY)?
            .map(|bytes| decode_rules(&bytes))
            .transpose()
    }

    /// Keeps `rules` for later runs (`None`: keeps none); durable with the next flush.
    pub fn keep_rules(&self, rules: Option<&StoredRules>) -> Result<(), JournalError> {
        let bytes = rules.map(encode_rules).transpose()?;
        self.guarded(|| {
            match bytes {
                Some(bytes) => self.db.insert(RULES_KEY, bytes)?,
                None => self.db.remove(RULES_KEY)?,
            };
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_rules_are_replaced_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j")).unwrap();
        assert_eq!(journal.stored_rules().unwrap(), None);
        let rules = StoredRules {
            file: "/r/rules.toml".into(),
            hash: 7,
            text: "[fields.t]\nselector = \"h2\"\n".into(),
        };
        journal.keep_rules(Some(&rules)).unwrap();
        assert_eq!(journal.stored_rules().unwrap(), Some(rules.clone()));
        let other = StoredRules {
            hash: 8,
            ..rules.clone()
        };
        journal.keep_rules(Some(&other)).unwrap();
        assert_eq!(journal.stored_rules().unwrap(), Some(other));
        journal.keep_rules(None).unwrap();
        assert_eq!(journal.stored_rules().unwrap(), None);
    }

    /// The V1 tag is the first four bytes: records written now decode in later versions.
    #[test]
    fn the_v1_tag_is_pinned() {
        let rules = StoredRules {
            file: "f".into(),
            hash: 1,
            text: String::new(),
        };
        let bytes = encode_rules(&rules).unwrap();
        assert_eq!(bytes[..4], [0, 0, 0, 0]);
        assert_eq!(decode_rules(&bytes).unwrap(), rules);
    }
}
