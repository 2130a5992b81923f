//! Model-based test: random sequences of publish / follow / unfollow / block / mute / delete /
//! like / unlike / comment / read / reopen on real RocksDB, under every fanout policy, checked
//! against a naive model of what each home feed must contain — in stored order, and as a set
//! (each post once) through the engagement ranker's pinned sessions — and of each post's counts. Authors are prolific (bursts take one past the 10 posts
//! an outbox head caches) and feeds are paged to the end in small pages, so a pulled, pushed,
//! mixed, cached or rebuilt feed must be the same feed at every depth — also when reader
//! states are evicted from memory (a cap of 2) and load again.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Env;
use feed_engine::{PolicyKind, UserId};
use proptest::prelude::*;

const USERS: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    Publish(usize),
    /// Several posts in a row by one author.
    Burst(usize, usize),
    Follow(usize, usize),
    Unfollow(usize, usize),
    Block(usize, usize),
    Unblock(usize, usize),
    Mute(usize, usize),
    Unmute(usize, usize),
    Delete(usize),
    Like(usize, usize),
    Unlike(usize, usize),
    Comment(usize, usize),
    Read(usize),
    Reopen,
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    prop_oneof![
        4 => u.clone().prop_map(Op::Publish),
        1 => (u.clone(), 5usize..25).prop_map(|(a, n)| Op::Burst(a, n)),
        4 => (u.clone(), u.clone()).prop_map(|(a, b)| Op::Follow(a, b)),
        1 => (u.clone(), u.clone()).prop_map(|(a, b)| Op::Unfollow(a, b)),
        1 => (u.clone(), u.clone()).prop_map(|(a, b)| Op::Block(a, b)),
        1 => (u.clone(), u.clone()).prop_map(|(a, b)| Op::Unblock(a, b)),
        1 => (u.clone(), u.clone()).prop_map(|(a, b)| Op::Mute(a, b)),
        1 => (u.clone(), u.clone()).prop_map(|(a, b)| Op::Unmute(a, b)),
        1 => (0usize..256).prop_map(Op::Delete),
        3 => (u.clone(), 0usize..256).prop_map(|(a, i)| Op::Like(a, i)),
        1 => (u.clone(), 0usize..256).prop_map(|(a, i)| Op::Unlike(a, i)),
        1 => (u.clone(), 0usize..256).prop_map(|(a, i)| Op::Comment(a, i)),
        4 => u.clone().prop_map(Op::Read),
        1 => Just(Op::Reopen),
        1 => (1u64..600).prop_map(Op::Wait),
    ]
}

#[derive(Default)]
struct Model {
    follows: BTreeSet<(usize, usize)>,
    blocks: BTreeSet<(usize, usize)>,
    mutes: BTreeSet<(usize, usize)>,
    /// post id → (author, rank, alive)
    posts: BTreeMap<u64, (usize, u64, bool)>,
    likes: BTreeSet<(usize, u64)>,
    comments: BTreeMap<u64, u64>,
}

impl Model {
    fn blocked(&self, a: usize, b: usize) -> bool {
        self.blocks.contains(&(a, b)) || self.blocks.contains(&(b, a))
    }

    /// The `i`-th alive post (wrapping) with its author.
    fn alive(&self, i: usize) -> Option<(u64, usize)> {
        let alive: Vec<(u64, usize)> = self.posts.iter().filter(|p| p.1.2).map(|(&id, p)| (id, p.0)).collect();
        alive.get(i % alive.len().max(1)).copied()
    }

    /// Whether `u` may engage with `author`'s posts: no block either way.
    fn may_engage(&self, u: usize, author: usize) -> bool {
        u == author || !self.blocked(u, author)
    }

