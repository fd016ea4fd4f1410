//! webspool: fetch web pages into a crash-safe local journal.
//!
//! # Layout
//!
//! The pipeline is `input -> journal <- fetch`, with the stages meeting only in the
//! journal: [`pipeline`] streams a URL list into the [`journal`] and fetches every
//! pending URL with the [`fetch`] client, committing finished pages in groups that
//! count as fetched only once the journal flush holding them returned `Ok`. [`cli`]
//! turns flags into the stage configs; `main.rs` only wires signals, logging and exit
//! codes. [`urls`] normalizes and redacts URLs for every stage. [`robots`] and
//! [`follow`] are crawl policy without I/O: which URLs robots.txt allows and which
//! discovered links a crawl follows.

pub mod cli;
pub mod fetch;
pub mod follow;
pub mod input;
mod intake;
pub mod journal;
pub mod parse;
pub mod pipeline;
pub mod progress;
pub mod robots;
pub mod sync;
pub mod urls;
