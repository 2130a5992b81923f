//! Which node answers for which partition now. The cluster map fixes the nodes and the ring;
//! the **epoch record** (key `epoch` of the map bucket, changed only by compare-and-set on its
//! revision) lists the nodes declared down. A down node's partitions belong to the live node of
//! the next ring point ([`Ring::placed`]); every node applies each new epoch in order. A
//! partition this node has gained but not finished taking over (replaying its own events) is
//! *moving*: calls for its users are answered `UNAVAILABLE` with a retry hint until it is ready.
//!
//! Fencing: a node answers for its partitions only while its **lease** holds — its own liveness
//! record renewed within half the suspicion time. The others declare it down only after the
//! whole suspicion time without a renewal, so by then it has stopped answering; and once the
//! epoch lists it down it holds nothing until it has rejoined.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use feed_engine::UserId;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::ring::{ClusterMap, Ring, partition_of};

/// The epoch record: which nodes are down, since when, and where their fanout stood.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Bumped by every change.
    pub epoch: u64,
    /// Names of the nodes declared down, whose partitions the others hold.
    pub down: Vec<String>,
    /// When this epoch was proposed (ms since the Unix epoch).
    pub at_ms: u64,
    /// For each down node, the time from which its authors' posts may still have had fanout
    /// pending (from its last liveness record): the new holders fan them out again from there.
    #[serde(default)]
    pub floors: BTreeMap<String, u64>,
    /// Nodes removed from the cluster for good (`feed-server --retire-node`), each also among
    /// `down`: they hold nothing and may never start again; their positions in the map (their
    /// bits in post ids) are never given to another node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
    /// When each down node was declared down, or left `behind` to rebuild (ms since the Unix
    /// epoch): the log's wait for it (`--down-node-retention-s`) counts from there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub down_at: BTreeMap<String, u64>,
    /// Down nodes the log no longer keeps events for (down past `--down-node-retention-s`):
    /// their checkpoints no longer hold back its drops, and each rebuilds its database from the
    /// newest checkpoint before it returns (`retention`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<String>,
    /// How far the log's replicated subjects were dropped (`retention`). Kept in this record so
    /// that a drop and a node leaving `behind` are ordered by one compare-and-set.
    #[serde(default)]
    pub dropped_to: u64,
}

impl EpochRecord {
    /// Lists `name` down from `at_ms` (the caller bumps the epoch).
    pub fn mark_down(&mut self, name: &str, at_ms: u64) {
        self.down.push(name.to_string());
        self.down_at.insert(name.to_string(), at_ms);
    }

    /// Takes `name` off the down list (the caller bumps the epoch).
    pub fn mark_up(&mut self, name: &str) {
        self.down.retain(|n| n != name);
        self.floors.remove(name);
        self.down_at.remove(name);
    }

    /// Since when `name` has been down (a record from before `down_at`: its last floor, or the
    /// epoch's time).
    pub fn down_since(&self, name: &str) -> u64 {
        self.down_at
            .get(name)
            .or_else(|| self.floors.get(name))
            .copied()
            .unwrap_or(self.at_ms)
    }

    /// Whether node `me`, having applied epoch `applied`, may renew its lease under this stored
    /// record: not while it lists `me` behind (the node must be rebuilt first: it may have
    /// skipped what the log dropped), nor while it declares `me` down in an epoch not applied
    /// yet — cut off past the suspicion time and back, the node would otherwise answer for
    /// partitions the others hold now until it applied that epoch. A node that has applied the
    /// epoch listing it down holds nothing, and renews to propose its return.
    pub fn lets_renew(&self, me: &str, applied: u64) -> bool {
        let listed = |names: &[String]| names.iter().any(|n| n == me);
        !listed(&self.behind) && (self.epoch <= applied || !listed(&self.down))
    }
}

/// A node's liveness record, renewed every heartbeat.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Alive {
    /// The newest epoch the node has applied.
    pub epoch_seen: u64,
    /// Posts created before this time (ms) have no fanout pending on the node.
    pub floor_ms: u64,
}

struct State {
    map: ClusterMap,
    epoch: u64,
    down: Vec<usize>,
    ring: Ring,
    moving: Vec<u32>,
}

impl State {
    /// Sets the epoch and served-partitions gauges (what an operator, or a test, watches to see
    /// a cluster settled after a node was declared down or came back).
    fn report(&self, me: usize) {
        let served = self
            .ring
            .partitions_of(me)
            .iter()
            .filter(|p| !self.moving.contains(p))
            .count();
        metrics::gauge!(feed_engine::metrics::EPOCH).set(self.epoch as f64);
        metrics::gauge!(feed_engine::metrics::PARTITIONS_SERVED).set(served as f64);
    }
}

/// This node's view of who holds which partition, and its lease.
pub struct Placement {
    partitions: u32,
    me: usize,
    state: RwLock<State>,
    /// When the lease was last renewed (`None`: never).
    renewed: Mutex<Option<Instant>>,
    /// How long a renewal holds (0: failover off, the lease always holds).
    lease: Duration,
}

/// Who answers for a user's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// This node, ready.
    Me,
    /// This node, still taking the partition over.
    Moving,
    /// This node's lease has lapsed: it answers for nothing until renewed.
    Lapsed,
    /// The node at this position of the map.
    Other(usize),
}

