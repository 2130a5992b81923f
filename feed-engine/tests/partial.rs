//! Pages that could not include everything say so, with a reason and a cursor that asks again;
//! thin feeds are not padded; a returning reader's first page is right before the rebuild runs.

mod common;

use common::{DAY, Env};
use feed_engine::{FeedPath, PolicyKind};

#[test]
fn a_page_past_the_read_budget_says_it_is_partial() {
    // Budget 0: the first look at the clock (after 32 sources) ends the merge.
    let mut env = Env::new(|c| {
        c.policy.kind = PolicyKind::AlwaysPull;
        c.read_budget_ms = 0;
    });
    let r = env.user("r");
    let authors = env.users("a", 40);
    let mut all = Vec::new();
    for &a in &authors {
        env.e().follow(r, a).unwrap();
        all.push(env.post(a, "hi"));
    }
    env.idle();
    for page_size in [10, 100] {
        let p = env.e().home_feed(r, page_size, None).unwrap();
        let why = p.partial.as_deref().expect("partial");
        assert!(why.contains("read budget") && why.contains("of 41 sources"), "{why}");
        let again = p.next_cursor.as_deref().expect("a cursor to come back with");
        let q = env.e().home_feed(r, page_size, Some(again)).unwrap();
        assert!(q.partial.is_some());
        assert_eq!(
            q.items.iter().map(|i| i.post.id).collect::<Vec<_>>(),
            p.items.iter().map(|i| i.post.id).collect::<Vec<_>>(),
            "the cursor asks for the same page again"
        );
    }
    // With time to merge everything the same read is complete (and nothing partial was cached).
    env.reopen_with(|c| c.read_budget_ms = 1000);
    let p = env.e().home_feed(r, 10, None).unwrap();
    assert_eq!(p.partial, None);
    let mut model: Vec<_> = all.iter().map(|p| (p.rank, p.id)).collect();
    model.sort_unstable_by(|x, y| y.cmp(x));
    let expected: Vec<u64> = model.iter().take(10).map(|&(_, id)| id).collect();
    assert_eq!(p.items.iter().map(|i| i.post.id).collect::<Vec<_>>(), expected);
}

#[test]
fn a_thin_feed_is_not_padded_with_discovery() {
    let env = Env::new(|_| {});
    let [r, quiet, loud] = [env.user("r"), env.user("quiet"), env.user("loud")];
    env.post(loud, "trending elsewhere");
    env.idle();
    env.e().follow(r, quiet).unwrap();
    let p = env.e().home_feed(r, 20, None).unwrap();
    assert!(p.items.is_empty(), "only followed accounts' posts");
    assert_ne!(p.path, FeedPath::Discovery);
    assert_eq!((p.partial, p.next_cursor), (None, None));
}

#[test]
fn a_returning_readers_first_page_is_right_before_the_rebuild_runs() {
    let mut env = Env::new(|c| c.policy.kind = PolicyKind::CostBased);
    let [r, a] = [env.user("r"), env.user("a")];
    env.e().follow(r, a).unwrap();
    // An active reader → push.
    env.read_actively_for_a_day(r);
    let p1 = env.post(a, "while active");
    env.idle();
    assert_eq!(env.stored_ids(r), vec![p1.id]);
    // Workers paused: no fanout and no rebuild can run from here on.
    env.reopen_with(|c| c.fanout_workers = 0);
    env.clock.advance(4 * DAY);
    let p2 = env.post(a, "while away");
    let page = env.e().home_feed(r, 10, None).unwrap();
    assert_eq!(page.path, FeedPath::Pull);
    assert_eq!(page.partial, None);
    assert_eq!(
        page.items.iter().map(|i| i.post.id).collect::<Vec<_>>(),
        vec![p2.id, p1.id],
        "complete at once"
    );
    assert_eq!(env.stored_ids(r), vec![p1.id], "the rebuild has not run");
    // With workers again, pending fanout resumes and a read starts the rebuild.
    env.reopen_with(|c| c.fanout_workers = 2);
    for _ in 0..10 {
        env.e().home_feed(r, 10, None).unwrap();
        env.clock.advance(60_000);
    }
    env.idle();
    assert_eq!(env.stored_ids(r), vec![p2.id, p1.id]);
}
