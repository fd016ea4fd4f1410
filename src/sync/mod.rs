//! The sync stage: loads the journal's pending pages into MySQL/MariaDB in bulk,
//! exactly once in effect.
//!
//! Each batch (a run of the journal's sync queue) is written in one transaction with
//! the journal's watermark, the highest sync sequence number it holds, in
//! `webspool_sync_state`. MySQL is the source of truth: on start and after every
//! reconnect the watermark is read back, and the local queue up to it is dropped. A
//! commit whose outcome was lost with the connection is thus either seen (and skipped)
//! or replayed, and replays are idempotent upserts. The journal side runs beside the
//! writes: while batch n is written, batch n + 1 is read and the local cleanup of batch
//! n - 1 (never of an uncommitted one) runs. Errors are retried with backoff when
//! they are about the connection or the server's state (outage, killed connection,
//! deadlock); anything else stops the stage with the error.

mod background;
pub(crate) mod batch;
mod outage;
mod schema;
mod target;
mod turn;
mod upsert;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::Conn;

pub use batch::url_hash;
pub use schema::{MIGRATIONS, SCHEMA_VERSION};
pub use target::Target;
pub use turn::{run_or_join, Turn};

use crate::journal::{DiskFull, Journal, JournalError, MinFree};
use background::Background;
use outage::Outages;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("MySQL schema: {0}")]
    Schema(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("MySQL, {context}: {message}")]
    Mysql {
        context: &'static str,
        message: String,
        retryable: bool,
    },
    /// MySQL stayed unavailable for `--give-up-after`; nothing is lost.
    #[error(
        "gave up syncing after {after}: {target} is unavailable ({cause}); \
         the pages stay in the journal for the next sync"
    )]
    GaveUp {
        after: String,
        target: String,
        cause: String,
    },
}

impl SyncError {
    fn mysql(context: &'static str, e: mysql_async::Error) -> SyncError {
        SyncError::Mysql {
            context,
            retryable: retryable(&e),
            message: mysql_message(&e),
        }
    }

    fn timeout(context: &'static str, after: Duration) -> SyncError {
        SyncError::Mysql {
            context,
            message: format!("no answer within {}", outage::shown(after)),
            retryable: true,
        }
    }

    /// Whether the stage stopped because the disk under the journal is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, SyncError::Journal(e) if e.is_disk_full())
    }

    /// Whether trying again later (on a new connection) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SyncError::Mysql {
                retryable: true,
                ..
            }
        )
    }
}

/// What a MySQL error says, once: mysql_async's own `Display` repeats its wrappers'
/// words (`Input/output error: Input/output error: ...`) and quotes in TeX's style
/// (`` `ERROR 1049 ...' ``), which reads as an unbalanced quote.
pub fn mysql_message(e: &mysql_async::Error) -> String {
    use mysql_async::{Error, IoError};
    match e {
        Error::Io(IoError::Io(io)) => io.to_string(),
        Error::Server(server) => server.to_string(),
        Error::Driver(driver) => driver.to_string().replace('`', "'"),
        Error::Url(url) => url.to_string().replace('`', "'"),
        Error::Other(other) => other.to_string(),
    }
}

/// Errors about the connection or the server's momentary state are retried; errors
/// about the request or the configuration (access denied, unknown database, bad data)
/// are not.
fn retryable(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_)
        | mysql_async::Error::Driver(_)
        | mysql_async::Error::Other(_) => true,
        mysql_async::Error::Url(_) => false,
        mysql_async::Error::Server(s) => matches!(
            s.code,
            1040 | 1053
                | 1077
                | 1078
                | 1079
                | 1080
                | 1152
                | 1153
                | 1154
                | 1155
                | 1156
                | 1157
                | 1158
                | 1159
                | 1160
                | 1161
                | 1180
                | 1181
                | 1205
                | 1213
                | 1290
                | 1317
                | 1836
                | 1927
                | 2006
                | 2013
                | 4031
        ),
    }
}

#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub target: Target,
    /// Keep syncing on this schedule until stopped; `None`: drain once and return.
    pub every: Option<Duration>,
    pub bodies: bool,
    pub batch_rows: usize,
    pub batch_bytes: usize,
    /// Deadline for connecting and for each statement.
    pub op_timeout: Duration,
    /// How long MySQL may stay unavailable before a run that has an end (a one-shot
    /// sync, the end of a crawl) gives up, keeping every page in the journal; `None`:
    /// retry until it answers (`--every`).
    pub give_up_after: Option<Duration>,
    /// Stop before the next batch once less than this is free under the journal, whose
    /// cleanup writes too (`--min-free`; 0: never).
    pub min_free: u64,
    /// One pass at a time over the journal: every pass of the process shares this.
    pub turn: Arc<Turn>,
}

