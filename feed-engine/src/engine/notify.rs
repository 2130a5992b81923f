//! Notifications: written in the same batch as the change they tell of (a follow, a request, an
//! approval, a like, a comment), so one is never lost or made for a change that did not land;
//! told to a live listener once durable; kept per user up to `notifications-kept` (the oldest
//! dropped past it); read newest first in groups, with an unread count against a seen marker.
//! A recipient never hears from someone they blocked or muted or who blocked them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::codec::{self, Counter};
use crate::error::Result;
use crate::model::{PostId, UserId};
use crate::social::{GROUP_ACTORS_SHOWN, Notification, NotificationGroup, NotificationKind, NotificationPage};
use crate::store::Batch;
use crate::tables::{COUNTERS, META, MetaKey, NOTIFICATIONS, POSTS};

use super::graph::{BLOCK, MUTE};
use super::{Engine, Inner, Writer};

/// Told about every notification once it is durable, so a server can stream them. Called on
/// the writing thread: implementations must not block.
pub trait NotificationListener: Send + Sync {
    /// A new notification for `user`.
    fn on_notification(&self, user: UserId, n: &Notification);
}

/// Notifications a batch made: `(recipient, notification)`.
pub(crate) type Sent = Vec<(UserId, Notification)>;

impl Inner {
    /// Whether `user` hears nothing from `actor`: themself, or a block or mute between them.
    fn silenced(&self, user: UserId, actor: UserId) -> Result<bool> {
        Ok(user == actor || self.relation(user, actor)? & (BLOCK | MUTE) != 0 || self.blocks(actor, user)?)
    }

    /// Adds `n` for `recipient` to a batch unless the recipient is silenced to its actor.
    /// Returns what was added, for [`Writer::notified`] once the batch is durable.
    pub(crate) fn notify(&self, b: &mut Batch, recipient: UserId, n: &Notification) -> Result<Sent> {
        if self.silenced(recipient, n.actor)? {
            return Ok(Vec::new());
        }
        NOTIFICATIONS.put(&self.store, b, recipient, n);
        COUNTERS.add(&self.store, b, recipient, Counter::Notifications, 1);
        Ok(vec![(recipient, *n)])
    }
}

impl Writer<'_> {
    /// After the batch holding `sent` is durable: tells the listener and trims each recipient's
    /// notifications to the number kept. Call without holding a user lock.
    pub(crate) fn notified(&self, sent: &Sent) -> Result<()> {
        let inner = self.inner();
        for (user, n) in sent {
            if let Some(l) = inner.notification_listener.get() {
                l.on_notification(*user, n);
            }
            metrics::counter!(crate::metrics::NOTIFICATIONS).increment(1);
            self.trim_notifications(*user)?;
        }
        Ok(())
    }

    /// Drops `user`'s oldest notifications past `notifications-kept`, once they hold a quarter
    /// more (so a trim runs once per many notifications, not on each).
    fn trim_notifications(&self, user: UserId) -> Result<()> {
        let inner = self.inner();
        let s = &inner.store;
        let kept = inner.cfg.notifications_kept;
        let over = |held: u64| held as usize > kept + kept / 4;
        if !over(COUNTERS.get(s, user, Counter::Notifications)?) {
            return Ok(());
        }
        let _g = inner.lock_users(user, user);
        if !over(COUNTERS.get(s, user, Counter::Notifications)?) {
            return Ok(());
        }
        let (mut held, mut cut) = (0usize, None);
        NOTIFICATIONS.scan(s, user, None, |n| {
            held += 1;
            if held == kept + 1 {
                cut = Some(n.id);
            }
            true
        })?;
        let Some(cut) = cut else { return Ok(()) };
        let mut b = s.batch();
        NOTIFICATIONS.delete_up_to(s, &mut b, user, cut);
        COUNTERS.add(s, &mut b, user, Counter::Notifications, -((held - kept) as i64));
        s.write(b, self.ctx.durability())
    }

    /// `user` has seen their notifications up to id `up_to` (0: all of them). The marker only
    /// moves forward, and never past the newest notification held. Returns the marker.
    pub fn mark_notifications_seen(&self, user: UserId, up_to: u64) -> Result<u64> {
        let inner = self.inner();
        inner.require_user(user)?;
        let s = &inner.store;
        let _g = inner.lock_users(user, user);
        let mut newest = 0;
        NOTIFICATIONS.scan(s, user, None, |n| {
            newest = n.id;
            false
        })?;
        let old = META.get_u64(s, MetaKey::NotificationsSeen(user))?.unwrap_or(0);
        let want = if up_to == 0 { newest } else { up_to.min(newest) };
        if want <= old {
            return Ok(old);
        }
        let mut b = s.batch();
        META.put_u64(s, &mut b, MetaKey::NotificationsSeen(user), want);
        s.write(b, self.ctx.durability())?;
        Ok(want)
    }
}

