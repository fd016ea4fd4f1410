//! The command line: raw flags (clap) turned into validated stage configs. Here: the
//! subcommands, the flags every command shares and [`ConfigError`]; each command's
//! flags are in a file of their own (`crawl.rs`, `parse.rs`, `sync.rs`, `journal.rs`,
//! `warc.rs`), the parsers of flag values in `values.rs`.

mod crawl;
mod journal;
mod parse;
mod proxy;
mod sync;
mod values;
mod warc;

pub use crawl::{CrawlArgs, FollowArgs, PoliteArgs, RecrawlArgs, RunArgs};
pub use journal::{CompactArgs, RecoverArgs, ShowArgs, StatusArgs, VerifyArgs};
pub use parse::{default_threads, ParseArgs, RulesArg};
pub use proxy::ProxyArgs;
pub use sync::SyncArgs;
use values::parse_size;
pub use warc::{ExportArgs, ImportArgs};

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::fetch::FetchError;
use crate::parse::follow::FollowError;
use crate::parse::RulesError;
use crate::progress::ProgressMode;

#[derive(Debug, Parser)]
#[command(
    name = "webspool",
    version,
    about = "Fetch web pages into a crash-safe local journal, resumably.",
    after_help = "The journal (--journal DIR, default ./webspool.journal): only `crawl` \
                  and `import` create one; every other command needs an existing journal \
                  and creates nothing.\n\n\
                  Exit codes: 0 done, 1 error (journal, input, setup, MySQL unavailable \
                  past --give-up-after), 2 usage error, 75 disk full (free some space, \
                  then run the same command again), 130 interrupted (run the same command \
                  again to resume)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments, exiting with clap's usage error (code 2) if they
    /// are wrong. An environment variable that is set but empty counts as unset, as in
    /// most Unix tools: `WEBSPOOL_JOURNAL= webspool status` reads the default journal,
    /// and `WEBSPOOL_MYSQL_URL= webspool sync` says that `--mysql` is missing.
    pub fn parse_args() -> Cli {
        let matches = without_empty_env(Cli::command()).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// `command`, and its subcommands, without the environment variable of every argument
/// whose variable is set to the empty string.
fn without_empty_env(mut command: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty())
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |arg| arg.env(None::<&str>));
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, without_empty_env);
    }
    command
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch every URL of a list into the journal, creating the journal if there is
    /// none; run again to resume.
    Crawl(Box<CrawlArgs>),
    /// Ask again for the stored pages of an existing journal that are due, with their
    /// validators: unchanged pages cost a 304, changed ones get a new version, parsed
    /// and synced again.
    Recrawl(Box<RecrawlArgs>),
    /// Annotate the pages of an existing journal fetched but not parsed yet (title,
    /// links, fields, ...).
    Parse(ParseArgs),
    /// Re-annotate every stored page of an existing journal, offline; only pages whose
    /// annotation changed become pending for sync.
    Reparse(ParseArgs),
    /// Load the pending pages of an existing journal into MySQL/MariaDB in bulk,
    /// exactly once in effect; once (for cron), or --every DURATION.
    Sync(SyncArgs),
    /// Show counts and sizes of an existing journal.
    Status(StatusArgs),
    /// Show everything the journal knows about one URL as one JSON object (state,
    /// response, versions, recrawl schedule, annotation, sync state), or with --body its
    /// stored body.
    Show(ShowArgs),
    /// Read and check every record and body of an existing journal; exit 1 if
    /// anything is damaged. Changes nothing unless `--repair` is given.
    Verify(VerifyArgs),
    /// Rebuild a journal's index from its body segments alone, when its database is
    /// damaged or gone; the replaced files are kept in a dated folder.
    Recover(RecoverArgs),
    /// Give back the space of bodies no page uses any more: copy the live ones into new
    /// segments, then delete the old; killed, run it again to finish.
    Compact(CompactArgs),
    /// Write the pages of a journal as WARC/1.1 (`--warc`) or as JSON lines (`--jsonl`),
    /// streaming; reads only. While a crawl holds the journal, that process writes it.
    Export(ExportArgs),
    /// Record the responses of WARC files (.warc, .warc.gz; wget, Heritrix, Common
    /// Crawl, webspool) as fetched pages, then `parse` and `sync` them as usual. Creates
    /// the journal if there is none; importing a file again changes nothing.
    Import(ImportArgs),
}

