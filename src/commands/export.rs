//! `export`: a journal's pages as WARC or JSON lines, here or by the process holding
//! the journal.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use webspool::cli::ExportArgs;
use webspool::holder::{Holder, Reply, Request};
use webspool::journal::Journal;
use webspool::warc::{ExportReport, ExportRequest, ExportTo, WarcError};

use super::held::{ask, here_or_held, unexpected};
use crate::counted;

/// Runs `export`: here, or by the process holding the journal (which writes the files,
/// or sends the JSON lines for standard output back).
pub(crate) async fn run_export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.journal.journal;
    let absolute = |path: &Path| std::path::absolute(path);
    let to = match (&args.warc, &args.jsonl) {
        (Some(path), _) => ExportTo::Warc {
            path: absolute(path)?,
            max_size: args.max_size,
        },
        (None, Some(path)) => ExportTo::Jsonl {
            path: match path.as_os_str() == "-" {
                true => None,
                false => Some(absolute(path)?),
            },
            with_body: args.with_body,
        },
        (None, None) => anyhow::bail!("export: give --warc FILE or --jsonl FILE"),
    };
    let request = ExportRequest {
        to,
        since_ms: args.since,
        include: args.include.as_ref().map(|re| re.as_str().to_string()),
    };
    let journal = match here_or_held(dir, Journal::open_to_read, |holder| {
        export_in_holder(holder, dir, &request)
    })
    .await?
    {
        Ok(journal) => journal,
        Err(code) => return Ok(code),
    };
    let report = tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        webspool::warc::export(&journal, &request, &mut out)
    })
    .await?;
    match report {
        Ok(report) => Ok(print_export_report(&report)),
        Err(WarcError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

/// `export` run by the process holding the journal.
async fn export_in_holder(
    mut holder: Holder,
    dir: &Path,
    request: &ExportRequest,
) -> anyhow::Result<ExitCode> {
    let never = std::sync::atomic::AtomicBool::new(false);
    let mut stdout = std::io::stdout();
    let mut write_error = None;
    let request = Request::Export(request.clone());
    let reply = ask(&mut holder, dir, &request, &never, |reply| {
        if let (Reply::Lines(lines), None) = (reply, &write_error) {
            if let Err(e) = stdout.write_all(lines.as_bytes()) {
                write_error = Some(e);
            }
        }
    })
    .await?;
    match write_error {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Some(e) => return Err(e.into()),
        None => stdout.flush()?,
    }
    match reply {
        Ok(Reply::Exported(report)) => Ok(print_export_report(&report)),
        Ok(other) => Err(unexpected(&holder, &other)),
        Err(code) => Ok(code),
    }
}

fn print_export_report(report: &ExportReport) -> ExitCode {
    let files: Vec<String> = report
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    eprintln!(
        "export: {} written{}; {} failed (no response) skipped, {} left out by \
         --since/--include, {} damaged skipped",
        counted(report.pages, "page", "pages"),
        match files.is_empty() {
            true => String::new(),
            false => format!(" to {}", files.join(", ")),
        },
        report.failed,
        report.filtered,
        report.damaged,
    );
    match report.damaged {
        0 => ExitCode::SUCCESS,
        _ => {
            eprintln!("export: run `webspool verify` to see the damaged pages");
            ExitCode::FAILURE
        }
    }
}
