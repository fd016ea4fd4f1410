//! Which extraction rules a run parses with: those given with `--rules` (then kept in
//! the journal for later runs, replacing what was kept), those the journal keeps
//! (plain `parse`, `reparse`, a resumed `crawl`, `recrawl`), or none (`--no-rules`,
//! which drops what was kept). The kept text is what is used: the file it came from
//! may be gone.

use std::sync::Arc;

use super::Rules;
use crate::journal::{Journal, JournalError, StoredRules};

/// The rules asked for on the command line.
#[derive(Clone, Debug, Default)]
pub enum RulesChoice {
    /// Those the journal keeps, none if it keeps none.
    #[default]
    Kept,
    /// Rules read from a file: used, and kept in place of those kept before.
    Given(Arc<Rules>, StoredRules),
    /// No rules, and those kept are dropped.
    Dropped,
}

impl RulesChoice {
    /// Rules read from `file`, whose text was `text`.
    pub fn given(rules: Rules, text: String, file: String) -> RulesChoice {
        let kept = StoredRules {
            file,
            hash: rules.hash(),
            text,
        };
        RulesChoice::Given(Arc::new(rules), kept)
    }

    /// The rules to parse with, after keeping or dropping them in the journal (durable
    /// with its next flush). `reparse` says it when it replaces kept rules (it is how
    /// one does); a crawl or `parse` warns, as its pages parsed before keep the fields
    /// of the old rules until a `reparse`.
    pub fn apply(&self, journal: &Journal, reparse: bool) -> Result<Arc<Rules>, JournalError> {
        let kept = journal.stored_rules()?;
        let named = |r: &StoredRules| format!("{} ({:016x})", r.file, r.hash);
        match self {
            RulesChoice::Kept => match kept {
                None => Ok(Arc::new(Rules::default())),
                Some(kept) => {
                    let rules =
                        Rules::from_toml(&kept.text).map_err(|e| JournalError::Damaged {
                            what: format!(
                                "its extraction rules, from {}, do not load: {e}; give rules \
                             with --rules FILE, or none with --no-rules",
                                kept.file
                            ),
                        })?;
                    tracing::info!("parsing with the journal's rules from {}", named(&kept));
                    Ok(Arc::new(rules))
                }
            },
            RulesChoice::Given(rules, given) => {
                match kept.filter(|kept| kept.hash != given.hash) {
                    Some(old) if reparse => tracing::info!(
                        "the rules from {} replace those from {}",
                        named(given),
                        named(&old)
                    ),
                    Some(old) => tracing::warn!(
                        "the rules from {} replace the journal's rules from {} for the \
                         pages parsed from now on; `webspool reparse` applies them to \
                         the pages parsed before",
                        named(given),
                        named(&old)
                    ),
                    None => {}
                }
                journal.keep_rules(Some(given))?;
                Ok(rules.clone())
            }
            RulesChoice::Dropped => {
                if let Some(old) = kept {
                    tracing::info!("the journal's rules from {} are dropped", named(&old));
                    journal.keep_rules(None)?;
                }
                Ok(Arc::new(Rules::default()))
            }
        }
    }
}
