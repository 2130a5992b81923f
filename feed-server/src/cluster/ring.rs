//! The cluster map, fixed partitions and consistent hashing: which node owns a user. The user
//! space is cut into `partitions` fixed partitions (a user's partition is a stable hash of their
//! id, for the cluster's life). Every node has `vnodes` points on a 64-bit ring; a partition
//! belongs to the node of the first point at or after the partition's hash, so adding a node
//! moves only the partitions whose points it takes over, whole.

use feed_engine::UserId;
use serde::{Deserialize, Serialize};

/// One feed node of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Stable name (also in its log consumers' and checkpoints' names).
    pub name: String,
    /// gRPC address other nodes forward to (host:port).
    pub addr: String,
}

/// The cluster map every node must agree on: nodes in order (a node's position is its id in
/// post ids), virtual nodes per node, the partition count, and a version bumped by every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// Bumped by every change of the map.
    pub version: u64,
    /// Ring points per node.
    pub vnodes: u32,
    /// Fixed partitions of the user space (0 in a map stored before partitions existed: such
    /// a cluster is refused, with the reason).
    #[serde(default)]
    pub partitions: u32,
    /// The nodes; position = node id.
    pub nodes: Vec<NodeSpec>,
}

/// The ring built from a map, and the partition table it gives.
#[derive(Debug, Clone)]
pub struct Ring {
    /// Owner (position in the map) of each partition.
    owners: Vec<u16>,
}

/// A user's partition among `partitions`: stable for the cluster's life.
pub fn partition_of(user: UserId, partitions: u32) -> u32 {
    (mix64(user) % partitions.max(1) as u64) as u32
}

/// SplitMix64's finaliser: a bijective mix, so consecutive user ids land far apart.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A partition's point on the ring: its number hashed apart from user hashes.
fn partition_point(p: u64) -> u64 {
    mix64(p ^ 0x5041_5254_4954_494f)
}

/// The ring's points of every node but those at `down`, sorted.
fn points(map: &ClusterMap, down: &[usize]) -> Vec<(u64, u16)> {
    let mut points: Vec<(u64, u16)> = map
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !down.contains(i))
        .flat_map(|(i, n)| {
            let h = name_hash(&n.name);
            (0..map.vnodes.max(1) as u64).map(move |v| (mix64(h ^ mix64(v + 1)), i as u16))
        })
        .collect();
    points.sort_unstable();
    points
}

