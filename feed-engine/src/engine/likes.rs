//! The like committer. Likes and unlikes from every caller meet in one queue; one thread takes
//! everything waiting, checks each against the graph and against what the same batch already
//! changed, writes the lot as one batch with one fsync, and only then answers the callers.
//!
//! A like therefore costs its reads and a few small writes, and shares its fsync with every like
//! that arrived while the previous batch was being written: under load a batch holds hundreds.
//! The committer is the only writer of like records (a post's deletion aside, which drops them
//! all), so whether a like changes anything is decided without a lock: by the stored record,
//! or by an earlier request of the same batch. The post's counter and the reader's affinity are
//! merge operands, so nothing is read back to be rewritten.
//!
//! Callers wait for the answer ([`Writer::like`]) or hold a [`LikeTicket`], a future
//! ([`Engine::like_async`]), so a server need not park a thread per like. A replayed cluster
//! event is committed alone, with its own log sequence.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_channel::oneshot;

use crate::codec::Counter;
use crate::error::{Error, Result};
use crate::model::{Post, PostId, UserId};
use crate::social::{Notification, NotificationKind};
use crate::tables::{COUNTERS, LIKES};
use crate::write::WriteCtx;

use super::notify::Sent;
use super::{Engine, Shared, Writer};

/// Requests the queue holds before a blocking caller waits to add one and an async one is
/// answered `Overloaded`.
pub(super) const QUEUE_CAP: usize = 1 << 16;

/// Most requests one batch commits (a bound on the batch's memory and on the first answer's wait).
const MAX_BATCH: usize = 4096;

/// One like or unlike on its way to the committer.
pub(super) struct LikeReq {
    user: UserId,
    post: PostId,
    like: bool,
    ctx: WriteCtx,
    reply: Reply,
}

/// Where a request's answer goes.
enum Reply {
    Wait(Sender<Result<bool>>),
    Ticket(oneshot::Sender<Result<bool>>),
}

impl Reply {
    fn send(self, r: Result<bool>) {
        // A caller that stopped waiting is no error: the like stands either way.
        match self {
            Reply::Wait(tx) => drop(tx.send(r)),
            Reply::Ticket(tx) => drop(tx.send(r)),
        }
    }
}

/// A like or unlike submitted with [`Engine::like_async`] or [`Engine::unlike_async`]: resolves
/// to whether it changed anything, once it is durable (or to why it was refused).
#[derive(Debug)]
pub struct LikeTicket(oneshot::Receiver<Result<bool>>);

impl Future for LikeTicket {
    type Output = Result<bool>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<bool>> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::ShuttingDown)))
    }
}

impl Engine {
    /// `user` likes `post`, without waiting: the ticket resolves once the like is durable.
    /// A full queue answers `Overloaded` at once.
    pub fn like_async(&self, user: UserId, post: PostId) -> LikeTicket {
        self.ticket(user, post, true)
    }

    /// `user` takes back their like of `post`, without waiting (see [`Engine::like_async`]).
    pub fn unlike_async(&self, user: UserId, post: PostId) -> LikeTicket {
        self.ticket(user, post, false)
    }

    fn ticket(&self, user: UserId, post: PostId, like: bool) -> LikeTicket {
        let (tx, rx) = oneshot::channel();
        let req = LikeReq {
            user,
            post,
            like,
            ctx: self.writer().ctx,
            reply: Reply::Ticket(tx),
        };
        match self.shared.likes.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Full(req)) => {
                metrics::counter!(crate::metrics::OVERLOADED, "what" => "like-queue").increment(1);
                req.reply.send(Err(Error::Overloaded(format!(
                    "{QUEUE_CAP} likes are waiting to be written; retry shortly"
                ))));
            }
            Err(TrySendError::Disconnected(req)) => req.reply.send(Err(Error::ShuttingDown)),
        }
        LikeTicket(rx)
    }
}

