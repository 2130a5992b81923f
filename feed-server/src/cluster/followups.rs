//! Follow-ups through the log. Likes and comments are decided on their post author's partition;
//! the engine writes their effects elsewhere — the engaging user's affinity, a reply's
//! notification to the parent comment's author, and the post's counts as every node shows them
//! — as follow-up records in the change's own batch (`feed_engine::followup`). This task sends
//! them on: it reads what is waiting, oldest first, and appends one message per users'
//! partition (`FollowUpForUsers` on `feedline.o.<p>.ev`, applied only by that partition's
//! owner, and replayed with its other events when the partition moves) and one with the newest
//! counts of each post (`FollowUpCounts`, replicated); it clears the records once the log has
//! acknowledged every message.
//!
//! A record is never lost: it is cleared only after its message is in the log, and a node that
//! takes the author's partition over replays the likes and writes their records again. It may be
//! sent twice (a crash before the clear, or both the old and the new holder sending it): an
//! affinity item is applied only past the last one its partition applied from the same origin,
//! and a count only if newer than the one held. Each node sends in key order, so the items of one
//! origin reach a partition in the order the likes were applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use feed_engine::{AffinityItem, CommentCountItem, FollowUp, FollowUpKey, GraphItem, LikeCountItem, ReplyItem};
use tokio::sync::watch;

use super::ring::partition_of;
use super::{Cluster, Event, log, now_ms, subjects};
use crate::ops::Op;

/// Records read (and sent) per round, at most.
const ROUND: usize = 16_384;

/// How long the task waits when nothing is waiting.
const IDLE: Duration = Duration::from_millis(10);

/// A round that sent something starts the next one this long after it began at the earliest:
/// under load a round carries this long's likes, so the replicated count messages every node
/// applies are a few a second per node however many likes there are (a post liked often gets
/// one count each time), while a like after a quiet spell goes out within [`IDLE`].
const ROUND_EVERY: Duration = Duration::from_millis(100);

/// One append: subject, message id, op.
type Message = (String, String, Op);

/// What one users' partition gets: affinity changes, reply notifications, graph halves.
type ForUsers = (Vec<AffinityItem>, Vec<ReplyItem>, Vec<GraphItem>);

/// The messages that carry `recs` (in key order), from node `me` of a cluster of `partitions`.
fn messages(me: &str, partitions: u32, recs: &[(FollowUpKey, FollowUp)]) -> Vec<Message> {
    let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
        return Vec::new();
    };
    let span = format!("fu-{me}-{}.{}-{}.{}", first.0.0, first.0.1, last.0.0, last.0.1);
    let mut users: BTreeMap<u32, ForUsers> = BTreeMap::new();
    let mut likes: BTreeMap<u64, LikeCountItem> = BTreeMap::new();
    let mut comments: BTreeMap<u64, CommentCountItem> = BTreeMap::new();
    let mut counted_on = None;
    for &((seq, idx), f) in recs {
        match f {
            FollowUp::Affinity {
                reader,
                author,
                amount,
                at_ms,
            } => users
                .entry(partition_of(reader, partitions))
                .or_default()
                .0
                .push(AffinityItem {
                    origin: partition_of(author, partitions),
                    origin_seq: seq,
                    idx,
                    reader,
                    author,
                    amount,
                    at_ms,
                }),
            FollowUp::Replied {
                recipient,
                actor,
                post,
                author,
                comment,
                at_ms,
            } => users
                .entry(partition_of(recipient, partitions))
                .or_default()
                .1
                .push(ReplyItem {
                    origin: partition_of(author, partitions),
                    origin_seq: seq,
                    idx,
                    recipient,
                    actor,
                    post,
                    comment,
                    at_ms,
                }),
            f @ FollowUp::Graph { user, .. } => {
                let item = f.graph_item((seq, idx), |u| partition_of(u, partitions));
                users.entry(partition_of(user, partitions)).or_default().2.extend(item);
            }
            FollowUp::LikeCount {
                post,
                author,
                likes: n,
                as_of,
            } => {
                counted_on.get_or_insert(author);
                let item = LikeCountItem {
                    post,
                    author,
                    likes: n,
                    as_of,
                };
                keep_newest(&mut likes, post, item, as_of, |i| i.as_of);
            }
            FollowUp::CommentCount {
                post,
                author,
                comments: n,
                as_of,
            } => {
                counted_on.get_or_insert(author);
                let item = CommentCountItem {
                    post,
                    author,
                    comments: n,
                    as_of,
                };
                keep_newest(&mut comments, post, item, as_of, |i| i.as_of);
            }
        }
    }
    let mut out: Vec<Message> = users
        .into_iter()
        .map(|(target, (affinity, replies, graph))| {
            (
                subjects::owned(target),
                format!("{span}-u{target}"),
                Op::FollowUpForUsers {
                    target,
                    affinity,
                    replies,
                    graph,
                },
            )
        })
        .collect();
    if let Some(author) = counted_on {
        out.push((
            subjects::replicated(partition_of(author, partitions)),
            format!("{span}-c"),
            Op::FollowUpCounts {
                likes: likes.into_values().collect(),
                comments: comments.into_values().collect(),
            },
        ));
    }
    out
}

