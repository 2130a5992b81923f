//! Removing a node from the cluster for good (`feed-server --retire-node NAME`, or
//! `scripts/cluster remove K --for-good`).
//!
//! Only a node that is already down can be retired: drained (SIGTERM), or declared down and its
//! partitions taken over. Retiring it is one compare-and-set of the epoch record, the same
//! record through which a node proposes its return, so the two cannot both win. The node stays
//! among the down nodes, so placement does not change and no partition moves. It keeps its
//! position in the map, because post ids carry that position and it must never name another
//! node. What changes is that it may never start again (it refuses, with the reason) and never
//! proposes its return.

use super::connect::{Failure, jetstream_context, nats_urls, read_map, until_final};
use super::failover::{propose, read_epoch};
use super::placement::EpochRecord;
use super::ring::ClusterMap;
use super::{MAP_BUCKET, now_ms};
use crate::config::ClusterConfig;

/// What `retire_node` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retirement {
    /// The node is retired from this epoch on.
    Retired {
        /// The epoch that retired it.
        epoch: u64,
    },
    /// It had been retired before; nothing changed.
    AlreadyRetired,
}

/// The epoch record that retires `name`, `None` if it is retired already, or why it cannot be.
pub fn retiring(map: &ClusterMap, rec: &EpochRecord, name: &str, now_ms: u64) -> Result<Option<EpochRecord>, String> {
    if map.position(name).is_none() {
        let names: Vec<&str> = map.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(format!(
            "node {name:?} is not in the cluster map (its nodes: {names:?})"
        ));
    }
    if rec.retired.iter().any(|n| n == name) {
        return Ok(None);
    }
    if !rec.down.iter().any(|n| n == name) {
        return Err(format!(
            "node {name:?} holds partitions (epoch {}): stop it with SIGTERM first, which hands them \
             to the other nodes (scripts/cluster remove K), or wait until it is declared down",
            rec.epoch
        ));
    }
    let mut next = rec.clone();
    next.epoch += 1;
    next.at_ms = now_ms;
    next.retired.push(name.to_string());
    Ok(Some(next))
}

/// Retires node `name` of the cluster reached through `cfg` (any node's cluster settings: the
/// NATS servers and credentials). Changes nothing when the node cannot be retired, and says why.
pub async fn retire_node(cfg: &ClusterConfig, name: &str) -> Result<Retirement, String> {
    let js = jetstream_context(cfg, &nats_urls(cfg)?).await?;
    until_final("retiring a node", || async {
        let bucket = js
            .get_key_value(MAP_BUCKET)
            .await
            .map_err(|e| Failure::Transient(format!("the cluster's map bucket: {e}")))?;
        let map = read_map(&bucket)
            .await
            .map_err(Failure::Transient)?
            .ok_or_else(|| Failure::Final("no cluster map is stored on these NATS servers".into()))?;
        let (rec, revision) = read_epoch(&bucket).await.map_err(Failure::Transient)?;
        match retiring(&map, &rec, name, now_ms()).map_err(Failure::Final)? {
            None => Ok(Retirement::AlreadyRetired),
            Some(next) if propose(&bucket, &next, revision).await => Ok(Retirement::Retired { epoch: next.epoch }),
            // Another change of the epoch record came first (or the store did not answer):
            // decide again on the record as it is then.
            Some(_) => Err(Failure::Transient("the epoch record changed meanwhile".into())),
        }
    })
    .await
    .map_err(|(Failure::Transient(e) | Failure::Final(e))| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ClusterMap {
        ClusterMap::parse("a=127.0.0.1:1,b=127.0.0.1:2,c=127.0.0.1:3", 8, 32).unwrap()
    }

    #[test]
    fn only_a_down_node_of_the_map_is_retired_and_only_once() {
        let up = EpochRecord {
            epoch: 4,
            ..Default::default()
        };
        let e = retiring(&map(), &up, "b", 9).unwrap_err();
        assert!(e.contains("holds partitions"), "{e}");
        let e = retiring(&map(), &up, "z", 9).unwrap_err();
        assert!(e.contains("not in the cluster map"), "{e}");

        let down = EpochRecord {
            epoch: 5,
            down: vec!["b".into()],
            ..Default::default()
        };
        let next = retiring(&map(), &down, "b", 9).unwrap().expect("retired");
        assert_eq!(next.epoch, 6);
        assert_eq!(next.retired, vec!["b".to_string()]);
        // Still down: placement does not change, and no partition moves.
        assert_eq!(next.down, vec!["b".to_string()]);
        assert_eq!(next.at_ms, 9);
        assert_eq!(retiring(&map(), &next, "b", 10).unwrap(), None);
    }

    #[test]
    fn a_record_stored_before_retirement_existed_reads_as_nobody_retired() {
        let old = r#"{"epoch":3,"down":["c"],"at_ms":1,"floors":{"c":0}}"#;
        let rec: EpochRecord = serde_json::from_str(old).unwrap();
        assert!(rec.retired.is_empty());
        // And a record with nobody retired is stored as before.
        assert!(!serde_json::to_string(&rec).unwrap().contains("retired"));
    }
}