/// Shared flags between the sync stage and whoever runs it.
#[derive(Debug, Default)]
pub struct SyncControl {
    pub stop: AtomicBool,
    /// When set, sync keeps waiting for new pages until `upstream_done` (crawl --sync).
    pub follow: AtomicBool,
    pub upstream_done: AtomicBool,
    /// Pages synced (committed in MySQL) so far in this run.
    pub synced: AtomicU64,
    /// Batches committed so far in this run.
    pub batches: AtomicU64,
    /// MySQL's watermark for the journal, as of the last connect or commit.
    pub watermark: AtomicU64,
    /// Set by a request that waits on this pass: end the pause between `--every`
    /// rounds now.
    pub wake: AtomicBool,
}

#[derive(Debug, Default)]
pub struct SyncSummary {
    pub pages: u64,
    pub batches: u64,
    /// Recrawl checks (unchanged or gone pages) whose time was recorded.
    pub checks: u64,
    pub elapsed: Duration,
    /// Stopped by `SyncControl::stop`, or below `--min-free`.
    pub interrupted: bool,
    /// Stopped because less than `--min-free` was free under the journal.
    pub disk_full: Option<DiskFull>,
}

struct Session {
    conn: Conn,
    watermark: u64,
    packet: usize,
}

/// Runs the sync stage until the queue is drained (and, with `every` or `follow`,
/// beyond), or until `control.stop` is set.
///
/// While MySQL writes batch n, batch n + 1 is read from the journal and the journal's
/// cleanup after batch n - 1 runs, both on the blocking pool. The local cleanup only
/// ever follows a commit, and the watermark in MySQL stays the truth.
pub async fn run(
    journal: Arc<Journal>,
    config: &SyncConfig,
    control: Arc<SyncControl>,
) -> Result<SyncSummary, SyncError> {
    let held = config
        .turn
        .take(config.target.to_string(), control.clone())
        .await;
    run_in_turn(journal, config, control, held).await
}

