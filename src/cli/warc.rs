//! The flags of `export` and `import` (WARC and JSON lines).

use std::path::PathBuf;

use clap::Args;

use super::values::{parse_date, parse_regex, parse_size};
use super::JournalArg;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("format").required(true).args(["warc", "jsonl"])))]
pub struct ExportArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    /// Write WARC/1.1 to FILE (gzip, one member per record; never overwrites a file):
    /// per page a request, a response and, once parsed, a metadata record with the
    /// annotation as JSON. Failed pages are skipped and counted.
    #[arg(long, value_name = "FILE")]
    pub warc: Option<PathBuf>,
    /// Write one JSON object per page to FILE, or `-` for stdout: url, final_url,
    /// status, fetched_at, title, description, lang, canonical, links, fields,
    /// content_hash (and error for a failed page).
    #[arg(long, value_name = "FILE")]
    pub jsonl: Option<PathBuf>,
    /// With `--jsonl`: add the stored body (decoded), base64.
    #[arg(long, requires = "jsonl")]
    pub with_body: bool,
    /// Only pages fetched at or after DATE (UTC): `2024-05-01`, `2024-05-01T12:00:00Z`.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub since: Option<u64>,
    /// Only pages whose URL matches REGEX (Rust regex syntax, unanchored).
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub include: Option<regex::Regex>,
    /// With `--warc`: start a new file (FILE-00001.warc.gz, ...) once one would pass
    /// this size.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size, requires = "warc")]
    pub max_size: u64,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    /// WARC files to import, in order (.warc, or .warc.gz with one or many gzip members).
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub warc: Vec<PathBuf>,
    /// Largest body kept, counted after decoding (as `crawl --max-body`); larger
    /// records are skipped and counted as `too_large`.
    #[arg(long, default_value = "10MiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_body: u64,
    /// No summary on stderr, only warnings and errors.
    #[arg(long)]
    pub quiet: bool,
}
