//! Read markers: the newest feed position a reader has read, stored durably. Trims keep the
//! entries above it (up to `max_unread_kept`), and the unread feed pages from it, oldest first.

use crate::error::Result;
use crate::model::{PostId, UserId};
use crate::tables::MARKERS;

use super::{Engine, Inner, Writer};

impl Inner {
    /// `(rank, post)` of `reader`'s read marker, if one is set.
    pub(crate) fn read_marker_pos(&self, reader: UserId) -> Result<Option<(u64, PostId)>> {
        MARKERS.get(&self.store, reader)
    }
}

impl Engine {
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
