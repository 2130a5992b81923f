//! Live subscriptions: the engine's `FeedListener` (fanout's new entries) and
//! `NotificationListener` (new notifications), each fanning events out to bounded per-subscriber
//! channels. A subscriber that falls behind is dropped and told to resync, so it can neither
//! slow the writer nor grow memory.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use feed_engine::{Entry, FeedListener, Notification, NotificationListener, UserId};
use feedline_proto::v1 as pb;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::convert;

/// An event a subscription streams.
pub trait Event: Clone + Send + Sync + 'static {
    /// The event that tells a subscriber it missed events and should re-read.
    fn resync() -> Self;
}

impl Event for pb::FeedEvent {
    fn resync() -> Self {
        convert::resync_event()
    }
}

impl Event for pb::NotificationEvent {
    fn resync() -> Self {
        pb::NotificationEvent {
            notification: None,
            resync: true,
        }
    }
}

struct Sub<E> {
    id: u64,
    tx: mpsc::Sender<Result<E, Status>>,
    lagged: Arc<AtomicBool>,
}

/// The registry of live subscriptions to one kind of event, keyed by user.
pub struct Subscriptions<E> {
    subs: DashMap<UserId, Vec<Sub<E>>>,
    count: AtomicUsize,
    next_id: AtomicU64,
}

impl<E> Default for Subscriptions<E> {
    fn default() -> Self {
        Subscriptions {
            subs: DashMap::new(),
            count: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
        }
    }
}

/// Both registries a server keeps, each registered with the engine as its listener.
#[derive(Clone, Default)]
pub struct Live {
    /// Home-feed subscriptions.
    pub feed: Arc<FeedSubscriptions>,
    /// Notification subscriptions.
    pub notes: Arc<NotificationSubscriptions>,
}

impl Live {
    /// Registers both with `engine`.
    pub fn attach(&self, engine: &feed_engine::Engine) {
        engine.set_listener(self.feed.clone());
        engine.set_notification_listener(self.notes.clone());
    }

    /// Ends every subscription's stream (at shutdown).
    pub fn close_all(&self) {
        self.feed.close_all();
        self.notes.close_all();
    }
}

/// Live home-feed subscriptions.
pub type FeedSubscriptions = Subscriptions<pb::FeedEvent>;
/// Live notification subscriptions.
pub type NotificationSubscriptions = Subscriptions<pb::NotificationEvent>;

/// The limits one subscription is held to.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Events buffered before the subscriber is dropped and told to resync.
    pub buffer: usize,
    /// Subscriptions on the server.
    pub max: usize,
    /// Subscriptions of one reader.
    pub per_user: usize,
    /// How long one subscription lasts before its stream ends (the client re-subscribes).
    pub lifetime: std::time::Duration,
}

/// A subscriber's stream of events.
pub type EventStream<E = pb::FeedEvent> = Pin<Box<dyn Stream<Item = Result<E, Status>> + Send>>;

