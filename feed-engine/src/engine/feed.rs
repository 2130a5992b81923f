//! The read path: a reader's home feed (precomputed timeline ⊕ pulled outbox entries → filter
//! → rank → page), the unread feed, and the hot first-page cache (`discovery.rs` has the
//! labelled discovery feed).

use std::sync::Arc;
use std::time::Instant;

use crate::codec::{self, FeedCursor};
use crate::error::Result;
use crate::fanout::Job;
use crate::model::{Entry, FeedItem, FeedPage, FeedPath, Items, UserId};
use crate::policy::ReaderMode;
use crate::tables::TIMELINE;
use crate::{assembly, metrics as m};

use super::cache::{CachedFeed, Head};
use super::outbox::TopRanks;
use super::{Engine, ReaderGraph, expired};

/// How often a reader's activity is written back to disk, at most.
const PERSIST_ACTIVITY_MS: u64 = 60_000;

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// From the stored timeline, plus pulled celebrity authors (and, below the timeline's
    /// `cut`, every author: see `ReaderRecord::cut`).
    Timeline { cut: Option<(u64, u64)> },
    /// By pulling every followee's outbox head.
    Pull,
}

struct Assembled {
    items: Vec<FeedItem>,
    has_more: bool,
    path: FeedPath,
    celebs: Vec<(UserId, u64)>,
    sources: Vec<(UserId, u64)>,
    /// Why not every source was merged, if not.
    partial: Option<String>,
}

/// When a read happens: the clock's time for expiry and windows, and when it started (budget).
#[derive(Debug, Clone, Copy)]
struct ReadTime {
    now: u64,
    started: Instant,
}

/// Sources merged between two looks at the read budget.
const BUDGET_CHECK_EVERY: usize = 32;

impl Engine {
    /// A page of `reader`'s home feed, highest rank first. `cursor` is the `next_cursor` of the
    /// previous page; paging is stable while new posts arrive (no entry twice, none skipped).
    /// A reader who follows nobody gets the discovery feed with their own posts ranked in,
    /// labelled [`FeedPath::Discovery`].
    pub fn home_feed(&self, reader: UserId, page_size: usize, cursor: Option<&str>) -> Result<FeedPage> {
        let t0 = Instant::now();
        let (after, now) = self.read_args(reader, page_size, cursor)?;
        self.home_page(reader, page_size, after, now, t0)
    }

    /// [`Engine::home_feed`] after its arguments are checked; `page_size` may exceed the
    /// largest page a caller may ask for (the ranker's candidates).
    pub(super) fn home_page(
        &self,
        reader: UserId,
        page_size: usize,
        after: Option<FeedCursor>,
        now: u64,
        t0: Instant,
    ) -> Result<FeedPage> {
        let inner = self.inner();
        let serve = self.touch_reader(reader, now)?;
        let graph = inner.reader_graph(reader)?;
        let page = if graph.following.is_empty() {
            self.discovery_page(reader, &graph, page_size, after, now, true)?
        } else if after.is_none() && page_size <= inner.cfg.hot_page_entries {
            self.cached_head(reader, &graph, serve, Head::First, page_size, now, t0)?
        } else {
            let a = self.assemble(reader, &graph, serve, page_size, after, ReadTime { now, started: t0 })?;
            assembled_page(a, page_size, after)
        };
        inner.read_metrics.record(page.path, t0);
        Ok(page)
    }

    /// What every feed read checks first (page size, cursor, reader); the cursor and the time.
    pub(super) fn read_args(
        &self,
        reader: UserId,
        page_size: usize,
        cursor: Option<&str>,
    ) -> Result<(Option<FeedCursor>, u64)> {
        self.check_page_size(page_size)?;
        let after = cursor.map(codec::decode_feed_cursor).transpose()?;
        let inner = self.inner();
        inner.require_user(reader)?;
        Ok((after, inner.now_ms()))
    }

