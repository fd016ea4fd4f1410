//! Intake: streams the crawl's input into the journal, on its own thread (a file or
//! stdin) or task (a MySQL query), in batches, never holding the whole input.
//!
//! The journal's `url_index` does the dedup, so memory does not grow with the input.
//! A line or row that is not a valid URL is reported with its position and skipped.
//!
//! Input can be slow to come (`tail -f log | webspool crawl --urls -`): before intake
//! waits for more, it journals the URLs it holds, so each one is fetched as soon as it
//! arrives and none is lost to an interrupt. While it waits it lets go of its `Gate`,
//! which is how the crawl, when interrupted, learns what intake added without waiting for
//! input that may never come (a read of stdin cannot be interrupted).

pub mod input;

use std::future::Future;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Value};
use tokio::sync::{oneshot, Mutex, MutexGuard, Notify};
use url::Url;

use crate::journal::{Journal, JournalError, NewUrl};
use crate::progress::Counts;
use crate::sync::Target;
use crate::urls::{normalize_given, redact_text, Userinfo};
use input::{Line, UrlLines};

/// URLs per intake transaction. Small: a sled transaction holds a lock that stops every
/// other reader and writer of the journal, so long ones would keep the scheduler and the
/// committer waiting while a long list is read in (1024 cost a crawl of 48,625 docs pages
/// about 10 % of its time and 30 MB of peak RSS).
const INTAKE_BATCH: usize = 64;
/// Deadline for connecting to the seed database and for each wait for rows.
const SEED_TIMEOUT: Duration = Duration::from_secs(120);
/// Read buffer for a URL list: a refill (and the journaling of what intake holds before
/// it, see [`from_lines`]) every 256 KiB of a file.
const READ_BUFFER: usize = 256 * 1024;

