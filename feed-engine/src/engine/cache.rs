//! The feed cache: every in-memory copy the read path serves from — assembled first pages,
//! authors' outbox heads, readers' follow lists, the discovery pool, the authors whose posts are
//! pulled — and the **one place that knows what a write makes stale**. Writers describe what
//! they changed ([`Change`]); the rules of what that invalidates live only in
//! [`FeedCache::changed`] and [`FeedCache::page`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use parking_lot::{Mutex, MutexGuard};

use crate::hot::{HotMap, Patch, Weigh};
use crate::model::{Entry, FeedItem, FeedPath, Post, PostId, UserId};

use super::deleting::Deleting;
use super::{ReaderGraph, items_weight};

/// What a write changed, as the cache needs to know it. Sent after the change is durable.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    /// A post was published. `pull_until_ms`: its author's posts are pulled until then (a post
    /// that is not pushed); `public`: it may enter the discovery pool.
    Posted {
        post: &'a Post,
        public: bool,
        pull_until_ms: Option<u64>,
    },
    /// A post was deleted; its stored entries are retracted in the background.
    Deleted(&'a Entry),
    /// Cluster mode: another node's post was deleted (its author's node retracts it). This node's
    /// stored entries of it go when that node's retraction batches arrive, one per reader
    /// partition, so the post counts as being deleted for a grace time
    /// ([`super::deleting::RETRACTION_GRACE`]) rather than until a [`Change::Retracted`].
    DeletedElsewhere(&'a Entry),
    /// Every stored entry of a deleted post is gone.
    Retracted(PostId),
    /// These posts' bodies came back over their heads (cluster mode: a partition taken over).
    Bodies(&'a [PostId]),
    /// A reader's follows, blocks or mutes changed (their stored timeline with them).
    Graph(UserId),
    /// An author gained or lost followers: who their posts are delivered to changed.
    Followers(UserId),
    /// Which node keeps which users changed (a cluster moved partitions): every cached fanout
    /// audience was split by the old placement.
    Owners,
    /// Stored timelines of these readers gained or lost entries (retractions, rebuilds), or a
    /// post these readers may merge at read time appeared.
    Timelines(&'a [UserId]),
    /// Fanout wrote this post's entry into these readers' stored timelines: a cached first
    /// page takes it in place (it is what a fresh assembly would return) instead of going.
    Delivered { post: PostId, readers: &'a [UserId] },
    /// An account became private: its posts leave the discovery pool.
    MadePrivate(UserId),
    /// People engaged with a public post: it stands in the discovery pool at `trend_rank` (its
    /// stored rank raised by its engagement velocity), entering it if that is high enough.
    Trending { post: &'a Post, trend_rank: u64 },
}

/// An author whose posts are not pushed: until when their posts must be pulled, and a version
/// bumped by each of their publishes and deletes (invalidates cached pages that merged them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PullAuthor {
    pub until_ms: u64,
    pub version: u64,
}

/// A reader's assembled first page in the hot layer, with what it was built from.
#[derive(Debug)]
pub(crate) struct CachedFeed {
    /// Shared with the pages handed out (each a prefix of it).
    pub items: Arc<[FeedItem]>,
    pub has_more: bool,
    pub path: FeedPath,
    /// Pulled celebrity authors and their versions when the page was built.
    pub celebs: Vec<(UserId, u64)>,
    /// Every pulled author with its outbox-head version (taken before the head was read): a
    /// post or delete by any of them makes the page stale at once, not when fanout gets to it.
    pub sources: Vec<(UserId, u64)>,
    /// The cache's pull epoch when the page was built.
    pub pull_epoch: u64,
    /// When its assembly began: a page older than a deletion whose mark has gone may hold
    /// the deleted post ([`Deleting::outdates`]).
    pub built: Instant,
}

impl Weigh for Post {
    fn weight(&self) -> usize {
        128 + self.text.len() + self.media.iter().map(|m| m.len() + 24).sum::<usize>()
    }
}

/// Whom a post of one author reaches from this node, in key order each: the readers this node
/// keeps, and (on the author's node of a cluster) the followers other nodes keep, which two-hop
/// fanout sends on.
#[derive(Debug, Default)]
pub(crate) struct Audience {
    /// Readers whose timelines this node keeps (the author among them when kept here).
    pub local: Vec<UserId>,
    /// Followers other nodes keep.
    pub remote: Vec<UserId>,
}

impl Weigh for Audience {
    fn weight(&self) -> usize {
        self.local.weight() + self.remote.weight()
    }
}

impl Weigh for CachedFeed {
    fn weight(&self) -> usize {
        items_weight(&self.items) + (self.celebs.len() + self.sources.len()) * 16 + 64
    }
}

/// A discovery candidate: (rank, post, author) of a recent public post.
pub(crate) type Candidate = (u64, PostId, UserId);

/// Which cached head of a reader's feed: the first page, or a ranked read's candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// The first `hot-page-entries` items.
    First,
    /// The top `ranker.candidates` items.
    Candidates,
}

/// The read path's in-memory state. See the module docs.
pub(crate) struct FeedCache {
    pages: HotMap<CachedFeed>,
    /// A ranked read's candidates per reader: kept by the same rules as `pages` (dropped where a
    /// page would be patched in place).
    candidates: HotMap<CachedFeed>,
    heads: HotMap<Vec<Entry>>,
    graphs: HotMap<ReaderGraph>,
    /// Posts as feeds show them (immutable once written; dropped when deleted).
    posts: HotMap<Post>,
    /// Authors' fanout audiences from this node (themselves and their followers, in key order).
    audiences: HotMap<Audience>,
    pull_authors: DashMap<UserId, PullAuthor>,
    /// Bumped when an author joins `pull_authors`: cached pages built before may miss them.
    pull_epoch: AtomicU64,
    /// Posts deleted whose retraction has not finished: cached pages holding them are stale.
    deleting: Deleting,
    discovery: Mutex<BTreeSet<Candidate>>,
    /// The pool rank of each post that stands in it above its stored rank (trending).
    trend_ranks: DashMap<PostId, u64>,
    discovery_cap: usize,
    /// Items an assembled first page holds (`hot_page_entries`).
    page_entries: usize,
}

impl FeedCache {
    /// Bytes held over every map, as weighed.
    pub fn bytes(&self) -> usize {
        self.pages.bytes()
            + self.candidates.bytes()
            + self.heads.bytes()
            + self.graphs.bytes()
            + self.posts.bytes()
            + self.audiences.bytes()
    }

    /// An empty cache of about `hot_bytes` holding first pages of `page_entries` items,
    /// knowing the authors pulled as of open.
    pub fn new(
        hot_bytes: usize,
        page_entries: usize,
        pull_authors: DashMap<UserId, PullAuthor>,
        discovery_cap: usize,
    ) -> Self {
        FeedCache {
            pages: HotMap::new("pages", hot_bytes / 4),
            candidates: HotMap::new("candidates", hot_bytes / 16),
            posts: HotMap::new("posts", hot_bytes / 16 * 3),
            heads: HotMap::new("outbox_heads", hot_bytes / 16 * 3),
            graphs: HotMap::new("graphs", hot_bytes / 16 * 3),
            audiences: HotMap::new("audiences", hot_bytes / 8),
            pull_authors,
            pull_epoch: AtomicU64::new(0),
            deleting: Deleting::new(),
            discovery: Mutex::new(BTreeSet::new()),
            trend_ranks: DashMap::new(),
            discovery_cap,
            page_entries,
        }
    }

    /// Applies what a write changed: every staleness rule of the read path is here.
    pub fn changed(&self, c: Change<'_>) {
        match c {
            Change::Posted {
                post,
                public,
                pull_until_ms,
            } => {
                self.heads.invalidate(post.author);
                if let Some(until_ms) = pull_until_ms {
                    match self.pull_authors.entry(post.author) {
                        dashmap::Entry::Occupied(mut o) => {
                            let p = o.get_mut();
                            p.until_ms = until_ms;
                            p.version += 1;
                        }
                        dashmap::Entry::Vacant(v) => {
                            v.insert(PullAuthor { until_ms, version: 1 });
                            self.pull_epoch.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                if public {
                    self.add_to_pool(&mut self.discovery.lock(), (post.rank, post.id, post.author));
                }
            }
            Change::Deleted(e) | Change::DeletedElsewhere(e) => {
                self.deleting.mark(e.post, matches!(c, Change::DeletedElsewhere(_)));
                self.posts.invalidate(e.post);
                self.heads.invalidate(e.author);
                if let Some(mut pa) = self.pull_authors.get_mut(&e.author) {
                    pa.version += 1;
                }
                let mut pool = self.discovery.lock();
                pool.remove(&(e.rank, e.post, e.author));
                if let Some((_, r)) = self.trend_ranks.remove(&e.post) {
                    pool.remove(&(r, e.post, e.author));
                }
            }
            Change::Retracted(post) => self.deleting.retracted(post),
            Change::Bodies(posts) => {
                for &p in posts {
                    self.posts.invalidate(p);
                }
                // Cached first pages may hold these posts' heads (a takeover: rare).
                if !posts.is_empty() {
                    self.pages.clear();
                }
            }
            Change::Graph(reader) => {
                self.graphs.invalidate(reader);
                self.pages.invalidate(reader);
                self.candidates.invalidate(reader);
            }
            Change::Followers(author) => self.audiences.invalidate(author),
            Change::Owners => self.audiences.clear(),
            Change::Timelines(readers) => {
                for &r in readers {
                    self.pages.invalidate(r);
                    self.candidates.invalidate(r);
                }
            }
            Change::Delivered { post, readers } => {
                for &r in readers {
                    // Under the page's lock: a delete or graph change that drops the post or the
                    // graph first leaves nothing to patch from; one after it drops the page.
                    self.pages.update(r, |page| self.with_delivered(page, r, post));
                    self.candidates.invalidate(r);
                }
            }
            Change::MadePrivate(user) => self.discovery.lock().retain(|&(_, p, a)| {
                if a == user {
                    self.trend_ranks.remove(&p);
                }
                a != user
            }),
            Change::Trending { post, trend_rank } => {
                let mut pool = self.discovery.lock();
                let old = self.trend_ranks.get(&post.id).map(|r| *r).unwrap_or(post.rank);
                if old >= trend_rank {
                    return;
                }
                pool.remove(&(old, post.id, post.author));
                self.trend_ranks.insert(post.id, trend_rank);
                self.add_to_pool(&mut pool, (trend_rank, post.id, post.author));
            }
        }
    }

    /// Puts a candidate in the discovery pool, dropping the lowest past the cap.
    fn add_to_pool(&self, pool: &mut BTreeSet<Candidate>, c: Candidate) {
        pool.insert(c);
        while pool.len() > self.discovery_cap {
            if let Some((_, p, _)) = pool.pop_first() {
                self.trend_ranks.remove(&p);
            }
        }
    }

    /// `page` with `post` (just stored in `reader`'s timeline) in its place — what assembling
    /// the page again would give — or `Drop` when that cannot be told from memory.
    fn with_delivered(&self, page: &CachedFeed, reader: UserId, post: PostId) -> Patch<CachedFeed> {
        if page.path == FeedPath::Pull {
            return Patch::Drop;
        }
        // A post dropped from the posts map was deleted (or evicted): leave it to a reload.
        let (Some(post), Some(graph)) = (self.posts.get(post), self.graphs.get(reader)) else {
            return Patch::Drop;
        };
        let shown = post.author == reader || (graph.follows(post.author) && !graph.hides(post.author));
        if !shown || page.items.iter().any(|i| i.post.id == post.id) {
            return Patch::Keep;
        }
        let key = (post.rank, post.id);
        let at = page.items.partition_point(|i| (i.post.rank, i.post.id) > key);
        if at == page.items.len() && page.has_more {
            // Below the cached window: the first page does not change.
            return Patch::Keep;
        }
        let mut items = Vec::with_capacity(page.items.len() + 1);
        items.extend_from_slice(&page.items[..at]);
        items.push(FeedItem { post });
        items.extend_from_slice(&page.items[at..]);
        let mut has_more = page.has_more;
        if items.len() > self.page_entries.max(page.items.len()) {
            items.pop();
            has_more = true;
        }
        Patch::Replace(CachedFeed {
            items: items.into(),
            has_more,
            path: page.path,
            celebs: page.celebs.clone(),
            sources: page.sources.clone(),
            pull_epoch: page.pull_epoch,
            built: page.built,
        })
    }

    /// `reader`'s cached first page if it is still what an assembly would return now for a read
    /// served by pull (`pull`) or from the timeline: no pulled author posted or deleted since,
    /// no author joined the pulled ones, no item expired or is being deleted, and not built
    /// before another node's deletion whose mark has gone.
    pub fn page(&self, head: Head, reader: UserId, pull: bool, page_size: usize, now: u64) -> Option<Arc<CachedFeed>> {
        let c = self.head_map(head).get(reader)?;
        let deleting = self.deleting.any();
        let fresh = c.pull_epoch == self.pull_epoch.load(Ordering::SeqCst)
            && c.celebs
                .iter()
                .all(|&(a, v)| self.pull_authors.get(&a).is_some_and(|p| p.version == v))
            && c.sources.iter().all(|&(a, v)| self.heads.version(a) == v)
            && (c.path == FeedPath::Pull) == pull
            && !self.deleting.outdates(c.built)
            && !c
                .items
                .iter()
                .take(page_size)
                .any(|i| i.post.expired(now) || (deleting && self.deleting.contains(i.post.id)));
        fresh.then_some(c)
    }

    /// What to read before assembling a head to cache: (its version, pull epoch).
    pub fn page_stamp(&self, head: Head, reader: UserId) -> (u64, u64) {
        (
            self.head_map(head).version(reader),
            self.pull_epoch.load(Ordering::SeqCst),
        )
    }

    /// Caches an assembled head unless `reader`'s was invalidated since `version`.
    pub fn fill_page(&self, head: Head, reader: UserId, version: u64, page: Arc<CachedFeed>) {
        self.head_map(head).insert_if_current(reader, version, page);
    }

    fn head_map(&self, head: Head) -> &HotMap<CachedFeed> {
        match head {
            Head::First => &self.pages,
            Head::Candidates => &self.candidates,
        }
    }

    /// The version of `author` whose posts are pulled until after `now`, if they are.
    pub fn pulled_author(&self, author: UserId, now: u64) -> Option<u64> {
        self.pull_authors
            .get(&author)
            .filter(|p| p.until_ms > now)
            .map(|p| p.version)
    }

    /// Whether `user` is known to exist: their follow graph is cached, which happens only for
    /// users that exist (and users are never deleted). `false` means "ask the store".
    pub fn known_user(&self, user: UserId) -> bool {
        self.graphs.contains(user)
    }

    /// Outbox heads by author.
    pub fn heads(&self) -> Fill<'_, Vec<Entry>> {
        Fill(&self.heads)
    }

    /// Follow graphs by reader (loaded only for users that exist).
    pub fn graphs(&self) -> Fill<'_, ReaderGraph> {
        Fill(&self.graphs)
    }

    /// Posts by id.
    pub fn posts(&self) -> Fill<'_, Post> {
        Fill(&self.posts)
    }

    /// Fanout audiences by author.
    pub fn audiences(&self) -> Fill<'_, Audience> {
        Fill(&self.audiences)
    }

    /// Whether `post` was deleted and its retraction is not finished.
    pub fn is_deleting(&self, post: PostId) -> bool {
        self.deleting.contains(post)
    }

    /// The discovery pool (held while the guard lives: copy out what you need).
    pub fn discovery(&self) -> MutexGuard<'_, BTreeSet<Candidate>> {
        self.discovery.lock()
    }
}

/// One of the cache's maps as a reader of it sees it: look up, and fill after a load — never
/// invalidate (only [`FeedCache::changed`] does). Protocol: read [`Fill::version`] before
/// loading, then [`Fill::fill`]; a fill that raced an invalidation is refused.
pub(crate) struct Fill<'a, V>(&'a HotMap<V>);

