//! The feed cache's mark of posts being deleted: a cached first page holding one is not
//! served. A post this node deletes itself is marked until its retraction job ends; another
//! node's deletion (cluster mode: the author's node retracts it, and its batches reach this
//! node's readers one reader partition at a time) is marked for [`RETRACTION_GRACE`]. Past
//! the grace the mark goes, but the time of the newest one swept is kept: a page built before
//! it may hold that post, and is not served ([`Deleting::outdates`]) — so a retraction batch
//! that comes later than the grace, or never, cannot leave a deleted post on a cached page.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::model::PostId;

/// How long a post deleted on another node counts as being deleted here. The retraction
/// batches for this node's readers come within the fanout lag (milliseconds); each one
/// invalidates its readers' pages.
pub(crate) const RETRACTION_GRACE: Duration = Duration::from_secs(30);

/// Posts deleted whose retraction has not finished here.
#[derive(Debug)]
pub(crate) struct Deleting {
    /// This node's own deletions (`None`), other nodes' with their time.
    posts: DashMap<PostId, Option<Instant>>,
    /// How many `posts` holds: a page check skips the per-item lookups when none.
    count: AtomicUsize,
    /// How many of `posts` are other nodes' (swept by time): none on a single node, where a
    /// page check then never takes the sweep's lock.
    elsewhere: AtomicUsize,
    /// When other nodes' deletions past their grace were last swept.
    swept: Mutex<Instant>,
    /// The time of the newest deletion swept, in ns after `base` (0: none yet).
    swept_to: AtomicU64,
    /// When this mark was made: the origin of `swept_to`.
    base: Instant,
}

impl Deleting {
    /// Nothing marked.
    pub fn new() -> Self {
        Deleting {
            posts: DashMap::new(),
            count: AtomicUsize::new(0),
            elsewhere: AtomicUsize::new(0),
            swept: Mutex::new(Instant::now()),
            swept_to: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    /// Marks `post` as being deleted: by this node's job, or `elsewhere` (for the grace).
    pub fn mark(&self, post: PostId, elsewhere: bool) {
        let at = elsewhere.then(Instant::now);
        let was = self.posts.insert(post, at);
        if was.is_none() {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        match (was.flatten().is_some(), elsewhere) {
            (false, true) => self.elsewhere.fetch_add(1, Ordering::SeqCst),
            (true, false) => self.elsewhere.fetch_sub(1, Ordering::SeqCst),
            _ => 0,
        };
    }

    /// This node's retraction of `post` ended. Another node's deletion keeps its grace: the
    /// batches for its other reader partitions may still follow.
    pub fn retracted(&self, post: PostId) {
        if self.posts.remove_if(&post, |_, at| at.is_none()).is_some() {
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether any post is marked, after (at most once a second) forgetting other nodes'
    /// deletions past the grace.
    pub fn any(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0 && self.sweep(RETRACTION_GRACE)
    }

    /// Whether `post` is marked.
    pub fn contains(&self, post: PostId) -> bool {
        self.count.load(Ordering::SeqCst) > 0 && self.posts.contains_key(&post)
    }

    /// Whether something built at `built` may hold a post whose mark was swept: it was built
    /// before that post's deletion here. A cached page that is must be assembled again (from
    /// the timeline, which no longer finds the deleted post) whether or not its retraction
    /// batch has come.
    pub fn outdates(&self, built: Instant) -> bool {
        let to = self.swept_to.load(Ordering::Acquire);
        to > 0 && (built.saturating_duration_since(self.base).as_nanos() as u64) < to
    }

    /// At most once a second (or `grace`, if shorter), forgets other nodes' deletions older
    /// than `grace`, keeping the time of the newest for [`Self::outdates`]; whether any post is
    /// still marked.
    pub(super) fn sweep(&self, grace: Duration) -> bool {
        if self.elsewhere.load(Ordering::Relaxed) > 0
            && let Some(mut last) = self.swept.try_lock()
            && last.elapsed() >= Duration::from_secs(1).min(grace)
        {
            *last = Instant::now();
            let mut gone = 0;
            let mut newest = 0u64;
            self.posts.retain(|_, at| match at {
                Some(t) if t.elapsed() >= grace => {
                    gone += 1;
                    // At least 1: 0 means nothing swept.
                    newest = newest.max((t.saturating_duration_since(self.base).as_nanos() as u64).max(1));
                    false
                }
                _ => true,
            });
            if gone > 0 {
                // Before the counts fall: a check that finds nothing marked sees this instead.
                self.swept_to.fetch_max(newest, Ordering::AcqRel);
                self.count.fetch_sub(gone, Ordering::SeqCst);
                self.elsewhere.fetch_sub(gone, Ordering::SeqCst);
            }
        }
        self.count.load(Ordering::SeqCst) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_elsewhere_outlasts_one_retraction_batch_until_its_grace_is_over() {
        let d = Deleting::new();
        // This node's own deletion: until its retraction job ends.
        d.mark(10, false);
        assert!(d.contains(10));
        d.retracted(10);
        assert!(!d.contains(10));
        // Another node's: one reader partition's batch does not end it (the others' may follow),
        // nor does a sweep within the grace; a sweep past it does.
        d.mark(11, true);
        d.mark(12, false);
        d.retracted(11);
        assert!(d.contains(11));
        assert!(d.sweep(RETRACTION_GRACE));
        assert!(d.contains(11));
        assert!(d.sweep(Duration::ZERO), "12 is still being retracted here");
        assert!(!d.contains(11));
        assert!(d.contains(12), "a sweep leaves this node's own deletions");
        d.retracted(12);
        assert!(!d.sweep(Duration::ZERO), "nothing counted");
        assert_eq!(d.count.load(Ordering::SeqCst), 0);
        assert_eq!(d.elsewhere.load(Ordering::SeqCst), 0);
    }

    /// Returns once the clock has moved on, so the instants around it differ.
    fn tick() {
        let t = Instant::now();
        while Instant::now() <= t {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn what_was_built_before_a_swept_deletion_is_outdated_and_what_came_after_is_not() {
        let d = Deleting::new();
        let before = Instant::now();
        assert!(!d.outdates(before), "nothing swept yet");
        // This node's own deletions never outdate anything: their marks last until retracted.
        d.mark(20, false);
        d.sweep(Duration::ZERO);
        assert!(!d.outdates(before));
        d.retracted(20);
        // Another node's, past its grace with no retraction batch come.
        tick();
        d.mark(21, true);
        tick();
        let after = Instant::now();
        assert!(
            !d.outdates(before),
            "still marked: the mark itself keeps such pages out"
        );
        assert!(d.contains(21));
        assert!(!d.sweep(Duration::ZERO));
        assert!(!d.contains(21));
        assert!(d.outdates(before), "built before the deletion: may hold the post");
        assert!(!d.outdates(after), "built after the deletion: cannot hold it");
        assert_eq!(d.count.load(Ordering::SeqCst), 0);
        assert_eq!(d.elsewhere.load(Ordering::SeqCst), 0);
    }
}
