//! The other side: a command that finds its journal held asks the holder.
//!
//! Every wait has a deadline: the greeting must come within [`GREETING_DEADLINE`] of
//! connecting, and while a request runs a frame (at least the holder's heartbeat) within
//! [`IDLE_DEADLINE`] of the last. A socket nobody listens on (its holder was killed) is
//! no holder: the caller opens the journal itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;

use super::socket;
use super::wire::{self, Greeting, Reply, Request, PROTOCOL};

/// Longest wait for the holder's greeting.
const GREETING_DEADLINE: Duration = Duration::from_secs(5);
/// Longest silence from the holder while it works on a request (it sends a heartbeat
/// every second).
const IDLE_DEADLINE: Duration = Duration::from_secs(30);

/// Why the holder could not be asked. Each says which journal and, once known, which
/// process.
#[derive(Debug, thiserror::Error)]
pub enum HolderError {
    #[error(
        "journal {dir}: it is in use by webspool process {pid}, which did not answer on \
         {socket} within {secs}s (is it stopped or overloaded?)",
        secs = .after.as_secs(),
        socket = socket::socket_path(.dir).display()
    )]
    NoAnswer {
        dir: PathBuf,
        pid: String,
        after: Duration,
    },
    #[error(
        "journal {dir}: webspool process {pid} ({command}) holds it and went away before \
         answering"
    )]
    Gone {
        dir: PathBuf,
        pid: u32,
        command: String,
    },
    #[error(
        "journal {dir}: its socket {socket} belongs to user {uid}, not to this user: it was \
         not asked",
        socket = socket::socket_path(.dir).display()
    )]
    Foreign { dir: PathBuf, uid: u32 },
    #[error(
        "journal {dir}: webspool process {pid} holds it and speaks holder protocol \
         {protocol}, this webspool {PROTOCOL}: run the same version, or wait until it ends"
    )]
    Protocol {
        dir: PathBuf,
        pid: u32,
        protocol: u32,
    },
    #[error("journal {dir}: talking to the process holding it: {message}")]
    Io { dir: PathBuf, message: String },
}

/// A connection to a journal's holder, greeted.
pub struct Holder {
    dir: PathBuf,
    stream: UnixStream,
    pub greeting: Greeting,
}

impl Holder {
    /// Connects to the holder of the journal in `dir`; `None` when no process listens
    /// there (no socket, one left by a killed holder, a path that cannot hold one).
    pub async fn connect(dir: &Path) -> Result<Option<Holder>, HolderError> {
        let io = |e: std::io::Error| HolderError::Io {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        };
        // Nobody listens (no socket, or one a killed holder left), or the path holds no
        // socket at all (not a directory, say): opening the journal here says what is
        // wrong, if anything.
        let Ok(mut stream) = socket::connect(dir).await else {
            return Ok(None);
        };
        let peer = stream.peer_cred().map_err(io)?;
        if peer.uid() != socket::our_uid() {
            return Err(HolderError::Foreign {
                dir: dir.to_path_buf(),
                uid: peer.uid(),
            });
        }
        let no_answer = || HolderError::NoAnswer {
            dir: dir.to_path_buf(),
            pid: peer.pid().map_or("?".into(), |pid| pid.to_string()),
            after: GREETING_DEADLINE,
        };
        let greeting: Greeting =
            match tokio::time::timeout(GREETING_DEADLINE, wire::read_frame(&mut stream)).await {
                Ok(Ok(Some(greeting))) => greeting,
                // Closed before a word: a holder that is ending.
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(io(e)),
                Err(_) => return Err(no_answer()),
            };
        if greeting.protocol != PROTOCOL {
            return Err(HolderError::Protocol {
                dir: dir.to_path_buf(),
                pid: greeting.pid,
                protocol: greeting.protocol,
            });
        }
        Ok(Some(Holder {
            dir: dir.to_path_buf(),
            stream,
            greeting,
        }))
    }

    /// Sends the one request of this connection.
    pub async fn send(&mut self, request: &Request) -> Result<(), HolderError> {
        wire::write_frame(&mut self.stream, request)
            .await
            .map_err(|e| self.io(e))
    }

    /// The next reply, within the idle deadline.
    pub async fn next(&mut self) -> Result<Reply, HolderError> {
        match tokio::time::timeout(IDLE_DEADLINE, wire::read_frame(&mut self.stream)).await {
            Ok(Ok(Some(reply))) => Ok(reply),
            Ok(Ok(None)) => Err(HolderError::Gone {
                dir: self.dir.clone(),
                pid: self.greeting.pid,
                command: self.greeting.command.clone(),
            }),
            Ok(Err(e)) => Err(self.io(e)),
            Err(_) => Err(HolderError::NoAnswer {
                dir: self.dir.clone(),
                pid: self.greeting.pid.to_string(),
                after: IDLE_DEADLINE,
            }),
        }
    }

    fn io(&self, e: std::io::Error) -> HolderError {
        HolderError::Io {
            dir: self.dir.clone(),
            message: e.to_string(),
        }
    }
}
