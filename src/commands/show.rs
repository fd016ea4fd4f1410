//! `show`: one URL's page as JSON, or its stored body.

use std::io::Write;
use std::process::ExitCode;

use webspool::cli::ShowArgs;
use webspool::holder::{Holder, Reply, Request};
use webspool::journal::Journal;

use super::held::{ask, here_or_held, unexpected};
use super::status::print_out;

/// Runs `show`: the page as JSON, or its body, from the journal or from the process
/// holding it. A URL the journal does not have is an error (exit 1).
pub(crate) async fn run_show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.journal.journal;
    let journal = match here_or_held(dir, Journal::open_to_read, |holder| {
        show_in_holder(holder, &args)
    })
    .await?
    {
        Ok(journal) => journal,
        Err(code) => return Ok(code),
    };
    if args.body {
        let body = journal.show_body(&args.url, args.version)?;
        return print_out(&body);
    }
    print_page(&journal.show(&args.url)?)
}

/// `show` answered by the process holding the journal; a body comes in chunks, each
/// written as it arrives.
async fn show_in_holder(mut holder: Holder, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    let request = Request::Show {
        url: args.url.clone(),
        body: args.body,
        version: args.version,
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    let mut written: std::io::Result<()> = Ok(());
    let dir = &args.journal.journal;
    let reply = ask(&mut holder, dir, &request, &never, |reply| {
        if let (Reply::Body(chunk), Ok(())) = (reply, &written) {
            written = base64::engine::general_purpose::STANDARD
                .decode(chunk)
                .map_err(std::io::Error::other)
                .and_then(|bytes| std::io::stdout().lock().write_all(&bytes));
        }
    })
    .await?;
    match reply {
        Ok(Reply::Shown(view)) => print_page(&view),
        Ok(Reply::BodyEnd) => match written.and_then(|()| std::io::stdout().flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(ExitCode::SUCCESS),
        },
        Ok(other) => Err(unexpected(&holder, &other)),
        Err(code) => Ok(code),
    }
}

fn print_page(view: &webspool::journal::PageView) -> anyhow::Result<ExitCode> {
    print_out((serde_json::to_string_pretty(view)? + "\n").as_bytes())
}