    /// Records a read and decides how to serve it; starts a rebuild for a returning reader.
    fn touch_reader(&self, reader: UserId, now: u64) -> Result<Serve> {
        let inner = self.inner();
        let (serve, persist, rebuild) = inner.with_reader(reader, |st| {
            st.activity = st.activity.record_read(now);
            let d = inner.cfg.policy.decide(&st.activity, st.following, now);
            let mut rebuild = false;
            let serve = match d.mode {
                ReaderMode::Push if st.materialized => Serve::Timeline { cut: st.cut },
                ReaderMode::Push => {
                    if !st.rebuilding {
                        st.rebuilding = true;
                        rebuild = true;
                    }
                    Serve::Pull
                }
                ReaderMode::Pull => Serve::Pull,
            };
            let persist = (now.saturating_sub(st.persisted_ms) >= PERSIST_ACTIVITY_MS).then(|| {
                st.persisted_ms = now;
                st.unsaved += 1;
                *st
            });
            (serve, persist, rebuild)
        })?;
        if let Some(st) = persist {
            inner.save_reader(reader, st)?;
        }
        if rebuild {
            if inner.reserve_job().is_ok() {
                metrics::counter!(m::FANOUT_JOBS, "kind" => "rebuild").increment(1);
                let _ = inner.jobs.send(Job::Rebuild(reader));
            } else {
                // Busy: the next read tries again; until then the reader is served by pull.
                inner.readers.update(reader, |s| s.rebuilding = false);
            }
        }
        Ok(serve)
    }

    /// The top `n` entries of `reader`'s home feed (a ranked read's candidates), cached in the
    /// feed cache by the first page's rules; a reader who follows nobody gets discovery.
    pub(super) fn feed_head(&self, reader: UserId, n: usize, now: u64, t0: Instant) -> Result<FeedPage> {
        let inner = self.inner();
        inner.require_user(reader)?;
        let serve = self.touch_reader(reader, now)?;
        let graph = inner.reader_graph(reader)?;
        let page = if graph.following.is_empty() {
            self.discovery_page(reader, &graph, n, None, now, true)?
        } else {
            self.cached_head(reader, &graph, serve, Head::Candidates, n, now, t0)?
        };
        inner.read_metrics.record(page.path, t0);
        Ok(page)
    }

    /// A head of the feed from the feed cache when still valid, else assembled and cached: the
    /// first page (`hot-page-entries` assembled, `page_size` shown) or the candidates (`page_size`).
    #[allow(clippy::too_many_arguments)]
    fn cached_head(
        &self,
        reader: UserId,
        graph: &ReaderGraph,
        serve: Serve,
        head: Head,
        page_size: usize,
        now: u64,
        started: Instant,
    ) -> Result<FeedPage> {
        let inner = self.inner();
        if let Some(c) = inner.cache.page(head, reader, serve == Serve::Pull, page_size, now) {
            let more = c.has_more || c.items.len() > page_size;
            let mut p = page_of(
                Items::prefix(c.items.clone(), page_size),
                false,
                page_size,
                FeedPath::Cache,
            );
            if more && p.items.len() == page_size {
                p.next_cursor = p.items.last().map(|i| {
                    codec::encode_feed_cursor(FeedCursor {
                        rank: i.post.rank,
                        post: i.post.id,
                    })
                });
            }
            return Ok(p);
        }
        let (v, pull_epoch) = inner.cache.page_stamp(head, reader);
        let n = match head {
            Head::First => inner.cfg.hot_page_entries,
            Head::Candidates => page_size,
        };
        let a = self.assemble(reader, graph, serve, n, None, ReadTime { now, started })?;
        if a.partial.is_some() {
            // Never cached: the next read tries for the whole page again.
            let mut a = a;
            if a.items.len() > page_size {
                a.items.truncate(page_size);
                a.has_more = true;
            }
            return Ok(assembled_page(a, page_size, None));
        }
        let cached = Arc::new(CachedFeed {
            items: a.items.into(),
            has_more: a.has_more,
            path: a.path,
            celebs: a.celebs,
            sources: a.sources,
            pull_epoch,
            // The read began before the assembly read anything.
            built: started,
        });
        inner.cache.fill_page(head, reader, v, cached.clone());
        Ok(page_of(
            Items::prefix(cached.items.clone(), page_size),
            cached.has_more || cached.items.len() > page_size,
            page_size,
            cached.path,
        ))
    }

