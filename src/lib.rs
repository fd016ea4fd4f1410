//! webspool: fetch web pages into a crash-safe local journal.
//!
//! # Layout
//!
//! The pipeline is `input -> journal <- fetch -> parse -> sync`, with the stages meeting
//! only in the journal: [`pipeline`] streams a URL list into the [`journal`] and fetches
//! every pending URL with the [`fetch`] client, in the order the [`schedule`]r picks
//! host by host (robots.txt, delays, retries), committing finished pages in groups that
//! count as fetched only once the journal flush holding them returned `Ok`. The
//! [`parse`] stage annotates pages and, with [`follow`], adds the links in scope to the
//! frontier; [`sync`] loads the results into MySQL. [`cli`] turns flags into the
//! stage configs; `main.rs` only wires signals, logging and exit codes. [`urls`]
//! normalizes and redacts URLs for every stage; [`robots`] is robots.txt policy. While
//! a command holds a journal, [`holder`] serves it to other webspool processes (status,
//! verify, sync passes, `show`) on a socket in the journal directory, and [`metrics`]
//! counts what the stages do for `--metrics-addr`.

pub mod cli;
pub mod fetch;
pub mod follow;
#[doc(hidden)]
pub mod fuzz;
pub mod holder;
pub mod input;
mod intake;
pub mod journal;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod progress;
pub mod robots;
pub mod schedule;
pub mod sync;
pub mod urls;
