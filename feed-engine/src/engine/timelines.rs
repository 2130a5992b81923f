//! Stored home timelines: the only writer of the `timeline` family. Deliveries (with each
//! reader's push-or-pull decision), retractions, follow merges, purges, rebuilds, trims and
//! readers forgotten (cluster mode: their partition changing hands) all
//! live here, over the typed [`TIMELINE`] table; fanout (`crate::fanout`) only decides *which*
//! readers a job reaches and calls in. Reader state is read and changed here through its owner,
//! `readers::Readers` (a copy out, or a closure under the reader's lock).

use std::collections::HashMap;

use crate::error::Result;
use crate::model::{Entry, UserId};
use crate::policy::ReaderMode;
use crate::store::{Batch, Durability};
use crate::tables::{READERS, TIMELINE};

use super::{Change, Inner, ReaderState, TopRanks};

/// Deliveries staged in one write batch — chunks of one post or of several, written together
/// by [`write_staged`]: one RocksDB write per group of posts instead of one per post (a write
/// that joins a publish's fsync group waits for that fsync).
pub(crate) struct Staged {
    batch: Batch,
    /// Timeline entries to write, put in key order when written.
    puts: Vec<(UserId, Entry)>,
    /// Each staged post's entry, the readers it was stored for and the other readers reached.
    posts: Vec<(Entry, Vec<UserId>, Vec<UserId>)>,
    /// Readers whose record (demoted to pull) is in the batch, unevictable until it lands.
    demoted: Vec<UserId>,
    reasons: HashMap<(&'static str, &'static str), u64>,
}

impl Staged {
    /// Nothing staged yet.
    pub fn new(inner: &Inner) -> Staged {
        Staged {
            batch: inner.store.batch(),
            puts: Vec::new(),
            posts: Vec::new(),
            demoted: Vec::new(),
            reasons: HashMap::new(),
        }
    }

    /// Writes staged so far.
    pub fn len(&self) -> usize {
        self.batch.len() + self.puts.len()
    }

    /// Whether no post is staged.
    pub fn is_empty(&self) -> bool {
        self.posts.is_empty()
    }
}

/// Writes one chunk of deliveries as one batch, deciding per reader whether to push.
pub(crate) fn deliver_chunk(inner: &Inner, e: &Entry, readers: &[UserId]) -> Result<()> {
    let mut s = Staged::new(inner);
    stage_chunk(inner, &mut s, e, readers)?;
    write_staged(inner, s)
}

/// Stages one chunk of deliveries, deciding per reader whether to push.
pub(crate) fn stage_chunk(inner: &Inner, s: &mut Staged, e: &Entry, readers: &[UserId]) -> Result<()> {
    let now = inner.now_ms();
    let (mut pushed, mut others) = (Vec::new(), Vec::new());
    inner.load_readers(readers)?;
    for &r in readers {
        let (d, to_timeline, demoted) = inner.with_reader(r, |st| {
            let d = inner.cfg.policy.decide(&st.activity, st.following, now);
            match d.mode {
                ReaderMode::Push => (d, st.materialized || st.rebuilding, None),
                // From now on the timeline misses posts: reads pull until a rebuild.
                ReaderMode::Pull if st.materialized => {
                    st.materialized = false;
                    st.unsaved += 1;
                    (d, false, Some(*st))
                }
                ReaderMode::Pull => (d, false, None),
            }
        })?;
        if let Some(st) = demoted {
            inner.put_reader(&mut s.batch, r, &st);
            s.demoted.push(r);
        }
        let mode = if to_timeline { "push" } else { "pull" };
        *s.reasons.entry((mode, d.reason)).or_default() += 1;
        if to_timeline {
            s.puts.push((r, *e));
            pushed.push(r);
        } else {
            others.push(r);
        }
    }
    s.posts.push((*e, pushed, others));
    Ok(())
}

