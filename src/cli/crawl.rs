//! Flags of `crawl` and `recrawl`, and the [`CrawlConfig`] they become.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use std::sync::Arc;

use super::parse::{default_threads, RulesArg};
use super::values::{
    delay_secs, given_url, mysql_target, parse_duration, parse_interval, parse_scope,
    positive_secs, user_agent, Unquoted,
};
use super::{
    progress_mode, ConfigError, JournalArg, MetricsArg, MinFreeArg, ProxyArgs,
    DEFAULT_GIVE_UP_AFTER,
};
use crate::fetch::{default_user_agent, load_pem_certs, FetchConfig, UserHeader};
use crate::journal::{Budget, RecrawlPolicy};
use crate::parse::follow::{Follow, FollowPolicy, Scope};
use crate::parse::stage::ParseConfig;
use crate::pipeline::{CrawlConfig, Input, Politeness};
use crate::progress::ProgressMode;
use crate::sync::{SyncConfig, Target};
use crate::urls::GivenUrl;

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
    #[command(flatten)]
    pub proxy: ProxyArgs,
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
                proxy: self.proxy.to_choice()?,
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
