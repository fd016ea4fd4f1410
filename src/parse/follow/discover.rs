//! Link following: which URLs found on a parsed page join the crawl.
//!
//! The parse stage asks [`Follow::discovered`] for each page it annotates and records
//! the answer in the same journal transaction as the annotation, so the links of a page
//! are never lost or added twice, whatever crashes. Dedup is the journal's `url_index`
//! (every URL ever seen, on disk); budgets are checked in that transaction too.
//!
//! Two kinds of documents give URLs:
//! - a sitemap or sitemap index reached through `--sitemap` (or listed in one) gives
//!   seeds: its entries join whatever the `--follow` scope, at the depth of the
//!   sitemap, still subject to `--include`/`--exclude` and the spider-trap guards;
//! - any other page gives links, followed when the scope allows them, one level deeper,
//!   except `rel=nofollow` links and pages with `<meta name=robots content=nofollow>`.

use url::Url;

use super::{FollowPolicy, Scope};
use crate::journal::{Annotation, Budget, DocKind, NewUrl, UrlEntry, Via};
use crate::urls::normalize;

#[derive(Debug)]
pub struct Follow {
    pub policy: FollowPolicy,
    pub budget: Budget,
}

impl Follow {
    /// The URLs `annotation` (of the page `page`) adds to the crawl, before dedup and
    /// budgets.
    pub fn discovered(&self, page: &UrlEntry, annotation: &Annotation) -> Vec<NewUrl> {
        let Ok(from) = Url::parse(&page.url) else {
            return Vec::new();
        };
        let sitemap = matches!(
            annotation.kind,
            Some(DocKind::Sitemap | DocKind::SitemapIndex)
        ) && matches!(page.via, Via::SitemapSeed | Via::Sitemap);
        let links = !matches!(self.policy.scope, Scope::None) && !annotation.robots_nofollow;
        if !sitemap && !links {
            return Vec::new();
        }
        let mut out = Vec::new();
        for link in &annotation.links {
            if !sitemap && link.nofollow {
                continue;
            }
            let Ok(to) = normalize(&link.url) else {
                continue;
            };
            let admitted = if sitemap {
                self.policy.check_seed(&to)
            } else {
                self.policy.check(&from, &to, page.depth + 1)
            };
            if let Err(skip) = admitted {
                tracing::trace!(
                    "not following {}: {}",
                    crate::urls::redact(&to),
                    skip.as_str()
                );
                continue;
            }
            out.push(if sitemap {
                NewUrl::new(&to, None, page.depth, Via::Sitemap)
            } else {
                NewUrl::new(&to, None, page.depth + 1, Via::Link)
            });
        }
        out
    }
}
