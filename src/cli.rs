//! The command line: raw flags (clap) turned into validated stage configs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use std::sync::Arc;

use crate::fetch::{default_user_agent, load_pem_certs, FetchConfig, FetchError, UserHeader};
use crate::follow::{Follow, FollowError, FollowPolicy, Scope};
use crate::journal::{Budget, RecrawlPolicy};
use crate::parse::stage::ParseConfig;
use crate::parse::{Rules, RulesChoice, RulesError};
use crate::pipeline::{CrawlConfig, Input, Politeness};
use crate::progress::ProgressMode;
use crate::sync::{SyncConfig, Target};
use crate::urls::GivenUrl;

#[derive(Debug, Parser)]
#[command(
    name = "webspool",
    version,
    about = "Fetch web pages into a crash-safe local journal, resumably.",
    after_help = "The journal (--journal DIR, default ./webspool.journal): only `crawl` \
                  creates one; every other command needs an existing journal and creates \
                  nothing.\n\n\
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
            Command::Status(_)
            | Command::Show(_)
            | Command::Verify(_)
            | Command::Recover(_)
            | Command::Compact(_) => false,
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
        }
    }
}

#[derive(Debug, Args)]
pub struct JournalArg {
    /// Journal directory. Only `crawl` creates one (where nothing is, or in an empty
    /// directory); the other commands need an existing journal.
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

/// A size in bytes: a number (decimals allowed) and a unit, `512MiB`, `1.5G`, `64k`,
/// `100MB`, `0`; no unit is bytes. `K`, `M`, `G`, `T`, alone or with `iB`, are powers of
/// 1024; `KB`, `MB`, `GB`, `TB` powers of 1000; `B` is bytes. Case does not matter.
fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim_start();
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 512MiB, 1GiB or 0"))?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
            ))
        }
    };
    let bytes = (n * scale).round();
    if bytes < u64::MAX as f64 {
        Ok(bytes as u64)
    } else {
        Err(format!("`{s}` is too large"))
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["urls", "from_mysql", "sitemap"])))]
#[command(group(clap::ArgGroup::new("list").args(["urls", "from_mysql"])))]
pub struct CrawlArgs {
    /// File with one URL per line, or `-` for stdin. Blank lines and `#` comments are
    /// skipped; invalid lines are reported with their number and skipped.
    #[arg(long, value_name = "FILE|-")]
    pub urls: Option<String>,
    /// Seed from MySQL instead: run `--query` there and crawl its rows, (key, url); the
    /// key is kept with the page and synced as `source_key`.
    #[arg(long, value_name = "URL", requires = "query", value_parser = Unquoted(mysql_target))]
    pub from_mysql: Option<Target>,
    /// The seeding query, e.g. "SELECT id, url FROM sites WHERE ...".
    #[arg(long, value_name = "SQL", requires = "from_mysql")]
    pub query: Option<String>,
    #[command(flatten)]
    pub journal: JournalArg,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct RecrawlArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    /// Make every stored page due now.
    #[arg(long)]
    pub all: bool,
    /// Keep running: look for pages that came due on this schedule (e.g. 10m, 1h, 1d)
    /// until stopped.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub every: Option<Duration>,
    /// Interval a page starts with (e.g. 12h, 1d, 7d); a change found shortens it
    /// (x0.8), no change lengthens it (x1.4). Default 1d, or what the journal's last
    /// recrawl used.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Shortest interval a page can get. Default 1h, or the journal's last.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub min_interval: Option<Duration>,
    /// Longest interval a page can get. Default 30d, or the journal's last.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub max_interval: Option<Duration>,
    #[command(flatten)]
    pub run: RunArgs,
}

impl RecrawlArgs {
    /// The journal's policy with the flags given applied; an error when the bounds
    /// are the wrong way round.
    pub fn policy(&self, stored: RecrawlPolicy) -> Result<RecrawlPolicy, ConfigError> {
        let ms = |d: &Option<Duration>, or: u64| d.map_or(or, |d| d.as_millis() as u64);
        let policy = RecrawlPolicy {
            interval_ms: ms(&self.interval, stored.interval_ms),
            min_ms: ms(&self.min_interval, stored.min_ms),
            max_ms: ms(&self.max_interval, stored.max_ms),
        };
        if policy.min_ms > policy.max_ms {
            return Err(ConfigError::Intervals);
        }
        Ok(policy)
    }
}