/// Keeps in `m` the count of `post` with the highest `as_of`.
fn keep_newest<T>(m: &mut BTreeMap<u64, T>, post: u64, item: T, as_of: u64, of: impl Fn(&T) -> u64) {
    match m.get(&post) {
        Some(held) if of(held) >= as_of => {}
        _ => {
            m.insert(post, item);
        }
    }
}

/// The key after `k`.
fn next_key((seq, idx): FollowUpKey) -> FollowUpKey {
    match idx.checked_add(1) {
        Some(i) => (seq, i),
        None => (seq + 1, 0),
    }
}

/// Sends the follow-ups this node's engine writes until `stop`. `rewind` is set when a
/// handover replayed a partition's events (their records have older keys than what was sent):
/// the next round reads from the start again.
pub(super) async fn relay(cluster: Arc<Cluster>, rewind: Arc<AtomicBool>, mut stop: watch::Receiver<bool>) {
    let partitions = cluster.placement.map().partitions;
    let mut from: FollowUpKey = (0, 0);
    loop {
        if *stop.borrow() {
            return;
        }
        if rewind.swap(false, Ordering::SeqCst) {
            from = (0, 0);
        }
        let began = tokio::time::Instant::now();
        let e = cluster.engine.clone();
        let recs = match tokio::task::spawn_blocking(move || e.followups(from, ROUND)).await {
            Ok(Ok(r)) => r,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "reading follow-ups; retrying");
                Vec::new()
            }
            Err(_) => return,
        };
        let Some(&(last, _)) = recs.last() else {
            tokio::select! {
                _ = tokio::time::sleep(IDLE) => {}
                _ = cluster.relay.kick.notified() => {}
                _ = stop.changed() => return,
            }
            continue;
        };
        // The round's messages go to different subjects: appended concurrently (one round trip
        // to the log, not one per partition), each retried with its message id until the log
        // holds it. Rounds stay in order, so a partition's messages do too.
        let sends = messages(cluster.name(), partitions, &recs)
            .into_iter()
            .map(|(subject, msg_id, op)| {
                let cluster = &cluster;
                let mut stop = stop.clone();
                async move {
                    let (kind, n, graph_n) = match &op {
                        Op::FollowUpForUsers {
                            affinity,
                            replies,
                            graph,
                            ..
                        } => ("user", affinity.len() + replies.len(), graph.len()),
                        Op::FollowUpCounts { likes, comments } => ("count", likes.len() + comments.len(), 0),
                        _ => ("other", 0, 0),
                    };
                    let ev = Event {
                        origin: cluster.name().to_string(),
                        req: cluster.next_req.fetch_add(1, Ordering::SeqCst),
                        at_ms: now_ms(),
                        id: None,
                        op,
                    };
                    let payload = match serde_json::to_vec(&ev) {
                        Ok(p) => p,
                        Err(err) => {
                            tracing::error!(error = %err, "encoding a follow-up; it stays queued");
                            return false;
                        }
                    };
                    let mut attempt = 0u32;
                    loop {
                        match log::append_once(&cluster.js, &subject, &msg_id, &payload).await {
                            Ok(_) => break,
                            Err(err) => {
                                attempt += 1;
                                tracing::warn!(attempt, error = %err, "appending follow-ups; retrying");
                                tokio::select! {
                                    _ = tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(20)))) => {}
                                    _ = stop.changed() => return false,
                                }
                            }
                        }
                    }
                    metrics::counter!(feed_engine::metrics::FOLLOWUPS_SENT, "kind" => kind).increment(n as u64);
                    metrics::counter!(feed_engine::metrics::FOLLOWUPS_SENT, "kind" => "graph")
                        .increment(graph_n as u64);
                    true
                }
            });
        if !futures::future::join_all(sends).await.into_iter().all(|sent| sent) {
            // Stopping (or a message that cannot be encoded): nothing is cleared.
            return;
        }
        let keys: Vec<FollowUpKey> = recs.iter().map(|&(k, _)| k).collect();
        let e = cluster.engine.clone();
        match tokio::task::spawn_blocking(move || e.clear_followups(&keys)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "clearing sent follow-ups (they will be sent again)"),
            Err(_) => return,
        }
        from = next_key(last);
        cluster.relay.rounds.send_modify(|n| *n += 1);
        tokio::select! {
            _ = tokio::time::sleep_until(began + ROUND_EVERY) => {}
            _ = cluster.relay.kick.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// How a write waits for its follow-ups to be in the log.
#[derive(Debug)]
pub(super) struct RelaySignal {
    /// Wakes the relay now (a write is waiting for its follow-ups).
    kick: tokio::sync::Notify,
    /// Rounds sent and cleared so far.
    rounds: watch::Sender<u64>,
}

impl RelaySignal {
    pub(super) fn new() -> Self {
        RelaySignal {
            kick: tokio::sync::Notify::new(),
            rounds: watch::channel(0).0,
        }
    }
}

/// How long a write waits for its follow-ups to reach the log before it is answered anyway
/// (they follow moments later).
const SENT_WAIT: Duration = Duration::from_secs(2);

impl Cluster {
    /// Waits (up to [`SENT_WAIT`]) until the follow-ups of the event at log sequence `seq` are in
    /// the log — the other user's half of a follow — so that the writer's next call, on any
    /// node, reaches a partition that has them in its log (see [`Cluster::settle`]).
    pub(super) async fn followups_sent(&self, seq: u64) {
        let deadline = tokio::time::Instant::now() + SENT_WAIT;
        let mut rounds = self.relay.rounds.subscribe();
        loop {
            rounds.borrow_and_update();
            let e = self.engine.clone();
            let waiting = tokio::task::spawn_blocking(move || e.followups((seq, 0), 1))
                .await
                .ok()
                .and_then(Result::ok)
                .is_some_and(|r| r.first().is_some_and(|((s, _), _)| *s == seq));
            if !waiting {
                return;
            }
            self.relay.kick.notify_one();
            if tokio::time::timeout_at(deadline, rounds.changed()).await.is_err() {
                tracing::debug!(seq, "answered a write before its follow-ups were sent");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_users_partition_and_one_with_each_post_s_newest_counts() {
        let aff = |reader, author| FollowUp::Affinity {
            reader,
            author,
            amount: 1.0,
            at_ms: 5,
        };
        let likes = |likes, as_of| FollowUp::LikeCount {
            post: 70,
            author: 3,
            likes,
            as_of,
        };
        let recs = vec![
            ((10, 0), aff(1, 3)),
            ((10, 1), likes(1, 10)),
            ((12, 0), aff(2, 3)),
            ((12, 1), likes(2, 12)),
            (
                (13, 1),
                FollowUp::CommentCount {
                    post: 70,
                    author: 3,
                    comments: 1,
                    as_of: 13,
                },
            ),
            (
                (13, 2),
                FollowUp::Replied {
                    recipient: 4,
                    actor: 2,
                    post: 70,
                    author: 3,
                    comment: 99,
                    at_ms: 6,
                },
            ),
            ((14, 0), aff(1, 4)),
            (
                (15, 0),
                FollowUp::Graph {
                    half: feed_engine::GraphHalf::Followed,
                    user: 3,
                    other: 1,
                    note: 77,
                    at_ms: 8,
                },
            ),
        ];
        let msgs = messages("n0", 1, &recs);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        let Op::FollowUpForUsers {
            target: 0,
            affinity,
            replies,
            graph,
        } = &msgs[0].2
        else {
            panic!("{:?}", msgs[0]);
        };
        assert_eq!(graph.len(), 1);
        assert_eq!((graph[0].user, graph[0].other, graph[0].origin_seq), (3, 1, 15));
        let seqs: Vec<u64> = affinity.iter().map(|i| i.origin_seq).collect();
        assert_eq!(seqs, [10, 12, 14], "in key order");
        assert_eq!(replies.len(), 1);
        assert_eq!(
            (replies[0].recipient, replies[0].origin_seq, replies[0].idx),
            (4, 13, 2)
        );
        let Op::FollowUpCounts { likes, comments } = &msgs[1].2 else {
            panic!("{:?}", msgs[1]);
        };
        assert_eq!(likes.len(), 1);
        assert_eq!((likes[0].likes, likes[0].as_of), (2, 12), "the newest count");
        assert_eq!((comments[0].comments, comments[0].as_of), (1, 13));
        assert_eq!(msgs[0].1, "fu-n0-10.0-15.0-u0");
        assert_eq!(msgs[1].1, "fu-n0-10.0-15.0-c");
        assert_eq!(next_key((4, u16::MAX)), (5, 0));
        assert_eq!(next_key((4, 1)), (4, 2));
        assert!(messages("n0", 1, &[]).is_empty());
    }
}
