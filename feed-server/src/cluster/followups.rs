//! Follow-ups through the log. A like is decided on its post author's partition; the engine
//! writes its effects elsewhere — the liker's affinity, and the post's count as every node
//! shows it — as follow-up records in the like's own batch (`feed_engine::followup`). This task
//! sends them on: it reads what is waiting, oldest first, and appends one message per liker
//! partition (`FollowUpAffinity` on `feedline.o.<p>.ev`, applied only by that partition's owner,
//! and replayed with its other events when the partition moves) and one with the newest count
//! of each post (`FollowUpLikeCounts`, replicated); it clears the records once the log has
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

use feed_engine::{AffinityItem, FollowUp, FollowUpKey, LikeCountItem};
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

/// The messages that carry `recs` (in key order), from node `me` of a cluster of `partitions`.
fn messages(me: &str, partitions: u32, recs: &[(FollowUpKey, FollowUp)]) -> Vec<Message> {
    let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
        return Vec::new();
    };
    let span = format!("fu-{me}-{}.{}-{}.{}", first.0.0, first.0.1, last.0.0, last.0.1);
    let mut affinity: BTreeMap<u32, Vec<AffinityItem>> = BTreeMap::new();
    let mut counts: BTreeMap<u64, LikeCountItem> = BTreeMap::new();
    for &((seq, _), f) in recs {
        match f {
            FollowUp::Affinity {
                reader,
                author,
                amount,
                at_ms,
            } => affinity
                .entry(partition_of(reader, partitions))
                .or_default()
                .push(AffinityItem {
                    origin: partition_of(author, partitions),
                    origin_seq: seq,
                    reader,
                    author,
                    amount,
                    at_ms,
                }),
            FollowUp::LikeCount {
                post,
                author,
                likes,
                as_of,
            } => {
                let item = LikeCountItem {
                    post,
                    author,
                    likes,
                    as_of,
                };
                let newest = counts.entry(post).or_insert(item);
                if item.as_of > newest.as_of {
                    *newest = item;
                }
            }
        }
    }
    let mut out: Vec<Message> = affinity
        .into_iter()
        .map(|(target, items)| {
            (
                subjects::owned(target),
                format!("{span}-a{target}"),
                Op::FollowUpAffinity { target, items },
            )
        })
        .collect();
    if let Some(c) = counts.values().next() {
        let subject = subjects::replicated(partition_of(c.author, partitions));
        let items = counts.into_values().collect();
        out.push((subject, format!("{span}-c"), Op::FollowUpLikeCounts { items }));
    }
    out
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
                _ = stop.changed() => return,
            }
            continue;
        };
        for (subject, msg_id, op) in messages(cluster.name(), partitions, &recs) {
            let n = match &op {
                Op::FollowUpAffinity { items, .. } => items.len(),
                Op::FollowUpLikeCounts { items } => items.len(),
                _ => 0,
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
                    return;
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
                            _ = stop.changed() => return,
                        }
                    }
                }
            }
            let kind = if subject.starts_with("feedline.o.") {
                "affinity"
            } else {
                "like-count"
            };
            metrics::counter!(feed_engine::metrics::FOLLOWUPS_SENT, "kind" => kind).increment(n as u64);
        }
        let keys: Vec<FollowUpKey> = recs.iter().map(|&(k, _)| k).collect();
        let e = cluster.engine.clone();
        match tokio::task::spawn_blocking(move || e.clear_followups(&keys)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "clearing sent follow-ups (they will be sent again)"),
            Err(_) => return,
        }
        from = next_key(last);
        tokio::select! {
            _ = tokio::time::sleep_until(began + ROUND_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_liker_partition_and_one_with_each_post_s_newest_count() {
        let aff = |reader, author| FollowUp::Affinity {
            reader,
            author,
            amount: 1.0,
            at_ms: 5,
        };
        let count = |likes, as_of| FollowUp::LikeCount {
            post: 70,
            author: 3,
            likes,
            as_of,
        };
        let recs = vec![
            ((10, 0), aff(1, 3)),
            ((10, 1), count(1, 10)),
            ((12, 0), aff(2, 3)),
            ((12, 1), count(2, 12)),
            ((13, 0), aff(1, 4)),
        ];
        let msgs = messages("n0", 1, &recs);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        let Op::FollowUpAffinity { target: 0, items } = &msgs[0].2 else {
            panic!("{:?}", msgs[0]);
        };
        let seqs: Vec<u64> = items.iter().map(|i| i.origin_seq).collect();
        assert_eq!(seqs, [10, 12, 13], "in key order");
        let Op::FollowUpLikeCounts { items } = &msgs[1].2 else {
            panic!("{:?}", msgs[1]);
        };
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].likes, items[0].as_of), (2, 12));
        assert_eq!(msgs[0].1, "fu-n0-10.0-13.0-a0");
        assert_eq!(next_key((4, 255)), (5, 0));
        assert_eq!(next_key((4, 1)), (4, 2));
        assert!(messages("n0", 1, &[]).is_empty());
    }
}
