//! Engagement velocity in memory: each recently engaged post's counts and heat (engagement
//! decayed over `heat-halving-ms`), and each hashtag's heat. The ranker, the discovery pool and
//! tag trends read it; likes and comments write it once their batch is durable.
//!
//! Counts are exact for posts created at or after `exact_from_ms`: every engagement since such a
//! post was created went through [`Trends::engaged`], so an absent post has none. Older posts
//! (created before the engine opened, or before a reset) are read from the store. Past
//! `trends-max` entries the map resets: heat is forgotten and the exact boundary moves to now.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::config::RankerConfig;
use crate::model::{Post, PostId};
use crate::social::{Decayed, Engagement};

/// What is known in memory of one post.
#[derive(Debug, Clone, Copy, Default)]
struct PostHeat {
    likes: i64,
    comments: i64,
    heat: Decayed,
}

/// One post's engagement as the ranker sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Seen {
    /// Counts when memory knows them exactly (else the caller reads the store).
    pub counts: Option<Engagement>,
    /// Engagement velocity now.
    pub heat: f64,
}

/// Engagement velocity of recent posts and of hashtags.
pub(crate) struct Trends {
    /// FNV, not SipHash: a ranked page looks up hundreds of post ids (DoS-resistant hashing buys
    /// nothing for ids the engine minted).
    posts: DashMap<PostId, PostHeat, fnv::FnvBuildHasher>,
    tags: DashMap<String, Decayed>,
    exact_from_ms: AtomicU64,
    halving_ms: u64,
    max: usize,
}

/// What one engagement adds to a post's heat: likes count once, comments twice.
fn amount(likes: i64, comments: i64) -> f64 {
    (likes.max(0) + 2 * comments.max(0)) as f64
}

impl Trends {
    /// Empty, exact for posts created from `now_ms` on.
    pub fn new(cfg: &RankerConfig, now_ms: u64) -> Self {
        Trends {
            posts: DashMap::with_hasher(fnv::FnvBuildHasher::default()),
            tags: DashMap::new(),
            exact_from_ms: AtomicU64::new(now_ms),
            halving_ms: cfg.heat_halving_ms,
            max: cfg.trends_max,
        }
    }

    /// `post` gained `likes` likes and `comments` comments (negative: taken back) at `now_ms`.
    pub fn engaged(&self, post: &Post, likes: i64, comments: i64, now_ms: u64) {
        let add = amount(likes, comments);
        {
            let mut e = self.posts.entry(post.id).or_default();
            e.likes += likes;
            e.comments += comments;
            if add > 0.0 {
                e.heat.add(now_ms, add, self.halving_ms);
            }
        }
        if add > 0.0 {
            for t in post.tags() {
                self.tags.entry(t).or_default().add(now_ms, add, self.halving_ms);
            }
        }
        if self.posts.len() + self.tags.len() > self.max {
            self.reset(now_ms);
        }
    }

    /// `post` is gone: its entry goes.
    pub fn forget(&self, post: PostId) {
        self.posts.remove(&post);
    }

    /// Forgets all heat; posts are exact again from `now_ms` on.
    fn reset(&self, now_ms: u64) {
        self.exact_from_ms.fetch_max(now_ms, Ordering::SeqCst);
        self.posts.clear();
        self.tags.clear();
        metrics::counter!(crate::metrics::TREND_RESETS).increment(1);
    }

    /// What memory knows of `post` at `now_ms`.
    pub fn seen(&self, post: &Post, now_ms: u64) -> Seen {
        let exact = post.created_at_ms >= self.exact_from_ms.load(Ordering::SeqCst);
        match self.posts.get(&post.id) {
            Some(h) => Seen {
                counts: exact.then(|| Engagement {
                    likes: h.likes.max(0) as u64,
                    comments: h.comments.max(0) as u64,
                }),
                heat: h.heat.at(now_ms, self.halving_ms),
            },
            None => Seen {
                counts: exact.then(Engagement::default),
                heat: 0.0,
            },
        }
    }

    /// The hottest hashtags now, hottest first, with their heat.
    pub fn hot_tags(&self, now_ms: u64, limit: usize) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .tags
            .iter()
            .map(|kv| (kv.key().clone(), kv.value().at(now_ms, self.halving_ms)))
            .filter(|(_, h)| *h > 0.01)
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        v
    }

    /// Entries held (posts and tags).
    pub fn len(&self) -> usize {
        self.posts.len() + self.tags.len()
    }
}
