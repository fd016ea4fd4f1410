//! Flags of the commands that look after a journal: `status`, `show`, `verify`,
//! `recover`, `compact`.

use clap::Args;

use super::{JournalArg, MinFreeArg};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    /// The URL, in any form `crawl` would take it: normalized the same way
    /// (`http://Example.com:80/a#x` finds `http://example.com/a`).
    pub url: String,
    /// Write the stored body to stdout instead, exactly as the server sent it after
    /// content-decoding (gzip, br, zstd, deflate removed).
    #[arg(long)]
    pub body: bool,
    /// With --body: the older version kept under this key (`versions[].key` in the
    /// JSON), instead of the current one.
    #[arg(long, value_name = "KEY", requires = "body")]
    pub version: Option<u64>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    /// One JSON object per line: each problem, then a summary.
    #[arg(long)]
    pub json: bool,
    /// Put damaged pages back to be fetched again by the next `crawl` (or drop them,
    /// with `--drop`) and recount the counters.
    #[arg(long)]
    pub repair: bool,
    /// With `--repair`: remove damaged pages from the journal instead.
    #[arg(long, requires = "repair")]
    pub drop: bool,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub journal: JournalArg,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    /// The compaction needs room for one copy of the live bodies; below this it stops
    /// (run it again to go on).
    #[command(flatten)]
    pub min_free: MinFreeArg,
    /// Versions kept per page, the current one included: the older versions recrawls
    /// kept beyond the newest N-1 of a page are dropped.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_versions: u64,
    /// Pages a recrawl found gone (404, 410) lose their last good body, their older
    /// versions and their annotation; their URL and schedule stay.
    #[arg(long)]
    pub drop_gone: bool,
}
