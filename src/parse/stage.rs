//! The parse stage: annotates journaled pages on worker threads (all cores), commits the
//! annotations in order, and is resumable after kill -9.
//!
//! A reader (the calling thread) cuts the work into chunks of pages, workers decompress
//! and annotate a chunk each, and a committer records chunks in the order they were cut,
//! one transaction and one flush per chunk. What a crash costs is the chunks in flight:
//!
//! - `parse` takes its work from `pending_parse`; a page leaves it only in the
//!   transaction that stores its annotation, so unfinished pages are simply parsed again.
//! - `reparse` walks every stored response in id order. Its position is saved with each
//!   chunk (`ReparseState`), so a killed reparse resumes after the last committed chunk,
//!   as long as the parser version and the rules are the same; otherwise it starts over.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{annotate_with_hints, Annotation, Rules, RulesChoice, PARSER_VERSION};
use crate::journal::Hint;
use crate::journal::ReparseState;
use crate::journal::{
    decompress_body_into, Budget, DiskFull, Journal, JournalError, MinFree, ParseInput,
};
use crate::parse::follow::Follow;
use crate::progress::{per_sec, ProgressMode, Reporter, View};

/// Pages per chunk, at most.
const CHUNK_PAGES: usize = 64;
/// Compressed body bytes per chunk, at most.
const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Which pages to annotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Pages fetched but not parsed yet.
    Pending,
    /// Every stored page, again.
    Reparse,
}

#[derive(Clone, Debug)]
pub struct ParseConfig {
    /// Given, kept in the journal, or none: resolved when the stage starts.
    pub rules: RulesChoice,
    pub threads: usize,
    pub progress: ProgressMode,
    /// Link following (`crawl --follow`, `--sitemap`): discovered URLs are added to the
    /// frontier with the annotations that found them.
    pub follow: Option<Arc<Follow>>,
    /// Stop taking new work once less than this is free under the journal
    /// (`--min-free`; 0: never).
    pub min_free: u64,
}

/// Shared flags between the parse stage and whoever runs it.
#[derive(Debug, Default)]
pub struct Control {
    /// Stop taking new work; finish and commit what is in flight.
    pub stop: AtomicBool,
    /// When set, [`Mode::Pending`] keeps waiting for new pages until `fetch_done`.
    pub follow: AtomicBool,
    /// The fetch stage has finished: no new pages will come.
    pub fetch_done: AtomicBool,
    /// Pages annotated (durably) so far in this run.
    pub parsed: AtomicU64,
    /// URLs link following added to the frontier (durably) in this run.
    pub discovered: AtomicU64,
}

#[derive(Debug, Default)]
pub struct ParseSummary {
    pub parsed: u64,
    pub changed: u64,
    /// Pages whose annotation records a parse error.
    pub with_errors: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Stopped by `Control::stop`, or below `--min-free`, before the work was done.
    pub interrupted: bool,
    /// Stopped because less than `--min-free` was free under the journal.
    pub disk_full: Option<DiskFull>,
}

/// How the reader ended.
enum ReadEnd {
    /// All the work was cut into chunks.
    Done,
    /// Told to stop, or the committer failed.
    Stopped,
    /// Below `--min-free`.
    DiskFull(DiskFull),
}

struct Chunk {
    seq: u64,
    last_id: u64,
    pages: Vec<ParseInput>,
}

struct Done {
    seq: u64,
    last_id: u64,
    results: Vec<(u64, Annotation)>,
    /// The sitemaps' recrawl hints.
    hints: Vec<Hint>,
    /// Pages whose body did not decompress, and why.
    damaged: Vec<(u64, String)>,
    bytes: u64,
}

