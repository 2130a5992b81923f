//! Read markers: the newest feed position a reader has read, stored durably. Trims keep the
//! entries above it (up to `max_unread_kept`), and the unread feed pages from it, oldest first.

use std::time::Instant;

use crate::error::Result;
use crate::model::{Entry, FeedPage, FeedPath, PostId, UserId};
use crate::tables::{MARKERS, TIMELINE};

use super::feed::page_of;
use super::{Engine, Inner, Writer, expired};

impl Inner {
    /// `(rank, post)` of `reader`'s read marker, if one is set.
    pub(crate) fn read_marker_pos(&self, reader: UserId) -> Result<Option<(u64, PostId)>> {
        MARKERS.get(&self.store, reader)
    }
}

impl Engine {
    /// A page of `reader`'s unread entries — ranked above their read marker (all entries when
    /// none is set) — **oldest first**; `cursor` is the previous page's `next_cursor`. Stored
    /// timeline entries are merged with every followee's recent outbox posts, so unread entries
    /// that were never stored (pull-mode readers, celebrities) or were trimmed past
    /// `max_unread_kept` are still reached within the pull window.
    pub fn unread_feed(&self, reader: UserId, page_size: usize, cursor: Option<&str>) -> Result<FeedPage> {
        let t0 = Instant::now();
        let (after, now) = self.read_args(reader, page_size, cursor)?;
        let inner = self.inner();
        let marker = inner.read_marker_pos(reader)?;
        // Strictly above both the marker and the last entry shown.
        let floor = match (marker, after.map(|c| (c.rank, c.post))) {
            (Some(m), Some(c)) => Some(m.max(c)),
            (m, c) => m.or(c),
        };
        let graph = inner.reader_graph(reader)?;
        let mut candidates = Vec::new();
        TIMELINE.scan(&inner.store, reader, None, floor, |e| {
            candidates.push(*e);
            true
        })?;
        let above = |e: &Entry| floor.is_none_or(|f| (e.rank, e.post) > f);
        // Every unread post in the pull window, however deep in its author's outbox (at most
        // `max_unread_kept` per author).
        for a in graph.following.iter().copied().chain(std::iter::once(reader)) {
            if graph.hides(a) {
                continue;
            }
            candidates.extend(inner.outbox_above(a, now, floor, inner.cfg.max_unread_kept)?);
        }
        candidates.retain(|e| {
            above(e) && !expired(e, now) && (e.author == reader || (graph.follows(e.author) && !graph.hides(e.author)))
        });
        candidates.sort_unstable_by_key(|e| e.order_key());
        candidates.dedup_by_key(|e| e.post);
        let mut items = Vec::with_capacity(page_size + 1);
        self.hydrate(&candidates, now, page_size + 1, &mut items)?;
        let more = items.len() > page_size;
        items.truncate(page_size);
        let page = page_of(items.into(), more, page_size, FeedPath::Unread);
        inner.read_metrics.record(page.path, t0);
        Ok(page)
    }

    /// The post `reader`'s read marker points at, if one was set.
    pub fn read_marker(&self, reader: UserId) -> Result<Option<PostId>> {
        let inner = self.inner();
        inner.require_user(reader)?;
        Ok(inner.read_marker_pos(reader)?.map(|(_, post)| post))
    }
}

impl Writer<'_> {
    /// Sets `reader`'s read marker to the feed position of `post` (everything ranked above it is
    /// unread). Durable when this returns. The marker may move back as well as forward.
    pub fn set_read_marker(&self, reader: UserId, post: PostId) -> Result<()> {
        let inner = self.inner();
        inner.require_user(reader)?;
        // Only a post the reader may see has a feed position for them.
        let p = self.visible_post_at(reader, post, self.ctx.now_ms())?;
        let mut b = inner.store.batch();
        MARKERS.put(&inner.store, &mut b, reader, (p.rank, p.id));
        inner.store.write(b, self.ctx.durability())
    }
}