/// What one page of notifications is built from: each actor's standing with the recipient and
/// each post's existence, looked up once.
struct Filter<'a> {
    engine: &'a Engine,
    user: UserId,
    silenced: HashMap<UserId, bool>,
    posts: HashMap<PostId, bool>,
}

impl Filter<'_> {
    fn keeps(&mut self, n: &Notification) -> Result<bool> {
        let inner = self.engine.inner();
        let silenced = match self.silenced.get(&n.actor) {
            Some(&s) => s,
            None => {
                let s = inner.silenced(self.user, n.actor)?;
                self.silenced.insert(n.actor, s);
                s
            }
        };
        if silenced {
            return Ok(false);
        }
        let Some(post) = n.post else { return Ok(true) };
        match self.posts.get(&post) {
            Some(&e) => Ok(e),
            None => {
                let e = POSTS.exists(&inner.store, post)?;
                self.posts.insert(post, e);
                Ok(e)
            }
        }
    }
}

impl Engine {
    /// Registers the listener told about new notifications. Only the first call takes effect.
    pub fn set_notification_listener(&self, l: Arc<dyn NotificationListener>) -> bool {
        self.inner().notification_listener.set(l).is_ok()
    }

    /// A page of `user`'s notifications, newest first. Likes and comments on one post that fall
    /// on the same page are one group ("A, B and 12 others liked your post"); notifications from
    /// users the recipient blocked or muted (or who blocked them) and about deleted posts are
    /// left out.
    pub fn notifications(&self, user: UserId, page_size: usize, cursor: Option<&str>) -> Result<NotificationPage> {
        self.check_page_size(page_size)?;
        let mut from = cursor.map(codec::decode_list_cursor).transpose()?;
        let inner = self.inner();
        inner.require_user(user)?;
        let s = &inner.store;
        let seen = META.get_u64(s, MetaKey::NotificationsSeen(user))?.unwrap_or(0);
        let mut filter = Filter {
            engine: self,
            user,
            silenced: HashMap::new(),
            posts: HashMap::new(),
        };
        let mut groups: Vec<NotificationGroup> = Vec::with_capacity(page_size);
        let mut members: Vec<HashSet<UserId>> = Vec::with_capacity(page_size);
        let mut index: HashMap<(NotificationKind, PostId), usize> = HashMap::new();
        let mut next_cursor = None;
        let chunk = 4 * page_size;
        'scan: loop {
            let mut raw = Vec::with_capacity(chunk);
            NOTIFICATIONS.scan(s, user, from, |n| {
                raw.push(*n);
                raw.len() < chunk
            })?;
            for n in &raw {
                if !filter.keeps(n)? {
                    continue;
                }
                let key = (n.kind, n.post.unwrap_or(0));
                if let Some(&g) = index.get(&key).filter(|_| n.kind.grouped()) {
                    if members[g].insert(n.actor) {
                        groups[g].count += 1;
                        if groups[g].actors.len() < GROUP_ACTORS_SHOWN {
                            groups[g].actors.push(n.actor);
                        }
                    }
                    groups[g].unread |= n.id > seen;
                    continue;
                }
                if groups.len() == page_size {
                    next_cursor = Some(codec::encode_list_cursor(n.id));
                    break 'scan;
                }
                index.insert(key, groups.len());
                members.push(HashSet::from([n.actor]));
                groups.push(NotificationGroup {
                    newest: *n,
                    actors: vec![n.actor],
                    count: 1,
                    unread: n.id > seen,
                });
            }
            match raw.last() {
                Some(last) if raw.len() == chunk && last.id > 0 => from = Some(last.id - 1),
                _ => break,
            }
        }
        let unread = self.count_unread(&mut filter, seen)?;
        Ok(NotificationPage {
            groups,
            next_cursor,
            unread,
            seen_up_to: seen,
        })
    }

    fn count_unread(&self, filter: &mut Filter<'_>, seen: u64) -> Result<u64> {
        let mut newer = Vec::new();
        NOTIFICATIONS.scan(&self.inner().store, filter.user, None, |n| {
            if n.id <= seen {
                return false;
            }
            newer.push(*n);
            true
        })?;
        let mut unread = 0;
        for n in &newer {
            if filter.keeps(n)? {
                unread += 1;
            }
        }
        Ok(unread)
    }

    /// `user`'s unread notifications (newer than their seen marker), as a page would count them.
    pub fn unread_notifications(&self, user: UserId) -> Result<u64> {
        let inner = self.inner();
        inner.require_user(user)?;
        let seen = META
            .get_u64(&inner.store, MetaKey::NotificationsSeen(user))?
            .unwrap_or(0);
        let mut filter = Filter {
            engine: self,
            user,
            silenced: HashMap::new(),
            posts: HashMap::new(),
        };
        self.count_unread(&mut filter, seen)
    }
}
