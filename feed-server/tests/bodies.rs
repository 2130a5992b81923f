//! Post bodies on their authors' nodes, on a real cluster (3 nats-servers, 3 feed nodes,
//! checkpoints and partition snapshots every second, a body window of 1 s, suspicion 3 s).
//!
//! Three authors, one per node, post four times each. Once their posts are older than the
//! window and their partitions' base snapshots cover them, each node keeps the bodies of its
//! own author's posts only: it trims exactly the other eight to heads. Every read through every
//! node — one post, several, an author's posts, a home feed — still returns each post whole,
//! its body fetched from its author's node, once: the reader's node keeps what it fetched. Then
//! the author on a seeded node posts once more, and once that post too is a head elsewhere, the
//! node is `kill -9`ed: a home feed read through a survivor before the takeover is `partial`
//! with its reason — the one post whose body was never fetched comes as a head, the four read
//! before are whole from the kept bodies — never a post silently without its text; after the takeover the
//! survivors put the bodies back from the snapshots and every read is whole again, and again
//! once the node is back. `GetPosts` refuses bad input alike on every node.
//!
//! The seed is printed; `FEEDLINE_SEED=N` replays one, `FEEDLINE_CLUSTER_ROUNDS=N` runs more.

mod common;

use std::collections::BTreeMap;

use common::Rng;
use common::cluster::TestCluster;
use common::cluster::checks::{follow_all, restart_and_rejoin, settled, victim_and_survivors};
use common::cluster::wait_for;
use common::cluster_calls::{WAIT, metric_sum};
use feedline_proto::v1 as pb;
use pb::feed_service_client::FeedServiceClient;
use pb::post_service_client::PostServiceClient;
use tonic::Code;

const TRIMMED: &str = "feedline_post_bodies_trimmed_total";
const FILLED: &str = "feedline_post_bodies_filled_total";
const FETCHED: &str = "feedline_post_bodies_fetched_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_posts_keep_their_bodies_on_their_authors_nodes_and_every_read_stays_whole() {
    for (round, seed) in common::seeded_rounds(0x00b0_d1e5).into_iter().enumerate() {
        eprintln!("post bodies round {round}: FEEDLINE_SEED={seed}");
        one_round(seed).await;
    }
}

fn count(c: &TestCluster, i: usize, name: &str) -> f64 {
    metric_sum(&c.scrape(i), name, "")
}

/// The first 100 posts of `reader`'s home feed, read through node `i`.
async fn home_page(c: &TestCluster, i: usize, reader: u64) -> Result<pb::FeedPage, tonic::Status> {
    let req = c.req(pb::GetHomeFeedRequest {
        reader_id: reader,
        page_size: 100,
        ..Default::default()
    });
    Ok(FeedServiceClient::new(c.channel(i).await)
        .get_home_feed(req)
        .await?
        .into_inner())
}

/// Every post of `texts` as `reader` reads it through each node of `via`: one by one, all at
/// once, by author, and in the home feed — each whole, with its text.
async fn check_whole(c: &TestCluster, via: &[usize], reader: u64, texts: &BTreeMap<u64, (u64, String)>, seed: u64) {
    let ids: Vec<u64> = texts.keys().copied().collect();
    for &i in via {
        let mut posts = PostServiceClient::new(c.channel(i).await);
        for (&id, (_, text)) in texts {
            let p = settled(&[Code::Unavailable], || c.post(i, reader, id))
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: post {id} through node {i}: {e}"));
            assert_eq!(&p.text, text, "seed {seed}: post {id} through node {i}");
        }
        let got = posts
            .get_posts(c.req(pb::GetPostsRequest {
                user_id: reader,
                post_ids: ids.clone(),
            }))
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: GetPosts through node {i}: {e}"))
            .into_inner()
            .posts;
        let got: Vec<(u64, String)> = got.into_iter().map(|p| (p.id, p.text)).collect();
        let want: Vec<(u64, String)> = texts.iter().map(|(&id, (_, t))| (id, t.clone())).collect();
        assert_eq!(got, want, "seed {seed}: GetPosts through node {i}, in the order asked");
        let authors: std::collections::BTreeSet<u64> = texts.values().map(|(a, _)| *a).collect();
        for a in authors {
            let page = posts
                .list_author_posts(c.req(pb::ListAuthorPostsRequest {
                    user_id: reader,
                    author_id: a,
                    page_size: 100,
                    cursor: String::new(),
                }))
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: author {a}'s posts through node {i}: {e}"))
                .into_inner();
            for p in page.posts {
                assert_eq!(Some(&p.text), texts.get(&p.id).map(|(_, t)| t), "seed {seed}: node {i}");
            }
        }
        let page = home_page(c, i, reader)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: home feed through node {i}: {e}"));
        assert!(!page.partial, "seed {seed}: node {i}: {}", page.partial_reason);
        let seen: BTreeMap<u64, String> = page.posts.into_iter().map(|p| (p.id, p.text)).collect();
        let want: BTreeMap<u64, String> = texts.iter().map(|(&id, (_, t))| (id, t.clone())).collect();
        assert_eq!(seen, want, "seed {seed}: the home feed through node {i}");
    }
}

