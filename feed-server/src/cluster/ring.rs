//! The cluster map and consistent hashing: which node owns a user. Every node has `vnodes`
//! points on a 64-bit ring; a user belongs to the node of the first point at or after the
//! user's hash, so adding a node moves only the users whose points it takes over.

use feed_engine::UserId;
use serde::{Deserialize, Serialize};

/// One feed node of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Stable name (also its durable consumer's and checkpoints' name).
    pub name: String,
    /// gRPC address other nodes forward to (host:port).
    pub addr: String,
}

/// The cluster map every node must agree on: nodes in order (a node's position is its id in
/// post ids), virtual nodes per node, and a version bumped by every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// Bumped by every change of the map.
    pub version: u64,
    /// Ring points per node.
    pub vnodes: u32,
    /// The nodes; position = node id.
    pub nodes: Vec<NodeSpec>,
}

/// The ring built from a map.
#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<(u64, u16)>,
}

/// SplitMix64's finaliser: a bijective mix, so consecutive user ids land far apart.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over a node's name: its points depend on its name, not on its position.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Ring {
    /// The ring of `map` (which must have at least one node).
    pub fn new(map: &ClusterMap) -> Ring {
        let mut points: Vec<(u64, u16)> = map
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                let h = name_hash(&n.name);
                (0..map.vnodes.max(1) as u64).map(move |v| (mix64(h ^ mix64(v + 1)), i as u16))
            })
            .collect();
        points.sort_unstable();
        Ring { points }
    }

    /// Position (in the map) of the node that owns `user`.
    pub fn owner(&self, user: UserId) -> usize {
        let h = mix64(user);
        let i = self.points.partition_point(|&(p, _)| p < h);
        self.points.get(i).unwrap_or(&self.points[0]).1 as usize
    }
}

impl ClusterMap {
    /// Parses `name=host:port,name=host:port,…` into a map of version 1.
    pub fn parse(nodes: &str, vnodes: u32) -> Result<ClusterMap, String> {
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
        Ok(ClusterMap {
            version: 1,
            vnodes,
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
        let spec: Vec<String> = (0..n).map(|i| format!("n{i}=127.0.0.1:{}", 5000 + i)).collect();
        ClusterMap::parse(&spec.join(","), 64).unwrap()
    }

    #[test]
    fn users_spread_evenly_and_a_fourth_node_moves_about_a_quarter() {
        let m3 = map(3);
        let r = Ring::new(&m3);
        let mut counts = [0u64; 3];
        for u in 1..=300_000u64 {
            counts[r.owner(u)] += 1;
        }
        for c in counts {
            // 64 vnodes: each node within ±25 % of a third.
            assert!((75_000..=125_000).contains(&c), "{counts:?}");
        }
        let m4 = map(4);
        let share = moved_share(&m3, &m4, 300_000);
        eprintln!("a fourth node moves {:.1} % of users (ideal 25 %)", share * 100.0);
        assert!((0.15..=0.35).contains(&share), "moved {share}");
        // Every moved user moved to the new node: nothing shuffles between old nodes.
        let r4 = Ring::new(&m4);
        for u in 1..=50_000u64 {
            let (o, n) = (r.owner(u), r4.owner(u));
            assert!(o == n || n == 3, "user {u} moved from n{o} to n{n}");
        }
    }

    #[test]
    fn bad_maps_are_refused_with_reasons() {
        assert!(ClusterMap::parse("", 64).unwrap_err().contains("1 to 1024"));
        assert!(ClusterMap::parse("a", 64).unwrap_err().contains("name=host:port"));
        assert!(ClusterMap::parse("a=x:1,a=y:2", 64).unwrap_err().contains("twice"));
        assert!(ClusterMap::parse("a b=x:1", 64).unwrap_err().contains("letters"));
        assert!(ClusterMap::parse("a=x:1", 0).unwrap_err().contains("vnodes"));
        assert_eq!(map(2).position("n1"), Some(1));
    }
}