impl Placement {
    /// The placement of `rec`'s epoch over `map`, for the node at `me`; the lease lasts
    /// `lease` (zero: always holds).
    pub fn new(map: &ClusterMap, me: usize, rec: &EpochRecord, lease: Duration) -> Placement {
        let down = positions(map, &rec.down);
        let state = State {
            map: map.clone(),
            epoch: rec.epoch,
            ring: Ring::placed(map, &down),
            down,
            moving: Vec::new(),
        };
        state.report(me);
        Placement {
            state: RwLock::new(state),
            partitions: map.partitions,
            me,
            renewed: Mutex::new(None),
            lease,
        }
    }

    /// `user`'s partition (fixed for the cluster's life).
    pub fn partition(&self, user: UserId) -> u32 {
        partition_of(user, self.partitions)
    }

    /// The cluster map in force (nodes are only ever appended: a position never changes).
    pub fn map(&self) -> ClusterMap {
        self.state.read().map.clone()
    }

    /// The name of the node at `pos`.
    pub fn node_name(&self, pos: usize) -> String {
        self.state
            .read()
            .map
            .nodes
            .get(pos)
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    /// Who answers for `user` now.
    pub fn holder(&self, user: UserId) -> Holder {
        let p = self.partition(user);
        let st = self.state.read();
        let owner = st.ring.owner(user);
        if owner != self.me {
            Holder::Other(owner)
        } else if st.moving.contains(&p) {
            Holder::Moving
        } else if !self.lease_holds() {
            Holder::Lapsed
        } else {
            Holder::Me
        }
    }

    /// Whether this node holds `user`'s partition under the current epoch (moving or not).
    pub fn owns(&self, user: UserId) -> bool {
        self.state.read().ring.owner(user) == self.me
    }

    /// Whether this node keeps `user`'s reader state and timelines now: it holds the
    /// partition and has finished taking it over (the engine's owner filter).
    pub fn keeps(&self, user: UserId) -> bool {
        let p = self.partition(user);
        let st = self.state.read();
        st.ring.owner(user) == self.me && !st.moving.contains(&p)
    }

    /// The partitions this node holds now (moving included), ascending.
    pub fn mine(&self) -> Vec<u32> {
        self.state.read().ring.partitions_of(self.me)
    }

    /// The partitions this node holds and has finished taking over, ascending.
    pub fn kept(&self) -> Vec<u32> {
        let st = self.state.read();
        let mut v = st.ring.partitions_of(self.me);
        v.retain(|p| !st.moving.contains(p));
        v
    }

    /// The epoch applied.
    pub fn epoch(&self) -> u64 {
        self.state.read().epoch
    }

    /// Whether the node at `pos` is declared down.
    pub fn is_down(&self, pos: usize) -> bool {
        self.state.read().down.contains(&pos)
    }

    /// The holder of each partition under the current epoch, by position in the map.
    pub fn holders(&self) -> Vec<usize> {
        let st = self.state.read();
        (0..self.partitions).map(|p| st.ring.holder_of(p)).collect()
    }

    /// Moves to `rec`'s epoch over `map` (the same map, or a newer one with nodes appended),
    /// with `moving` (partitions gained) not yet ready. Returns the partitions this node lost
    /// and gained.
    pub fn advance(&self, map: &ClusterMap, rec: &EpochRecord) -> (Vec<u32>, Vec<u32>) {
        let down = positions(map, &rec.down);
        let ring = Ring::placed(map, &down);
        let mut st = self.state.write();
        st.map = map.clone();
        let before = st.ring.partitions_of(self.me);
        let after = ring.partitions_of(self.me);
        let lost: Vec<u32> = before.iter().copied().filter(|p| !after.contains(p)).collect();
        let gained: Vec<u32> = after.iter().copied().filter(|p| !before.contains(p)).collect();
        st.epoch = rec.epoch;
        st.down = down;
        st.ring = ring;
        st.moving.retain(|p| after.contains(p));
        st.moving.extend(gained.iter().copied());
        st.report(self.me);
        (lost, gained)
    }

    /// Partitions taken over and ready: this node answers for them.
    pub fn ready(&self, partitions: &[u32]) {
        let mut st = self.state.write();
        st.moving.retain(|p| !partitions.contains(p));
        st.report(self.me);
    }

    /// Renews the lease (a liveness record was just stored).
    pub fn renew(&self) {
        *self.renewed.lock() = Some(Instant::now());
    }

    /// Whether the lease holds.
    pub fn lease_holds(&self) -> bool {
        self.lease.is_zero() || self.renewed.lock().is_some_and(|t| t.elapsed() < self.lease)
    }
}

/// Positions in `map` of the nodes named in `names` (unknown names are ignored).
pub fn positions(map: &ClusterMap, names: &[String]) -> Vec<usize> {
    names.iter().filter_map(|n| map.position(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_renewed_only_by_a_node_that_has_applied_the_epoch_declaring_it_down_and_is_not_behind() {
        let mut rec = EpochRecord {
            epoch: 5,
            ..EpochRecord::default()
        };
        assert!(
            rec.lets_renew("n1", 5) && rec.lets_renew("n1", 4),
            "up: an epoch not applied yet moves partitions by handover"
        );
        rec.mark_down("n1", 1_000);
        assert!(!rec.lets_renew("n1", 4), "declared down in an epoch it has not applied");
        assert!(rec.lets_renew("n1", 5), "it has applied it: it holds nothing");
        assert!(rec.lets_renew("n2", 4), "another node is down");
        rec.behind.push("n1".into());
        assert!(!rec.lets_renew("n1", 5) && !rec.lets_renew("n1", 6), "behind: never");
    }
}