/// The flags of a run that fetches: `crawl` and `recrawl`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Also sync to this MySQL database as pages are parsed; the crawl ends when
    /// everything is fetched, parsed and synced. MySQL being down never slows fetching;
    /// at the end the crawl waits for it up to --give-up-after.
    #[arg(long, value_name = "URL", value_parser = Unquoted(mysql_target))]
    pub sync: Option<Target>,
    /// With --sync: when MySQL stays unavailable this long once everything is fetched
    /// and parsed, stop with exit code 1 and one line saying why; the pages stay in the
    /// journal for `webspool sync`. Default 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "sync")]
    pub give_up_after: Option<Duration>,
    #[command(flatten)]
    pub min_free: MinFreeArg,
    #[command(flatten)]
    pub metrics: MetricsArg,
    /// Fetches in flight at once, over all hosts.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Fetches in flight at once to one host (host and port).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub per_host: u32,
    /// Deadline for a whole fetch, redirects and body included, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = positive_secs, allow_negative_numbers = true)]
    pub timeout: f64,
    /// Deadline for opening a TCP connection, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = positive_secs, allow_negative_numbers = true)]
    pub connect_timeout: f64,
    /// Longest silence from a server (waiting for headers or body data), in seconds.
    #[arg(long, default_value_t = 15.0, value_name = "SECS", value_parser = positive_secs, allow_negative_numbers = true)]
    pub idle_timeout: f64,
    /// Largest body kept, counted after content-decoding; larger pages are recorded as
    /// `too_large`.
    #[arg(long, default_value_t = 10 * 1024 * 1024, value_name = "BYTES")]
    pub max_body: u64,
    /// Redirects followed before giving up with `too_many_redirects`.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_redirects: usize,
    /// User-Agent header sent with every request.
    #[arg(long, value_name = "S", default_value_t = default_user_agent(), value_parser = Unquoted(user_agent))]
    pub user_agent: String,
    /// A header sent with every request to the origins of the URLs given (repeatable),
    /// never to other hosts found in sitemaps or links. Authorization,
    /// Proxy-Authorization and Cookie are not sent on when a redirect leads to another
    /// origin. Values are never printed or logged.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = Unquoted(UserHeader::parse))]
    pub headers: Vec<UserHeader>,
    /// Send the --header values to every origin the crawl reaches, not only to those of
    /// the URLs given (Authorization, Proxy-Authorization and Cookie are still not sent
    /// on when a redirect leads to another origin).
    #[arg(long, requires = "headers")]
    pub header_all_origins: bool,
    /// Let links found on pages (and their redirects) reach private, loopback,
    /// link-local and other non-public addresses; without it they are recorded as
    /// `blocked`. URLs given in the input may always reach them.
    #[arg(long)]
    pub allow_private: bool,
    #[command(flatten)]
    pub rules: RulesArg,
    /// Only fetch; parse later with `webspool parse`. (Cannot be combined with --sync,
    /// which syncs parsed pages, or with link following, which needs the links.)
    #[arg(long, conflicts_with_all = ["sync", "rules", "no_rules", "follow", "sitemap"])]
    pub no_parse: bool,
    #[command(flatten)]
    pub polite: PoliteArgs,
    #[command(flatten)]
    pub follow: FollowArgs,
    /// Print only warnings and errors: no progress, and no summary unless the run was
    /// stopped early (Ctrl-C, disk full).
    #[arg(long)]
    pub quiet: bool,
    /// Also trust the root certificates in this PEM file (for testing with a private
    /// certificate authority).
    #[arg(long, value_name = "PEM", hide = true)]
    pub tls_extra_root: Option<PathBuf>,
}

/// How the crawl treats the sites it visits.
#[derive(Debug, Args)]
pub struct PoliteArgs {
    /// Do not fetch or obey robots.txt.
    #[arg(long)]
    pub ignore_robots: bool,
    /// Least time between two requests to one host, in seconds (robots.txt's
    /// Crawl-delay can make it longer). With a delay, one request at a time per host.
    #[arg(long, default_value_t = 0.0, value_name = "SECS", value_parser = delay_secs, allow_negative_numbers = true)]
    pub delay: f64,
    /// Attempts after the first for transient failures (connection errors, timeouts,
    /// 408, 429, 5xx), with exponential backoff or the server's Retry-After.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,
}

/// Which discovered links the crawl follows.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// Follow links found on pages: `none` (only the URLs given), `same-host`,
    /// `same-domain` (registrable domain, public suffix list), or a comma-separated list
    /// of allowed hosts.
    #[arg(long, value_name = "SCOPE", default_value = "none", value_parser = parse_scope)]
    pub follow: Scope,
    /// Seed from a sitemap or sitemap index (repeatable); its entries are crawled
    /// whatever the --follow scope.
    #[arg(long, value_name = "URL", value_parser = Unquoted(given_url))]
    pub sitemap: Vec<GivenUrl>,
    /// Follow links at most this many hops from a seed.
    #[arg(long, value_name = "N")]
    pub max_depth: Option<u32>,
    /// Stop adding discovered URLs once the journal holds this many.
    #[arg(long, value_name = "N")]
    pub max_pages: Option<u64>,
    /// Discovered URLs added per host, at most (a guard against spider traps).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_pages_per_host: u64,
    /// Follow only URLs matching this regex (repeatable: any may match).
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,
    /// Never follow URLs matching this regex (repeatable; wins over --include).
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
}