impl<E: Event> Subscriptions<E> {
    /// Subscribes `reader` within `b`: refused when the server or the reader holds its maximum;
    /// the stream ends by itself after `b.lifetime`.
    pub fn subscribe(self: &Arc<Self>, reader: UserId, b: Bounds) -> Result<EventStream<E>, Status> {
        let max = b.max;
        if self.count.fetch_add(1, Ordering::SeqCst) >= max {
            self.count.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::resource_exhausted(format!(
                "the server holds its maximum of {max} subscriptions of this kind"
            )));
        }
        let (tx, rx) = mpsc::channel(b.buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            // The reader's entry stays locked between the check and the insert.
            let mut mine = self.subs.entry(reader).or_default();
            if mine.len() >= b.per_user {
                drop(mine);
                self.subs.remove_if(&reader, |_, v| v.is_empty());
                self.count.fetch_sub(1, Ordering::SeqCst);
                return Err(Status::resource_exhausted(format!(
                    "user {reader} already holds {} subscriptions of this kind, the most one user may; close one first",
                    b.per_user
                )));
            }
            mine.push(Sub {
                id,
                tx,
                lagged: lagged.clone(),
            });
        }
        let guard = Unsubscribe {
            subs: self.clone(),
            reader,
            id,
        };
        // After the channel closes (the listener dropped a lagging subscriber), say so once.
        let tail = futures::stream::once(async move {
            let _keep = guard;
            lagged.load(Ordering::SeqCst).then(|| Ok(E::resync()))
        })
        .filter_map(futures::future::ready);
        let expiry = tokio::time::sleep(b.lifetime);
        Ok(Box::pin(ReceiverStream::new(rx).take_until(expiry).chain(tail)))
    }

    /// Ends every subscription's stream (at shutdown).
    pub fn close_all(&self) {
        self.subs.clear();
    }

    /// Live subscriptions.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, reader: UserId, id: u64) {
        if let Some(mut v) = self.subs.get_mut(&reader) {
            v.retain(|s| s.id != id);
        }
        self.subs.remove_if(&reader, |_, v| v.is_empty());
    }

    /// Sends `event` to every subscription of `user`, dropping one whose buffer is full.
    fn send(&self, user: UserId, event: E) {
        let Some(mut v) = self.subs.get_mut(&user) else {
            return;
        };
        v.retain(|s| match s.tx.try_send(Ok(event.clone())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Dropping the sender ends the stream after what it buffered, then `resync`.
                s.lagged.store(true, Ordering::SeqCst);
                metrics::counter!("feedline_subscribers_dropped_total").increment(1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

/// Removes a subscription when its stream is dropped (client gone) or ends.
struct Unsubscribe<E: Event> {
    subs: Arc<Subscriptions<E>>,
    reader: UserId,
    id: u64,
}

impl<E: Event> Drop for Unsubscribe<E> {
    fn drop(&mut self) {
        self.subs.remove(self.reader, self.id);
        self.subs.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FeedListener for FeedSubscriptions {
    fn subscribers(&self) -> Vec<UserId> {
        if self.is_empty() {
            return Vec::new();
        }
        self.subs.iter().map(|kv| *kv.key()).collect()
    }

    fn on_entry(&self, reader: UserId, entry: &Entry) {
        if self.subs.contains_key(&reader) {
            self.send(reader, convert::feed_event(entry));
        }
    }
}

impl NotificationListener for NotificationSubscriptions {
    fn on_notification(&self, user: UserId, n: &Notification) {
        if self.subs.contains_key(&user) {
            self.send(user, convert::notification_event(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(post: u64) -> Entry {
        Entry {
            rank: post,
            post,
            author: 1,
            expires_at_ms: None,
        }
    }

    fn bounds(buffer: usize, max: usize) -> Bounds {
        Bounds {
            buffer,
            max,
            per_user: 2,
            lifetime: std::time::Duration::from_secs(3600),
        }
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_dropped_and_told_to_resync() {
        let subs = Arc::new(FeedSubscriptions::default());
        let mut lazy = subs.subscribe(7, bounds(4, 10)).unwrap();
        let mut other = subs.subscribe(8, bounds(4, 10)).unwrap();
        assert_eq!(subs.len(), 2);
        for p in 0..100 {
            subs.on_entry(7, &entry(p));
        }
        subs.on_entry(8, &entry(1));
        let mut got = Vec::new();
        while let Some(ev) = lazy.next().await {
            got.push(ev.unwrap());
        }
        assert_eq!(got.len(), 5, "the 4 buffered events, then the resync");
        assert!(got[..4].iter().all(|e| !e.resync) && got[4].resync);
        assert_eq!(got[0].post_id, 0);
        drop(lazy);
        assert_eq!(subs.len(), 1, "the dropped subscriber no longer counts");
        assert_eq!(other.next().await.unwrap().unwrap().post_id, 1, "others are unaffected");
    }

    #[tokio::test]
    async fn subscriptions_are_capped() {
        let subs = Arc::new(FeedSubscriptions::default());
        let _a = subs.subscribe(1, bounds(4, 1)).unwrap();
        let e = subs.subscribe(2, bounds(4, 1)).err().unwrap();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn one_user_cannot_take_every_subscription() {
        let subs = Arc::new(FeedSubscriptions::default());
        let a1 = subs.subscribe(1, bounds(4, 10)).unwrap();
        let _a2 = subs.subscribe(1, bounds(4, 10)).unwrap();
        let e = subs.subscribe(1, bounds(4, 10)).err().unwrap();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("user 1"), "{}", e.message());
        assert_eq!(subs.len(), 2, "the refused one is not counted");
        let _b = subs.subscribe(2, bounds(4, 10)).expect("another user still gets one");
        drop(a1);
        let _a3 = subs
            .subscribe(1, bounds(4, 10))
            .expect("a closed one frees the user's slot");
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscription_ends_after_its_lifetime() {
        let subs = Arc::new(FeedSubscriptions::default());
        let mut b = bounds(4, 10);
        b.lifetime = std::time::Duration::from_secs(60);
        let mut s = subs.subscribe(1, b).unwrap();
        subs.on_entry(1, &entry(9));
        assert_eq!(s.next().await.unwrap().unwrap().post_id, 9);
        // Paused time jumps to the expiry once the stream has nothing else to do.
        assert!(s.next().await.is_none(), "the stream ends at its lifetime");
        drop(s);
        assert_eq!(subs.len(), 0);
    }
}