    /// The feed a reader must see: alive posts of themself and of followed, unmuted, unblocked
    /// authors, highest rank first.
    fn feed(&self, r: usize) -> Vec<u64> {
        let mut v: Vec<(u64, u64)> = self
            .posts
            .iter()
            .filter(|(_, (a, _, alive))| {
                *alive
                    && (*a == r
                        || (self.follows.contains(&(r, *a))
                            && !self.mutes.contains(&(r, *a))
                            && !self.blocks.contains(&(r, *a))))
            })
            .map(|(&id, &(_, rank, _))| (rank, id))
            .collect();
        v.sort_unstable_by(|x, y| y.cmp(x));
        v.into_iter().map(|(_, id)| id).collect()
    }
}

fn run(
    ops: Vec<Op>,
    policy: PolicyKind,
    celebrity: u64,
    page: usize,
    states: usize,
    cap: usize,
) -> Result<(), TestCaseError> {
    let mut env = Env::new(|c| {
        c.policy.kind = policy;
        c.celebrity_followers = celebrity;
        c.reader_states_max = states;
        c.timeline_cap = cap;
    });
    let ids: Vec<UserId> = (0..USERS).map(|i| env.user(&format!("u{i}"))).collect();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Publish(a) => {
                let p = env.post(ids[a], "x");
                m.posts.insert(p.id, (a, p.rank, true));
            }
            Op::Burst(a, n) => {
                for _ in 0..n {
                    let p = env.post(ids[a], "x");
                    m.posts.insert(p.id, (a, p.rank, true));
                }
            }
            Op::Follow(a, b) => {
                let r = env.e().follow(ids[a], ids[b]);
                prop_assert_eq!(r.is_ok(), a != b && !m.blocked(a, b), "follow {} {}: {:?}", a, b, r);
                if r.is_ok() {
                    m.follows.insert((a, b));
                }
            }
            Op::Unfollow(a, b) => {
                prop_assert_eq!(env.e().unfollow(ids[a], ids[b]).is_ok(), a != b);
                m.follows.remove(&(a, b));
            }
            Op::Block(a, b) => {
                prop_assert_eq!(env.e().block(ids[a], ids[b]).is_ok(), a != b);
                if a != b {
                    m.blocks.insert((a, b));
                    m.follows.remove(&(a, b));
                    m.follows.remove(&(b, a));
                }
            }
            Op::Unblock(a, b) => {
                prop_assert_eq!(env.e().unblock(ids[a], ids[b]).is_ok(), a != b);
                m.blocks.remove(&(a, b));
            }
            Op::Mute(a, b) => {
                prop_assert_eq!(env.e().mute(ids[a], ids[b]).is_ok(), a != b);
                if a != b {
                    m.mutes.insert((a, b));
                }
            }
            Op::Unmute(a, b) => {
                prop_assert_eq!(env.e().unmute(ids[a], ids[b]).is_ok(), a != b);
                m.mutes.remove(&(a, b));
            }
            Op::Delete(i) => {
                let alive: Vec<(u64, usize)> = m.posts.iter().filter(|p| p.1.2).map(|(&id, p)| (id, p.0)).collect();
                if let Some(&(id, a)) = alive.get(i % alive.len().max(1)) {
                    env.e().delete_post(ids[a], id).unwrap();
                    m.posts.get_mut(&id).unwrap().2 = false;
                    m.likes.retain(|&(_, p)| p != id);
                    m.comments.remove(&id);
                }
            }
            Op::Like(u, i) => {
                if let Some((id, a)) = m.alive(i) {
                    let r = env.e().like(ids[u], id);
                    prop_assert_eq!(r.is_ok(), m.may_engage(u, a), "like {} of {}'s post: {:?}", u, a, r);
                    if let Ok(changed) = r {
                        prop_assert_eq!(changed, m.likes.insert((u, id)), "a like changes once");
                    }
                }
            }
            Op::Unlike(u, i) => {
                if let Some((id, a)) = m.alive(i) {
                    // Only the author's block hides the post; one's own block still lets a like go.
                    let r = env.e().unlike(ids[u], id);
                    let visible = u == a || !m.blocks.contains(&(a, u));
                    prop_assert_eq!(r.is_ok(), visible, "unlike {} of {}'s post: {:?}", u, a, r);
                    if let Ok(changed) = r {
                        prop_assert_eq!(changed, m.likes.remove(&(u, id)));
                    }
                }
            }
            Op::Comment(u, i) => {
                if let Some((id, a)) = m.alive(i) {
                    let r = env.e().comment(ids[u], id, None, "c");
                    prop_assert_eq!(r.is_ok(), m.may_engage(u, a), "comment {} on {}'s post: {:?}", u, a, r);
                    if r.is_ok() {
                        *m.comments.entry(id).or_default() += 1;
                    }
                }
            }
            Op::Read(r) => {
                prop_assert!(env.e().wait_idle(Duration::from_secs(30)));
                check_reader(&env, &m, &ids, r, page, policy)?;
            }
            Op::Reopen => env.reopen(),
            Op::Wait(minutes) => env.clock.advance(minutes * 60_000),
        }
    }
    env.idle();
    for r in 0..USERS {
        check_reader(&env, &m, &ids, r, page, policy)?;
    }
    Ok(())
}