impl FollowArgs {
    /// The follow settings, or None when nothing is followed.
    fn to_follow(&self) -> Result<Option<Follow>, ConfigError> {
        if matches!(self.follow, Scope::None) && self.sitemap.is_empty() {
            let given = [
                ("--include", !self.include.is_empty()),
                ("--exclude", !self.exclude.is_empty()),
                ("--max-depth", self.max_depth.is_some()),
                ("--max-pages", self.max_pages.is_some()),
            ];
            return match given.iter().find(|(_, given)| *given) {
                Some((flag, _)) => Err(ConfigError::NotFollowing(flag)),
                None => Ok(None),
            };
        }
        let policy = FollowPolicy::new(
            self.follow.clone(),
            self.max_depth,
            &self.include,
            &self.exclude,
        )?;
        Ok(Some(Follow {
            policy,
            budget: Budget {
                max_urls: self.max_pages,
                per_host: Some(self.max_pages_per_host),
            },
        }))
    }
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse().map_err(|e: FollowError| e.to_string())
}

/// A URL given on the command line, its userinfo taken out; the error shows the text
/// with anything that may be userinfo hidden.
fn given_url(s: &str) -> Result<GivenUrl, String> {
    crate::urls::normalize_given(s)
        .map(|(url, userinfo)| GivenUrl { url, userinfo })
        .map_err(|e| format!("{}: {e}", crate::urls::redact_text(s)))
}

fn delay_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err("must be a number of seconds from 0 to 3600".to_string()),
    }
}

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

pub fn progress_mode(quiet: bool) -> ProgressMode {
    if quiet {
        ProgressMode::Off
    } else {
        ProgressMode::Auto
    }
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Target database: mysql://user:password@host:port/database. The password is never
    /// printed, logged or shown in an error.
    #[arg(
        long,
        value_name = "URL",
        env = "WEBSPOOL_MYSQL_URL",
        hide_env_values = true,
        value_parser = Unquoted(mysql_target)
    )]
    pub mysql: Target,
    #[command(flatten)]
    pub journal: JournalArg,
    #[command(flatten)]
    pub min_free: MinFreeArg,
    #[command(flatten)]
    pub metrics: MetricsArg,
    /// Keep syncing on this schedule (e.g. 30s, 5m, 1h) until stopped, retrying an
    /// unavailable MySQL until it answers; without it, drain what is pending and exit.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub every: Option<Duration>,
    /// When MySQL stays unavailable (down, unreachable, refusing connections) this long,
    /// stop with exit code 1 and one line saying why; the pages stay in the journal for
    /// the next sync. Default 5m. (Not with --every, which retries until MySQL answers.)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "every")]
    pub give_up_after: Option<Duration>,
    /// Leave page bodies out (the `body` column stays NULL).
    #[arg(long)]
    pub no_bodies: bool,
    /// Pages per batch (one transaction), at most.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_rows: u32,
    /// Bytes per batch, roughly, at most (a single larger page still goes alone).
    #[arg(long, value_name = "N", default_value_t = 64 * 1024 * 1024)]
    pub batch_bytes: u64,
    /// Deadline for connecting and for writing one batch, in seconds.
    #[arg(long, default_value_t = 120.0, value_name = "SECS", value_parser = positive_secs, allow_negative_numbers = true)]
    pub mysql_timeout: f64,
    /// Print only warnings and errors: no progress, and no summary unless the run was
    /// stopped early (Ctrl-C, disk full).
    #[arg(long)]
    pub quiet: bool,
}

impl SyncArgs {
    pub fn to_config(&self) -> SyncConfig {
        SyncConfig {
            target: self.mysql.clone(),
            every: self.every,
            bodies: !self.no_bodies,
            batch_rows: self.batch_rows as usize,
            batch_bytes: self.batch_bytes.max(1) as usize,
            op_timeout: Duration::from_secs_f64(self.mysql_timeout),
            give_up_after: match self.every {
                Some(_) => None,
                None => Some(self.give_up_after.unwrap_or(DEFAULT_GIVE_UP_AFTER)),
            },
            min_free: self.min_free.min_free,
            turn: Default::default(),
        }
    }
}

/// `250ms`, `30s`, `5m`, `2h`, `1d`; a bare number is seconds. At most a week.
fn parse_duration(s: &str) -> Result<Duration, String> {
    duration_within(s, 7.0 * 86_400.0, "a week")
}