    /// Merges the timeline (if served from it) with pulled outbox heads into up to `want`
    /// visible items after `after`.
    fn assemble(
        &self,
        reader: UserId,
        graph: &ReaderGraph,
        serve: Serve,
        want: usize,
        after: Option<FeedCursor>,
        ReadTime { now, started }: ReadTime,
    ) -> Result<Assembled> {
        let inner = self.inner();
        let budget = std::time::Duration::from_millis(inner.cfg.read_budget_ms);
        let authors: Vec<UserId> = graph
            .following
            .iter()
            .copied()
            .chain(std::iter::once(reader))
            .filter(|&a| !graph.hides(a))
            .collect();
        let mut celebs = Vec::new();
        let mut sources = Vec::new();
        let mut pulled = Vec::new();
        let mut partial = None;
        let spent = |merged: usize, of: usize| {
            (merged > 0 && merged.is_multiple_of(BUDGET_CHECK_EVERY) && started.elapsed() >= budget).then(|| {
                metrics::counter!(m::PARTIAL_PAGES).increment(1);
                format!(
                    "read budget of {} ms spent after merging {merged} of {of} sources; ask again with next_cursor",
                    budget.as_millis()
                )
            })
        };
        // Authors whose cached head is full, with the position of its last entry: entries
        // past it may still belong on this page.
        let mut deeper = Vec::new();
        // Authors left to the timeline: pulled only below its end, if the page reaches it.
        let mut in_timeline = Vec::new();
        for (i, &a) in authors.iter().enumerate() {
            if let Some(why) = spent(i, authors.len()) {
                partial = Some(why);
                break;
            }
            let celeb = inner.cache.pulled_author(a, now);
            if let Some(v) = celeb {
                celebs.push((a, v));
            } else if serve != Serve::Pull {
                in_timeline.push(a);
                continue;
            }
            sources.push((a, inner.cache.heads().version(a)));
            let head = inner.outbox_head(a)?;
            pulled.extend(head.iter().filter(|e| inner.pullable(e, now)).copied());
            if head.len() >= inner.cfg.pull_per_author
                && let Some(last) = head.last()
            {
                deeper.push((a, (last.rank, last.post)));
            }
        }
        if partial.is_none() && !deeper.is_empty() {
            // The page needs `want + 1` pulled entries after the cursor at most: an entry ranked
            // below the (want + 1)-th best so far cannot make it.
            let mut top = TopRanks::new(want + 1);
            pulled
                .iter()
                .filter(|e| after.is_none_or(|c| c.is_before(e)))
                .for_each(|e| top.push(e.rank));
            for (i, &(a, head_end)) in deeper.iter().enumerate() {
                if let Some(why) = spent(i, deeper.len()) {
                    partial = Some(why);
                    break;
                }
                let cut = top.floor().unwrap_or(0);
                for e in inner.outbox_after(a, now, after, want + 1, cut)? {
                    if (e.rank, e.post) < head_end {
                        top.push(e.rank);
                        pulled.push(e);
                    }
                }
            }
        }
        // Only the best pulled entries can make the page: of those past the cursor and live,
        // the top `keep` are sorted and merged. The rest all rank below them; they are merged
        // too only if the page came out short or reaches below the best of them (hydration
        // dropped so many of the kept ones — deleted posts — that the timeline filled in).
        pulled.retain(|e| after.is_none_or(|c| c.is_before(e)) && !expired(e, now));
        let keep = want * 4 + 16;
        let mut rest = Vec::new();
        if pulled.len() > keep {
            pulled.select_nth_unstable_by_key(keep - 1, |e| std::cmp::Reverse(e.order_key()));
            rest = pulled.split_off(keep);
        }
        let rest_best = rest.iter().map(|e| e.order_key()).max();
        let path = match serve {
            Serve::Pull => FeedPath::Pull,
            Serve::Timeline { .. } if celebs.is_empty() => FeedPath::Push,
            Serve::Timeline { .. } => FeedPath::Mixed,
        };
        let hydrate_with = |pulled: &[Entry]| {
            let sorted = assembly::merge(&[pulled], None, None);
            self.merge_and_hydrate(reader, graph, serve, want, after, now, &sorted)
        };
        let (mut items, mut tl_end) = hydrate_with(&pulled)?;
        let reaches_below = |items: &[FeedItem], pos: (u64, u64)| {
            items.len() <= want || items.last().is_some_and(|i| (i.post.rank, i.post.id) < pos)
        };
        if rest_best.is_some_and(|best| reaches_below(&items, best)) {
            pulled.append(&mut rest);
            (items, tl_end) = hydrate_with(&pulled)?;
        }
        // The page reaches below the timeline's cut: what a trim cut (or a rebuild or merge
        // never wrote) lies there, in the outboxes of the authors the timeline holds. A feed
        // served from the timeline is as deep as a pulled one.
        if partial.is_none()
            && let Some(end) = tl_end
            && reaches_below(&items, (end.rank, end.post))
        {
            let below = match after {
                Some(a) if (a.rank, a.post) < (end.rank, end.post) => a,
                _ => end,
            };
            let mut top = TopRanks::new(want + 1);
            for (i, &a) in in_timeline.iter().enumerate() {
                if let Some(why) = spent(i, in_timeline.len()) {
                    partial = Some(why);
                    break;
                }
                sources.push((a, inner.cache.heads().version(a)));
                for e in inner.outbox_after(a, now, Some(below), want + 1, top.floor().unwrap_or(0))? {
                    top.push(e.rank);
                    pulled.push(e);
                }
            }
            pulled.append(&mut rest);
            (items, _) = hydrate_with(&pulled)?;
        }
        let has_more = items.len() > want;
        items.truncate(want);
        Ok(Assembled {
            items,
            has_more,
            path,
            celebs,
            sources,
            partial,
        })
    }

