//! Flags of `parse` and `reparse`: threads and extraction rules.

use std::path::PathBuf;

use clap::Args;

use super::{progress_mode, JournalArg, MinFreeArg};
use crate::parse::stage::ParseConfig;
use crate::parse::{Rules, RulesChoice, RulesError};

#[derive(Debug, Args)]
pub struct RulesArg {
    /// Extraction rules: a TOML file mapping field names to CSS selectors. They are kept
    /// in the journal (replacing rules kept before), and later runs without --rules use
    /// them again.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Parse without extraction rules, and drop those the journal keeps.
    #[arg(long, conflicts_with = "rules")]
    pub no_rules: bool,
}

impl RulesArg {
    /// Loads and checks the rules given before any work starts.
    pub fn load(&self) -> Result<RulesChoice, RulesError> {
        if self.no_rules {
            return Ok(RulesChoice::Dropped);
        }
        let Some(path) = &self.rules else {
            return Ok(RulesChoice::Kept);
        };
        let (rules, text) = Rules::load_text(path)?;
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        Ok(RulesChoice::given(rules, text, file.display().to_string()))
    }
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    #[command(flatten)]
    pub min_free: MinFreeArg,
    #[command(flatten)]
    pub rules: RulesArg,
    /// Parser threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// Print only warnings and errors: no progress, and no summary unless the run was
    /// stopped early (Ctrl-C, disk full).
    #[arg(long)]
    pub quiet: bool,
}

impl ParseArgs {
    pub fn to_config(&self) -> Result<ParseConfig, RulesError> {
        Ok(ParseConfig {
            rules: self.rules.load()?,
            threads: self.threads.map_or_else(default_threads, |n| n as usize),
            progress: progress_mode(self.quiet),
            follow: None,
            min_free: self.min_free.min_free,
        })
    }
}

/// One parser thread per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