/// Writes staged deliveries, then counts them, tells the feed cache and trims.
pub(crate) fn write_staged(inner: &Inner, mut s: Staged) -> Result<()> {
    TIMELINE.put_sorted(&inner.store, &mut s.batch, &mut s.puts);
    if !s.batch.is_empty() {
        inner.store.write(s.batch, Durability::Buffered)?;
    }
    for &r in &s.demoted {
        inner.readers.update(r, |st| st.unsaved = st.unsaved.saturating_sub(1));
    }
    let mut trims = Vec::new();
    let mut delivered = 0;
    for (e, pushed, others) in &s.posts {
        // Counted only once written, so a trim's scan never misses a counted entry.
        for &r in pushed {
            if inner.readers.update(r, |st| needs_trim(inner, st, r, e)) == Some(true) {
                trims.push(r);
            }
        }
        // Pushed readers' cached first pages take the entry in place; the others' pages go (a
        // pull-mode page merges this author's head).
        inner.cache.changed(Change::Delivered {
            post: e.post,
            readers: pushed,
        });
        if !others.is_empty() {
            inner.cache.changed(Change::Timelines(others));
        }
        delivered += pushed.len();
    }
    trims.sort_unstable();
    trims.dedup();
    for r in trims {
        trim(inner, r)?;
    }
    for ((mode, reason), n) in s.reasons {
        metrics::counter!(crate::metrics::POLICY_DECISIONS, "mode" => mode, "reason" => reason).increment(n);
    }
    metrics::counter!(crate::metrics::DELIVERIES).increment(delivered as u64);
    Ok(())
}

/// The bound a timeline is trimmed back from: `cap × (1 + slack)`.
fn limit(inner: &Inner) -> u32 {
    (inner.cfg.timeline_cap as f64 * (1.0 + inner.cfg.trim_slack)) as u32
}

/// Whether a reader's counted timeline length is over the bound (unknown length: no).
/// A timeline that kept unread entries past the bound is trimmed again only after another
/// `limit − cap` deliveries, so keeping them does not make every delivery trim.
pub(crate) fn over_limit(inner: &Inner, st: &ReaderState) -> bool {
    let slack = limit(inner).saturating_sub(inner.cfg.timeline_cap as u32).max(1);
    st.trimmed_at
        .is_some_and(|(kept, at)| kept + st.delivered.wrapping_sub(at) > limit(inner).max(kept.saturating_add(slack)))
}

/// Counts one written delivery and says whether the timeline should be trimmed now. With the
/// length unknown (after a restart) a trim is sampled once per `limit − cap` deliveries on average.
fn needs_trim(inner: &Inner, st: &mut ReaderState, reader: UserId, e: &Entry) -> bool {
    let post = e.post;
    st.delivered = st.delivered.wrapping_add(1);
    if st.trim_floor.is_some_and(|f| (e.rank, e.post) <= f) {
        // An entry landed in the region the last trim cut: the next scan must cover it.
        st.trim_floor = None;
    }
    match st.trimmed_at {
        Some(_) => over_limit(inner, st),
        None => {
            let period = (limit(inner) as u64)
                .saturating_sub(inner.cfg.timeline_cap as u64)
                .max(1);
            mix64(reader ^ mix64(post)).is_multiple_of(period)
        }
    }
}

