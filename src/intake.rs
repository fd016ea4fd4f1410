//! Intake: streams the crawl's input into the journal, on its own thread (a file or
//! stdin) or task (a MySQL query), in batches, never holding the whole input.
//!
//! The journal's `url_index` does the dedup, so memory does not grow with the input.
//! A line or row that is not a valid URL is reported with its position and skipped.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Value};
use tokio::sync::{oneshot, Notify};
use url::Url;

use crate::input::{Line, UrlLines};
use crate::journal::{Journal, NewUrl};
use crate::pipeline::CrawlError;
use crate::progress::Counts;
use crate::sync::Target;
use crate::urls::{normalize_given, redact_text, Userinfo};

/// URLs per intake transaction. Small: a sled transaction holds a lock that stops every
/// other reader and writer of the journal, so long ones would keep the scheduler and the
/// committer waiting while a long list is read in (1024 cost a crawl of 48,625 docs pages
/// about 10 % of its time and 30 MB of peak RSS).
const INTAKE_BATCH: usize = 64;
/// Deadline for connecting to the seed database and for each wait for rows.
const SEED_TIMEOUT: Duration = Duration::from_secs(120);

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

#[derive(Debug, Default)]
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
    pub notify: Arc<Notify>,
}

/// Adds URLs to the journal in batches and tells the scheduler.
struct Adder<'a> {
    journal: &'a Journal,
    signals: &'a Signals,
    batch: Vec<NewUrl>,
    report: IntakeReport,
}

impl Adder<'_> {
    /// Queues a URL the user gave, first granting its origin the user's headers and
    /// keeping the credentials written in it (see `journal::Grants`).
    fn push(
        &mut self,
        url: &Url,
        userinfo: Option<&Userinfo>,
        source_key: Option<String>,
    ) -> Result<(), CrawlError> {
        self.journal.grants().grant(url, userinfo)?;
        self.batch.push(NewUrl::given(url, source_key));
        if self.batch.len() >= INTAKE_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CrawlError> {
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
        tracing::warn!("{place}: skipped {text:?}: {reason}");
    }
}

/// Starts intake; the receiver gets its report when the input is exhausted.
pub fn spawn(
    journal: Arc<Journal>,
    input: Input,
    signals: Signals,
) -> Result<oneshot::Receiver<Result<IntakeReport, CrawlError>>, CrawlError> {
    let (tx, rx) = oneshot::channel();
    let finish = move |signals: Signals, result| {
        signals.done.store(true, Ordering::Release);
        signals.notify.notify_one();
        let _ = tx.send(result);
    };
    let (name, reader): (String, Box<dyn BufRead + Send>) = match input {
        Input::None => {
            finish(signals, Ok(IntakeReport::default()));
            return Ok(rx);
        }
        Input::Mysql { target, query } => {
            tokio::spawn(async move {
                let result = from_mysql(&journal, &target, &query, &signals).await;
                drop(journal);
                finish(signals, result);
            });
            return Ok(rx);
        }
        Input::Stdin => (
            "-".into(),
            Box::new(std::io::BufReader::new(std::io::stdin())),
        ),
        Input::File(path) => {
            let file = std::fs::File::open(&path).map_err(|source| CrawlError::Input {
                path: path.display().to_string(),
                source,
            })?;
            (
                path.display().to_string(),
                Box::new(std::io::BufReader::with_capacity(256 * 1024, file)),
            )
        }
    };
    std::thread::Builder::new()
        .name("webspool-intake".into())
        .spawn(move || {
            let result = from_lines(&journal, &name, reader, &signals);
            drop(journal);
            finish(signals, result);
        })
        .map_err(|e| CrawlError::Internal(format!("cannot start intake: {e}")))?;
    Ok(rx)
}

fn from_lines(
    journal: &Journal,
    name: &str,
    reader: Box<dyn BufRead + Send>,
    signals: &Signals,
) -> Result<IntakeReport, CrawlError> {
    let mut adder = Adder {
        journal,
        signals,
        batch: Vec::with_capacity(INTAKE_BATCH),
        report: IntakeReport::default(),
    };
    for line in UrlLines::new(reader) {
        if signals.stop.load(Ordering::Acquire) {
            break;
        }
        let line = line.map_err(|source| CrawlError::Input {
            path: name.to_string(),
            source,
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

async fn from_mysql(
    journal: &Journal,
    target: &Target,
    query: &str,
    signals: &Signals,
) -> Result<IntakeReport, CrawlError> {
    let seed_err = |what: &str, e: String| CrawlError::Seed(format!("{target}: {what}: {e}"));
    let mut conn = tokio::time::timeout(SEED_TIMEOUT, Conn::new(target.opts().clone()))
        .await
        .map_err(|_| seed_err("connecting", "no answer".into()))?
        .map_err(|e| seed_err("connecting", e.to_string()))?;
    let mut rows = tokio::time::timeout(SEED_TIMEOUT, conn.query_iter(query))
        .await
        .map_err(|_| seed_err("running the query", "no answer".into()))?
        .map_err(|e| seed_err("running the query", e.to_string()))?;
    let mut adder = Adder {
        journal,
        signals,
        batch: Vec::with_capacity(INTAKE_BATCH),
        report: IntakeReport::default(),
    };
    let mut n = 0u64;
    loop {
        if signals.stop.load(Ordering::Acquire) {
            break;
        }
        let row = tokio::time::timeout(SEED_TIMEOUT, rows.next())
            .await
            .map_err(|_| seed_err("reading rows", "no answer".into()))?
            .map_err(|e| seed_err("reading rows", e.to_string()))?;
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
