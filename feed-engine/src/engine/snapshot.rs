//! Partition snapshots (cluster mode): what a partition's owner alone keeps, as of one log
//! sequence, in a file another node can restore. A node taking a partition over restores the
//! newest snapshot and replays only the partition's events after it, so the log can drop the
//! partition's older events.
//!
//! The rows are those [`crate::tables::row_owner`] gives to the partition: its users' side of the
//! follow graph and its counts, their mutes, reading state and notifications, the likes and
//! comments on their posts, and the follow-ups its changes still owe other partitions; and the
//! bodies of its users' posts, which other nodes may keep only the heads of
//! (`engine/bodies.rs`). They are read from a consistent view of the database, at the sequence
//! that view had applied.
//!
//! The file: a header (`FLPSNAP1`, partition, sequence), then rows (family, key, value, each
//! length-prefixed), then an end mark with the row count, so a truncated file is refused.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::codec::{self, Counter};
use crate::error::{Error, Result};
use crate::model::{PostId, UserId};
use crate::store::{Cf, Durability, Store, View};
use crate::tables::{BLOCK, COUNTERS, MetaKey, OWNED_FAMILIES, OWNED_RELATION_BITS, RELATIONS, RowOwner, row_owner};

use super::{Change, Engine};

const MAGIC: &[u8; 8] = b"FLPSNAP1";
const END: u8 = 0xff;
/// Rows written per batch when restoring.
const BATCH_ROWS: usize = 4096;

/// One partition's snapshot, as [`Engine::export_partitions`] wrote it.
#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    /// The partition.
    pub partition: u32,
    /// The log sequence it is current as of: the partition's events after it are replayed.
    pub seq: u64,
    /// The file.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

fn io(e: std::io::Error) -> Error {
    Error::Storage(Box::new(e))
}

struct Out {
    w: BufWriter<File>,
    path: PathBuf,
    rows: u64,
}

impl Out {
    fn row(&mut self, cf: Cf, k: &[u8], v: &[u8]) -> Result<()> {
        self.w.write_all(&[cf as u8]).map_err(io)?;
        for part in [k, v] {
            self.w.write_all(&(part.len() as u32).to_be_bytes()).map_err(io)?;
            self.w.write_all(part).map_err(io)?;
        }
        self.rows += 1;
        Ok(())
    }
}

/// The author of a post, as `view` (or the store) has it, remembering the last one asked: rows
/// of one post are adjacent in every family keyed by post.
fn author_lookup<'a>(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>> + 'a,
) -> impl FnMut(PostId) -> Result<Option<UserId>> + 'a {
    let mut last: Option<(PostId, Option<UserId>)> = None;
    move |post| {
        if let Some((p, a)) = last
            && p == post
        {
            return Ok(a);
        }
        let a = get(&codec::id_key(post))?
            .and_then(|v| codec::decode_post(post, &v))
            .map(|p| p.author);
        last = Some((post, a));
        Ok(a)
    }
}

fn partition_of_row(owner: RowOwner, partition_of: &dyn Fn(UserId) -> u32) -> Option<u32> {
    match owner {
        RowOwner::User(u) => Some(partition_of(u)),
        RowOwner::Partition(p) => Some(p),
        RowOwner::Everyone => None,
    }
}