impl Writer<'_> {
    /// `user` likes `post`. Liking again changes nothing. Returns whether it changed, once durable.
    pub fn like(&self, user: UserId, post: PostId) -> Result<bool> {
        self.submit_and_wait(user, post, true)
    }

    /// `user` takes back their like of `post`. Returns whether there was one, once durable.
    pub fn unlike(&self, user: UserId, post: PostId) -> Result<bool> {
        self.submit_and_wait(user, post, false)
    }

    fn submit_and_wait(&self, user: UserId, post: PostId, like: bool) -> Result<bool> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let req = LikeReq {
            user,
            post,
            like,
            ctx: self.ctx,
            reply: Reply::Wait(tx),
        };
        self.shared.likes.send(req).map_err(|_| Error::ShuttingDown)?;
        rx.recv().unwrap_or(Err(Error::ShuttingDown))
    }

    /// Checks one request against the graph and `liked` (what this batch already decided) and
    /// adds its writes to `b`. Every fallible read comes before the first write it adds, so a
    /// refused request leaves nothing in the batch. `None`: nothing to change.
    fn stage(
        &self,
        b: &mut crate::store::Batch,
        liked: &mut HashMap<(PostId, UserId), bool>,
        user: UserId,
        post: PostId,
        like: bool,
    ) -> Result<Option<(Post, Sent)>> {
        let now = self.ctx.now_ms();
        let p = if like {
            self.engageable(user, post)?
        } else {
            self.visible_post_at(user, post, now)?
        };
        let inner = self.inner();
        let s = &inner.store;
        let was = match liked.get(&(post, user)) {
            Some(&v) => v,
            None => LIKES.exists(s, post, user)?,
        };
        if was == like {
            return Ok(None);
        }
        let delta = if like { 1 } else { -1 };
        // Partitioned (a cluster, this node holding the author): the affinity and the count
        // other nodes show leave as follow-ups of this like's log position.
        let partitioned = match self.partitioned_seq() {
            Some(seq) => Some((seq, self.count_after(post, Counter::PostLikes, delta)?)),
            None => None,
        };
        let sent = if like {
            let n = Notification {
                id: self.event_id(),
                kind: NotificationKind::Liked,
                actor: user,
                post: Some(post),
                comment: None,
                at_ms: now,
            };
            inner.notify(b, p.author, &n)?
        } else {
            Sent::new()
        };
        liked.insert((post, user), like);
        if like {
            LIKES.put(s, b, post, user, now);
        } else {
            LIKES.delete(s, b, post, user);
        }
        COUNTERS.add(s, b, post, Counter::PostLikes, delta);
        match partitioned {
            Some((seq, likes)) => self.like_followups(b, seq, user, &p, delta, likes),
            None => self.add_affinity(b, user, p.author, delta as f64),
        }
        Ok(Some((p, sent)))
    }
}

/// Starts the committer thread. It holds the engine weakly and stops when every sender (the
/// engine's) is gone.
pub(super) fn spawn(shared: Weak<Shared>, rx: Receiver<LikeReq>) -> Result<()> {
    std::thread::Builder::new()
        .name("feedline-likes".into())
        .spawn(move || run(&shared, &rx))
        .map(drop)
        .map_err(|e| Error::Storage(Box::new(e)))
}

fn run(shared: &Weak<Shared>, rx: &Receiver<LikeReq>) {
    while let Ok(first) = rx.recv() {
        let mut reqs = Vec::with_capacity(64);
        reqs.push(first);
        while reqs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => reqs.push(r),
                Err(_) => break,
            }
        }
        let Some(shared) = shared.upgrade() else {
            reqs.into_iter().for_each(|r| r.reply.send(Err(Error::ShuttingDown)));
            return;
        };
        let engine = Engine { shared };
        metrics::histogram!(crate::metrics::LIKE_BATCH).record(reqs.len() as f64);
        let mut answers = Vec::with_capacity(reqs.len());
        let mut local = Vec::with_capacity(reqs.len());
        for r in reqs {
            if r.ctx.seq().is_some() {
                commit(&engine, std::mem::take(&mut local), &mut answers);
                commit(&engine, vec![r], &mut answers);
            } else {
                local.push(r);
            }
        }
        commit(&engine, local, &mut answers);
        // Let go of the engine before answering: a caller that drops its last handle on hearing
        // back then closes the database on its own thread, not on this one.
        drop(engine);
        for (reply, r) in answers {
            reply.send(r);
        }
    }
}

