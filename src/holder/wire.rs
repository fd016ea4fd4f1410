//! The holder's protocol: frames of JSON, each preceded by its length (`u32` big-endian),
//! at most [`MAX_FRAME`] bytes.
//!
//! On connect the holder sends a [`Greeting`] (protocol version, pid, command line with
//! its secrets redacted). A client that only wants to know who holds the journal closes
//! the connection there; otherwise it sends one [`Request`] and reads [`Reply`] frames
//! until a final one ([`Reply::is_final`]). The holder sends [`Reply::Progress`] at
//! least every [`HEARTBEAT`] while it works on a request, so a client tells a long
//! request from a wedged holder by its idle deadline. Neither side ever reads a frame
//! larger than [`MAX_FRAME`]; a new version of the protocol changes [`PROTOCOL`], and a
//! client refuses a holder speaking another.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::journal::{PageView, Problem, Status, VerifyReport};
use crate::sync::Target;
use crate::warc::{ExportReport, ExportRequest};

/// The protocol version: in every greeting, checked by the client.
pub const PROTOCOL: u32 = 4;
/// The largest frame either side reads or writes.
pub const MAX_FRAME: u32 = 16 << 20;
/// How often the holder says it is still at work on a request.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// What the holder says first, to every connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Greeting {
    pub protocol: u32,
    pub pid: u32,
    /// The holder's command line, its secrets redacted ([`super::shown_command_line`]).
    pub command: String,
}

/// What a client asks the holder to do.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// `status`: the counters, with pages due for a recrawl.
    Status,
    /// `verify` without `--repair`.
    Verify,
    /// One `sync` pass (not `--every`).
    Sync(SyncRequest),
    /// `show URL`: the page's [`PageView`], or with `body` its stored body (the older
    /// version kept under `version`), sent in [`Reply::Body`] frames.
    Show {
        url: String,
        body: bool,
        version: Option<u64>,
    },
    /// `export` (protocol 4), its paths absolute: the holder writes the files.
    Export(ExportRequest),
}

/// The most body bytes one [`Reply::Body`] frame carries: base64 in JSON, well under
/// [`MAX_FRAME`].
pub const BODY_CHUNK: usize = 1 << 20;

/// The settings of a one-shot `sync`, as its command line gave them. The target's
/// password travels in it: only over the owner-only socket, never logged.
#[derive(Debug, Serialize, Deserialize)]
pub struct SyncRequest {
    pub target: Target,
    pub bodies: bool,
    pub batch_rows: usize,
    pub batch_bytes: usize,
    pub op_timeout: Duration,
    /// `--give-up-after`: how long the pass waits for an unavailable MySQL.
    pub give_up_after: Option<Duration>,
    pub min_free: u64,
}

/// What the holder answers, frame by frame.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// Still at work: pages read (verify) or synced (sync) so far.
    Progress(u64),
    /// A problem `verify` found.
    Problem(Problem),
    /// Boxed: by far the largest reply.
    Status(Box<Status>),
    Verified(VerifyReport),
    Synced(SyncOutcome),
    Shown(Box<PageView>),
    /// Up to 1 MiB (`BODY_CHUNK`) of a body `show` asked for, base64 (standard, padded);
    /// [`Reply::BodyEnd`] follows the last.
    Body(String),
    BodyEnd,
    /// `export --jsonl -`: the next JSON lines, for the client's standard output.
    Lines(String),
    Exported(ExportReport),
    /// The request failed as the command would have failed locally: its error, and
    /// whether it is a full disk (exit 75).
    Failed {
        message: String,
        disk_full: bool,
    },
    /// The holder does not run this request now (say, a sync pass during `compact`).
    Refused(String),
}

impl Reply {
    /// Whether this reply ends the request.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Reply::Progress(_) | Reply::Problem(_) | Reply::Body(_) | Reply::Lines(_)
        )
    }
}

/// What a sync pass run (or joined) by the holder did.
#[derive(Debug, Serialize, Deserialize)]
pub struct SyncOutcome {
    pub pages: u64,
    pub batches: u64,
    pub elapsed: Duration,
    pub interrupted: bool,
    /// Stopped below `--min-free`: what [`crate::journal::DiskFull`] says.
    pub disk_full: Option<String>,
    /// Pages still pending sync afterwards.
    pub pending: u64,
}

/// Writes `value` as one frame.
pub async fn write_frame<W, T>(out: &mut W, value: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other("a frame over the protocol's limit"))?;
    out.write_all(&len.to_be_bytes()).await?;
    out.write_all(&bytes).await?;
    out.flush().await
}

/// Reads one frame; `None` when the other side closed the connection between frames.
pub async fn read_frame<R, T>(input: &mut R) -> std::io::Result<Option<T>>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match input.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "a frame of {len} bytes, over the protocol's limit of {MAX_FRAME}"
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes).await?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| std::io::Error::other(format!("a frame that does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_read_back_and_oversized_ones_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let sent = Reply::Failed {
            message: "no".into(),
            disk_full: true,
        };
        write_frame(&mut a, &sent).await.unwrap();
        let got: Reply = read_frame(&mut b).await.unwrap().unwrap();
        assert!(matches!(
            got,
            Reply::Failed {
                disk_full: true,
                ..
            }
        ));
        a.write_all(&(MAX_FRAME + 1).to_be_bytes()).await.unwrap();
        let err = read_frame::<_, Reply>(&mut b).await.unwrap_err();
        assert!(
            err.to_string().contains("over the protocol's limit"),
            "{err}"
        );
        drop(a);
        let (_, mut b) = tokio::io::duplex(16);
        assert!(read_frame::<_, Reply>(&mut b).await.unwrap().is_none());
    }
}