/// Why intake stopped; the crawl stops with it.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The I/O error is part of the message, not a `source`: the binary prints the
    /// chain of sources, which would say it twice.
    #[error("cannot read the URL list {path}: {error}")]
    Input { path: String, error: std::io::Error },
    #[error("seeding from MySQL, {0}")]
    Seed(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where the URLs of a crawl come from.
#[derive(Clone, Debug)]
pub enum Input {
    /// No list: the crawl starts from its `--sitemap` seeds only.
    None,
    Stdin,
    File(PathBuf),
    /// A query whose rows are (the caller's key, URL); the key is kept as `source_key`.
    Mysql {
        target: Target,
        query: String,
    },
}

impl Input {
    /// Checks that a URL list file can be opened for reading, so that a crawl given a
    /// missing or unreadable list fails before it creates a journal.
    pub fn check(&self) -> Result<(), IntakeError> {
        let Input::File(path) = self else {
            return Ok(());
        };
        let error = |error| IntakeError::Input {
            path: path.display().to_string(),
            error,
        };
        let file = std::fs::File::open(path).map_err(error)?;
        match file.metadata().map_err(error)?.is_dir() {
            true => Err(error(std::io::Error::other("it is a directory"))),
            false => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct IntakeReport {
    pub added: u64,
    pub duplicates: u64,
    pub invalid: u64,
}

/// What intake shares with the scheduler.
pub struct Signals {
    pub counts: Arc<Counts>,
    pub stop: Arc<AtomicBool>,
    pub done: Arc<AtomicBool>,
    /// Set with `done` when intake ended on an error (an unreadable or UTF-16 list, a
    /// seed query that failed): the crawl stops rather than fetch on without it.
    pub failed: Arc<AtomicBool>,
    pub notify: Arc<Notify>,
}

/// Adds URLs to the journal in batches and tells the scheduler.
struct Adder<'a> {
    journal: &'a Journal,
    signals: &'a Signals,
    batch: Vec<NewUrl>,
    report: IntakeReport,
}

impl<'a> Adder<'a> {
    fn new(journal: &'a Journal, signals: &'a Signals) -> Self {
        Adder {
            journal,
            signals,
            batch: Vec::with_capacity(INTAKE_BATCH),
            report: IntakeReport::default(),
        }
    }

    /// Queues a URL the user gave, first granting its origin the user's headers and
    /// keeping the credentials written in it (see `journal::Grants`).
    fn push(
        &mut self,
        url: &Url,
        userinfo: Option<&Userinfo>,
        source_key: Option<String>,
    ) -> Result<(), IntakeError> {
        self.journal.grants().grant(url, userinfo)?;
        self.batch.push(NewUrl::given(url, source_key));
        if self.batch.len() >= INTAKE_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IntakeError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let added = self.journal.add_urls(&self.batch)?;
        self.batch.clear();
        self.report.added += added.added;
        self.report.duplicates += added.duplicates;
        self.signals
            .counts
            .total
            .fetch_add(added.added, Ordering::Relaxed);
        self.signals.notify.notify_one();
        Ok(())
    }

    fn invalid(&mut self, place: &str, text: &str, reason: &str) {
        self.report.invalid += 1;
        // Quoted with control characters escaped, as a terminal must not run them.
        let shown = text.escape_debug().to_string().replace("\\'", "'");
        tracing::warn!("{place}: skipped \"{shown}\": {reason}");
    }
}

/// What intake shares with the crawl about an interrupt. Intake holds it while it takes
/// input and journals it, and lets go only while it waits for more input, holding no URL
/// that is not journaled. So once the crawl holds it, intake has ended or is waiting,
/// and what it added is final: the crawl closes it and intake takes nothing more.
#[derive(Default)]
struct Gate {
    /// What intake has added, as of its last wait for input.
    report: IntakeReport,
    closed: bool,
}

/// Intake's hold on the [`Gate`].
struct Hold<'a> {
    gate: &'a Mutex<Gate>,
    guard: Option<MutexGuard<'a, Gate>>,
}

impl<'a> Hold<'a> {
    fn new(gate: &'a Mutex<Gate>) -> Self {
        Hold { gate, guard: None }
    }

    /// Runs `read`, which may wait for input, with the gate let go and `report` (every
    /// URL in it journaled) left for the crawl to take if it stops meanwhile. `None` if
    /// the crawl has closed the gate: intake must take nothing more.
    fn waiting_blocking<T>(&mut self, report: IntakeReport, read: impl FnOnce() -> T) -> Option<T> {
        self.release(report);
        let got = read();
        self.take_blocking().then_some(got)
    }

    /// [`Hold::waiting_blocking`] in intake's task.
    async fn waiting<T>(
        &mut self,
        report: IntakeReport,
        read: impl Future<Output = T>,
    ) -> Option<T> {
        self.release(report);
        let got = read.await;
        self.take().await.then_some(got)
    }

    fn release(&mut self, report: IntakeReport) {
        if let Some(mut guard) = self.guard.take() {
            guard.report = report;
        }
    }

    /// Takes the gate (back) on intake's thread; false if the crawl has closed it.
    fn take_blocking(&mut self) -> bool {
        self.keep(self.gate.blocking_lock())
    }

    /// Takes the gate (back) in intake's task; false if the crawl has closed it.
    async fn take(&mut self) -> bool {
        let guard = self.gate.lock().await;
        self.keep(guard)
    }

    fn keep(&mut self, guard: MutexGuard<'a, Gate>) -> bool {
        let open = !guard.closed;
        self.guard = Some(guard);
        open
    }
}

/// A running intake.
pub struct Intake {
    result: oneshot::Receiver<Result<IntakeReport, IntakeError>>,
    gate: Arc<Mutex<Gate>>,
}

impl Intake {
    /// What intake added, once the input is exhausted. When the crawl was interrupted
    /// (`Signals::stop` is set), intake may be waiting for input: then what it has added
    /// is taken at once, and intake takes nothing more.
    pub async fn finish(self, interrupted: bool) -> Result<IntakeReport, IntakeError> {
        let died = || IntakeError::Internal("intake died".into());
        let mut result = self.result;
        if !interrupted {
            return result.await.map_err(|_| died())?;
        }
        let mut gate = self.gate.lock().await;
        gate.closed = true;
        // Intake sends its result before it lets go of the gate for good.
        match result.try_recv() {
            Ok(result) => result,
            Err(oneshot::error::TryRecvError::Empty) => Ok(gate.report),
            Err(oneshot::error::TryRecvError::Closed) => Err(died()),
        }
    }
}

/// Starts intake, which runs until the input is exhausted or `signals.stop` is set.
pub fn spawn(journal: Arc<Journal>, input: Input, signals: Signals) -> Result<Intake, IntakeError> {
    let (tx, rx) = oneshot::channel();
    let gate = Arc::new(Mutex::new(Gate::default()));
    let intake = Intake {
        result: rx,
        gate: gate.clone(),
    };
    let finish = move |signals: Signals, result: Result<IntakeReport, IntakeError>| {
        signals.failed.store(result.is_err(), Ordering::Release);
        signals.done.store(true, Ordering::Release);
        signals.notify.notify_one();
        let _ = tx.send(result);
    };
    let (name, reader): (String, Box<dyn Read + Send>) = match input {
        Input::None => {
            finish(signals, Ok(IntakeReport::default()));
            return Ok(intake);
        }
        Input::Mysql { target, query } => {
            tokio::spawn(async move {
                // Held until the result is sent, as `Intake::finish` expects.
                let mut hold = Hold::new(&gate);
                let result = from_mysql(&journal, &target, &query, &signals, &mut hold).await;
                drop(journal);
                finish(signals, result);
            });
            return Ok(intake);
        }
        Input::Stdin => ("-".into(), Box::new(std::io::stdin())),
        Input::File(path) => {
            let file = std::fs::File::open(&path).map_err(|error| IntakeError::Input {
                path: path.display().to_string(),
                error,
            })?;
            (path.display().to_string(), Box::new(file))
        }
    };
    let reader = BufReader::with_capacity(READ_BUFFER, reader);
    std::thread::Builder::new()
        .name("webspool-intake".into())
        .spawn(move || {
            // Held until the result is sent, as `Intake::finish` expects.
            let mut hold = Hold::new(&gate);
            let result = from_lines(&journal, &name, reader, &signals, &mut hold);
            drop(journal);
            finish(signals, result);
        })
        .map_err(|e| IntakeError::Internal(format!("cannot start intake: {e}")))?;
    Ok(intake)
}

/// Takes the lines of a URL list into the journal. Before a read that may wait (when no
/// URL line is buffered whole), it journals the URLs it holds; on a file that costs one
/// small transaction per buffer refill, and on stdin it makes each line count as it
/// arrives. Stopped, it takes the lines already buffered and reads no more.
fn from_lines(
    journal: &Journal,
    name: &str,
    reader: BufReader<Box<dyn Read + Send>>,
    signals: &Signals,
    hold: &mut Hold<'_>,
) -> Result<IntakeReport, IntakeError> {
    let mut adder = Adder::new(journal, signals);
    if !hold.take_blocking() {
        return Ok(adder.report);
    }
    let mut lines = UrlLines::new(reader);
    loop {
        let line = if lines.ready() {
            lines.next()
        } else {
            adder.flush()?;
            if signals.stop.load(Ordering::Acquire) {
                break;
            }
            match hold.waiting_blocking(adder.report, || lines.next()) {
                Some(line) => line,
                // The crawl is over and has counted what was journaled.
                None => return Ok(adder.report),
            }
        };
        let Some(line) = line else { break };
        let line = line.map_err(|error| IntakeError::Input {
            path: name.to_string(),
            error,
        })?;
        match line {
            Line::Url { url, userinfo, .. } => adder.push(&url, userinfo.as_ref(), None)?,
            Line::Invalid { line, text, reason } => {
                adder.invalid(&format!("{name}:{line}"), &text, &reason)
            }
        }
    }
    adder.flush()?;
    Ok(adder.report)
}

/// Polls `future` once: its output if it is ready without waiting.
async fn now<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}

/// A column value as text; NULL is `None`.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// Takes the rows of a query into the journal, journaling the URLs it holds whenever the
/// next row is not there yet, as [`from_lines`] does.
async fn from_mysql(
    journal: &Journal,
    target: &Target,
    query: &str,
    signals: &Signals,
    hold: &mut Hold<'_>,
) -> Result<IntakeReport, IntakeError> {
    let seed_err = |what: &str, e: String| IntakeError::Seed(format!("{target}: {what}: {e}"));
    let mut adder = Adder::new(journal, signals);
    // Nothing to journal yet: the crawl need not wait for the server.
    let connecting = tokio::time::timeout(SEED_TIMEOUT, Conn::new(target.opts().clone()));
    let Some(conn) = hold.waiting(adder.report, connecting).await else {
        return Ok(adder.report);
    };
    let mut conn = conn
        .map_err(|_| seed_err("connecting", "no answer".into()))?
        .map_err(|e| seed_err("connecting", crate::sync::mysql_message(&e)))?;
    let querying = tokio::time::timeout(SEED_TIMEOUT, conn.query_iter(query));
    let Some(rows) = hold.waiting(adder.report, querying).await else {
        return Ok(adder.report);
    };
    let mut rows = rows
        .map_err(|_| seed_err("running the query", "no answer".into()))?
        .map_err(|e| seed_err("running the query", crate::sync::mysql_message(&e)))?;
    let mut n = 0u64;
    loop {
        if signals.stop.load(Ordering::Acquire) {
            break;
        }
        let mut next = pin!(tokio::time::timeout(SEED_TIMEOUT, rows.next()));
        let row = match now(&mut next).await {
            Some(row) => row,
            None => {
                tokio::task::block_in_place(|| adder.flush())?;
                match hold.waiting(adder.report, next).await {
                    Some(row) => row,
                    None => return Ok(adder.report),
                }
            }
        };
        let row = row
            .map_err(|_| seed_err("reading rows", "no answer".into()))?
            .map_err(|e| seed_err("reading rows", crate::sync::mysql_message(&e)))?;
        let Some(row) = row else { break };
        n += 1;
        if row.len() < 2 {
            return Err(seed_err(
                "the query",
                format!("returns {} column(s); it must return (key, url)", row.len()),
            ));
        }
        let key = row.as_ref(0).and_then(value_text);
        let url = row.as_ref(1).and_then(value_text).unwrap_or_default();
        let place = format!("row {n} (key {})", key.as_deref().unwrap_or("NULL"));
        match normalize_given(url.trim()) {
            Ok((url, userinfo)) => {
                tokio::task::block_in_place(|| adder.push(&url, userinfo.as_ref(), key))?
            }
            Err(reason) => adder.invalid(&place, &redact_text(&url), &reason),
        }
    }
    tokio::task::block_in_place(|| adder.flush())?;
    Ok(adder.report)
}
