//! A journal another webspool process holds: open it here, or ask its holder.

use std::path::Path;
use std::process::ExitCode;

use webspool::holder::{Holder, HolderError, Reply, Request};
use webspool::journal::{Journal, JournalError};

use crate::{disk_full_advice, EXIT_INTERRUPTED};

/// A journal opened here, or the process that holds it.
pub(super) enum Opened {
    Here(Box<Journal>),
    Held(Holder),
}

/// For a command the holder can run for us (`status`, `verify`, `show`, `export`, a
/// one-shot `sync`): the process holding the journal in `dir` if one does and answers,
/// else the journal opened here (`open`). A holder may be between opening the journal and listening: the journal
/// found in use with nobody listening is tried again for a few seconds.
pub(super) async fn open_or_ask(
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
pub(super) async fn here_or_held<F, Fut>(
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
pub(super) async fn open_to_write(
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
pub(super) async fn held_by(dir: &Path, what: &str, in_use: JournalError) -> anyhow::Error {
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
pub(super) async fn ask(
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
pub(super) fn gone(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<HolderError>(),
        Some(HolderError::Gone { .. })
    )
}

/// A reply the request does not expect: a holder of another build.
pub(super) fn unexpected(holder: &Holder, reply: &Reply) -> anyhow::Error {
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
            Reply::Lines(_) => "JSON lines",
            Reply::Exported(_) => "an export report",
        }
    )
}
