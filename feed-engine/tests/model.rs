//! Model-based test: random sequences of publish / follow / unfollow / block / mute / delete /
//! read / reopen on real RocksDB, under every fanout policy, checked against a naive model of
//! what each home feed must contain. Authors are prolific (bursts take one past the 10 posts
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
}

impl Model {
    fn blocked(&self, a: usize, b: usize) -> bool {
        self.blocks.contains(&(a, b)) || self.blocks.contains(&(b, a))
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

fn run(ops: Vec<Op>, policy: PolicyKind, celebrity: u64, page: usize, states: usize) -> Result<(), TestCaseError> {
    let mut env = Env::new(|c| {
        c.policy.kind = policy;
        c.celebrity_followers = celebrity;
        c.reader_states_max = states;
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
    if m.follows.iter().any(|&(f, _)| f == r) {
        prop_assert_eq!(got, m.feed(r), "reader {} under {:?}, pages of {}", r, policy, page);
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
    fn feeds_match_the_model(ops in proptest::collection::vec(op(), 1..60), p in policy(), celebrity in prop_oneof![Just(2u64), Just(1_000u64)], page in 1usize..6, states in prop_oneof![Just(2usize), Just(1_000_000)]) {
        run(ops, p, celebrity, page, states)?;
    }
}