/// Visits every row of the owned families that `partition_of` puts in a partition, with it.
fn owned_rows(
    view: &View<'_>,
    partition_of: &dyn Fn(UserId) -> u32,
    mut visit: impl FnMut(u32, Cf, &[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let mut author = author_lookup(|k| view.get(Cf::Posts, k));
    for cf in OWNED_FAMILIES {
        view.scan_all(cf, |k, v| {
            if let Some(p) = partition_of_row(row_owner(cf, k, v, &mut author)?, partition_of) {
                visit(p, cf, k, v)?;
            }
            Ok(true)
        })?;
    }
    Ok(())
}

impl Engine {
    /// Writes a snapshot of each partition of `parts` that this node holds into `dir`, all as
    /// of one consistent view (its applied sequence); a partition not held is skipped.
    /// `partition_of` maps a user to their partition.
    pub fn export_partitions(
        &self,
        parts: &[u32],
        partition_of: &dyn Fn(UserId) -> u32,
        dir: &Path,
    ) -> Result<Vec<PartitionSnapshot>> {
        let store = &self.inner().store;
        let view = store.view();
        let seq = view.applied_seq()?;
        let mut outs: HashMap<u32, Out> = HashMap::new();
        for &p in parts {
            // Not held, or held with bodies still to fill: its snapshot would lack them.
            if view.partition_seq(p)?.is_some() || view.get(Cf::Meta, &MetaKey::BodiesTrimmed(p).bytes())?.is_some() {
                continue;
            }
            let path = dir.join(format!("partition-{p}-{seq}.snap"));
            let mut w = BufWriter::new(File::create(&path).map_err(io)?);
            w.write_all(MAGIC).map_err(io)?;
            w.write_all(&p.to_be_bytes()).map_err(io)?;
            w.write_all(&seq.to_be_bytes()).map_err(io)?;
            outs.insert(p, Out { w, path, rows: 0 });
        }
        owned_rows(&view, partition_of, |p, cf, k, v| {
            let Some(out) = outs.get_mut(&p) else {
                return Ok(());
            };
            if cf == Cf::Relations {
                match v.first().map(|f| f & OWNED_RELATION_BITS) {
                    Some(f) if f != 0 => out.row(cf, k, &[f]),
                    _ => Ok(()),
                }
            } else {
                out.row(cf, k, v)
            }
        })?;
        // The bodies of the partitions' posts: a node holding one of them later may have kept
        // only their heads (`engine/bodies.rs`).
        view.scan_all(Cf::Posts, |k, v| {
            let Some(p) = codec::read_u64(k, 0).and_then(|id| codec::decode_post(id, v)) else {
                return Ok(true);
            };
            if let Some(out) = outs.get_mut(&partition_of(p.author))
                && !p.trimmed
            {
                out.row(Cf::Posts, k, v)?;
            }
            Ok(true)
        })?;
        let mut done = Vec::with_capacity(outs.len());
        for (partition, mut out) in outs {
            out.w.write_all(&[END]).map_err(io)?;
            out.w.write_all(&out.rows.to_be_bytes()).map_err(io)?;
            let f = out.w.into_inner().map_err(|e| io(e.into_error()))?;
            f.sync_all().map_err(io)?;
            let bytes = f.metadata().map_err(io)?.len();
            done.push(PartitionSnapshot {
                partition,
                seq,
                path: out.path,
                rows: out.rows,
                bytes,
            });
        }
        done.sort_by_key(|s| s.partition);
        Ok(done)
    }

    /// Restores a partition snapshot written by [`Engine::export_partitions`]: what this node
    /// keeps of the partition's owned rows goes, the snapshot's rows come in, checked against
    /// this node's own replicated state (a row about a post deleted here since, or an edge
    /// across a block applied here since, is left out), and the partition's position becomes
    /// the snapshot's sequence (fsynced last, so a crash part-way leaves the old position and
    /// the restore is done again). Call only at an applied sequence at or past the snapshot's,
    /// with the partition's events held back. Returns `(partition, sequence)`.
    pub fn restore_partition(&self, file: &Path, partition_of: &dyn Fn(UserId) -> u32) -> Result<(u32, u64)> {
        Ok(self.restore_partitions(&[file], partition_of)?[0])
    }

    /// [`Engine::restore_partition`] for several partitions' snapshots (one each) at once: the
    /// rows this node keeps of all of them go in one walk of the owned families. Every file is
    /// read whole before anything changes. Returns each `(partition, sequence)`, in order.
    pub fn restore_partitions(&self, files: &[&Path], partition_of: &dyn Fn(UserId) -> u32) -> Result<Vec<(u32, u64)>> {
        let inner = self.inner();
        let store = &inner.store;
        let applied = store.applied_seq()?;
        let mut restored = Vec::with_capacity(files.len());
        for file in files {
            // The whole file is read once before anything changes: a damaged one changes nothing.
            let (p, seq) = read_snapshot(file, |_, _, _| Ok(()))?;
            if applied < seq {
                return Err(Error::corrupt(format!(
                    "partition {p}'s snapshot at {seq} is ahead of this node's log position"
                )));
            }
            if restored.iter().any(|&(q, _)| q == p) {
                return Err(Error::corrupt(format!("two snapshots of partition {p} at once")));
            }
            restored.push((p, seq));
        }
        let parts: HashSet<u32> = restored.iter().map(|&(p, _)| p).collect();
        let mut touched: HashSet<UserId> = HashSet::new();
        forget_owned(store, &parts, partition_of, &mut touched)?;
        for file in files {
            write_rows(store, file, &mut touched)?;
        }
        // Fsynced: the rows written above are durable once the first of these is.
        for &(p, seq) in &restored {
            self.set_partition_seq(p, Some(seq))?;
        }
        inner.cache.changed(Change::Owners);
        for u in touched {
            inner.cache.changed(Change::Graph(u));
            inner.cache.changed(Change::Followers(u));
        }
        metrics::counter!(crate::metrics::PARTITIONS_RESTORED).increment(restored.len() as u64);
        Ok(restored)
    }
}

/// Writes a snapshot's rows, less those this node's replicated state has voided since (a row
/// about a post deleted here, an edge across a block applied here), noting whose graph changed.
fn write_rows(store: &Store, file: &Path, touched: &mut HashSet<UserId>) -> Result<()> {
    let mut author = author_lookup(|k| store.get(Cf::Posts, k));
    let blocked = |a: UserId, b: UserId| -> Result<bool> {
        Ok(RELATIONS.get(store, a, b)? & BLOCK != 0 || RELATIONS.get(store, b, a)? & BLOCK != 0)
    };
    let mut b = store.batch();
    read_snapshot(file, |cf, k, v| {
        let pair = || (codec::read_u64(k, 0).unwrap_or(0), codec::read_u64(k, 8).unwrap_or(0));
        let post_gone = |author: &mut dyn FnMut(PostId) -> Result<Option<UserId>>| -> Result<bool> {
            Ok(author(codec::read_u64(k, 0).unwrap_or(0))?.is_none())
        };
        let post_count = k.len() == 9 && (k[8] == Counter::PostLikes as u8 || k[8] == Counter::PostComments as u8);
        match cf {
            // Bodies come back only over heads, by `Engine::fill_bodies`.
            Cf::Posts => return Ok(()),
            Cf::Likes | Cf::Comments | Cf::Threads if post_gone(&mut author)? => return Ok(()),
            Cf::Counters if post_count && post_gone(&mut author)? => return Ok(()),
            Cf::Following | Cf::Followers if blocked(pair().0, pair().1)? => {
                let kind = if cf == Cf::Following {
                    Counter::Following
                } else {
                    Counter::Followers
                };
                COUNTERS.add(store, &mut b, pair().0, kind, -1);
                return Ok(());
            }
            Cf::Requests if blocked(pair().0, pair().1)? => return Ok(()),
            Cf::Relations => {
                let (u, o) = pair();
                let local = RELATIONS.get(store, u, o)? & !OWNED_RELATION_BITS;
                let mine = v.first().copied().unwrap_or(0) & OWNED_RELATION_BITS;
                RELATIONS.set(store, &mut b, u, o, local | mine);
            }
            _ => store.put(&mut b, cf, k, v),
        }
        if matches!(cf, Cf::Following | Cf::Followers | Cf::Relations) {
            touched.insert(pair().0);
        }
        if b.len() >= BATCH_ROWS {
            store.write(std::mem::replace(&mut b, store.batch()), Durability::Buffered)?;
        }
        Ok(())
    })?;
    store.write(b, Durability::Buffered)
}

/// Reads a snapshot file, handing each row to `row`; returns its `(partition, sequence)`. A file
/// that is not a whole snapshot is an error.
pub(super) fn read_snapshot(file: &Path, mut row: impl FnMut(Cf, &[u8], &[u8]) -> Result<()>) -> Result<(u32, u64)> {
    let bad = |what: &str| Error::corrupt(format!("partition snapshot {}: {what}", file.display()));
    let mut r = BufReader::new(File::open(file).map_err(io)?);
    let mut head = [0u8; 20];
    r.read_exact(&mut head).map_err(|_| bad("no header"))?;
    if &head[..8] != MAGIC {
        return Err(bad("not a snapshot"));
    }
    let p = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
    let seq = u64::from_be_bytes(head[12..20].try_into().expect("8 bytes"));
    let mut rows = 0u64;
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).map_err(|_| bad("cut short"))?;
        if tag[0] == END {
            let mut n = [0u8; 8];
            r.read_exact(&mut n).map_err(|_| bad("cut short"))?;
            if u64::from_be_bytes(n) != rows {
                return Err(bad("row count"));
            }
            return Ok((p, seq));
        }
        let cf = *Cf::ALL
            .get(tag[0] as usize)
            .filter(|cf| OWNED_FAMILIES.contains(cf) || **cf == Cf::Posts)
            .ok_or_else(|| bad("family"))?;
        let k = read_part(&mut r).map_err(|_| bad("cut short"))?;
        let v = read_part(&mut r).map_err(|_| bad("cut short"))?;
        rows += 1;
        row(cf, &k, &v)?;
    }
}

