//! One writer, many users: the process that holds a journal open serves it to other
//! webspool processes on a Unix socket in the journal directory.
//!
//! sled is single-process: whichever command opens a journal holds a lock on it until
//! it exits. While it does, it listens on `DIR/webspool.sock` (mode 0600, owned by its
//! user; see `socket.rs`) and answers ([`serve`], `server.rs`): `status`, `verify`
//! without `--repair`, `export` (it writes the client's files, or streams the JSON
//! lines back), and one-shot `sync` passes, which it runs with the client's
//! settings, one pass at a time ([`crate::sync::Turn`]). Commands that find the journal
//! held ask it instead of failing (`client.rs`); commands that would write beside it
//! are refused with its pid and command line, secrets redacted
//! ([`shown_command_line`]). The protocol is in `wire.rs`.
//!
//! Security: only the journal's user can connect (the socket's mode, and each side
//! checks the other's user id from the kernel, `SO_PEERCRED`); a sync request's MySQL
//! password travels on that socket only and is never logged. A socket left by a killed
//! holder refuses connections, so it is told from a live one at once; it is replaced by
//! the next holder. A holder that accepts but does not answer is given deadlines.

mod client;
mod server;
mod socket;
mod wire;

use std::ffi::OsString;

pub use client::{Holder, HolderError};
pub use server::{serve, Serves, Serving};
pub use socket::{socket_path, SOCKET_FILE};
pub use wire::{Greeting, Reply, Request, SyncOutcome, SyncRequest};

/// A command line as shown to other processes: the program's name, then each argument
/// with what may be a secret hidden: URL userinfo (`urls::redact_text`, which covers
/// MySQL URLs' passwords whatever they hold, and `--proxy` values, with or without a
/// scheme) and `--header` values.
pub fn shown_command_line(args: impl IntoIterator<Item = OsString>) -> String {
    let mut shown = Vec::new();
    let mut header_next = false;
    for (i, arg) in args.into_iter().enumerate() {
        let arg = arg.to_string_lossy();
        let text = if i == 0 {
            std::path::Path::new(arg.as_ref()).file_name().map_or_else(
                || arg.to_string(),
                |name| name.to_string_lossy().into_owned(),
            )
        } else if header_next {
            header_name(&arg)
        } else if let Some(value) = arg.strip_prefix("--header=") {
            format!("--header={}", header_name(value))
        } else {
            crate::urls::redact_text(&arg)
        };
        header_next = arg == "--header";
        shown.push(if text.is_empty() || text.contains(char::is_whitespace) {
            format!("'{text}'")
        } else {
            text
        });
    }
    shown.join(" ")
}

/// A `--header` value with its value hidden: `Name: ***`.
fn header_name(header: &str) -> String {
    match header.split_once(':') {
        Some((name, _)) => format!("{}: ***", name.trim()),
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_shown_without_their_secrets() {
        let args = [
            "/usr/local/bin/webspool",
            "crawl",
            "--urls",
            "list.txt",
            "--sync",
            "mysql://bob:hunter2@db:3306/crawl",
            "--header",
            "Authorization: Bearer hunter2",
            "--header=Cookie: id=hunter2",
            "--from-mysql=mysql://u:a@hunter2@h/d",
            "--proxy",
            "http://al:hunter2@proxy:3128",
            "--proxy=socks5h://al:hunter2@proxy:1080",
            "--proxy",
            "al:hunter2@proxy:3128",
        ]
        .map(OsString::from);
        let shown = shown_command_line(args);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            shown,
            "webspool crawl --urls list.txt --sync mysql://***@db:3306/crawl --header \
             'Authorization: ***' '--header=Cookie: ***' --from-mysql=mysql://***@h/d \
             --proxy http://***@proxy:3128 --proxy=socks5h://***@proxy:1080 --proxy ***@proxy:3128"
        );
        for password in crate::urls::TRICKY_PASSWORDS {
            let args = ["webspool", "sync", "--mysql"].map(OsString::from);
            let url = OsString::from(format!("mysql://u:{password}@127.0.0.1/db"));
            let shown = shown_command_line(args.into_iter().chain([url]));
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }
}
