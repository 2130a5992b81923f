//! Post bodies kept where their author's partition is held (cluster mode). Every node applies
//! every post from the log and keeps its head (id, author, time, rank, expiry: what feeds,
//! outboxes and visibility need), but the body — text, media, location, most of a post's
//! bytes — of an older post is kept only by the node holding its author's partition. The
//! others replace it by the head ([`Engine::trim_bodies`]), and a server answering with a head
//! asks the author's node for the body.
//!
//! Why no body is ever lost: a node trims a post only if its author's partition has a snapshot
//! at or past the post's log sequence (`covered`: the cluster passes the partition's *base*,
//! the oldest snapshot a takeover may restore), and every snapshot carries the full bodies of
//! its partition's posts ([`Engine::export_partitions`]). A node that takes a partition whose
//! bodies it trimmed fills them from a snapshot at least that new ([`Engine::fill_bodies`]),
//! after it marked the partition held, so no trim can follow the fill; a per-partition marker,
//! written with the trims, says that a fill is owed (a crash in between leaves it set), and a
//! partition with a fill owed writes no snapshot.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::codec;
use crate::error::Result;
use crate::model::{PostId, UserId};
use crate::store::{Cf, Durability};
use crate::tables::{META, MetaKey, OUTBOX, POSTS};

use super::Engine;
use super::snapshot::read_snapshot;

/// Posts examined per batch of trims (each batch under the handover lock).
const CHUNK: usize = 1024;

/// What one round of [`Engine::trim_bodies`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// Post records read (from the round's starting post to the first too recent).
    pub scanned: u64,
    /// Bodies replaced by their heads.
    pub posts: u64,
    /// Bytes of post records before, less after.
    pub bytes: u64,
    /// Where this round started: the last round's [`Trimmed::resume_from`] when the
    /// partitions not held here are still those it ran with, else 0.
    pub from: PostId,
    /// Of [`Trimmed::scanned`], the posts read through the outboxes of partitions given away
    /// since the last round (written before that round's starting post).
    pub given: u64,
    /// Where the next round starts, as long as the partitions this node holds stay the same:
    /// the oldest post this round left whole only because it was too recent or not covered
    /// yet (past the end: the id after the last post read). Kept in the database, so a restart
    /// resumes there too.
    pub resume_from: PostId,
}

impl Engine {
    /// Replaces by its head the body of every post created before `older_than_ms` whose
    /// author's partition (`partition_of`) is among `elsewhere` — the partitions this node does
    /// not hold, sorted — and has a snapshot at or past the sequence the post was applied at
    /// (`covered`: the partition's newest such sequence, `None` for none). A post applied
    /// without a sequence (single node, or before this version) is kept whole. Each batch is
    /// checked and written under the lock that marking a partition held takes, with the marker
    /// saying a fill is owed. Not fsynced: a trim lost in a crash leaves a body that is trimmed
    /// again later.
    ///
    /// A round starts where the last one left off ([`Trimmed::resume_from`], kept in the
    /// database with `elsewhere`): what lies before it was trimmed or is held here. A partition
    /// taken since changes nothing before that point (its bodies are filled back, none
    /// trimmed). A partition given away since (in `elsewhere`, not in the last round's list)
    /// has older posts that may go now: the round first reads those, and only those, through
    /// its authors' outboxes — every user is read, but no other author's posts
    /// ([`Trimmed::given`]).
    pub fn trim_bodies(
        &self,
        elsewhere: &[u32],
        older_than_ms: u64,
        partition_of: &dyn Fn(UserId) -> u32,
        covered: &dyn Fn(u32) -> Option<u64>,
    ) -> Result<Trimmed> {
        let store = &self.inner().store;
        let (from, given) = match META.trim_cursor(store)? {
            Some((from, parts)) => {
                let given: Vec<u32> = elsewhere
                    .iter()
                    .copied()
                    .filter(|p| parts.binary_search(p).is_err())
                    .collect();
                (from, given)
            }
            None => (0, Vec::new()),
        };
        let before = match given.is_empty() || from == 0 {
            true => Trimmed {
                resume_from: PostId::MAX,
                ..Trimmed::default()
            },
            false => self.trim_given(&given, from, older_than_ms, partition_of, covered)?,
        };
        let mut done = self.trim_from(from, older_than_ms, partition_of, covered)?;
        done.given = before.scanned;
        done.scanned += before.scanned;
        done.posts += before.posts;
        done.bytes += before.bytes;
        // A post of a given-away partition left whole (too recent, not covered yet) is read
        // again from there next round: the plain scan from the oldest such post covers it.
        done.resume_from = done.resume_from.min(before.resume_from);
        metrics::counter!(crate::metrics::BODIES_TRIMMED).increment(done.posts);
        let mut b = store.batch();
        META.put_trim_cursor(store, &mut b, done.resume_from, elsewhere);
        store.write(b, Durability::Buffered)?;
        Ok(done)
    }