/// SplitMix64's finaliser: spreads ids that differ in a few bits (time-ordered post ids) over
/// all 64, so the sampled trim fires at the intended rate.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Trims a reader's timeline to `timeline_cap` entries (plus unread ones above the read marker,
/// up to `max_unread_kept`) by deleting the tail past it. Point
/// deletes, not a range delete: every range tombstone in a memtable is re-fragmented by each new
/// iterator, which made reads and trims quadratic in the number of trims (measured: the
/// `deliveries/trim_cap_100` bench never finished).
pub(crate) fn trim(inner: &Inner, reader: UserId) -> Result<()> {
    let cap = inner.cfg.timeline_cap;
    // Deliveries counted before this point were written before the scan starts, so it sees them.
    let (counted_before, floor) = inner
        .readers
        .get(reader)
        .map(|s| (s.delivered, s.trim_floor))
        .unwrap_or((0, None));
    // Entries above the read marker are unread: kept past the cap, up to `max_unread_kept`.
    let marker = inner.read_marker_pos(reader)?;
    let unread_cap = inner.cfg.max_unread_kept.max(cap);
    let (mut n, mut kept) = (0usize, 0usize);
    let mut cut = None;
    let mut last_kept = None;
    let mut b = inner.store.batch();
    TIMELINE.scan(&inner.store, reader, None, floor, |e| {
        n += 1;
        let unread = marker.is_some_and(|m| (e.rank, e.post) > m);
        if n <= cap || (unread && n <= unread_cap) {
            kept += 1;
            last_kept = Some((e.rank, e.post));
        } else {
            cut.get_or_insert((e.rank, e.post));
            TIMELINE.delete(&inner.store, &mut b, reader, (e.rank, e.post));
        }
        true
    })?;
    if kept < n {
        // Recorded with the deletes: the read path pulls what lies below the last kept entry.
        inner.raise_cut(&mut b, reader, last_kept)?;
        inner.store.write(b, Durability::Buffered)?;
        metrics::counter!(crate::metrics::TRIMS).increment(1);
    }
    inner.readers.update(reader, |s| {
        s.trimmed_at = Some((kept as u32, counted_before));
        // Only if no delivery was counted since the scan began: one that landed behind the scan
        // could sit past the new cut, unseen by later scans. (A delivery counted after this point
        // clears the floor itself when it lands at or beyond it.)
        if s.trim_floor == floor && s.delivered == counted_before {
            s.trim_floor = cut.or(floor);
        }
    });
    Ok(())
}

/// Refills a returning reader's timeline from the outboxes of everyone they follow — the
/// highest-ranked `timeline_cap` entries of the pull window, as fanout would have left it — then
/// marks it materialised so fanout pushes to it again.
pub(crate) fn rebuild(inner: &Inner, reader: UserId) -> Result<()> {
    let graph = inner.reader_graph(reader)?;
    let now = inner.now_ms();
    let cap = inner.cfg.timeline_cap;
    let mut top = TopRanks::new(cap);
    let mut entries = Vec::new();
    for &a in graph.following.iter().chain(std::iter::once(&reader)) {
        if graph.hides(a) {
            continue;
        }
        let cut = top.floor().unwrap_or(0);
        for e in inner.outbox_after(a, now, None, cap, cut)? {
            top.push(e.rank);
            entries.push(e);
        }
    }
    // Only the timeline's top `cap` are written: a trim would delete the rest at once. What
    // was left out lies below the last written entry: the timeline's cut.
    // (An author read to `cap` may have had more: so `>=`.)
    let mut cut = None;
    if entries.len() >= cap {
        entries.select_nth_unstable_by_key(cap - 1, |e| std::cmp::Reverse(e.order_key()));
        entries.truncate(cap);
        cut = entries.iter().map(|e| (e.rank, e.post)).min();
    }
    let n = entries.len();
    let mut b = inner.store.batch();
    for e in &entries {
        TIMELINE.put(&inner.store, &mut b, reader, e);
    }
    let current = inner.reader_state(reader)?;
    let done = ReaderState {
        materialized: true,
        rebuilding: false,
        trimmed_at: None,
        trim_floor: None,
        cut,
        ..current
    };
    inner.put_reader(&mut b, reader, &done);
    inner.store.write(b, Durability::Buffered)?;
    // Only now is the timeline complete; fanout kept pushing meanwhile (`rebuilding`).
    inner.readers.update(reader, |s| {
        s.materialized = true;
        s.rebuilding = false;
        s.trimmed_at = None;
        s.trim_floor = None;
        s.cut = cut;
    });
    inner.cache.changed(Change::Timelines(&[reader]));
    metrics::counter!(crate::metrics::REBUILDS).increment(1);
    metrics::counter!(crate::metrics::DELIVERIES).increment(n as u64);
    trim(inner, reader)
}

/// Forgets `readers` (cluster mode: their partition changes hands): their timelines and
/// records go in one write, then their states and cached pages. Each reads next as a reader
/// never seen: pulled from the outboxes, rebuilt once active.
pub(crate) fn forget(inner: &Inner, readers: &[UserId], durability: Durability) -> Result<()> {
    if readers.is_empty() {
        return Ok(());
    }
    let mut b = inner.store.batch();
    for &r in readers {
        TIMELINE.delete_all(&inner.store, &mut b, r);
        READERS.delete(&inner.store, &mut b, r);
    }
    inner.store.write(b, durability)?;
    for &r in readers {
        inner.readers.forget(r);
    }
    inner.cache.changed(Change::Timelines(readers));
    Ok(())
}