impl Command {
    /// Whether `--quiet` was given: no progress and no INFO lines, only warnings and
    /// errors.
    pub fn quiet(&self) -> bool {
        match self {
            Command::Crawl(args) => args.run.quiet,
            Command::Recrawl(args) => args.run.quiet,
            Command::Parse(args) | Command::Reparse(args) => args.quiet,
            Command::Sync(args) => args.quiet,
            Command::Import(args) => args.quiet,
            Command::Status(_)
            | Command::Show(_)
            | Command::Verify(_)
            | Command::Recover(_)
            | Command::Compact(_)
            | Command::Export(_) => false,
        }
    }

    /// The journal directory the command works on.
    pub fn journal(&self) -> &std::path::Path {
        match self {
            Command::Crawl(args) => &args.journal.journal,
            Command::Recrawl(args) => &args.journal.journal,
            Command::Parse(args) | Command::Reparse(args) => &args.journal.journal,
            Command::Sync(args) => &args.journal.journal,
            Command::Status(args) => &args.journal.journal,
            Command::Show(args) => &args.journal.journal,
            Command::Verify(args) => &args.journal.journal,
            Command::Recover(args) => &args.journal.journal,
            Command::Compact(args) => &args.journal.journal,
            Command::Export(args) => &args.journal.journal,
            Command::Import(args) => &args.journal.journal,
        }
    }
}

#[derive(Debug, Args)]
pub struct JournalArg {
    /// Journal directory. Only `crawl` and `import` create one (where nothing is, or in
    /// an empty directory); the other commands need an existing journal.
    #[arg(long, env = "WEBSPOOL_JOURNAL", default_value = "webspool.journal")]
    pub journal: PathBuf,
}

