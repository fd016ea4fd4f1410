//! The proxy flags of `crawl` and `recrawl`, and the [`ProxyChoice`] they make.

use std::path::PathBuf;

use clap::Args;

use super::values::Unquoted;
use super::ConfigError;
use crate::fetch::{read_proxy_file, Proxy, ProxyChoice};

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Send requests through this proxy: http://, https://, socks5:// (names resolved
    /// here) or socks5h:// (by the proxy), with user:password@ if it needs them
    /// (never printed). Repeated, a pool: each host sticks to one proxy, and the hosts
    /// of a proxy that fails move to the others. Without it, HTTP_PROXY, HTTPS_PROXY,
    /// ALL_PROXY and NO_PROXY are honored. MySQL connections never use a proxy.
    #[arg(long = "proxy", value_name = "URL", value_parser = Unquoted(parse_proxy))]
    pub proxies: Vec<Proxy>,
    /// Add the proxies listed in this file to the pool, one URL a line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub proxy_file: Option<PathBuf>,
    /// Connect directly, ignoring the proxy environment variables.
    #[arg(long, conflicts_with_all = ["proxies", "proxy_file"])]
    pub no_proxy: bool,
}

fn parse_proxy(text: &str) -> Result<Proxy, String> {
    Proxy::parse(text).map_err(|e| e.to_string())
}

impl ProxyArgs {
    pub fn to_choice(&self) -> Result<ProxyChoice, ConfigError> {
        let mut proxies = self.proxies.clone();
        if let Some(path) = &self.proxy_file {
            proxies.extend(read_proxy_file(path)?);
        }
        Ok(match (self.no_proxy, proxies.is_empty()) {
            (true, _) => ProxyChoice::Off,
            (false, true) => ProxyChoice::Env,
            (false, false) => ProxyChoice::Pool(proxies),
        })
    }
}