/// A recrawl interval: a duration of at most a year.
fn parse_interval(s: &str) -> Result<Duration, String> {
    duration_within(s, 366.0 * 86_400.0, "a year")
}

fn duration_within(s: &str, max_secs: f64, max_text: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 5m, 1h or 1d"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            ))
        }
    };
    if secs.is_finite() && secs > 0.0 && secs <= max_secs {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("`{s}` must be more than 0 and at most {max_text}"))
    }
}

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

/// Parses a flag's value with its function, with errors that name the flag and never
/// repeat the value: it may be a secret (`--header`, a MySQL URL's password) or hold
/// line breaks, and clap's own value errors would quote it whole.
#[derive(Clone)]
struct Unquoted<T>(fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Unquoted<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let parsed = match value.to_str() {
            Some(text) => (self.0)(text),
            None => Err("the value must be valid UTF-8".to_string()),
        };
        parsed.map_err(|e| {
            let flag = arg
                .and_then(|a| a.get_long())
                .map_or_else(|| "value".to_string(), |long| format!("--{long}"));
            let kind = clap::error::ErrorKind::ValueValidation;
            clap::Error::raw(kind, format!("invalid {flag}: {e}\n")).with_cmd(cmd)
        })
    }
}

/// A MySQL URL; the error shows it redacted (see [`Target::parse`]).
fn mysql_target(s: &str) -> Result<Target, String> {
    Target::parse(s).map_err(|e| e.to_string())
}

/// The `User-Agent`, checked as the fetcher will use it: one header value.
fn user_agent(s: &str) -> Result<String, String> {
    match http::HeaderValue::from_str(s) {
        Ok(_) => Ok(s.to_string()),
        Err(_) => {
            Err("a User-Agent must be one line of text without control characters".to_string())
        }
    }
}

fn positive_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| "must be a number of seconds, such as 30 or 2.5".to_string())?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err("must be more than 0 and at most 86400 seconds (a day)".to_string())
    }
}

impl CrawlArgs {
    pub fn to_config(&self) -> Result<CrawlConfig, ConfigError> {
        let input = match (&self.urls, &self.from_mysql, &self.query) {
            (_, Some(target), Some(query)) => Input::Mysql {
                target: target.clone(),
                query: query.clone(),
            },
            (Some(path), ..) if path == "-" => Input::Stdin,
            (Some(path), ..) => Input::File(PathBuf::from(path)),
            (None, None, _) if !self.run.follow.sitemap.is_empty() => Input::None,
            _ => return Err(ConfigError::NoInput),
        };
        self.run.to_config(input)
    }
}

impl RunArgs {
    /// The configuration of a run that takes its URLs from `input`.
    pub fn to_config(&self, input: Input) -> Result<CrawlConfig, ConfigError> {
        let extra_roots = match &self.tls_extra_root {
            Some(path) => load_pem_certs(path)?,
            None => Vec::new(),
        };
        let follow = self.follow.to_follow()?.map(Arc::new);
        let sync = self.sync.as_ref().map(|target| SyncConfig {
            target: target.clone(),
            every: None,
            bodies: true,
            batch_rows: 1000,
            batch_bytes: 64 * 1024 * 1024,
            op_timeout: Duration::from_secs(120),
            give_up_after: Some(self.give_up_after.unwrap_or(DEFAULT_GIVE_UP_AFTER)),
            min_free: self.min_free.min_free,
            turn: Default::default(),
        });
        Ok(CrawlConfig {
            input,
            sitemaps: self.follow.sitemap.clone(),
            fetch: FetchConfig {
                concurrency: self.concurrency as usize,
                per_host: self.per_host as usize,
                timeout: Duration::from_secs_f64(self.timeout),
                connect_timeout: Duration::from_secs_f64(self.connect_timeout),
                idle_timeout: Duration::from_secs_f64(self.idle_timeout),
                max_body: self.max_body,
                max_redirects: self.max_redirects,
                user_agent: self.user_agent.clone(),
                extra_roots,
                allow_private: self.allow_private,
                headers: self.headers.clone(),
                headers_to_all_origins: self.header_all_origins,
            },
            parse: match self.no_parse {
                true => None,
                false => Some(ParseConfig {
                    rules: self.rules.load()?,
                    threads: default_threads(),
                    progress: ProgressMode::Off,
                    follow,
                    min_free: self.min_free.min_free,
                }),
            },
            sync,
            politeness: Politeness {
                robots: !self.polite.ignore_robots,
                delay: Duration::from_secs_f64(self.polite.delay),
                retries: self.polite.retries,
                robots_sitemaps: !matches!(self.follow.follow, Scope::None)
                    || !self.follow.sitemap.is_empty(),
            },
            progress: progress_mode(self.quiet),
            min_free: self.min_free.min_free,
        })
    }
}

#[cfg(test)]
mod tests {
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