/// Waits until each node of `nodes` has trimmed at least `n` bodies, a sign-up every tenth look
/// keeping the checkpoints (and so the snapshots' bases) moving: an idle log moves none.
async fn wait_trimmed(c: &TestCluster, k: &mut usize, nodes: &[usize], n: f64) {
    wait_for("the nodes to trim the other nodes' posts to heads", WAIT, || {
        *k += 1;
        let k = *k;
        async move {
            if k % 10 == 1 {
                c.create_user(k % 3, &format!("bd_filler_{k}")).await;
            }
            nodes.iter().all(|&i| count(c, i, TRIMMED) >= n).then_some(())
        }
    })
    .await;
}

async fn one_round(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    // No hot layer: every read loads its posts from RocksDB (a cached body would hide a head).
    let mut c = TestCluster::start_toml(
        3,
        1,
        true,
        &["--suspicion-ms", "3000", "--body-window-s", "1"],
        "[engine]\nhot-bytes = 0\n",
    )
    .await;
    let (victim, alive) = victim_and_survivors(&mut rng);
    let mut authors = Vec::new();
    for i in 0..3 {
        authors.push(c.create_user(i, &format!("bd_author_{i}")).await);
    }
    // The reader is kept by a survivor, so its feed is read there while the victim is down.
    let reader = c.create_user(alive[0], "bd_reader").await;
    follow_all(&c, &[0, 1, 2], &[reader], &authors).await;
    let mut texts: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    for k in 0..4 {
        for (i, &a) in authors.iter().enumerate() {
            let text = format!("post {k} of the author on node {i}, long enough to be worth trimming");
            let via = rng.below(3) as usize;
            let id = settled(&[Code::Unavailable], || c.publish(via, a, &text))
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: publish: {e}"));
            texts.insert(id, (a, text));
        }
    }

    // Each node trims exactly the eight posts of the two authors it does not hold, once its
    // partition's base snapshot covers them. A base moves only as every node's checkpoint
    // passes a newer snapshot, and an idle log moves no checkpoint: sign-ups keep it moving.
    let mut k = 0;
    wait_trimmed(&c, &mut k, &[0, 1, 2], 8.0).await;
    for i in 0..3 {
        assert_eq!(
            count(&c, i, TRIMMED),
            8.0,
            "seed {seed}: node {i} trims only others' posts"
        );
    }
    check_whole(&c, &[0, 1, 2], reader, &texts, seed).await;
    // Every read is served by the reader's node: it fetched the other two authors' bodies,
    // each once however many times it was read (check_whole reads each post 12 times).
    assert_eq!(
        count(&c, alive[0], FETCHED),
        8.0,
        "seed {seed}: node {} read each body from its author's node once",
        alive[0]
    );

    // One more post by the victim's author, never read before it dies.
    let text = format!("the last post of the author on node {victim}, never read before it dies");
    let last = settled(&[Code::Unavailable], || c.publish(alive[1], authors[victim], &text))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: publish: {e}"));
    texts.insert(last, (authors[victim], text));
    wait_trimmed(&c, &mut k, &alive, 9.0).await;

    // The victim dies: until its partitions are taken over, its author's bodies cannot be had.
    let epoch = |c: &TestCluster, i: usize| metric_sum(&c.scrape(i), "feedline_cluster_epoch", "");
    let before = epoch(&c, alive[0]);
    c.nodes[victim].kill9();
    let page = home_page(&c, alive[0], reader)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: the reader's feed with node {victim} down: {e}"));
    let headless: Vec<u64> = page.posts.iter().filter(|p| p.text.is_empty()).map(|p| p.id).collect();
    if epoch(&c, alive[0]) == before {
        // Read before the takeover: the dead node's author's post never fetched is a head;
        // the four fetched before are whole from the bodies kept.
        assert!(page.partial, "seed {seed}: a page missing bodies is partial");
        assert!(
            page.partial_reason.contains(&format!("n{victim}")),
            "seed {seed}: the reason names the node: {}",
            page.partial_reason
        );
        assert_eq!(
            headless,
            vec![last],
            "seed {seed}: exactly the post never fetched comes as a head"
        );
        assert_eq!(page.posts.len(), texts.len(), "seed {seed}: the page keeps every post");
        for p in page.posts.iter().filter(|p| p.id != last) {
            assert_eq!(
                Some(&p.text),
                texts.get(&p.id).map(|(_, t)| t),
                "seed {seed}: post {}",
                p.id
            );
        }
    } else {
        eprintln!("seed {seed}: the takeover came before the read");
        assert!(
            headless.is_empty() || page.partial,
            "seed {seed}: heads only on a partial page"
        );
    }
    // A single post whose body cannot be had is refused with a retry hint, never sent headless;
    // one whose body was fetched before is whole.
    match c.post(alive[0], reader, last).await {
        Err(e) => assert_eq!(e.code(), Code::Unavailable, "seed {seed}: {e}"),
        Ok(p) => assert_eq!(p.text, texts[&last].1, "seed {seed}"),
    }
    let (&kept, (_, kept_text)) = texts
        .iter()
        .find(|(id, (a, _))| *a == authors[victim] && **id != last)
        .unwrap();
    let p = settled(&[Code::Unavailable], || c.post(alive[0], reader, kept))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: a post whose body was kept: {e}"));
    assert_eq!(&p.text, kept_text, "seed {seed}: post {kept}");

    // The survivors take the partitions over and put the bodies back from the snapshots.
    c.wait_placement_settled_among(&alive, WAIT).await;
    let filled: f64 = alive.iter().map(|&i| count(&c, i, FILLED)).sum();
    assert!(
        filled >= 4.0,
        "seed {seed}: the survivors put back node {victim}'s author's four bodies (got {filled})"
    );
    check_whole(&c, &alive, reader, &texts, seed).await;

    // Bad input, through every live node: the same refusal, nothing changed.
    for &i in &alive {
        let mut posts = PostServiceClient::new(c.channel(i).await);
        let err = posts
            .get_posts(c.req(pb::GetPostsRequest {
                user_id: reader,
                post_ids: (1..=101).collect(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "seed {seed}: node {i}: {err}");
        let err = posts
            .get_posts(c.req(pb::GetPostsRequest {
                user_id: u64::MAX,
                post_ids: vec![*texts.keys().next().unwrap()],
            }))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::NotFound,
            "seed {seed}: node {i}: an unknown user: {err}"
        );
        let none = posts
            .get_posts(c.req(pb::GetPostsRequest {
                user_id: reader,
                post_ids: vec![12345],
            }))
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: node {i}: a post that does not exist: {e}"));
        assert!(none.into_inner().posts.is_empty());
    }

    // The node comes back, takes its partitions back, and every read through every node is whole.
    restart_and_rejoin(&mut c, victim).await;
    c.wait_placement_settled(WAIT).await;
    check_whole(&c, &[0, 1, 2], reader, &texts, seed).await;
}
