//! Scheduling: a slow host's backlog never starves the other hosts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use webspool::journal::Journal;
use webspool::parse::Rules;
use webspool::pipeline::crawl;

use crate::util::{self, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_hosts_backlog_does_not_starve_fast_hosts() {
    let slow = util::TestServer::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server::reply(200, "slow")
    })
    .await;
    let fast = util::TestServer::start(|_req| async { server::reply(200, "fast") }).await;
    // The slow host's URLs come first, more of them than the scheduler's window holds.
    let mut lines: Vec<String> = (0..3000).map(|i| slow.url(&format!("/{i}"))).collect();
    let fast_urls: Vec<String> = (0..300).map(|i| fast.url(&format!("/{i}"))).collect();
    lines.extend(fast_urls.iter().cloned());

    let dir = tempfile::tempdir().unwrap();
    let list = util::url_file(&dir, &lines);
    let journal = Arc::new(Journal::open(&dir.path().join("j")).unwrap());
    let mut fetch = util::quick_fetch();
    fetch.concurrency = 16;
    fetch.per_host = 4;
    let (stop_tx, stop_rx) = watch::channel(false);
    let config = util::crawl_config(list, fetch, Arc::new(Rules::default()));
    let crawling = tokio::spawn(crawl(journal.clone(), config, stop_rx));

    let started = Instant::now();
    loop {
        let done = fast_urls
            .iter()
            .filter(|u| {
                let id = journal.find(u).unwrap();
                id.is_some_and(|id| journal.page(id).unwrap().is_some())
            })
            .count();
        if done == fast_urls.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {done} of {} fast pages after {:?}: the slow host starves them",
            fast_urls.len(),
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slow_done: u64 = slow.all_hits().values().sum();
    assert!(
        slow_done < 200,
        "the slow host was not still busy ({slow_done} requests)"
    );
    stop_tx.send(true).unwrap();
    let summary = crawling.await.unwrap().unwrap();
    assert!(summary.interrupted);
    // Every request the slow host got was allowed to finish and is in the journal.
    assert_eq!(
        summary.status.fetched,
        300 + slow.all_hits().values().sum::<u64>()
    );
}
