//! A fresh MySQL/MariaDB database per test, dropped afterwards.
//!
//! Reads `MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`). An unreachable
//! server fails the test with a message saying how to start one: these tests never
//! pass silently without a database.

use std::sync::atomic::{AtomicU32, Ordering};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};

pub struct TestDb {
    /// URL of the test's own database.
    pub url: String,
    name: String,
    admin_url: String,
}

fn admin_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

impl TestDb {
    pub async fn new() -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url();
        let name = format!(
            "webspool_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            webspool::journal::now_ms() % 1_000_000
        );
        let mut conn = connect(&admin_url).await;
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        TestDb {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        }
    }

    pub async fn conn(&self) -> Conn {
        connect(&self.url).await
    }
}

pub async fn connect(url: &str) -> Conn {
    let opts = Opts::from_url(url).unwrap_or_else(|e| panic!("bad MYSQL_URL: {e}"));
    match tokio::time::timeout(std::time::Duration::from_secs(10), Conn::new(opts)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "MySQL/MariaDB is unreachable at MYSQL_URL ({e}). Start it with: \
             mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld && \
             start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd \
             (or set MYSQL_URL to a reachable server)"
        ),
        Err(_) => panic!("MySQL/MariaDB at MYSQL_URL did not answer within 10 s"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a runtime of our own on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut conn = connect(&url).await;
                let _ = conn
                    .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await;
            });
        })
        .join();
    }
}