/// Commits `group` (local requests, or one replayed event) as one batch, and queues each
/// request's answer on `answers`.
fn commit(e: &Engine, group: Vec<LikeReq>, answers: &mut Vec<(Reply, Result<bool>)>) {
    let Some(durability) = group.first().map(|r| r.ctx.durability()) else {
        return;
    };
    let inner = e.inner();
    let s = &inner.store;
    let deletions = inner.deletions.epoch();
    let mut b = s.batch();
    let mut liked = HashMap::with_capacity(group.len());
    let mut staged: Vec<Staged> = Vec::with_capacity(group.len());
    for r in group {
        let w = e.at(r.ctx);
        match w.stage(&mut b, &mut liked, r.user, r.post, r.like) {
            Err(err) => answers.push((r.reply, Err(err))),
            Ok(None) => answers.push((r.reply, Ok(false))),
            Ok(Some((p, sent))) => staged.push((r, p, sent)),
        }
    }
    if staged.is_empty() {
        return;
    }
    if let Err(err) = s.write(b, durability) {
        let msg = err.to_string();
        for (r, _, _) in staged {
            let failed = std::io::Error::other(format!("the like was not written: {msg}"));
            answers.push((r.reply, Err(Error::Storage(Box::new(failed)))));
        }
        return;
    }
    if inner.deletions.maybe_since(deletions) {
        staged = sweep_deleted(e, staged, durability, answers);
    }
    for (r, p, sent) in staged {
        // Durable from here: what follows updates memory and tells listeners; a failure there is
        // logged, and the like stands.
        let w = e.at(r.ctx);
        if let Err(err) = w
            .engaged(&p, if r.like { 1 } else { -1 }, 0)
            .and_then(|()| w.notified(&sent))
        {
            tracing::warn!(post = p.id, error = %err, "after a durable like");
        }
        answers.push((r.reply, Ok(true)));
    }
}

/// A request whose writes are in the batch: with its post and the notifications it makes.
type Staged = (LikeReq, Post, Sent);

/// After a batch is durable, while a post deletion may have landed between the checks and the
/// write: the likes of posts that are gone now are removed again (the deletion's range
/// tombstone came first, so it does not cover them) and answered `NotFound`.
fn sweep_deleted(
    e: &Engine,
    staged: Vec<Staged>,
    durability: crate::store::Durability,
    answers: &mut Vec<(Reply, Result<bool>)>,
) -> Vec<Staged> {
    let s = &e.inner().store;
    let mut b = s.batch();
    let mut kept = Vec::with_capacity(staged.len());
    let mut gone = Vec::new();
    for st in staged {
        match crate::tables::POSTS.get(s, st.1.id) {
            Ok(Some(_)) => kept.push(st),
            // Unreadable: keep the answer the write earned; the like stays (as before the sweep).
            Err(err) => {
                tracing::warn!(post = st.1.id, error = %err, "checking a liked post after the batch");
                kept.push(st);
            }
            Ok(None) => {
                LIKES.delete(s, &mut b, st.1.id, st.0.user);
                COUNTERS.delete(s, &mut b, st.1.id, Counter::PostLikes);
                gone.push(st);
            }
        }
    }
    if gone.is_empty() {
        return kept;
    }
    if let Err(err) = s.write(b, durability) {
        tracing::warn!(error = %err, "removing likes of deleted posts");
    }
    for (r, p, _) in gone {
        answers.push((r.reply, Err(Error::not_found(format!("post {} was deleted", p.id)))));
    }
    kept
}
