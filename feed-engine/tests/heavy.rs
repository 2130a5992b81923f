//! Readers who follow thousands of accounts: under the adaptive policies their feed is merged
//! from every followee's recent posts, so it holds every post in the pull window — more than a
//! capped timeline could — checked against a model.

mod common;

use common::Env;
use feed_engine::{FeedPath, PolicyKind};

#[test]
fn a_reader_following_5000_accounts_sees_every_post_in_the_window() {
    for kind in [PolicyKind::CostBased, PolicyKind::SpecRule] {
        let env = Env::new(|c| c.policy.kind = kind);
        let reader = env.user("reader");
        let handles: Vec<String> = (0..5000).map(|i| format!("a{i}")).collect();
        let authors = env.e().create_users(&handles).unwrap();
        let edges: Vec<_> = authors.iter().map(|&a| (reader, a)).collect();
        assert_eq!(env.e().follow_many(&edges).unwrap(), 5000);
        // An active reader (the cost model alone would push to them).
        for _ in 0..50 {
            env.e().home_feed(reader, 20, None).unwrap();
        }
        // 5,500 posts in the window: every author once, every tenth twice — 5.5× the cap.
        let mut model = Vec::new();
        for (i, &a) in authors.iter().enumerate() {
            let p = env.post(a, "hello");
            model.push((p.rank, p.id));
            if i % 10 == 0 {
                let p = env.post(a, "again");
                model.push((p.rank, p.id));
            }
        }
        env.idle();
        model.sort_unstable_by(|x, y| y.cmp(x));
        let expected: Vec<u64> = model.iter().map(|&(_, id)| id).collect();
        let first = env.e().home_feed(reader, 100, None).unwrap();
        assert_eq!(first.path, FeedPath::Pull, "{kind:?}: heavy readers are merged at read");
        assert_eq!(
            env.feed_ids(reader, 100),
            expected,
            "{kind:?}: every post, in rank order"
        );
        assert!(
            env.stored_ids(reader).len() <= 1100,
            "{kind:?}: nothing piles up in the stored timeline"
        );
    }
}
