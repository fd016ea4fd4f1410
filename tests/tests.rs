//! The integration tests: one binary, real servers on loopback, the real journal and the
//! real `webspool` binary.

mod util;

mod cli;
mod compact;
mod crash;
mod crawl_sync;
mod cron;
mod disk_full;
mod faults;
mod fetch;
mod fuzz_corpus;
mod holder;
mod hostile;
mod intake;
mod journal_model;
mod journal_open;
mod metrics;
mod parse;
mod polite;
mod proxy;
mod recover;
mod recrawl;
mod rules;
mod secrets;
mod show;
mod sync;
mod sync_schema;
mod tls;
mod warc;
