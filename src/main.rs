//! The `webspool` binary: flags, logging, signals and exit codes around the library.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::CommandFactory;
use tokio::sync::watch;

use webspool::cli::{
    progress_mode, Cli, Command, CompactArgs, CrawlArgs, ParseArgs, RecoverArgs, RecrawlArgs,
    ShowArgs, StatusArgs, SyncArgs, VerifyArgs,
};
use webspool::holder::{self, Holder, HolderError, Reply, Request, Serves, SyncRequest};
use webspool::journal::{
    CompactOptions, DiskFull, ErrorKind, Journal, JournalError, MinFree, Problem, Repair, Status,
    VerifyReport,
};
use webspool::parse::stage::{self, Control, Mode};
use webspool::pipeline::{crawl, CrawlConfig, CrawlError, CrawlSummary, Input};
use webspool::progress::{per_sec, Reporter, View};
use webspool::sync::{self, SyncControl, SyncError};

/// Exit code when Ctrl-C (or SIGTERM) stopped a crawl with work left.
const EXIT_INTERRUPTED: u8 = 130;
/// Exit code when the disk under the journal is full, or below `--min-free` (sysexits'
/// EX_TEMPFAIL: run the same command again once there is room).
const EXIT_DISK_FULL: u8 = 75;

/// jemalloc instead of the system allocator: the fetch tasks, parse workers and committers
/// allocate and free on many threads at once, where glibc's malloc either contends on a
/// few arenas or fragments across many. Measured in BENCHMARKS.md ("Allocator"): about
/// a quarter less wall time for crawl and reparse, at a few MB more resident memory.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let quiet = cli.command.quiet();
    // `--quiet` lowers the default to warnings; a filter set in WEBSPOOL_LOG is taken
    // as it is (as cargo's CARGO_LOG is, whatever -q says).
    let default_filter = if quiet {
        "webspool=warn"
    } else {
        "webspool=info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEBSPOOL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let journal = cli.command.journal().to_path_buf();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Crawl(args) => run_crawl(*args).await,
            Command::Recrawl(args) => run_recrawl(*args).await,
            Command::Parse(args) => run_parse(args, Mode::Pending).await,
            Command::Reparse(args) => run_parse(args, Mode::Reparse).await,
            Command::Sync(args) => run_sync(args).await,
            Command::Status(args) => run_status(args).await,
            Command::Show(args) => run_show(args).await,
            Command::Verify(args) => run_verify(args).await,
            Command::Recover(args) => run_recover(args).await,
            Command::Compact(args) => run_compact(args).await,
        }
    });
    // Intake may still be blocked on stdin after an interrupt: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) if is_disk_full(&e) => {
            eprintln!("error: {e:#}");
            disk_full_advice(&journal)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` says the disk under the journal is full, in whichever stage's words.
fn is_disk_full(e: &anyhow::Error) -> bool {
    e.downcast_ref::<JournalError>()
        .is_some_and(JournalError::is_disk_full)
        || e.downcast_ref::<CrawlError>()
            .is_some_and(CrawlError::is_disk_full)
        || e.downcast_ref::<SyncError>()
            .is_some_and(SyncError::is_disk_full)
}

/// Says what to do about a full disk, after its error; the exit code for it.
fn disk_full_advice(journal: &Path) -> ExitCode {
    eprintln!(
        "free some space under {}, or move the journal to a bigger disk (mv, or cp -a), \
         then run the same command again: everything reported done is kept",
        journal.display()
    );
    ExitCode::from(EXIT_DISK_FULL)
}

/// How a command that stopped early or finished exits: after a full disk, with its
/// error and advice.
fn finished(interrupted: bool, disk_full: Option<DiskFull>) -> ExitCode {
    match disk_full {
        Some(full) => {
            eprintln!("error: {full}");
            disk_full_advice(full.dir())
        }
        None if interrupted => ExitCode::from(EXIT_INTERRUPTED),
        None => ExitCode::SUCCESS,
    }
}

/// The first word of a command's summary.
fn ending(interrupted: bool, disk_full: &Option<DiskFull>) -> &'static str {
    match (disk_full, interrupted) {
        (Some(_), _) => "stopped (disk full)",
        (None, true) => "interrupted",
        (None, false) => "done",
    }
}

async fn run_crawl(args: CrawlArgs) -> anyhow::Result<ExitCode> {
    let config = match args.to_config() {
        Ok(config) => config,
        Err(e) if e.is_usage() => return Ok(usage_error("crawl", &e)),
        Err(e) => return Err(e.into()),
    };
    // Before the journal exists: a list that cannot be read leaves none behind.
    config.input.check()?;
    let metrics = args.run.metrics.bind().await?;
    let journal = Arc::new(open_to_write(&args.journal.journal, Journal::open, "a crawl").await?);
    let _serving = serve_run(&journal, &config);
    let _metrics = metrics.map(|listener| webspool::metrics::serve(listener, journal.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    on_interrupt("finishing pages in flight", move || {
        let _ = stop_tx.send(true);
    });
    let summary = crawl(journal.clone(), config, stop_rx).await?;
    journal.checkpoint()?;
    if !args.run.quiet || summary.interrupted {
        print_summary(&summary);
    }
    if let Some(e) = summary.sync_gave_up {
        return Err(e.into());
    }
    Ok(finished(summary.interrupted, summary.disk_full))
}

/// Serves the journal of a run that fetches to other processes; their sync passes take
/// turns with its sync stage (`--sync`).
fn serve_run(journal: &Arc<Journal>, config: &CrawlConfig) -> Option<holder::Serving> {
    let turn = config.sync.as_ref().map(|s| s.turn.clone());
    holder::serve(journal.clone(), Serves::All, turn.unwrap_or_default())
}

/// Runs `recrawl`: queues the pages that are due, fetches them as a crawl does, and with
/// `--every` does it again on that schedule until stopped.
async fn run_recrawl(args: RecrawlArgs) -> anyhow::Result<ExitCode> {
    let usage = |e: webspool::cli::ConfigError| usage_error("recrawl", &e);
    let config = match args.run.to_config(Input::None) {
        Ok(config) => config,
        Err(e) if e.is_usage() => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let metrics = args.run.metrics.bind().await?;
    let journal =
        Arc::new(open_to_write(&args.journal.journal, Journal::open_existing, "a recrawl").await?);
    let _serving = serve_run(&journal, &config);
    let _metrics = metrics.map(|listener| webspool::metrics::serve(listener, journal.clone()));
    let policy = match args.policy(journal.recrawl_policy()?) {
        Ok(policy) => policy,
        Err(e) => return Ok(usage(e)),
    };
    journal.set_recrawl_policy(policy)?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    on_interrupt("finishing pages in flight", move || {
        let _ = stop_tx.send(true);
    });
    let mut all = args.all;
    loop {
        let before = journal.status()?;
        let queued = journal.queue_due(webspool::journal::now_ms(), all)?;
        all = false;
        if queued > 0 || before.pending_fetch > 0 {
            let summary = crawl(journal.clone(), config.clone(), stop_rx.clone()).await?;
            journal.checkpoint()?;
            let s = &summary.status;
            if !args.run.quiet || summary.interrupted {
                eprintln!(
                    "recrawl: {queued} pages due; checked {}: {} unchanged, {} changed, {} gone",
                    s.checked - before.checked,
                    s.unchanged - before.unchanged,
                    s.changed - before.changed,
                    s.gone - before.gone,
                );
                print_summary(&summary);
            }
            if summary.interrupted {
                return Ok(finished(summary.interrupted, summary.disk_full));
            }
            match (summary.sync_gave_up, args.every) {
                (Some(e), None) => return Err(e.into()),
                // The next round syncs what this one could not.
                (Some(e), Some(_)) => tracing::warn!("{e}"),
                (None, _) => {}
            }
        } else if args.every.is_none() && !args.run.quiet {
            eprintln!("recrawl: no page is due");
        }
        let Some(every) = args.every else {
            return Ok(ExitCode::SUCCESS);
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop_rx.changed() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Runs `parse` or `reparse` on threads of their own; Ctrl-C stops intake of new work.
async fn run_parse(args: ParseArgs, mode: Mode) -> anyhow::Result<ExitCode> {
    let config = args.to_config()?;
    let quiet = args.quiet;
    let what = match mode {
        Mode::Pending => "a parse",
        Mode::Reparse => "a reparse",
    };
    let journal =
        Arc::new(open_to_write(&args.journal.journal, Journal::open_existing, what).await?);
    let _serving = holder::serve(journal.clone(), Serves::All, Default::default());
    let control = Arc::new(Control::default());
    stop_on_interrupt("committing pages in progress", control.clone(), |c| &c.stop);
    let summary = tokio::task::spawn_blocking(move || {
        let summary = stage::run(&journal, &config, mode, &control)?;
        journal.checkpoint()?;
        Ok::<_, anyhow::Error>(summary)
    })
    .await??;
    if quiet && !summary.interrupted {
        return Ok(finished(summary.interrupted, summary.disk_full));
    }
    let secs = summary.elapsed.as_secs_f64().max(0.001);
    eprintln!(
        "{}: {} pages annotated ({} changed, {} with parse errors) in {:.1}s ({:.0} pages/s, {:.1} MB/s)",
        ending(summary.interrupted, &summary.disk_full),
        summary.parsed,
        summary.changed,
        summary.with_errors,
        secs,
        summary.parsed as f64 / secs,
        summary.bytes as f64 / secs / 1e6,
    );
    Ok(finished(summary.interrupted, summary.disk_full))
}

/// Runs `sync`: drains the journal's queue into MySQL, once or on a schedule.
async fn run_sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config();
    let dir = &args.journal.journal;
    // A pass handed to the process holding the journal is counted there.
    let metrics = args.metrics.bind().await?;
    let journal = if config.every.is_some() {
        open_to_write(dir, Journal::open_existing, "a `sync --every`").await?
    } else {
        match here_or_held(dir, Journal::open_existing, |holder| {
            sync_in_holder(holder, &args)
        })
        .await?
        {
            Ok(journal) => journal,
            Err(code) => return Ok(code),
        }
    };
    let journal = Arc::new(journal);
    let _serving = holder::serve(journal.clone(), Serves::All, config.turn.clone());
    let _metrics = metrics.map(|listener| webspool::metrics::serve(listener, journal.clone()));
    let control = Arc::new(SyncControl::default());
    stop_on_interrupt("finishing the batch in progress", control.clone(), |c| {
        &c.stop
    });
    let reporter = sync_progress(args.quiet, &control, Some(&journal));
    let summary = sync::run(journal.clone(), &config, control).await?;
    journal.checkpoint()?;
    drop(reporter);
    if args.quiet && !summary.interrupted {
        return Ok(finished(summary.interrupted, summary.disk_full));
    }
    print_sync_summary(
        ending(summary.interrupted, &summary.disk_full),
        &summary,
        &config.target,
        journal.status()?.pending_sync,
    );
    Ok(finished(summary.interrupted, summary.disk_full))
}

/// The progress of a sync: pages synced of those synced and still pending in
/// `journal` (opened here), or of those synced so far (a pass the holder runs).
fn sync_progress(
    quiet: bool,
    control: &Arc<SyncControl>,
    journal: Option<&Arc<Journal>>,
) -> Reporter {
    let (control, started) = (control.clone(), std::time::Instant::now());
    let journal = journal.cloned();
    Reporter::start(progress_mode(quiet), "sync", move || {
        let synced = control.synced.load(std::sync::atomic::Ordering::Relaxed);
        let pending = journal
            .as_ref()
            .and_then(|journal| journal.status().ok())
            .map_or(0, |status| status.pending_sync);
        View {
            done: synced,
            total: synced + pending,
            message: format!("{:.0} pages/s", per_sec(synced, started)),
        }
    })
}

/// The line a sync prints when it ends.
fn print_sync_summary(
    ending: &str,
    summary: &sync::SyncSummary,
    target: &sync::Target,
    pending: u64,
) {
    let secs = summary.elapsed.as_secs_f64().max(0.001);
    eprintln!(
        "{ending}: {} pages synced to {target} in {} batches, {:.1}s ({:.0} pages/s); {pending} pending",
        summary.pages,
        summary.batches,
        secs,
        summary.pages as f64 / secs,
    );
}

/// A one-shot `sync` run by the process holding the journal, with this command's
/// settings: it prints what a local sync prints and exits as it would.
async fn sync_in_holder(mut holder: Holder, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config();
    let request = Request::Sync(SyncRequest {
        target: config.target.clone(),
        bodies: config.bodies,
        batch_rows: config.batch_rows,
        batch_bytes: config.batch_bytes,
        op_timeout: config.op_timeout,
        give_up_after: config.give_up_after,
        min_free: config.min_free,
    });
    let control = Arc::new(SyncControl::default());
    stop_on_interrupt(
        "the holder finishes the batch in progress",
        control.clone(),
        |c| &c.stop,
    );
    // What the holder has pending is not known here.
    let reporter = sync_progress(args.quiet, &control, None);
    let dir = &args.journal.journal;
    let reply = ask(&mut holder, dir, &request, &control.stop, |reply| {
        if let Reply::Progress(synced) = reply {
            control
                .synced
                .store(synced, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .await?;
    drop(reporter);
    let outcome = match reply {
        Ok(Reply::Synced(outcome)) => outcome,
        Ok(other) => return Err(unexpected(&holder, &other)),
        Err(code) => return Ok(code),
    };
    let summary = sync::SyncSummary {
        pages: outcome.pages,
        batches: outcome.batches,
        elapsed: outcome.elapsed,
        interrupted: outcome.interrupted,
        ..Default::default()
    };
    let ending = match (&outcome.disk_full, outcome.interrupted) {
        (Some(_), _) => "stopped (disk full)",
        (None, true) => "interrupted",
        (None, false) => "done",
    };
    if !args.quiet || outcome.interrupted {
        print_sync_summary(ending, &summary, &config.target, outcome.pending);
    }
    Ok(match outcome.disk_full {
        Some(full) => {
            eprintln!("error: {full}");
            disk_full_advice(dir)
        }
        None if outcome.interrupted => ExitCode::from(EXIT_INTERRUPTED),
        None => ExitCode::SUCCESS,
    })
}

/// A journal opened here, or the process that holds it.
enum Opened {
    Here(Box<Journal>),
    Held(Holder),
}

/// For a command the holder can run for us (`status`, `verify`, a one-shot `sync`):
/// the process holding the journal in `dir` if one does and answers, else the journal
/// opened here (`open`). A holder may be between opening the journal and listening: the journal
/// found in use with nobody listening is tried again for a few seconds.
async fn open_or_ask(
    dir: &Path,
    open: fn(&Path) -> Result<Journal, JournalError>,
) -> anyhow::Result<Opened> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(holder) = Holder::connect(dir).await? {
            return Ok(Opened::Held(holder));
        }
        match open(dir) {
            Err(JournalError::InUse { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return Ok(Opened::Here(Box::new(other?))),
        }
    }
}

/// For a command the holder can run for us: the journal opened here (`open`), or, when
/// a process holds it, the command run there by `held`, whose exit code is returned
/// instead. A holder that goes away before answering leaves the journal free (or to
/// the next holder): asked again, up to three times.
async fn here_or_held<F, Fut>(
    dir: &Path,
    open: fn(&Path) -> Result<Journal, JournalError>,
    mut held: F,
) -> anyhow::Result<Result<Journal, ExitCode>>
where
    F: FnMut(Holder) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let mut attempts = 0;
    loop {
        let holder = match open_or_ask(dir, open).await? {
            Opened::Here(journal) => return Ok(Ok(*journal)),
            Opened::Held(holder) => holder,
        };
        match held(holder).await {
            Err(e) if gone(&e) && attempts < 3 => attempts += 1,
            other => return other.map(Err),
        }
    }
}

/// Opens the journal for a command that writes to it (`open`: create it or not); a
/// journal held by another process is refused naming that process, which `what` would
/// conflict with.
async fn open_to_write(
    dir: &Path,
    open: fn(&Path) -> Result<Journal, JournalError>,
    what: &str,
) -> anyhow::Result<Journal> {
    match open(dir) {
        Err(e @ JournalError::InUse { .. }) => Err(held_by(dir, what, e).await),
        other => Ok(other?),
    }
}

/// The error for `what`, which would conflict with the process holding `dir`: names
/// it, or is `in_use` when no process answers on the journal's socket.
async fn held_by(dir: &Path, what: &str, in_use: JournalError) -> anyhow::Error {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match Holder::connect(dir).await {
            Ok(Some(holder)) => {
                return anyhow::anyhow!(
                    "journal {}: it is in use by webspool process {} ({}); {what} would \
                     conflict with it: wait until it ends, or stop it",
                    dir.display(),
                    holder.greeting.pid,
                    holder.greeting.command
                )
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                // Between opening the journal and listening, perhaps.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Ok(None) => return in_use.into(),
            Err(e) => return e.into(),
        }
    }
}

/// Sends `request` to `holder` and hands `each` every reply until the last, which it
/// returns. A failure or refusal is printed as the command prints its own errors and
/// becomes the exit code; so does `stop` (Ctrl-C), after which the holder finishes
/// what is in progress on its own.
async fn ask(
    holder: &mut Holder,
    dir: &Path,
    request: &Request,
    stop: &std::sync::atomic::AtomicBool,
    mut each: impl FnMut(Reply),
) -> anyhow::Result<Result<Reply, ExitCode>> {
    holder.send(request).await?;
    loop {
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(Err(ExitCode::from(EXIT_INTERRUPTED)));
        }
        match holder.next().await? {
            reply if !reply.is_final() => each(reply),
            Reply::Failed { message, disk_full } => {
                eprintln!("error: {message}");
                return Ok(Err(match disk_full {
                    true => disk_full_advice(dir),
                    false => ExitCode::FAILURE,
                }));
            }
            Reply::Refused(why) => {
                eprintln!(
                    "error: journal {}: it is in use by webspool process {}: {why}",
                    dir.display(),
                    holder.greeting.pid
                );
                return Ok(Err(ExitCode::FAILURE));
            }
            reply => return Ok(Ok(reply)),
        }
    }
}

/// Whether `e` is a holder that went away before answering.
fn gone(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<HolderError>(),
        Some(HolderError::Gone { .. })
    )
}

/// A reply the request does not expect: a holder of another build.
fn unexpected(holder: &Holder, reply: &Reply) -> anyhow::Error {
    anyhow::anyhow!(
        "webspool process {} answered out of turn ({})",
        holder.greeting.pid,
        match reply {
            Reply::Progress(_) => "progress",
            Reply::Problem(_) => "a problem",
            Reply::Status(_) => "a status",
            Reply::Verified(_) => "a verify report",
            Reply::Synced(_) => "a sync outcome",
            Reply::Failed { .. } => "a failure",
            Reply::Refused(_) => "a refusal",
            Reply::Shown(_) => "a page",
            Reply::Body(_) | Reply::BodyEnd => "a body",
        }
    )
}

/// Prints a bad flag value found after clap's own checks as clap prints its usage
/// errors, and returns clap's exit code for them (2).
fn usage_error(subcommand: &str, error: &dyn std::fmt::Display) -> ExitCode {
    let mut command = Cli::command();
    command.build();
    let mut command = command
        .find_subcommand(subcommand)
        .cloned()
        .unwrap_or(command);
    let error = command.error(clap::error::ErrorKind::ValueValidation, error);
    let _ = error.print();
    ExitCode::from(error.exit_code() as u8)
}

/// On the first Ctrl-C (or SIGTERM) logs `what` and calls `stop`; on the second, exits
/// at once, which is safe because nothing is reported done before it is durable. The
/// listeners are registered once, up front, so a second signal sent right after the
/// first is not lost.
fn on_interrupt(what: &'static str, stop: impl FnOnce() + Send + 'static) {
    tokio::spawn(async move {
        let mut signals = Signals::new();
        signals.recv().await;
        tracing::warn!(
            "stopping: {what} (press Ctrl-C again to exit now; everything reported done is kept)"
        );
        stop();
        signals.recv().await;
        std::process::exit(EXIT_INTERRUPTED.into());
    });
}

/// On the first Ctrl-C (see [`on_interrupt`]), logs `what` and sets the stop flag
/// `flag` finds in `owner`.
fn stop_on_interrupt<T: Send + Sync + 'static>(
    what: &'static str,
    owner: Arc<T>,
    flag: fn(&T) -> &std::sync::atomic::AtomicBool,
) {
    on_interrupt(what, move || {
        flag(&owner).store(true, std::sync::atomic::Ordering::Release)
    });
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = self.streams.as_mut() {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn print_summary(s: &CrawlSummary) {
    let secs = s.elapsed.as_secs_f64().max(0.001);
    let pages = s.fetched + s.failed;
    let found = match s.discovered {
        0 => String::new(),
        n => format!(
            "{} given, {n} found in sitemaps, feeds and links; ",
            s.added
        ),
    };
    eprintln!(
        "{}: {} new URLs ({found}{} duplicates, {} invalid lines); this run fetched {}, failed {}, parsed {}, synced {} in {:.1}s ({:.0} pages/s, {:.1} MB/s)",
        ending(s.interrupted, &s.disk_full),
        s.added + s.discovered,
        s.duplicates,
        s.invalid_lines,
        s.fetched,
        s.failed,
        s.parsed,
        s.synced,
        secs,
        pages as f64 / secs,
        s.bytes as f64 / secs / 1e6,
    );
    if s.blocked > 0 {
        eprintln!(
            "{} to private addresses skipped; --allow-private fetches them",
            counted(s.blocked, "link", "links")
        );
    }
    eprintln!(
        "journal: {} URLs, {} fetched, {} failed, {} pending",
        s.status.urls, s.status.fetched, s.status.failed, s.status.pending_fetch
    );
    if s.interrupted && s.disk_full.is_none() {
        eprintln!("run the same command again to resume");
    }
}

async fn run_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.journal.journal;
    let journal = match here_or_held(dir, Journal::open_to_read, |holder| {
        status_in_holder(holder, dir, args.json)
    })
    .await?
    {
        Ok(journal) => journal,
        Err(code) => return Ok(code),
    };
    let status = journal.full_status(webspool::journal::now_ms())?;
    print_status(dir, &status, args.json)
}

/// `status` answered by the process holding the journal.
async fn status_in_holder(mut holder: Holder, dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let never = std::sync::atomic::AtomicBool::new(false);
    match ask(&mut holder, dir, &Request::Status, &never, |_| {}).await? {
        Ok(Reply::Status(status)) => print_status(dir, &status, json),
        Ok(other) => Err(unexpected(&holder, &other)),
        Err(code) => Ok(code),
    }
}

fn print_status(dir: &Path, status: &Status, json: bool) -> anyhow::Result<ExitCode> {
    let text = if json {
        serde_json::to_string_pretty(status)? + "\n"
    } else {
        status_text(dir, status)
    };
    print_out(text.as_bytes())
}

/// Runs `show`: the page as JSON, or its body, from the journal or from the process
/// holding it. A URL the journal does not have is an error (exit 1).
async fn run_show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.journal.journal;
    let journal = match here_or_held(dir, Journal::open_to_read, |holder| {
        show_in_holder(holder, &args)
    })
    .await?
    {
        Ok(journal) => journal,
        Err(code) => return Ok(code),
    };
    if args.body {
        let body = journal.show_body(&args.url, args.version)?;
        return print_out(&body);
    }
    print_page(&journal.show(&args.url)?)
}

/// `show` answered by the process holding the journal; a body comes in chunks, each
/// written as it arrives.
async fn show_in_holder(mut holder: Holder, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    let request = Request::Show {
        url: args.url.clone(),
        body: args.body,
        version: args.version,
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    let mut written: std::io::Result<()> = Ok(());
    let dir = &args.journal.journal;
    let reply = ask(&mut holder, dir, &request, &never, |reply| {
        if let (Reply::Body(chunk), Ok(())) = (reply, &written) {
            written = base64::engine::general_purpose::STANDARD
                .decode(chunk)
                .map_err(std::io::Error::other)
                .and_then(|bytes| std::io::stdout().lock().write_all(&bytes));
        }
    })
    .await?;
    match reply {
        Ok(Reply::Shown(view)) => print_page(&view),
        Ok(Reply::BodyEnd) => match written.and_then(|()| std::io::stdout().flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(ExitCode::SUCCESS),
        },
        Ok(other) => Err(unexpected(&holder, &other)),
        Err(code) => Ok(code),
    }
}

fn print_page(view: &webspool::journal::PageView) -> anyhow::Result<ExitCode> {
    print_out((serde_json::to_string_pretty(view)? + "\n").as_bytes())
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not an error.
fn print_out(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// A rough "how long ago" for a timestamp in milliseconds since the epoch.
fn ago(at_ms: u64) -> String {
    let secs = webspool::journal::now_ms().saturating_sub(at_ms) / 1000;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

/// Runs `verify`: exit 0 when clean, 1 when something is damaged (after a repair too:
/// the next `verify` tells whether it is clean now).
async fn run_verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.journal.journal;
    let repair = match (args.repair, args.drop) {
        (false, _) => Repair::None,
        (true, false) => Repair::Refetch,
        (true, true) => Repair::Drop,
    };
    let json = args.json;
    let journal = if repair != Repair::None {
        open_to_write(dir, Journal::open_existing, "a `verify --repair`").await?
    } else {
        match here_or_held(dir, Journal::open_to_read, |holder| {
            verify_in_holder(holder, dir, json)
        })
        .await?
        {
            Ok(journal) => journal,
            Err(code) => return Ok(code),
        }
    };
    let journal = Arc::new(journal);
    let _serving = holder::serve(journal.clone(), Serves::Readers, Default::default());
    let report = tokio::task::spawn_blocking(move || {
        let mut last = std::time::Instant::now();
        let report = journal.verify(
            repair,
            |problem: &Problem| print_problem(problem, json),
            |pages| {
                if last.elapsed() >= std::time::Duration::from_secs(2) {
                    last = std::time::Instant::now();
                    eprintln!("verify: {pages} pages read");
                }
            },
        )?;
        if repair != Repair::None {
            journal.checkpoint()?;
        }
        Ok::<_, anyhow::Error>(report)
    })
    .await??;
    Ok(print_verify_report(&report, repair, json))
}

/// `verify` (without `--repair`) run by the process holding the journal: the problems,
/// progress and summary as a local `verify` prints them, and a line saying what could
/// not be compared while the journal is written to.
async fn verify_in_holder(mut holder: Holder, dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut last = std::time::Instant::now();
    let never = std::sync::atomic::AtomicBool::new(false);
    let reply = ask(
        &mut holder,
        dir,
        &Request::Verify,
        &never,
        |reply| match reply {
            Reply::Problem(problem) => print_problem(&problem, json),
            Reply::Progress(pages) if last.elapsed() >= std::time::Duration::from_secs(2) => {
                last = std::time::Instant::now();
                eprintln!("verify: {pages} pages read");
            }
            _ => {}
        },
    )
    .await?;
    let report = match reply {
        Ok(Reply::Verified(report)) => report,
        Ok(other) => return Err(unexpected(&holder, &other)),
        Err(code) => return Ok(code),
    };
    if !json {
        eprintln!(
            "verify: run by webspool process {} ({}), which holds the journal: counters, \
             the sync queue and the frontier were not compared, as they change while it runs",
            holder.greeting.pid, holder.greeting.command
        );
    }
    Ok(print_verify_report(&report, Repair::None, json))
}

/// What `verify` prints at its end, and its exit code.
fn print_verify_report(report: &VerifyReport, repair: Repair, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::json!({ "summary": report }));
    } else {
        eprintln!(
            "verify: {} pages, {} bodies ({} stored bytes) and {} segment entries read: {}",
            report.pages,
            report.bodies,
            report.body_bytes,
            report.entries,
            match report.problems {
                0 => "clean".to_string(),
                1 => "1 problem".to_string(),
                n => format!("{n} problems"),
            }
        );
        if report.unused_damaged_bytes > 0 {
            eprintln!(
                "verify: {} bytes of damaged segment entries that no page uses any more \
                 (nothing is lost)",
                report.unused_damaged_bytes
            );
        }
        if report.refetch > 0 {
            eprintln!(
                "repair: {} will be fetched again by the next `webspool crawl` of this \
                 journal",
                pages(report.refetch)
            );
        }
        if report.dropped > 0 {
            eprintln!("repair: {} dropped from the journal", pages(report.dropped));
        }
        if report.versions_dropped > 0 {
            eprintln!(
                "repair: {} dropped (an old version cannot be fetched again)",
                counted(
                    report.versions_dropped,
                    "damaged older version",
                    "damaged older versions"
                )
            );
        }
        if repair != Repair::None && report.problems > 0 {
            eprintln!("repair: counters recounted; run `webspool verify` again to check");
        }
    }
    if report.problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `recover`, then says what was found and what to run next.
async fn run_recover(args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let dir = args.journal.journal;
    let report = {
        let within = dir.clone();
        let recovered = tokio::task::spawn_blocking(move || {
            let mut last = std::time::Instant::now();
            webspool::journal::recover(&within, |pages| {
                if last.elapsed() >= std::time::Duration::from_secs(2) {
                    last = std::time::Instant::now();
                    eprintln!("recover: {pages} pages read");
                }
            })
        })
        .await?;
        match recovered {
            Err(e @ JournalError::InUse { .. }) => return Err(held_by(&dir, "a recovery", e).await),
            other => other?,
        }
    };
    let replaced = report
        .replaced
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if report.finished_interrupted {
        eprintln!(
            "recover: finished the interrupted recovery; the replaced files are in {replaced}"
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "recover: {} pages back as fetched (and {} older versions), {} to fetch again (their \
         bodies were damaged), {} damaged stretches skipped; the replaced files are in \
         {replaced}",
        report.pages, report.versions, report.refetch, report.damaged
    );
    if !report.bare_segments.is_empty() {
        eprintln!(
            "recover: {} segments were written before journal format 5 and describe no \
             page: their pages are not recovered",
            report.bare_segments.len()
        );
    }
    eprintln!(
        "recover: next, `webspool parse --journal {0}` (or `crawl` with the same list, \
         which also fetches what is pending), then `webspool sync --journal {0} ...`",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `compact`: exit 0 when every body moved, 1 when damaged pages were left where
/// they are (named as `verify` names them), 75 when it stopped at `--min-free`.
async fn run_compact(args: CompactArgs) -> anyhow::Result<ExitCode> {
    let journal = Arc::new(
        open_to_write(
            &args.journal.journal,
            Journal::open_existing,
            "a compaction",
        )
        .await?,
    );
    let _serving = holder::serve(journal.clone(), Serves::Readers, Default::default());
    let space = MinFree::new(journal.path(), args.min_free.min_free);
    let options = CompactOptions {
        keep_versions: args.keep_versions,
        drop_gone: args.drop_gone,
    };
    let started = std::time::Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        let mut last = std::time::Instant::now();
        let report = journal.compact(
            &options,
            &space,
            |problem: &Problem| print_problem(problem, false),
            |pages| {
                if last.elapsed() >= std::time::Duration::from_secs(2) {
                    last = std::time::Instant::now();
                    eprintln!("compact: {pages} pages read");
                }
            },
        )?;
        journal.checkpoint()?;
        Ok::<_, anyhow::Error>(report)
    })
    .await??;
    if report.nothing_to_reclaim {
        eprintln!(
            "compact: nothing to reclaim: every byte of the segments belongs to a page's \
             entry or a kept version's; disk bytes {}",
            report.disk_before
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "compact: {}{}{} moved ({} stored bytes, {} upgraded to self-describing entries), \
         {} dropped, {} dropped, {} deleted; disk bytes {} -> {} in {:.1}s",
        match report.disk_full {
            Some(_) => "stopped (disk full): ",
            None => "",
        },
        if report.resumed {
            "resumed an interrupted compaction; "
        } else {
            ""
        },
        counted(report.moved, "body", "bodies"),
        report.moved_bytes,
        report.upgraded,
        counted(report.versions_dropped, "older version", "older versions"),
        counted(report.gone_dropped, "gone page", "gone pages"),
        counted(report.retired, "old segment file", "old segment files"),
        report.disk_before,
        report.disk_after,
        started.elapsed().as_secs_f64(),
    );
    if report.disk_full.is_some() {
        return Ok(finished(false, report.disk_full));
    }
    if report.damaged == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "compact: {} left where they are ({} kept for them); run `webspool verify \
         --repair`, then `webspool compact` again",
        pages(report.damaged),
        counted(
            report.kept.len() as u64,
            "old segment file",
            "old segment files"
        ),
    );
    Ok(ExitCode::FAILURE)
}

/// "1 body", "2 bodies".
fn counted(n: u64, one: &str, more: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { more })
}

/// "1 damaged page", "2 damaged pages".
fn pages(n: u64) -> String {
    format!("{n} damaged page{}", if n == 1 { "" } else { "s" })
}

fn print_problem(problem: &Problem, json: bool) {
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(out, "{}", serde_json::json!({ "problem": problem }))
    } else {
        let page = match (&problem.url, problem.id) {
            (Some(url), _) => format!("{url}: "),
            (None, Some(id)) => format!("page id {id}: "),
            (None, None) => String::new(),
        };
        writeln!(out, "damaged: {page}{}", problem.what)
    };
}

/// The `status` text: one `label  value` line each, values in one column. The column is
/// as wide as the longest label any journal can show (error kinds included), so a new
/// kind of error never moves it.
fn status_text(path: &std::path::Path, s: &Status) -> String {
    let mut rows = vec![
        ("journal".to_string(), path.display().to_string()),
        ("urls".into(), s.urls.to_string()),
        ("pending fetch".into(), s.pending_fetch.to_string()),
        ("  retry later".into(), s.retry_waiting.to_string()),
        ("fetched".into(), s.fetched.to_string()),
        ("failed".into(), s.failed.to_string()),
    ];
    rows.extend(
        s.errors
            .iter()
            .map(|(kind, n)| (format!("  {kind}"), n.to_string())),
    );
    rows.extend([
        ("pending parse".into(), s.pending_parse.to_string()),
        ("parsed".into(), s.parsed.to_string()),
        ("pending sync".into(), s.pending_sync.to_string()),
    ]);
    if s.checked > 0 {
        rows.extend([
            ("checked".into(), s.checked.to_string()),
            ("  unchanged".into(), s.unchanged.to_string()),
            ("  changed".into(), s.changed.to_string()),
            ("  gone".into(), s.gone.to_string()),
        ]);
    }
    if s.versions > 0 {
        rows.push((
            "older versions".into(),
            format!("{} ({} stored bytes)", s.versions, s.version_bytes),
        ));
    }
    if let Some(due) = s.due {
        rows.push(("due for recrawl".into(), due.to_string()));
    }
    rows.push((
        "rules".into(),
        s.rules.as_ref().map_or_else(
            || "none".to_string(),
            |r| format!("{} ({})", r.file, r.hash),
        ),
    ));
    if s.damaged > 0 {
        rows.push((
            "damaged".into(),
            format!("{} (run `webspool verify`)", s.damaged),
        ));
    }
    rows.extend([
        (
            "last sync".into(),
            match &s.last_sync {
                Some(last) => format!("{} pages, {} ago", last.pages, ago(last.at_ms)),
                None => "never".to_string(),
            },
        ),
        ("raw bytes".into(), s.raw_bytes.to_string()),
        ("stored bodies".into(), s.stored_body_bytes.to_string()),
        ("disk bytes".into(), s.disk_bytes.to_string()),
    ]);
    let width = ErrorKind::ALL
        .iter()
        .map(|kind| format!("  {kind}"))
        .chain(rows.iter().map(|(label, _)| label.clone()))
        .map(|label| label.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    rows.iter()
        .map(|(label, value)| format!("{label:<width$}{value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `too_many_redirects` was printed against its count
    /// (`too_many_redirects1`), the label being wider than the column.
    #[test]
    fn status_text_separates_every_error_kind_from_its_count() {
        let status = Status {
            errors: ErrorKind::ALL
                .iter()
                .map(|kind| (kind.as_str().to_string(), 7))
                .collect(),
            ..Status::default()
        };
        let text = status_text(std::path::Path::new("j"), &status);
        for kind in ErrorKind::ALL {
            let line = text
                .lines()
                .find(|line| line.trim_start().starts_with(&format!("{kind} ")))
                .unwrap_or_else(|| panic!("no line for {kind} in\n{text}"));
            assert_eq!(
                line.split_whitespace().collect::<Vec<_>>(),
                [kind.as_str(), "7"]
            );
        }
        // Every value starts in one column, after at least two spaces: the column of
        // the journal's path, "j", on the first line.
        let column = text.lines().next().map_or(0, |line| line.len() - 1);
        for line in text.lines() {
            let (label, value) = line.split_at(column);
            assert!(label.ends_with("  ") && !value.starts_with(' '), "{line:?}");
        }
    }
}
