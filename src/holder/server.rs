//! The holder's side: while a command holds a journal, it answers other processes'
//! requests on the journal's socket.
//!
//! Every connection is checked first: its peer must run as this process's user (the
//! socket's mode already says so; the check holds even if the mode were changed). Each
//! connection runs as a task of its own; dropping [`Serving`] ends them all and removes
//! the socket file. A request never outlives the holder's command: one cut off by it
//! leaves nothing half done (sync passes commit per batch; the client, finding the
//! journal free, runs the rest itself).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::socket;
use base64::Engine;

use super::wire::{
    self, Greeting, Reply, Request, SyncOutcome, SyncRequest, BODY_CHUNK, HEARTBEAT,
};
use crate::journal::{now_ms, Journal, JournalError, Problem};
use crate::sync::{SyncConfig, SyncControl, Turn};

/// Longest wait for a client's request after the greeting, and for a client to take a
/// reply: a client that does not read is dropped, never waited for.
const CLIENT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// What the holder lets other processes do beside its own command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// `status`, `show`, `verify` and `sync` passes: beside commands that only add to the
    /// journal (`crawl`, `recrawl`, `parse`, `reparse`, `sync`, `verify`).
    All,
    /// `status`, `show` and `verify` only: beside `compact` and `verify --repair`, which move or
    /// remove what a sync pass reads.
    Readers,
}

/// The socket being served; dropping it stops serving and removes the socket file.
pub struct Serving {
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Holder {
    journal: Arc<Journal>,
    serves: Serves,
    turn: Arc<Turn>,
    greeting: Greeting,
}

/// Serves the journal's socket for as long as the result is kept. `turn`: the sync
/// turn of the command's own passes, if it syncs, so that passes run for others wait
/// for them or join them. A socket that cannot be made (a read-only directory, a path
/// too long for a socket address without `/proc`) is logged and not served: the
/// command goes on, and others are told the journal is in use, as before sockets.
pub fn serve(journal: Arc<Journal>, serves: Serves, turn: Arc<Turn>) -> Option<Serving> {
    let dir = journal.path().to_path_buf();
    let listener = match socket::bind(&dir) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(
                "cannot make the socket {} ({e}): other webspool commands will find this \
                 journal in use instead of asking this process",
                socket::socket_path(&dir).display()
            );
            return None;
        }
    };
    let holder = Arc::new(Holder {
        journal,
        serves,
        turn,
        greeting: Greeting {
            protocol: wire::PROTOCOL,
            pid: std::process::id(),
            command: super::shown_command_line(std::env::args_os()),
        },
    });
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("holder socket: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            while connections.try_join_next().is_some() {}
            let ours = stream
                .peer_cred()
                .is_ok_and(|peer| peer.uid() == socket::our_uid());
            if ours {
                connections.spawn(answer(holder.clone(), stream));
            }
        }
    });
    Some(Serving {
        task,
        path: socket::socket_path(&dir),
    })
}

/// One connection: the greeting, then at most one request.
async fn answer(holder: Arc<Holder>, stream: UnixStream) {
    let (mut input, output) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Reply>(64);
    let writer = tokio::spawn(write_replies(output, holder.greeting.clone(), rx));
    let request = tokio::time::timeout(CLIENT_DEADLINE, wire::read_frame(&mut input)).await;
    if let Ok(Ok(Some(request))) = request {
        // Progress of the request: pages synced, or read by verify.
        let control = Arc::new(SyncControl::default());
        let mut work = std::pin::pin!(run(&holder, request, tx.clone(), control.clone()));
        let mut gone = std::pin::pin!(async {
            let mut rest = [0u8; 1];
            let _ = tokio::io::AsyncReadExt::read(&mut input, &mut rest).await;
        });
        let mut stopped = false;
        let mut beat = tokio::time::interval(HEARTBEAT);
        let reply = loop {
            tokio::select! {
                reply = &mut work => break reply,
                // A client that went away stops its sync pass after the batch in
                // progress.
                () = &mut gone, if !stopped => {
                    control.stop.store(true, Ordering::Release);
                    stopped = true;
                }
                _ = beat.tick() => {
                    let _ = tx.try_send(Reply::Progress(control.synced.load(Ordering::Relaxed)));
                }
            }
        };
        let _ = tx.send(reply).await;
    }
    // Without a request: the client only asked who holds the journal.
    drop(tx);
    let _ = writer.await;
}

/// Sends the greeting, then each reply, each within the client deadline.
async fn write_replies(
    mut output: tokio::net::unix::OwnedWriteHalf,
    greeting: Greeting,
    mut replies: mpsc::Receiver<Reply>,
) {
    async fn send<T: serde::Serialize>(
        output: &mut tokio::net::unix::OwnedWriteHalf,
        frame: &T,
    ) -> bool {
        let written = tokio::time::timeout(CLIENT_DEADLINE, wire::write_frame(output, frame));
        matches!(written.await, Ok(Ok(())))
    }
    if !send(&mut output, &greeting).await {
        return;
    }
    while let Some(reply) = replies.recv().await {
        if !send(&mut output, &reply).await {
            return;
        }
    }
}

