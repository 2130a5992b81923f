//! Notification-delivery probes: a few authors listen — over a server's live
//! `SubscribeNotifications` stream each, or in-process through the engine's notification
//! listener (what a server's streams are fed by); every probe, a random user likes one of their posts, and
//! the probe measures from the like's acknowledgement (the client has the answer) to the "liked"
//! event arriving on the author's stream. An event that arrives before the answer counts as 1 µs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use feedline_proto::v1 as pb;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::grpc_client::Grpc;
use crate::target::Target;

/// What the probes saw.
#[derive(Debug, Clone)]
pub struct NotifyLag {
    /// Like ack → event on the author's stream, µs.
    pub lag_us: Histogram<u64>,
    /// Probes whose event did not arrive within the timeout.
    pub missed: u64,
}

/// (post, liker) → when the like was acknowledged, and when its event arrived.
type Marks = Arc<Mutex<HashMap<(u64, u64), (Option<Instant>, Option<Instant>)>>>;

/// When probes run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// First probe.
    pub from: Instant,
    /// No probe after this.
    pub until: Instant,
    /// Time between probes.
    pub every: Duration,
    /// How long the last probes wait for their events.
    pub timeout: Duration,
    /// Seed of the likers and authors picked.
    pub seed: u64,
}

/// Runs probes against the engine in-process or a gRPC target, `authors` listening and `users` liking.
pub async fn run(target: &Target, authors: &[u64], users: &[u64], when: Schedule) -> anyhow::Result<NotifyLag> {
    let Schedule {
        from,
        until,
        every,
        timeout,
        seed,
    } = when;
    let marks: Marks = Arc::default();
    let mut posts = Vec::with_capacity(authors.len());
    let mut readers = Vec::new();
    if let Target::InProcess(e) = target {
        let listener = Listener {
            authors: authors.iter().copied().collect(),
            marks: marks.clone(),
        };
        anyhow::ensure!(
            e.set_notification_listener(Arc::new(listener)),
            "the engine already has a notification listener"
        );
    }
    for &a in authors {
        match target {
            Target::Grpc(g) => {
                let mut stream = subscribe(g, a).await?;
                let m = marks.clone();
                readers.push(tokio::spawn(async move {
                    while let Ok(Some(ev)) = stream.message().await {
                        let Some(n) = ev.notification else { continue };
                        if n.kind == pb::NotificationKind::Liked as i32 {
                            m.lock().entry((n.post_id, n.actor_id)).or_default().1 = Some(Instant::now());
                        }
                    }
                }));
            }
            Target::InProcess(_) => {}
            _ => anyhow::bail!("notification probes need the engine in-process or a gRPC target"),
        }
        let p = target
            .publish(a, 1, crate::target::POST_TEXT)
            .await
            .map_err(|e| anyhow::anyhow!("probe post: {}", e.0))?;
        posts.push(p.id);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    tokio::time::sleep_until(from.into()).await;
    let mut tick = tokio::time::interval(every);
    let mut sent = Vec::new();
    while Instant::now() < until {
        tick.tick().await;
        let i = rng.random_range(0..authors.len());
        let liker = users[rng.random_range(0..users.len())];
        if liker == authors[i] {
            continue;
        }
        if let Ok(true) = target.like(liker, posts[i]).await {
            marks.lock().entry((posts[i], liker)).or_default().0 = Some(Instant::now());
            sent.push((posts[i], liker));
        }
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !sent.iter().all(|k| marks.lock().get(k).is_some_and(|m| m.1.is_some())) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in readers {
        r.abort();
    }
    let mut lag_us = Histogram::new(3)?;
    let mut missed = 0;
    let marks = marks.lock();
    for k in &sent {
        match marks.get(k) {
            Some((Some(ack), Some(ev))) => {
                let _ = lag_us.record(ev.saturating_duration_since(*ack).as_micros().max(1) as u64);
            }
            _ => missed += 1,
        }
    }
    Ok(NotifyLag { lag_us, missed })
}

/// The in-process probes' ear: the engine tells it of every notification once durable (as it
/// tells a server's streams); it marks the "liked" ones of the probe authors.
struct Listener {
    authors: std::collections::HashSet<u64>,
    marks: Marks,
}

impl feed_engine::NotificationListener for Listener {
    fn on_notification(&self, user: u64, n: &feed_engine::Notification) {
        if n.kind == feed_engine::NotificationKind::Liked
            && self.authors.contains(&user)
            && let Some(post) = n.post
        {
            self.marks.lock().entry((post, n.actor)).or_default().1 = Some(Instant::now());
        }
    }
}

async fn subscribe(g: &Grpc, user: u64) -> anyhow::Result<tonic::Streaming<pb::NotificationEvent>> {
    let mut req = tonic::Request::new(pb::SubscribeNotificationsRequest { user_id: user });
    req.metadata_mut().insert("authorization", g.auth.clone());
    let node = g.nodes[0].clone();
    Ok(node.engage.clone().subscribe_notifications(req).await?.into_inner())
}