/// How long a one-shot sync, or a crawl's end, waits for an unavailable MySQL: long
/// enough for a restart of the server, short enough for a cron job every 10 minutes.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// `--metrics-addr` of the commands that fetch or sync.
#[derive(Debug, Args)]
pub struct MetricsArg {
    /// Serve Prometheus metrics at http://ADDR/metrics while the command runs: IP:PORT,
    /// IP (port 9184), or PORT alone on 127.0.0.1. Loopback unless an address is given;
    /// a port that cannot be bound is an error before any work (exit 1).
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::parse_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl MetricsArg {
    /// The listener, bound now, if `--metrics-addr` was given.
    pub async fn bind(
        &self,
    ) -> Result<Option<tokio::net::TcpListener>, crate::metrics::MetricsError> {
        match self.metrics_addr {
            Some(addr) => crate::metrics::bind(addr).await.map(Some),
            None => Ok(None),
        }
    }
}

/// The free-space watermark of the commands that write to the journal.
#[derive(Debug, Args)]
pub struct MinFreeArg {
    /// Stop before the disk under the journal fills up: once less than this is free,
    /// start no new work, commit what is in flight and exit with code 75. A size such as
    /// 512MiB or 1GiB (K, M, G, T: powers of 1024; KB, MB, GB, TB: of 1000), or 0 to
    /// write until the disk is full.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub min_free: u64,
}

pub fn progress_mode(quiet: bool) -> ProgressMode {
    if quiet {
        ProgressMode::Off
    } else {
        ProgressMode::Auto
    }
}

/// A configuration that cannot be used; reported before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("crawl needs --urls, --from-mysql with --query, or --sitemap")]
    NoInput,
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("--min-interval is longer than --max-interval")]
    Intervals,
    #[error("{0} applies to the links and sitemap entries a crawl follows: give --follow SCOPE or --sitemap URL too")]
    NotFollowing(&'static str),
    #[error(transparent)]
    Proxy(#[from] crate::fetch::ProxyParseError),
}

impl ConfigError {
    /// Whether the error is in the flags' values themselves (exit code 2, like clap's
    /// own checks), not in a file they name or in the setup (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ConfigError::NoInput
                | ConfigError::Follow(_)
                | ConfigError::Intervals
                | ConfigError::NotFollowing(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::values::parse_duration;
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let cli = Cli::try_parse_from(["webspool", "crawl", "--urls", "x"]).unwrap();
        let Command::Crawl(args) = cli.command else {
            panic!("not crawl")
        };
        let config = args.to_config().unwrap();
        assert_eq!(config.fetch.concurrency, 64);
        assert_eq!(config.fetch.per_host, 8);
        assert_eq!(config.fetch.timeout, Duration::from_secs(30));
        assert_eq!(config.fetch.connect_timeout, Duration::from_secs(10));
        assert_eq!(config.fetch.max_body, 10 * 1024 * 1024);
        assert_eq!(config.fetch.max_redirects, 10);
        assert_eq!(config.min_free, crate::journal::space::DEFAULT_MIN_FREE);
    }

    #[test]
    fn sizes_take_units() {
        const MIB: u64 = 1024 * 1024;
        for (text, bytes) in [
            ("0", 0),
            ("4096", 4096),
            ("512MiB", 512 * MIB),
            ("512 mib", 512 * MIB),
            ("1GiB", 1024 * MIB),
            ("1.5G", 1536 * MIB),
            ("64k", 64 * 1024),
            ("100MB", 100_000_000),
            ("2TB", 2_000_000_000_000),
            ("10B", 10),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "MiB",
            "-1MiB",
            "5 parsecs",
            "1e3",
            "99999999999TiB",
            "1.2.3G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from(["webspool", "parse", "--min-free", "1GiB"]).unwrap();
        let Command::Parse(args) = cli.command else {
            panic!("not parse")
        };
        assert_eq!(args.to_config().unwrap().min_free, 1024 * MIB);
        let sync = [
            "webspool",
            "sync",
            "--mysql",
            "mysql://h/d",
            "--min-free",
            "lots",
        ];
        assert_eq!(Cli::try_parse_from(sync).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn headers_repeat_and_bad_ones_are_usage_errors_that_hide_the_value() {
        let parse = |headers: &[&str]| {
            let mut argv = vec!["webspool", "crawl", "--urls", "x"];
            for h in headers {
                argv.extend(["--header", h]);
            }
            Cli::try_parse_from(argv)
        };
        let cli = parse(&["Authorization: Bearer s3cret", "X-A: 1"]).unwrap();
        let Command::Crawl(args) = cli.command else {
            panic!("not crawl")
        };
        let config = args.to_config().unwrap();
        let names: Vec<&str> = config
            .fetch
            .headers
            .iter()
            .map(|h| h.name().as_str())
            .collect();
        assert_eq!(names, ["authorization", "x-a"]);
        assert!(!config.fetch.allow_private);
        let debug = format!("{args:?} {:?}", config.fetch);
        assert!(!debug.contains("s3cret"), "{debug}");
        for bad in ["Bearer s3cret", "Bad Name: s3cret", "Host: s3cret"] {
            let err = parse(&[bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            let text = err.to_string();
            assert!(text.contains("--header"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn bad_timeouts_are_usage_errors() {
        for bad in ["0", "-1", "nan", "abc"] {
            assert!(
                Cli::try_parse_from(["webspool", "crawl", "--urls", "x", "--timeout", bad])
                    .is_err(),
                "{bad}"
            );
        }
    }
}