/// Removes a deleted post's entries from one chunk of readers' timelines, as one batch.
pub(crate) fn retract_chunk(inner: &Inner, e: &Entry, readers: &[UserId]) -> Result<()> {
    let mut b = inner.store.batch();
    for &r in readers {
        TIMELINE.delete(&inner.store, &mut b, r, (e.rank, e.post));
    }
    inner.store.write(b, Durability::Buffered)?;
    inner.cache.changed(Change::Timelines(readers));
    Ok(())
}

/// What a follow merge wrote into a reader's timeline: how many entries, and — when an author
/// had more entries in the window than a timeline keeps — the position below which the
/// timeline must be cut so that it holds, above its last entry, every entry of the feed (the
/// read path pulls what lies below it). Several merges into one timeline add up.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Merged {
    /// Entries written.
    pub n: usize,
    /// Cut the timeline below this position, once the batch is written.
    pub cut: Option<(u64, u64)>,
}

impl std::ops::AddAssign for Merged {
    fn add_assign(&mut self, o: Merged) {
        self.n += o.n;
        self.cut = self.cut.max(o.cut);
    }
}

impl Inner {
    /// Adds timeline entries of `author`'s posts in the pull window for `reader` into a batch
    /// (as many as a timeline keeps), when the reader's timeline is materialised.
    pub fn merge_author_into(&self, b: &mut Batch, reader: UserId, author: UserId, now: u64) -> Result<Merged> {
        if !self.owns(reader) {
            return Ok(Merged::default());
        }
        let st = self.reader_state(reader)?;
        if !st.materialized && !st.rebuilding {
            return Ok(Merged::default());
        }
        let cap = self.cfg.timeline_cap;
        let entries = self.outbox_after(author, now, None, cap, 0)?;
        for e in &entries {
            TIMELINE.put(&self.store, b, reader, e);
        }
        // The author's older entries were left out: so must everything below the last one be.
        let cut = (entries.len() >= cap)
            .then(|| entries.last().map(|e| (e.rank, e.post)))
            .flatten();
        Ok(Merged { n: entries.len(), cut })
    }

    /// Counts entries added to `reader`'s timeline outside fanout (follow merges), records the
    /// cut a merge left, and trims the timeline if it passed the bound. Call after the batch that
    /// added them is written.
    pub fn note_added(&self, reader: UserId, m: Merged) -> Result<()> {
        if m.cut.is_some() {
            let mut b = self.store.batch();
            self.raise_cut(&mut b, reader, m.cut)?;
            self.store.write(b, Durability::Buffered)?;
            self.cache.changed(Change::Timelines(&[reader]));
        }
        let over = self
            .readers
            .update(reader, |s| {
                s.delivered = s.delivered.wrapping_add(m.n as u32);
                // Merged posts may be older than the last trim's cut.
                s.trim_floor = None;
                over_limit(self, s)
            })
            .unwrap_or(false);
        if over { trim(self, reader) } else { Ok(()) }
    }

    /// Raises `reader`'s cut to `to` (a cut only rises: below the higher one the outboxes are
    /// authoritative) and puts the reader's record, with it, into `b`.
    fn raise_cut(&self, b: &mut Batch, reader: UserId, to: Option<(u64, u64)>) -> Result<()> {
        let st = self.with_reader(reader, |s| {
            s.cut = s.cut.max(to);
            *s
        })?;
        self.put_reader(b, reader, &st);
        Ok(())
    }

    /// Deletes every entry by `author` from `reader`'s stored timeline, within a batch.
    pub fn purge_author_from(&self, b: &mut Batch, reader: UserId, author: UserId) -> Result<usize> {
        let mut n = 0;
        TIMELINE.scan(&self.store, reader, None, None, |e| {
            if e.author == author {
                TIMELINE.delete(&self.store, b, reader, (e.rank, e.post));
                n += 1;
            }
            true
        })?;
        Ok(n)
    }
}