/// FNV-1a over a node's name: its points depend on its name, not on its position.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Ring {
    /// The ring of `map` (which must have at least one node) and its partition table.
    pub fn new(map: &ClusterMap) -> Ring {
        Ring::placed(map, &[])
    }

    /// The partition table with the nodes at positions `down` declared down: every partition a
    /// live node holds in [`Ring::new`] stays with it, and each one a down node held goes to the
    /// live node of the next ring point — so only the down nodes' partitions move, spread over
    /// the others. With every node down, nothing moves (there is nobody to take over).
    pub fn placed(map: &ClusterMap, down: &[usize]) -> Ring {
        let base = Ring::base(map);
        if down.is_empty() || down.len() >= map.nodes.len() {
            return base;
        }
        let points = points(map, down);
        let owners = base
            .owners
            .iter()
            .enumerate()
            .map(|(p, &o)| {
                if !down.contains(&(o as usize)) {
                    return o;
                }
                let h = partition_point(p as u64);
                let i = points.partition_point(|&(q, _)| q < h);
                points.get(i).unwrap_or(&points[0]).1
            })
            .collect();
        Ring { owners }
    }

    fn base(map: &ClusterMap) -> Ring {
        let points = points(map, &[]);
        let mut owners: Vec<u16> = (0..map.partitions.max(1) as u64)
            .map(|p| {
                let h = partition_point(p);
                let i = points.partition_point(|&(q, _)| q < h);
                points.get(i).unwrap_or(&points[0]).1
            })
            .collect();
        // Every node owns at least one partition (it mints ids of users it owns): a node the
        // ring left without one takes the last partition of the node holding the most.
        for node in 0..map.nodes.len().min(owners.len()) as u16 {
            if !owners.contains(&node) {
                let mut held = vec![0usize; map.nodes.len()];
                owners.iter().for_each(|&o| held[o as usize] += 1);
                let richest = (0..held.len())
                    .max_by_key(|&n| (held[n], std::cmp::Reverse(n)))
                    .unwrap_or(0);
                if let Some(p) = owners.iter().rposition(|&o| o as usize == richest) {
                    owners[p] = node;
                }
            }
        }
        Ring { owners }
    }

    /// Position (in the map) of the node that owns `user` (its partition's owner).
    pub fn owner(&self, user: UserId) -> usize {
        self.owners[partition_of(user, self.owners.len() as u32) as usize] as usize
    }

    /// Position (in the map) of the node holding partition `p`.
    pub fn holder_of(&self, p: u32) -> usize {
        self.owners[p as usize % self.owners.len()] as usize
    }

    /// `user`'s partition.
    pub fn partition(&self, user: UserId) -> u32 {
        partition_of(user, self.owners.len() as u32)
    }

    /// The partitions the node at `node` owns, ascending.
    pub fn partitions_of(&self, node: usize) -> Vec<u32> {
        (0..self.owners.len() as u32)
            .filter(|&p| self.owners[p as usize] as usize == node)
            .collect()
    }

    /// How many partitions each node owns, by position.
    pub fn partitions_per_node(&self, nodes: usize) -> Vec<usize> {
        let mut n = vec![0; nodes];
        for &o in &self.owners {
            n[o as usize] += 1;
        }
        n
    }
}

impl ClusterMap {
    /// Parses `name=host:port,name=host:port,…` into a map of version 1 with `partitions`
    /// fixed partitions (1 to 4096, at least one per node).
    pub fn parse(nodes: &str, vnodes: u32, partitions: u32) -> Result<ClusterMap, String> {
        let mut out: Vec<NodeSpec> = Vec::new();
        for part in nodes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, addr) = part
                .split_once('=')
                .ok_or_else(|| format!("cluster node {part:?} must be name=host:port"))?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(format!("cluster node name {name:?} must be letters, digits, - or _"));
            }
            if out.iter().any(|n| n.name == name) {
                return Err(format!("cluster node {name:?} is listed twice"));
            }
            out.push(NodeSpec {
                name: name.to_string(),
                addr: addr.to_string(),
            });
        }
        if out.is_empty() || out.len() > 1024 {
            return Err("a cluster has 1 to 1024 nodes".into());
        }
        if vnodes == 0 || vnodes > 4096 {
            return Err("vnodes must be 1..=4096".into());
        }
        if partitions == 0 || partitions > 4096 || (partitions as usize) < out.len() {
            return Err(format!(
                "partitions must be 1..=4096 and at least the node count ({}), got {partitions}",
                out.len()
            ));
        }
        Ok(ClusterMap {
            version: 1,
            vnodes,
            partitions,
            nodes: out,
        })
    }

    /// Position of the node called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// Of `sample` user ids, the share whose owner differs between two maps (by node name).
