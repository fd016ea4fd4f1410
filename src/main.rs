//! The `webspool` binary: flags, logging, signals and exit codes around the library.

mod commands;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::CommandFactory;

use commands::{
    run_compact, run_crawl, run_export, run_import, run_parse, run_recover, run_recrawl, run_show,
    run_status, run_sync, run_verify,
};
use webspool::cli::{Cli, Command};
use webspool::journal::{DiskFull, JournalError};
use webspool::parse::stage::Mode;
use webspool::pipeline::CrawlError;
use webspool::sync::SyncError;

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
            Command::Export(args) => run_export(args).await,
            Command::Import(args) => run_import(args).await,
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

/// "1 body", "2 bodies".
fn counted(n: u64, one: &str, more: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { more })
}

/// "1 damaged page", "2 damaged pages".
fn pages(n: u64) -> String {
    format!("{n} damaged page{}", if n == 1 { "" } else { "s" })
}