    /// Walks the timeline (if served from it) in chunks beside the sorted `pulled` entries and
    /// hydrates visible items after `after`, up to `want + 1`. Also says whether the walk
    /// reached the timeline's cut (`cut`: below it the outboxes hold the feed), and where.
    #[allow(clippy::too_many_arguments)]
    fn merge_and_hydrate(
        &self,
        reader: UserId,
        graph: &ReaderGraph,
        serve: Serve,
        want: usize,
        after: Option<FeedCursor>,
        now: u64,
        pulled: &[Entry],
    ) -> Result<(Vec<FeedItem>, Option<FeedCursor>)> {
        let cut = match serve {
            Serve::Timeline { cut } => cut,
            Serve::Pull => None,
        };
        // Twice a small page (room for entries the filters drop), a page plus 64 for a large one
        // (a ranked read's candidates: twice 500 is a whole 1,000-entry timeline).
        let chunk = want + (want + 8).min(64);
        let mut items = Vec::with_capacity(want + 1);
        let mut from = after;
        loop {
            let (mut tl, mut tl_more) = match serve {
                Serve::Timeline { .. } => self.scan_timeline(reader, from, chunk)?,
                Serve::Pull => (Vec::new(), false),
            };
            // Below the cut the timeline is not the feed: the walk ends there.
            let mut end = None;
            if let Some(c) = cut
                && (!tl_more || tl.last().is_some_and(|e| (e.rank, e.post) < c))
            {
                tl.retain(|e| (e.rank, e.post) >= c);
                tl_more = false;
                end = Some(FeedCursor { rank: c.0, post: c.1 });
            }
            // While the timeline has more, only entries at or above its last one are final.
            let floor = if tl_more {
                tl.last().map(|e| (e.rank, e.post))
            } else {
                None
            };
            let candidates: Vec<Entry> = assembly::merge(&[&tl, pulled], from, floor)
                .into_iter()
                .filter(|e| {
                    !expired(e, now) && (e.author == reader || (graph.follows(e.author) && !graph.hides(e.author)))
                })
                .collect();
            self.hydrate(&candidates, now, want + 1, &mut items)?;
            match floor {
                Some((rank, post)) if items.len() <= want => from = Some(FeedCursor { rank, post }),
                _ => return Ok((items, end)),
            }
        }
    }

    /// Up to `n` timeline entries of `reader` strictly after `after`; and whether more may follow.
    fn scan_timeline(&self, reader: UserId, after: Option<FeedCursor>, n: usize) -> Result<(Vec<Entry>, bool)> {
        TIMELINE.page(&self.inner().store, reader, after.map(|c| (c.rank, c.post)), n)
    }

    /// Loads the posts of `entries` and appends the live ones to `items`, up to `limit` items.
    pub(super) fn hydrate(&self, entries: &[Entry], now: u64, limit: usize, items: &mut Vec<FeedItem>) -> Result<()> {
        for chunk in entries.chunks(limit.max(8)) {
            if items.len() >= limit {
                break;
            }
            let ids: Vec<u64> = chunk.iter().map(|e| e.post).collect();
            for post in self.feed_posts(&ids)?.into_iter().flatten() {
                if items.len() >= limit {
                    break;
                }
                if !post.expired(now) {
                    items.push(FeedItem { post });
                }
            }
        }
        Ok(())
    }
}

/// The page of an assembly: a partial one's cursor points back at where it started (the
/// highest possible position for a first page), so asking again returns the same page.
fn assembled_page(a: Assembled, page_size: usize, after: Option<FeedCursor>) -> FeedPage {
    let mut p = page_of(a.items.into(), a.has_more, page_size, a.path);
    if a.partial.is_some() {
        p.next_cursor = Some(codec::encode_feed_cursor(after.unwrap_or(FeedCursor {
            rank: u64::MAX,
            post: u64::MAX,
        })));
        p.partial = a.partial;
    }
    p
}

pub(super) fn page_of(items: Items, more: bool, page_size: usize, path: FeedPath) -> FeedPage {
    let next_cursor = (more && items.len() == page_size)
        .then(|| {
            items.last().map(|i| {
                codec::encode_feed_cursor(FeedCursor {
                    rank: i.post.rank,
                    post: i.post.id,
                })
            })
        })
        .flatten();
    FeedPage {
        items,
        next_cursor,
        path,
        partial: None,
    }
}