    /// The part of a round of [`Engine::trim_bodies`] before post `before`, for the partitions
    /// `given` away since the last round: their authors found among the users, each one's
    /// posts through their outbox. `resume_from` is the oldest post left whole only because
    /// it was too recent or not covered yet (`before` if none).
    fn trim_given(
        &self,
        given: &[u32],
        before: PostId,
        older_than_ms: u64,
        partition_of: &dyn Fn(UserId) -> u32,
        covered: &dyn Fn(u32) -> Option<u64>,
    ) -> Result<Trimmed> {
        let store = &self.inner().store;
        let mut authors = Vec::new();
        store.scan_all(Cf::Users, |k, _| {
            match codec::read_u64(k, 0) {
                Some(u) if given.binary_search(&partition_of(u)).is_ok() => authors.push(u),
                _ => {}
            }
            true
        })?;
        let mut done = Trimmed {
            resume_from: before,
            ..Trimmed::default()
        };
        let mut ids: Vec<PostId> = Vec::with_capacity(CHUNK);
        let flush = |ids: &mut Vec<PostId>, done: &mut Trimmed| -> Result<()> {
            let (n, bytes) = self.trim_chunk(ids, partition_of, covered)?;
            done.posts += n;
            done.bytes += bytes;
            ids.clear();
            Ok(())
        };
        for author in authors {
            let mut posts = Vec::new();
            OUTBOX.scan(store, author, Some(before.saturating_sub(1)), |e| {
                posts.push(e.post);
                true
            })?;
            for chunk in posts.chunks(CHUNK) {
                let keys: Vec<[u8; 8]> = chunk.iter().map(|&i| codec::id_key(i)).collect();
                for (v, &id) in store.multi_get(Cf::Posts, &keys)?.into_iter().zip(chunk) {
                    done.scanned += 1;
                    let Some((p, Some(seq))) = v.as_deref().and_then(|v| codec::decode_post_seq(id, v)) else {
                        continue;
                    };
                    if p.trimmed {
                        continue;
                    }
                    if p.created_at_ms < older_than_ms && covered(partition_of(author)).is_some_and(|c| seq <= c) {
                        ids.push(id);
                    } else {
                        done.resume_from = done.resume_from.min(id);
                    }
                }
                if ids.len() >= CHUNK {
                    flush(&mut ids, &mut done)?;
                }
            }
        }
        if !ids.is_empty() {
            flush(&mut ids, &mut done)?;
        }
        Ok(done)
    }

