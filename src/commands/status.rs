//! `status`: what a journal holds, as text or JSON.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use webspool::cli::StatusArgs;
use webspool::holder::{Holder, Reply, Request};
use webspool::journal::{ErrorKind, Journal, Status};

use super::held::{ask, here_or_held, unexpected};

pub(crate) async fn run_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
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
pub(super) async fn status_in_holder(
    mut holder: Holder,
    dir: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let never = std::sync::atomic::AtomicBool::new(false);
    match ask(&mut holder, dir, &Request::Status, &never, |_| {}).await? {
        Ok(Reply::Status(status)) => print_status(dir, &status, json),
        Ok(other) => Err(unexpected(&holder, &other)),
        Err(code) => Ok(code),
    }
}

pub(super) fn print_status(dir: &Path, status: &Status, json: bool) -> anyhow::Result<ExitCode> {
    let text = if json {
        serde_json::to_string_pretty(status)? + "\n"
    } else {
        status_text(dir, status)
    };
    print_out(text.as_bytes())
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not an error.
pub(super) fn print_out(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// A rough "how long ago" for a timestamp in milliseconds since the epoch.
pub(super) fn ago(at_ms: u64) -> String {
    let secs = webspool::journal::now_ms().saturating_sub(at_ms) / 1000;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

/// The `status` text: one `label  value` line each, values in one column. The column is
/// as wide as the longest label any journal can show (error kinds included), so a new
/// kind of error never moves it.
pub(super) fn status_text(path: &std::path::Path, s: &Status) -> String {
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
    rows.extend([(
        "last sync".into(),
        match &s.last_sync {
            Some(last) => format!("{} pages, {} ago", last.pages, ago(last.at_ms)),
            None => "never".to_string(),
        },
    )]);
    rows.extend(s.proxies.iter().map(|p| {
        let last = p
            .last_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" (last: {e})"));
        let value = format!(
            "{} {} requests, {} errors{last}",
            p.proxy, p.requests, p.errors
        );
        ("proxy".to_string(), value)
    }));
    rows.extend([
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
