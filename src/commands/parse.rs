//! `parse` and `reparse`: the parse stage over a journal.

use std::process::ExitCode;
use std::sync::Arc;

use webspool::cli::ParseArgs;
use webspool::holder::{self, Serves};
use webspool::journal::Journal;
use webspool::parse::stage::{self, Control, Mode};

use super::held::open_to_write;
use crate::{ending, finished, stop_on_interrupt};

/// Runs `parse` or `reparse` on threads of their own; Ctrl-C stops intake of new work.
pub(crate) async fn run_parse(args: ParseArgs, mode: Mode) -> anyhow::Result<ExitCode> {
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