    /// One round of [`Engine::trim_bodies`] from post `from` on.
    fn trim_from(
        &self,
        from: PostId,
        older_than_ms: u64,
        partition_of: &dyn Fn(UserId) -> u32,
        covered: &dyn Fn(u32) -> Option<u64>,
    ) -> Result<Trimmed> {
        let inner = self.inner();
        let store = &inner.store;
        let mut done = Trimmed {
            from,
            ..Trimmed::default()
        };
        let mut held: HashMap<u32, bool> = HashMap::new();
        let mut resume: Option<PostId> = None;
        let mut err = None;
        // Where the scan ends: the first post too recent, or the one after the last read.
        let mut end = from;
        let mut from = codec::id_key(from);
        loop {
            let mut ids: Vec<PostId> = Vec::with_capacity(CHUNK);
            let (mut last, mut past, mut full) = (0, false, false);
            store.scan_from(Cf::Posts, &from, |k, v| {
                let Some(id) = codec::read_u64(k, 0) else {
                    return true;
                };
                last = id;
                end = id.saturating_add(1);
                done.scanned += 1;
                let Some((p, Some(seq))) = codec::decode_post_seq(id, v) else {
                    return true;
                };
                // Ids are time-ordered per node; a minute's slack covers nodes' interleaving.
                if p.created_at_ms >= older_than_ms.saturating_add(60_000) {
                    (past, end) = (true, id);
                    return false;
                }
                if p.trimmed {
                    return true;
                }
                let part = partition_of(p.author);
                let here = match held.get(&part) {
                    Some(&h) => h,
                    None => match store.partition_seq(part) {
                        Ok(s) => *held.entry(part).or_insert(s.is_none()),
                        Err(e) => {
                            err = Some(e);
                            return false;
                        }
                    },
                };
                if here {
                    return true;
                }
                if p.created_at_ms < older_than_ms && covered(part).is_some_and(|c| seq <= c) {
                    ids.push(id);
                } else if resume.is_none() {
                    resume = Some(id);
                }
                full = ids.len() >= CHUNK;
                !full
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            if !ids.is_empty() {
                let (n, bytes) = self.trim_chunk(&ids, partition_of, covered)?;
                done.posts += n;
                done.bytes += bytes;
            }
            if past || !full || last == u64::MAX {
                done.resume_from = resume.unwrap_or(end);
                break;
            }
            from = codec::id_key(last + 1);
        }
        Ok(done)
    }

    /// Trims the bodies of `ids` whose partition is still not held here, rechecked under the
    /// handover lock. Returns (posts trimmed, bytes saved).
    fn trim_chunk(
        &self,
        ids: &[PostId],
        partition_of: &dyn Fn(UserId) -> u32,
        covered: &dyn Fn(u32) -> Option<u64>,
    ) -> Result<(u64, u64)> {
        let inner = self.inner();
        let store = &inner.store;
        let _handover = inner.readers.handover();
        let keys: Vec<[u8; 8]> = ids.iter().map(|&i| codec::id_key(i)).collect();
        let mut away: HashMap<u32, bool> = HashMap::new();
        let mut marked: HashSet<u32> = HashSet::new();
        let mut b = store.batch();
        let (mut n, mut bytes) = (0u64, 0u64);
        for (v, &id) in store.multi_get(Cf::Posts, &keys)?.into_iter().zip(ids) {
            let Some((p, Some(seq))) = v.as_deref().and_then(|v| codec::decode_post_seq(id, v)) else {
                continue;
            };
            let part = partition_of(p.author);
            let given = match away.get(&part) {
                Some(&g) => g,
                None => {
                    let g = store.partition_seq(part)?.is_some();
                    away.insert(part, g);
                    g
                }
            };
            if p.trimmed || !given || covered(part).is_none_or(|c| seq > c) {
                continue;
            }
            if marked.insert(part) && !META.is_set(store, MetaKey::BodiesTrimmed(part))? {
                META.set(store, &mut b, MetaKey::BodiesTrimmed(part));
            }
            let head = p.head();
            let new_len = codec::encode_post(&head, Some(seq)).len();
            bytes += v.map_or(0, |v| v.len().saturating_sub(new_len)) as u64;
            POSTS.put(store, &mut b, &head, Some(seq));
            n += 1;
        }
        store.write(b, Durability::Buffered)?;
        Ok((n, bytes))
    }

    /// Whether this node trimmed bodies of partition `p`'s authors and has not filled them
    /// since: a node holding `p` must [`Engine::fill_bodies`] from its newest snapshot.
    pub fn bodies_owed(&self, p: u32) -> Result<bool> {
        META.is_set(&self.inner().store, MetaKey::BodiesTrimmed(p))
    }

    /// Puts back the bodies of the heads this node keeps of the posts in these partition
    /// snapshots, and clears their partitions' markers (fsynced). Call only for partitions held
    /// here (so nothing trims them again), with a snapshot of each at or past every one a trim
    /// here was covered by — the partition's newest at or below this node's position is. A post
    /// this node no longer has (deleted since) stays gone; a body it has is left as it is.
    /// Returns how many bodies came back.
    pub fn fill_bodies(&self, files: &[&Path]) -> Result<u64> {
        let inner = self.inner();
        let store = &inner.store;
        let mut filled = Vec::new();
        let mut parts = Vec::with_capacity(files.len());
        for file in files {
            // Each file is read whole before anything changes: a damaged one fills nothing.
            read_snapshot(file, |_, _, _| Ok(()))?;
        }
        for file in files {
            let mut b = store.batch();
            let (p, _) = read_snapshot(file, |cf, k, v| {
                if cf != Cf::Posts {
                    return Ok(());
                }
                let Some(id) = codec::read_u64(k, 0) else {
                    return Ok(());
                };
                let local = store.get(Cf::Posts, k)?;
                let is_head = local
                    .as_deref()
                    .and_then(|l| codec::decode_post(id, l))
                    .is_some_and(|l| l.trimmed);
                if is_head && codec::decode_post(id, v).is_some_and(|p| !p.trimmed) {
                    store.put(&mut b, Cf::Posts, k, v);
                    filled.push(id);
                }
                if b.len() >= CHUNK {
                    store.write(std::mem::replace(&mut b, store.batch()), Durability::Buffered)?;
                }
                Ok(())
            })?;
            store.write(b, Durability::Buffered)?;
            parts.push(p);
        }
        // Fsynced: the bodies written above are durable once this is.
        let mut b = store.batch();
        for p in parts {
            store.delete(&mut b, Cf::Meta, &MetaKey::BodiesTrimmed(p).bytes());
        }
        store.write(b, Durability::Sync)?;
        inner.cache.changed(super::Change::Bodies(&filled));
        metrics::counter!(crate::metrics::BODIES_FILLED).increment(filled.len() as u64);
        Ok(filled.len() as u64)
    }
}