/// Runs the parse stage until its work is done or `control.stop` is set.
pub fn run(
    journal: &Arc<Journal>,
    config: &ParseConfig,
    mode: Mode,
    control: &Arc<Control>,
) -> Result<ParseSummary, JournalError> {
    let started = Instant::now();
    let threads = config.threads.max(1);
    let rules = config.rules.apply(journal, mode == Mode::Reparse)?;
    let status = journal.status()?;
    let total = Arc::new(AtomicU64::new(match mode {
        Mode::Pending => status.pending_parse,
        Mode::Reparse => status.fetched,
    }));
    let reporter = {
        let (control, total) = (control.clone(), total.clone());
        let label = if mode == Mode::Pending {
            "parse"
        } else {
            "reparse"
        };
        Reporter::start(config.progress, label, move || {
            let parsed = control.parsed.load(Ordering::Relaxed);
            View {
                done: parsed,
                total: total.load(Ordering::Relaxed).max(parsed),
                message: format!("{:.0} pages/s", per_sec(parsed, started)),
            }
        })
    };

    let (work_tx, work_rx) = sync_channel::<Chunk>(threads);
    let (done_tx, done_rx) = sync_channel::<Done>(threads * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let mut workers = Vec::with_capacity(threads);
    for i in 0..threads {
        let (rx, tx, rules) = (work_rx.clone(), done_tx.clone(), rules.clone());
        let worker = std::thread::Builder::new()
            .name(format!("webspool-parse-{i}"))
            .spawn(move || work(&rx, &tx, &rules))
            .map_err(|e| JournalError::Encode(format!("cannot start a parse thread: {e}")))?;
        workers.push(worker);
    }
    drop(done_tx);

    let reparse_from = match mode {
        Mode::Reparse => resume_point(journal, &rules)?,
        Mode::Pending => None,
    };
    // Chunks committed so far; u64::MAX once the committer has stopped.
    let committed = Arc::new(AtomicU64::new(0));
    let committer = {
        let (journal, control, rules_hash) = (journal.clone(), control.clone(), rules.hash());
        let committed = committed.clone();
        let follow = config.follow.clone();
        std::thread::Builder::new()
            .name("webspool-parse-commit".into())
            .spawn(move || {
                let follow = follow.as_deref();
                let how = Commit {
                    mode,
                    rules_hash,
                    follow,
                };
                let result = commit(&journal, done_rx, &how, &control, &committed);
                committed.store(u64::MAX, Ordering::Release);
                result
            })
            .map_err(|e| JournalError::Encode(format!("cannot start the parse committer: {e}")))?
    };

    let read = read(
        journal,
        Reader {
            mode,
            cursor: reparse_from,
            space: MinFree::new(journal.path(), config.min_free),
        },
        control,
        &work_tx,
        &total,
        &committed,
    );
    drop(work_tx);
    for worker in workers {
        let _ = worker.join();
    }
    let committed = committer
        .join()
        .map_err(|_| JournalError::Encode("the parse committer panicked".into()))?;
    drop(reporter);
    let read = read?;
    let mut summary = committed?;
    if mode == Mode::Reparse && matches!(read, ReadEnd::Done) {
        journal.finish_reparse()?;
        journal.flush_blocking()?;
    }
    summary.elapsed = started.elapsed();
    summary.interrupted = !matches!(read, ReadEnd::Done);
    if let ReadEnd::DiskFull(full) = read {
        summary.disk_full = Some(full);
    }
    Ok(summary)
}

/// Where a reparse with these rules starts: after the last chunk of an interrupted pass
/// with the same parser and rules, else from the beginning.
fn resume_point(journal: &Journal, rules: &Rules) -> Result<Option<u64>, JournalError> {
    Ok(journal.reparse_state()?.and_then(|s| {
        (s.parser_version == PARSER_VERSION && s.rules_hash == rules.hash())
            .then_some(s.done_through)
    }))
}

/// What the reader reads, and where it stops.
struct Reader {
    mode: Mode,
    /// The last id already cut (a reparse resumed), if any.
    cursor: Option<u64>,
    space: MinFree,
}

/// Cuts the work into chunks, checking the free space before each; says why it ended.
fn read(
    journal: &Journal,
    reader: Reader,
    control: &Control,
    work_tx: &SyncSender<Chunk>,
    total: &AtomicU64,
    committed: &AtomicU64,
) -> Result<ReadEnd, JournalError> {
    let Reader {
        mode,
        mut cursor,
        space,
    } = reader;
    let mut seq = 0;
    let mut found_in_pass = false;
    loop {
        if control.stop.load(Ordering::Acquire) {
            return Ok(ReadEnd::Stopped);
        }
        match space.check() {
            Ok(()) => {}
            Err(JournalError::DiskFull(full)) => {
                tracing::warn!("stopping: {full}; committing pages in progress");
                return Ok(ReadEnd::DiskFull(full));
            }
            Err(e) => return Err(e),
        }
        let ids = match mode {
            Mode::Pending => journal.pending_parse_after(cursor, CHUNK_PAGES)?,
            Mode::Reparse => journal.parseable_after(cursor, CHUNK_PAGES)?,
        };
        if ids.is_empty() {
            if mode == Mode::Reparse {
                return Ok(ReadEnd::Done);
            }
            // End of a pass over pending_parse. Pages committed while we read may have
            // landed behind the cursor, so pass again until a pass finds nothing, and in
            // follow mode until fetching is over too.
            let fetch_over = !control.follow.load(Ordering::Acquire)
                || control.fetch_done.load(Ordering::Acquire);
            if !found_in_pass && fetch_over {
                return Ok(ReadEnd::Done);
            }
            if !found_in_pass {
                std::thread::sleep(Duration::from_millis(100));
            } else {
                // Let the chunks in flight commit before the next pass reads them again.
                while committed.load(Ordering::Acquire) < seq {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            cursor = None;
            found_in_pass = false;
            total.store(
                control.parsed.load(Ordering::Relaxed) + journal.status()?.pending_parse,
                Ordering::Relaxed,
            );
            continue;
        }
        found_in_pass = true;
        let mut pages = Vec::with_capacity(ids.len());
        let mut bytes = 0;
        for id in ids {
            cursor = Some(id);
            let input = match journal.parse_input(id) {
                Ok(Some(input)) => input,
                Ok(None) => {
                    return Err(JournalError::Damaged {
                        what: format!("id {id} is pending parse but has no page record"),
                    })
                }
                Err(JournalError::PageDamaged { page, what }) => {
                    skip_damaged(journal, id, &page, &what)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            bytes += input.compressed_body.len();
            pages.push(input);
            if bytes >= CHUNK_BYTES {
                break;
            }
        }
        let last_id = cursor.unwrap_or(0);
        if work_tx
            .send(Chunk {
                seq,
                last_id,
                pages,
            })
            .is_err()
        {
            return Ok(ReadEnd::Stopped); // the workers are gone: the committer failed
        }
        seq += 1;
    }
}

/// A worker: annotates whole chunks until the work channel closes.
fn work(rx: &Mutex<Receiver<Chunk>>, tx: &SyncSender<Done>, rules: &Rules) {
    loop {
        let chunk = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(chunk) = chunk else { return };
        let mut bytes = 0;
        // One buffer for the chunk's bodies, reused: no allocation of a page's size for
        // every page.
        let mut body = Vec::new();
        let mut results = Vec::with_capacity(chunk.pages.len());
        let mut hints = Vec::new();
        let mut damaged = Vec::new();
        for page in &chunk.pages {
            match decompress_body_into(page.id, &page.compressed_body, &mut body) {
                Ok(()) => {
                    bytes += body.len() as u64;
                    let (annotation, found) = annotate_with_hints(&page.meta, &body, rules);
                    results.push((page.id, annotation));
                    hints.extend(found);
                }
                Err(e) => damaged.push((page.id, e.to_string())),
            }
        }
        let done = Done {
            seq: chunk.seq,
            last_id: chunk.last_id,
            results,
            hints,
            damaged,
            bytes,
        };
        if tx.send(done).is_err() {
            return;
        }
    }
}

/// Records that a page is damaged and says so once: the stage goes on without it.
fn skip_damaged(journal: &Journal, id: u64, page: &str, what: &str) -> Result<(), JournalError> {
    tracing::warn!("page {page} is damaged, skipped (run `webspool verify`): {what}");
    journal.record_damage(id, what)
}

/// How the committer records chunks.
#[derive(Clone, Copy)]
struct Commit<'a> {
    mode: Mode,
    rules_hash: u64,
    follow: Option<&'a Follow>,
}

/// Records finished chunks in the order they were cut, one transaction and flush each,
/// with the URLs link following discovers on them.
fn commit(
    journal: &Journal,
    rx: Receiver<Done>,
    how: &Commit<'_>,
    control: &Control,
    committed: &AtomicU64,
) -> Result<ParseSummary, JournalError> {
    let Commit {
        mode,
        rules_hash,
        follow,
    } = *how;
    let mut summary = ParseSummary::default();
    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0;
    for done in rx {
        waiting.insert(done.seq, done);
        while let Some(done) = waiting.remove(&next) {
            let results = done.results;
            for (id, what) in &done.damaged {
                let page = match journal.url(*id) {
                    Ok(Some(entry)) => crate::urls::redact_text(&entry.url),
                    _ => format!("id {id}"),
                };
                skip_damaged(journal, *id, &page, what)?;
            }
            let reparse = (mode == Mode::Reparse).then_some(ReparseState {
                parser_version: PARSER_VERSION,
                rules_hash,
                done_through: done.last_id,
            });
            let mut discovered = Vec::new();
            if let Some(follow) = follow {
                for (id, annotation) in &results {
                    if let Some((_, entry)) = journal.page_with_url(*id)? {
                        discovered.extend(follow.discovered(&entry, annotation));
                    }
                }
            }
            let budget = follow.map_or(Budget::default(), |f| f.budget);
            let report =
                journal.record_annotations(&results, reparse, &discovered, budget, &done.hints)?;
            journal.flush_blocking()?;
            // Durable from here on: count.
            let n = results.len() as u64;
            summary.parsed += n;
            summary.changed += report.changed;
            summary.bytes += done.bytes;
            summary.with_errors += results.iter().filter(|(_, a)| a.error.is_some()).count() as u64;
            control.parsed.fetch_add(n, Ordering::Relaxed);
            crate::metrics::metrics().pages_parsed.inc_by(n);
            control
                .discovered
                .fetch_add(report.discovered, Ordering::Relaxed);
            tracing::debug!(target: "webspool::committed", through = done.last_id, "{n} pages annotated");
            next += 1;
            committed.store(next, Ordering::Release);
        }
    }
    Ok(summary)
}
