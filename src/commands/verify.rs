//! `verify`: checks a journal's records and bodies, here or in its holder.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use webspool::cli::VerifyArgs;
use webspool::holder::{self, Holder, Reply, Request, Serves};
use webspool::journal::{Journal, Problem, Repair, VerifyReport};

use super::held::{ask, here_or_held, open_to_write, unexpected};
use crate::{counted, pages};

/// Runs `verify`: exit 0 when clean, 1 when something is damaged (after a repair too:
/// the next `verify` tells whether it is clean now).
pub(crate) async fn run_verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
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
pub(super) async fn verify_in_holder(
    mut holder: Holder,
    dir: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
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
pub(super) fn print_verify_report(report: &VerifyReport, repair: Repair, json: bool) -> ExitCode {
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

pub(super) fn print_problem(problem: &Problem, json: bool) {
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
