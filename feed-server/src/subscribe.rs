//! Live feed subscriptions: the engine's `FeedListener`, fanning fanout's new entries out to
//! bounded per-subscriber channels. A subscriber that falls behind is dropped and told to resync,
//! so it can neither slow fanout nor grow memory.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use feed_engine::{Entry, FeedListener, UserId};
use feedline_proto::v1 as pb;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::convert;

struct Sub {
    id: u64,
    tx: mpsc::Sender<Result<pb::FeedEvent, Status>>,
    lagged: Arc<AtomicBool>,
}

/// The registry of live subscriptions, keyed by reader.
#[derive(Default)]
pub struct Subscriptions {
    subs: DashMap<UserId, Vec<Sub>>,
    count: AtomicUsize,
    next_id: AtomicU64,
}

/// A subscriber's stream of feed events.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::FeedEvent, Status>> + Send>>;

impl Subscriptions {
    /// Subscribes `reader` with a buffer of `buffer` events, unless `max` subscriptions exist.
    pub fn subscribe(self: &Arc<Self>, reader: UserId, buffer: usize, max: usize) -> Result<EventStream, Status> {
        if self.count.fetch_add(1, Ordering::SeqCst) >= max {
            self.count.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::resource_exhausted(format!(
                "the server holds its maximum of {max} feed subscriptions"
            )));
        }
        let (tx, rx) = mpsc::channel(buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subs.entry(reader).or_default().push(Sub {
            id,
            tx,
            lagged: lagged.clone(),
        });
        let guard = Unsubscribe {
            subs: self.clone(),
            reader,
            id,
        };
        // After the channel closes (the listener dropped a lagging subscriber), say so once.
        let tail = futures::stream::once(async move {
            let _keep = guard;
            lagged.load(Ordering::SeqCst).then(|| {
                Ok(pb::FeedEvent {
                    resync: true,
                    ..Default::default()
                })
            })
        })
        .filter_map(futures::future::ready);
        Ok(Box::pin(ReceiverStream::new(rx).chain(tail)))
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
}

/// Removes a subscription when its stream is dropped (client gone) or ends.
struct Unsubscribe {
    subs: Arc<Subscriptions>,
    reader: UserId,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        self.subs.remove(self.reader, self.id);
        self.subs.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FeedListener for Subscriptions {
    fn has_subscribers(&self) -> bool {
        !self.is_empty()
    }

    fn on_entry(&self, reader: UserId, entry: &Entry) {
        let Some(mut v) = self.subs.get_mut(&reader) else {
            return;
        };
        let event = convert::feed_event(entry);
        v.retain(|s| match s.tx.try_send(Ok(event)) {
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

    #[tokio::test]
    async fn a_lagging_subscriber_is_dropped_and_told_to_resync() {
        let subs = Arc::new(Subscriptions::default());
        let mut lazy = subs.subscribe(7, 4, 10).unwrap();
        let mut other = subs.subscribe(8, 4, 10).unwrap();
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
        let subs = Arc::new(Subscriptions::default());
        let _a = subs.subscribe(1, 4, 1).unwrap();
        let e = subs.subscribe(2, 4, 1).err().unwrap();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    }
}
