//! Flags of `sync`: the MySQL target, once or on a schedule, and when to give up.

use std::time::Duration;

use clap::Args;

use super::values::{mysql_target, parse_duration, positive_secs, Unquoted};
use super::{JournalArg, MetricsArg, MinFreeArg, DEFAULT_GIVE_UP_AFTER};
use crate::sync::{SyncConfig, Target};

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