impl<V: Weigh> Fill<'_, V> {
    /// The cached value of `key`.
    pub fn get(&self, key: u64) -> Option<Arc<V>> {
        self.0.get(key)
    }

    /// The version to read before loading `key`'s value (and to record as a page's source).
    pub fn version(&self, key: u64) -> u64 {
        self.0.version(key)
    }

    /// Caches a value loaded after reading `version`.
    pub fn fill(&self, key: u64, version: u64, value: Arc<V>) {
        self.0.insert_if_current(key, version, value);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::ContentType;

    fn post(id: PostId, author: UserId) -> Arc<Post> {
        Arc::new(Post {
            id,
            author,
            created_at_ms: 1,
            content_type: ContentType::Text,
            text: "hello".into(),
            media: Vec::new(),
            expires_at_ms: None,
            rank: id,
            pushed: true,
            location: None,
            trimmed: false,
            head_tags: Vec::new(),
        })
    }

    #[test]
    fn a_page_built_before_another_node_s_deletion_is_not_served_after_its_grace_either() {
        let cache = FeedCache::new(1 << 20, 10, DashMap::new(), 10);
        let (reader, author) = (1, 2);
        let built = Instant::now();
        let page = |built, id| {
            Arc::new(CachedFeed {
                items: vec![FeedItem { post: post(id, author) }].into(),
                has_more: false,
                path: FeedPath::Push,
                celebs: Vec::new(),
                sources: Vec::new(),
                pull_epoch: 0,
                built,
            })
        };
        let v = cache.page_stamp(Head::First, reader).0;
        assert!(cache.head_map(Head::First).insert_if_current(reader, v, page(built, 7)));
        assert!(cache.page(Head::First, reader, false, 10, 0).is_some());

        // The author's node deleted post 7; its retraction batch for this reader never comes.
        let gone = Entry {
            rank: 7,
            post: 7,
            author,
            expires_at_ms: None,
        };
        cache.changed(Change::DeletedElsewhere(&gone));
        assert!(cache.page(Head::First, reader, false, 10, 0).is_none(), "while marked");
        // Past the grace the mark goes; the page that may hold the post still is not served.
        cache.deleting.sweep(Duration::ZERO);
        assert!(!cache.is_deleting(7));
        assert!(
            cache.page(Head::First, reader, false, 10, 0).is_none(),
            "a page built before the deletion came back once its mark was swept"
        );
        // One assembled after the deletion (which finds post 7 no more) is.
        let v = cache.page_stamp(Head::First, reader).0;
        assert!(
            cache
                .head_map(Head::First)
                .insert_if_current(reader, v, page(Instant::now(), 6))
        );
        assert!(cache.page(Head::First, reader, false, 10, 0).is_some());
    }
}