pub fn moved_share(old: &ClusterMap, new: &ClusterMap, sample: u64) -> f64 {
    let (a, b) = (Ring::new(old), Ring::new(new));
    let moved = (1..=sample)
        .filter(|&u| old.nodes[a.owner(u)].name != new.nodes[b.owner(u)].name)
        .count();
    moved as f64 / sample as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: usize) -> ClusterMap {
        map_with(n, 32)
    }

    fn map_with(n: usize, partitions: u32) -> ClusterMap {
        let spec: Vec<String> = (0..n).map(|i| format!("n{i}=127.0.0.1:{}", 5000 + i)).collect();
        ClusterMap::parse(&spec.join(","), 64, partitions).unwrap()
    }

    #[test]
    fn users_stay_in_their_partition_and_partitions_move_whole_and_only_to_a_new_node() {
        // A user's partition depends on nothing but the id and the count.
        assert_eq!(partition_of(12_345, 32), partition_of(12_345, 32));
        let (m3, m4) = (map(3), map(4));
        let (r3, r4) = (Ring::new(&m3), Ring::new(&m4));
        let per = r3.partitions_per_node(3);
        eprintln!("32 partitions over 3 nodes: {per:?}");
        assert_eq!(per.iter().sum::<usize>(), 32);
        assert!(per.iter().all(|&n| n >= 4), "every node holds partitions: {per:?}");
        for u in 1..=50_000u64 {
            let (o, n) = (r3.owner(u), r4.owner(u));
            assert!(o == n || n == 3, "user {u} moved from n{o} to n{n}");
            // Users of one partition always share an owner.
            let twin = (u..)
                .skip(1)
                .find(|&v| partition_of(v, 32) == partition_of(u, 32))
                .unwrap();
            assert_eq!(r4.owner(u), r4.owner(twin));
        }
        let share = moved_share(&m3, &m4, 300_000);
        eprintln!("a fourth node takes {:.1} % of users (ideal 25 %)", share * 100.0);
        assert!((0.05..=0.45).contains(&share), "moved {share}");
        // Users spread over partitions evenly.
        let mut counts = vec![0u64; 32];
        for u in 1..=320_000u64 {
            counts[partition_of(u, 32) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..=11_000).contains(&c)), "{counts:?}");
    }

    #[test]
    fn bad_maps_are_refused_with_reasons() {
        assert!(ClusterMap::parse("", 64, 32).unwrap_err().contains("1 to 1024"));
        assert!(ClusterMap::parse("a", 64, 32).unwrap_err().contains("name=host:port"));
        assert!(ClusterMap::parse("a=x:1,a=y:2", 64, 32).unwrap_err().contains("twice"));
        assert!(ClusterMap::parse("a b=x:1", 64, 32).unwrap_err().contains("letters"));
        assert!(ClusterMap::parse("a=x:1", 0, 32).unwrap_err().contains("vnodes"));
        assert!(
            ClusterMap::parse("a=x:1,b=y:2", 64, 1)
                .unwrap_err()
                .contains("at least the node count")
        );
        assert!(ClusterMap::parse("a=x:1", 64, 0).unwrap_err().contains("partitions"));
        assert_eq!(map(2).position("n1"), Some(1));
        assert_eq!(map_with(1, 1).partitions, 1);
    }

    #[test]
    fn every_node_owns_a_partition_even_when_there_are_as_many_nodes_as_partitions() {
        for n in 1..=12 {
            let m = map_with(n, n as u32);
            let per = Ring::new(&m).partitions_per_node(n);
            assert!(per.iter().all(|&k| k == 1), "{n} nodes over {n} partitions: {per:?}");
        }
    }

    #[test]
    fn a_down_node_s_partitions_and_only_those_move_and_spread_over_the_live_nodes() {
        let m = map(3);
        let (base, without1) = (Ring::new(&m), Ring::placed(&m, &[1]));
        let mut took = [0usize; 3];
        for p in 0..32u32 {
            let (o, n) = (base.owners[p as usize] as usize, without1.owners[p as usize] as usize);
            assert_ne!(n, 1, "partition {p} stayed on the down node");
            if o != 1 {
                assert_eq!(o, n, "partition {p} of a live node moved");
            } else {
                took[n] += 1;
            }
        }
        assert!(took[0] > 0 && took[2] > 0, "one survivor took everything: {took:?}");
        assert_eq!(Ring::placed(&m, &[0, 1, 2]).owners, base.owners);
        assert_eq!(Ring::placed(&m, &[]).owners, base.owners);
    }
}