/// Runs one request; its final reply.
async fn run(
    holder: &Holder,
    request: Request,
    tx: mpsc::Sender<Reply>,
    control: Arc<SyncControl>,
) -> Reply {
    match request {
        Request::Status => {
            let journal = holder.journal.clone();
            blocking(move || Ok(Reply::Status(Box::new(journal.full_status(now_ms())?)))).await
        }
        Request::Verify => {
            let journal = holder.journal.clone();
            blocking(move || {
                let report = journal.verify_in_use(
                    |problem: &Problem| {
                        let _ = tx.blocking_send(Reply::Problem(problem.clone()));
                    },
                    |pages| control.synced.store(pages, Ordering::Relaxed),
                )?;
                Ok(Reply::Verified(report))
            })
            .await
        }
        Request::Sync(_) if holder.serves == Serves::Readers => Reply::Refused(format!(
            "it runs `{}`, which moves what a sync pass reads: sync when it has finished",
            holder.greeting.command
        )),
        Request::Sync(request) => sync(holder, request, control).await,
        Request::Show { url, body, version } => {
            let journal = holder.journal.clone();
            blocking(move || {
                if !body {
                    return Ok(Reply::Shown(Box::new(journal.show(&url)?)));
                }
                let body = journal.show_body(&url, version)?;
                for chunk in body.chunks(BODY_CHUNK) {
                    let chunk = base64::engine::general_purpose::STANDARD.encode(chunk);
                    if tx.blocking_send(Reply::Body(chunk)).is_err() {
                        break;
                    }
                }
                Ok(Reply::BodyEnd)
            })
            .await
        }
        Request::Export(request) => {
            let journal = holder.journal.clone();
            match tokio::task::spawn_blocking(move || {
                let mut lines = Lines {
                    tx,
                    pending: Vec::new(),
                };
                let report = crate::warc::export(&journal, &request, &mut lines);
                report.and_then(|report| {
                    std::io::Write::flush(&mut lines)?;
                    Ok(report)
                })
            })
            .await
            {
                Ok(Ok(report)) => Reply::Exported(report),
                Ok(Err(e)) => failed(false, e),
                Err(e) => Reply::Failed {
                    message: format!("the holder's task died: {e}"),
                    disk_full: false,
                },
            }
        }
    }
}

/// `export --jsonl -` run here: the lines go to the client in frames of at most
/// [`LINES_FRAME`] bytes, as fast as it reads them (the channel is bounded).
struct Lines {
    tx: mpsc::Sender<Reply>,
    pending: Vec<u8>,
}

/// Bytes of JSON lines per frame, at most (a long line spans frames).
const LINES_FRAME: usize = 256 << 10;

impl Lines {
    /// Sends whole frames; with `all`, what is left too.
    fn send(&mut self, all: bool) -> std::io::Result<()> {
        while self.pending.len() >= LINES_FRAME || (all && !self.pending.is_empty()) {
            let cut = self.pending.len().min(LINES_FRAME);
            // A frame is text: cut where a character ends.
            let valid = match std::str::from_utf8(&self.pending[..cut]) {
                Ok(text) => text.len(),
                Err(e) => e.valid_up_to(),
            };
            if valid == 0 {
                return Err(std::io::Error::other("JSON lines that are not UTF-8"));
            }
            let text = String::from_utf8(self.pending.drain(..valid).collect())
                .map_err(std::io::Error::other)?;
            self.tx
                .blocking_send(Reply::Lines(text))
                .map_err(|_| std::io::Error::other("the client went away"))?;
        }
        Ok(())
    }
}

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.send(false)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send(true)
    }
}

/// A sync pass for a client: its own, or the one under way in this process.
async fn sync(holder: &Holder, request: SyncRequest, control: Arc<SyncControl>) -> Reply {
    let config = SyncConfig {
        target: request.target,
        every: None,
        bodies: request.bodies,
        batch_rows: request.batch_rows,
        batch_bytes: request.batch_bytes,
        op_timeout: request.op_timeout,
        give_up_after: request.give_up_after,
        min_free: request.min_free,
        turn: holder.turn.clone(),
    };
    let journal = holder.journal.clone();
    let summary = match crate::sync::run_or_join(journal.clone(), &config, control).await {
        Ok(summary) => summary,
        Err(e) => return failed(e.is_disk_full(), e),
    };
    let pending = match journal.status() {
        Ok(status) => status.pending_sync,
        Err(e) => return failed(e.is_disk_full(), e),
    };
    Reply::Synced(SyncOutcome {
        pages: summary.pages,
        batches: summary.batches,
        elapsed: summary.elapsed,
        interrupted: summary.interrupted,
        disk_full: summary.disk_full.map(|full| full.to_string()),
        pending,
    })
}

/// Runs journal work on the blocking pool; its reply, or the error as one.
async fn blocking(work: impl FnOnce() -> Result<Reply, JournalError> + Send + 'static) -> Reply {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => failed(e.is_disk_full(), e),
        Err(e) => Reply::Failed {
            message: format!("the holder's task died: {e}"),
            disk_full: false,
        },
    }
}

/// The reply for a request that failed with `e`, in the words the command prints
/// (`error: {e:#}`, the whole chain).
fn failed(disk_full: bool, e: impl Into<anyhow::Error>) -> Reply {
    Reply::Failed {
        message: format!("{:#}", e.into()),
        disk_full,
    }
}
