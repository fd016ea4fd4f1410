//! The binary's command runners, one file per subcommand (`held.rs`: reaching a
//! journal that another webspool process holds). Each turns its parsed flags into the
//! library's config, runs the stage and prints the summary; `main.rs` picks the runner
//! and turns its result into the exit code.

mod compact;
mod crawl;
mod export;
mod held;
mod import;
mod parse;
mod recover;
mod show;
mod status;
mod sync;
mod verify;

pub(crate) use compact::run_compact;
pub(crate) use crawl::{run_crawl, run_recrawl};
pub(crate) use export::run_export;
pub(crate) use import::run_import;
pub(crate) use parse::run_parse;
pub(crate) use recover::run_recover;
pub(crate) use show::run_show;
pub(crate) use status::run_status;
pub(crate) use sync::run_sync;
pub(crate) use verify::run_verify;