/// A reader's whole home feed, paged to the end, against the model. A reader who follows
/// nobody gets discovery, with their own posts ranked in: those, in order, must all be there.
fn check_reader(
    env: &Env,
    m: &Model,
    ids: &[UserId],
    r: usize,
    page: usize,
    policy: PolicyKind,
) -> Result<(), TestCaseError> {
    let got = env.feed_ids(ids[r], page);
    // Counts of every post the model knows, deleted ones at zero.
    let all: Vec<u64> = m.posts.keys().copied().collect();
    for (id, e) in all.iter().zip(env.e().engagement(&all).unwrap()) {
        let likes = m.likes.iter().filter(|&&(_, p)| p == *id).count() as u64;
        let comments = m.comments.get(id).copied().unwrap_or(0);
        prop_assert_eq!((e.likes, e.comments), (likes, comments), "counts of post {}", id);
    }
    if m.follows.iter().any(|&(f, _)| f == r) {
        prop_assert_eq!(got, m.feed(r), "reader {} under {:?}, pages of {}", r, policy, page);
        // The engagement ranker's order differs; its pages hold the same posts, each once.
        let mut ranked = Vec::new();
        let mut cursor = None;
        loop {
            let p = env
                .e()
                .ranked_feed(
                    ids[r],
                    Some(feed_engine::Ranker::Engagement),
                    page,
                    cursor.as_deref(),
                    false,
                )
                .unwrap();
            ranked.extend(p.items.iter().map(|i| i.post.id));
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let set: BTreeSet<u64> = ranked.iter().copied().collect();
        prop_assert_eq!(set.len(), ranked.len(), "a ranked page repeated a post (reader {})", r);
        let want: BTreeSet<u64> = m.feed(r).into_iter().collect();
        prop_assert_eq!(set, want, "ranked feed of reader {} under {:?}", r, policy);
    } else {
        let own: Vec<u64> = got
            .into_iter()
            .filter(|id| m.posts.get(id).is_some_and(|p| p.0 == r))
            .collect();
        prop_assert_eq!(own, m.feed(r), "own posts of reader {} (follows nobody)", r);
    }
    Ok(())
}

fn policy() -> impl Strategy<Value = PolicyKind> {
    prop_oneof![
        Just(PolicyKind::AlwaysPush),
        Just(PolicyKind::AlwaysPull),
        Just(PolicyKind::CostBased),
        Just(PolicyKind::SpecRule)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    // A timeline cap of 6 is trimmed by a single burst: pushed feeds must reach below it.
    fn feeds_match_the_model(ops in proptest::collection::vec(op(), 1..60), p in policy(), celebrity in prop_oneof![Just(2u64), Just(1_000u64)], page in 1usize..6, states in prop_oneof![Just(2usize), Just(1_000_000)], cap in prop_oneof![Just(6usize), Just(1_000)]) {
        run(ops, p, celebrity, page, states, cap)?;
    }
}
