//! webspool: fetch web pages into a crash-safe local journal.
//!
//! # Layout
//!
//! Data flows one way, and the stages meet only in the journal: no stage calls another.
//!
//! ```text
//!  URL list, stdin, MySQL query, --sitemap
//!      |
//!      v
//!   intake ---------> journal --- pending URLs ---> fetch::schedule ---> fetch --.
//!                     ^ ^  | |                      (robots.txt, delays,         |
//!                     | |  | |                       retries, backoff)           |
//!                     | '--+-+------ pages, counted once a flush returned Ok ----'
//!                     |    | |
//!                     |    | '--- pages to parse ---> parse --.
//!                     '----+----- annotations, links in scope --'  (parse::follow)
//!                          |
//!                          '----- parsed pages -----> sync ----> MySQL (one row per page)
//! ```
//!
//! [`pipeline`] runs a crawl: [`intake`] streams the URLs into the [`journal`], the
//! [`fetch::schedule`]r picks pending URLs host by host for the [`fetch`] client, and
//! finished pages are committed in groups that count as fetched only once the journal
//! flush holding them returned `Ok`; the [`parse`] and [`sync`] stages run alongside or
//! as commands of their own, each reading what the one before left in the journal.
//!
//! | module | role |
//! |---|---|
//! | [`intake`] | streams the input (a URL list, stdin, a MySQL query) into the journal |
//! | [`fetch`] | the HTTP client (deadlines, size caps, decoding), with [`fetch::schedule`] (which URL next, host by host) and [`fetch::robots`] (robots.txt policy) |
//! | [`journal`] | the crash-safe store every stage reads and writes: trees, versioned records, durability |
//! | [`parse`] | annotates stored pages (HTML, sitemaps, feeds, extraction rules); [`parse::follow`] decides which links join the frontier |
//! | [`sync`] | loads parsed pages into MySQL, a batch per transaction |
//! | [`pipeline`] | the crawl: starts the stages, bounded channels between them, shutdown |
//! | [`holder`] | while a command holds a journal, serves it to other webspool processes on a socket (status, verify, sync passes, `show`, `export`) |
//! | [`warc`] | WARC in and out: `export` writes pages as WARC/1.1 or JSON lines, `import` records WARC files' responses as fetched pages |
//! | [`metrics`] | counts what the stages do, served at `/metrics` with `--metrics-addr` |
//! | [`cli`] | flags turned into validated stage configs (`main.rs` and its `commands/` run them) |
//! | [`progress`] | progress lines and counts shared by the stages |
//! | [`urls`] | URL normalization and redaction, for every stage |

pub mod cli;
pub mod fetch;
#[doc(hidden)]
pub mod fuzz;
pub mod holder;
pub mod intake;
pub mod journal;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod progress;
pub mod sync;
pub mod urls;
pub mod warc;