fn read_part(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    let n = u32::from_be_bytes(n) as usize;
    if n > 1 << 24 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "row too long"));
    }
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

/// Deletes every owned row of the partitions `parts` this node has (a mute bit is cleared, a
/// block kept), noting the users whose graph rows changed.
fn forget_owned(
    store: &Store,
    parts: &HashSet<u32>,
    partition_of: &dyn Fn(UserId) -> u32,
    touched: &mut HashSet<UserId>,
) -> Result<()> {
    let mut doomed: Vec<(Cf, Vec<u8>, Option<u8>)> = Vec::new();
    {
        let view = store.view();
        owned_rows(&view, partition_of, |q, cf, k, v| {
            if !parts.contains(&q) {
                return Ok(());
            }
            let keep = (cf == Cf::Relations).then(|| v.first().copied().unwrap_or(0) & !OWNED_RELATION_BITS);
            if matches!(cf, Cf::Following | Cf::Followers | Cf::Relations) {
                touched.insert(codec::read_u64(k, 0).unwrap_or(0));
            }
            doomed.push((cf, k.to_vec(), keep));
            Ok(())
        })?;
    }
    for chunk in doomed.chunks(BATCH_ROWS) {
        let mut b = store.batch();
        for (cf, k, keep) in chunk {
            match keep {
                Some(f) if *f != 0 => store.put(&mut b, *cf, k, &[*f]),
                _ => store.delete(&mut b, *cf, k),
            }
        }
        store.write(b, Durability::Buffered)?;
    }
    Ok(())
}