/// [`run`], once the pass has the journal's turn.
async fn run_in_turn(
    journal: Arc<Journal>,
    config: &SyncConfig,
    control: Arc<SyncControl>,
    _held: turn::Held<'_>,
) -> Result<SyncSummary, SyncError> {
    let started = Instant::now();
    let journal_id = journal.journal_id()?;
    let mut background = Background::new(journal.clone(), journal_id.clone());
    let result = drive(&journal, &journal_id, config, &control, &mut background).await;
    let settled = background.settle().await;
    let mut summary = result?;
    settled?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

async fn drive(
    journal: &Arc<Journal>,
    journal_id: &str,
    config: &SyncConfig,
    control: &SyncControl,
    background: &mut Background,
) -> Result<SyncSummary, SyncError> {
    let mut summary = SyncSummary::default();
    let mut session: Option<Session> = None;
    let mut outages = Outages::default();
    let mut connected_once = false;
    // Pages synced since the queue was last found drained (`--every` logs them).
    let mut since_drained = 0;
    let space = MinFree::new(journal.path(), config.min_free);
    loop {
        if control.stop.load(Ordering::Acquire) {
            summary.interrupted = true;
            break;
        }
        match space.check() {
            Ok(()) => {}
            Err(JournalError::DiskFull(full)) => {
                tracing::warn!("stopping: {full}");
                summary.interrupted = true;
                summary.disk_full = Some(full);
                break;
            }
            Err(e) => return Err(e.into()),
        }
        let started = Instant::now();
        let live = match session.as_mut() {
            Some(live) => live,
            None => {
                // connect() cleans the queue up to MySQL's watermark: not beside another
                // cleanup.
                background.cleaned().await?;
                let deadline = outages.attempt_deadline(config, control);
                match connect(journal, config, journal_id, deadline).await {
                    Ok(new) => {
                        if !connected_once {
                            tracing::info!("sync: connected to {}", config.target);
                            connected_once = true;
                        }
                        control.watermark.store(new.watermark, Ordering::Release);
                        session.insert(new)
                    }
                    Err(e) if e.is_retryable() => {
                        let wait = outages.failed(e, started, config, control)?;
                        pause(control, wait, false).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let limits = batch::Limits {
            rows: config.batch_rows,
            bytes: config.batch_bytes,
            bodies: config.bodies,
            packet: live.packet,
        };
        let Some(batch) = background.batch(live.watermark, limits).await? else {
            match write_checked(journal, &mut live.conn, config).await {
                Ok(n) => summary.checks += n,
                Err(e) if e.is_retryable() => {
                    session = None;
                    let wait = outages.failed(e, started, config, control)?;
                    pause(control, wait, false).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            outages.succeeded(config);
            if let Some(every) = config.every {
                if since_drained > 0 {
                    tracing::info!(
                        "sync: {since_drained} pages synced to {}; nothing pending, next look in {}",
                        config.target,
                        outage::shown(every)
                    );
                    since_drained = 0;
                }
                control.wake.store(false, Ordering::Release);
                pause(control, every, true).await;
                continue;
            }
            let following = control.follow.load(Ordering::Acquire)
                && !control.upstream_done.load(Ordering::Acquire);
            if following {
                pause(control, Duration::from_millis(250), false).await;
                continue;
            }
            // The upstream may have queued pages between our look and its "done" flag:
            // one more look after it is set.
            if control.follow.load(Ordering::Acquire) && journal.status()?.pending_sync > 0 {
                continue;
            }
            break;
        };
        let (pages, watermark) = (batch.pages as u64, batch.last_seq);
        background.read_ahead(watermark, limits);
        let written = tokio::time::timeout(
            config.op_timeout,
            upsert::write(&mut live.conn, batch, journal_id, live.packet),
        )
        .await
        .map_err(|_| SyncError::timeout("writing a batch", config.op_timeout))
        .and_then(|r| r.map_err(|e| SyncError::mysql("writing a batch", e)));
        match written {
            Ok(()) => {
                live.watermark = watermark;
                outages.succeeded(config);
                summary.pages += pages;
                summary.batches += 1;
                since_drained += pages;
                control.synced.fetch_add(pages, Ordering::Relaxed);
                crate::metrics::metrics().pages_synced.inc_by(pages);
                control.batches.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "webspool::committed", watermark, "{pages} pages synced");
                background.clean_up(watermark, summary.pages).await?;
                control.watermark.store(watermark, Ordering::Release);
            }
            Err(e) if e.is_retryable() => {
                // The commit may or may not have happened: the next session reads the
                // watermark back from MySQL and goes on from there.
                background.drop_next().await;
                session = None;
                let wait = outages.failed(e, started, config, control)?;
                pause(control, wait, false).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(summary)
}

/// Records the recrawl checks the journal holds (pages found unchanged or gone) in
/// MySQL's `checked_at`, a statement per chunk, then forgets them locally. Returns how
/// many.
async fn write_checked(
    journal: &Arc<Journal>,
    conn: &mut Conn,
    config: &SyncConfig,
) -> Result<u64, SyncError> {
    const CHUNK: usize = 256;
    let mut written = 0;
    loop {
        let reader = journal.clone();
        let items = tokio::task::spawn_blocking(move || reader.checked_items(CHUNK))
            .await
            .map_err(|e| SyncError::Internal(format!("journal reader died: {e}")))??;
        if items.is_empty() {
            return Ok(written);
        }
        let checks: Vec<upsert::CheckRow> = items
            .iter()
            .map(|item| upsert::CheckRow {
                url_hash: url_hash(&item.url),
                at_ms: item.at_ms,
                gone: item.gone,
            })
            .collect();
        tokio::time::timeout(config.op_timeout, upsert::write_checks(conn, &checks))
            .await
            .map_err(|_| SyncError::timeout("recording checks", config.op_timeout))?
            .map_err(|e| SyncError::mysql("recording checks", e))?;
        written += items.len() as u64;
        let cleaner = journal.clone();
        tokio::task::spawn_blocking(move || cleaner.clear_checked(&items))
            .await
            .map_err(|e| SyncError::Internal(format!("journal cleanup died: {e}")))??;
    }
}

/// Sleeps for `d`, waking early when the stage is told to stop, or (`wakeable`) when a
/// request waits on it.
async fn pause(control: &SyncControl, d: Duration, wakeable: bool) {
    let until = Instant::now() + d;
    while Instant::now() < until
        && !control.stop.load(Ordering::Acquire)
        && !(wakeable && control.wake.load(Ordering::Acquire))
    {
        tokio::time::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        )
        .await;
    }
}

/// Opens a connection, migrates the schema, and reads this journal's watermark back.
async fn connect(
    journal: &Arc<Journal>,
    config: &SyncConfig,
    journal_id: &str,
    deadline: Duration,
) -> Result<Session, SyncError> {
    let step = async {
        let mut conn = Conn::new(config.target.opts().clone())
            .await
            .map_err(|e| SyncError::mysql("connecting", e))?;
        schema::migrate(&mut conn).await?;
        let watermark: Option<u64> = conn
            .exec_first(
                "SELECT watermark FROM webspool_sync_state WHERE journal_id = ?",
                (journal_id,),
            )
            .await
            .map_err(|e| SyncError::mysql("reading the watermark", e))?;
        let packet: Option<u64> = conn
            .query_first("SELECT @@max_allowed_packet")
            .await
            .map_err(|e| SyncError::mysql("reading max_allowed_packet", e))?;
        Ok::<_, SyncError>((
            conn,
            watermark.unwrap_or(0),
            packet.unwrap_or(16 << 20) as usize,
        ))
    };
    let (conn, watermark, packet) = tokio::time::timeout(deadline, step)
        .await
        .map_err(|_| SyncError::timeout("connecting", deadline))??;
    let cleanup = journal.clone();
    tokio::task::spawn_blocking(move || cleanup.complete_sync(watermark))
        .await
        .map_err(|e| SyncError::Internal(format!("journal cleanup died: {e}")))??;
    Ok(Session {
        conn,
        watermark,
        packet,
    })
}
