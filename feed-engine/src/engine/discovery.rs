//! The discovery pool: trending recent public posts, loaded at open from the newest posts, kept
//! by publishes and raised by engagement (a post people engage with stands above its stored
//! rank by its velocity, so a newcomer's post can trend); the labelled feed of a reader who
//! follows nobody.

use std::sync::Arc;
use std::time::Instant;

use crate::assembly;
use crate::codec::{self, FeedCursor};
use crate::error::Result;
use crate::model::{Entry, FeedItem, FeedPage, FeedPath, UserId};
use crate::tables::{POSTS, USERS};

use super::feed::page_of;
use super::{Engine, Inner, ReaderGraph};

impl Engine {
    /// A page of trending recent public posts for `reader` (their own, hidden and blocking
    /// authors' posts left out), labelled [`FeedPath::Discovery`].
    pub fn discovery_feed(&self, reader: UserId, page_size: usize, cursor: Option<&str>) -> Result<FeedPage> {
        let t0 = Instant::now();
        let (after, now) = self.read_args(reader, page_size, cursor)?;
        let graph = self.inner().reader_graph(reader)?;
        let page = self.discovery_page(reader, &graph, page_size, after, now, false)?;
        self.inner().read_metrics.record(page.path, t0);
        Ok(page)
    }

    pub(super) fn discovery_page(
        &self,
        reader: UserId,
        graph: &ReaderGraph,
        page_size: usize,
        after: Option<FeedCursor>,
        now: u64,
        with_own: bool,
    ) -> Result<FeedPage> {
        let inner = self.inner();
        let mut candidates: Vec<Entry> = {
            let pool = inner.cache.discovery();
            pool.iter()
                .rev()
                .map(|&(rank, post, author)| Entry {
                    rank,
                    post,
                    author,
                    expires_at_ms: None,
                })
                .filter(|e| after.is_none_or(|c| c.is_before(e)) && e.author != reader && !graph.hides(e.author))
                .take((page_size + 1) * 4)
                .collect()
        };
        if with_own {
            // The reader's own posts belong in their home feed whoever they follow.
            candidates.extend(inner.outbox_after(reader, now, after, page_size + 1, 0)?);
            candidates = assembly::merge(&[&candidates], after, None);
        }
        let mut items = Vec::with_capacity(page_size + 1);
        let mut last = None;
        for e in candidates {
            if items.len() > page_size {
                break;
            }
            if !self.may_view(reader, e.author)? {
                continue;
            }
            if let Some(p) = self.load_post(e.post)?
                && !p.expired(now)
            {
                if items.len() < page_size {
                    last = Some(e);
                }
                items.push(FeedItem { post: Arc::new(p) });
            }
        }
        let more = items.len() > page_size;
        items.truncate(page_size);
        let mut page = page_of(items.into(), false, page_size, FeedPath::Discovery);
        // The pool's order is its own (a trending post stands above its stored rank): the
        // cursor is the last shown candidate's place in it.
        page.next_cursor = last.filter(|_| more).map(|e| {
            codec::encode_feed_cursor(FeedCursor {
                rank: e.rank,
                post: e.post,
            })
        });
        Ok(page)
    }
}

impl Inner {
    /// Fills the pool from the newest posts inside the pull window (public authors only).
    pub(crate) fn load_discovery(&self) -> Result<()> {
        let now = self.now_ms();
        let mut pool = self.cache.discovery();
        let mut seen = 0usize;
        let mut private_cache: std::collections::HashMap<UserId, bool> = Default::default();
        let mut posts = Vec::new();
        POSTS.newest_first(&self.store, |p| {
            seen += 1;
            // A record that does not decode is left out here (reading it reports the corruption).
            let Ok(p) = p else {
                return seen < self.cfg.discovery_pool * 4;
            };
            if now.saturating_sub(p.created_at_ms) > self.cfg.pull_window_ms {
                return false;
            }
            posts.push(p);
            seen < self.cfg.discovery_pool * 4
        })?;
        for p in posts {
            let private = match private_cache.get(&p.author) {
                Some(&x) => x,
                None => {
                    let x = USERS.get(&self.store, p.author)?.is_none_or(|u| u.private);
                    private_cache.insert(p.author, x);
                    x
                }
            };
            if !private {
                pool.insert((p.rank, p.id, p.author));
            }
        }
        while pool.len() > self.cfg.discovery_pool {
            pool.pop_first();
        }
        Ok(())
    }
}
