//! Draining: a node stopped on purpose (SIGTERM, `scripts/cluster remove K`) hands its
//! partitions to the others before it goes, instead of leaving them unserved for the
//! suspicion time. It proposes itself down — the same epoch record a silent node gets, with the
//! floor of its own unfinished fanout — applies that epoch (its partitions are handed back
//! through the apply loop, and it forwards from then on), and waits until every other live node
//! has acknowledged it, i.e. taken its share over. It stays listed as down: started again, it
//! rejoins as any returning node does.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;

use super::failover::{self, read_epoch};
use super::placement::Alive;
use super::{Cluster, now_ms};

/// What a drain did.
#[derive(Debug, Clone)]
pub struct Drained {
    /// The epoch that lists this node down.
    pub epoch: u64,
    /// Partitions this node held before.
    pub partitions: usize,
    /// From the proposal to every live node having acknowledged the epoch.
    pub took: Duration,
}

impl Cluster {
    /// Whether this node is draining: it proposes neither its return nor others down.
    pub(super) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Hands this node's partitions to the other live nodes before a shutdown; waits up to
    /// `wait` for them to acknowledge. `Ok(None)` when there is nothing to drain (failover
    /// off, or no other live node to take over).
    pub async fn drain(&self, wait: Duration) -> Result<Option<Drained>, String> {
        if self.cfg.suspicion_ms == 0 {
            return Ok(None);
        }
        let started = Instant::now();
        let deadline = started + wait;
        let (map_kv, alive_kv) = failover::buckets(&self.js, self.cfg.replicas).await?;
        let partitions = self.placement.mine().len();
        self.draining.store(true, Ordering::SeqCst);
        let me = self.name().to_string();
        let epoch = loop {
            let (rec, revision) = read_epoch(&map_kv).await?;
            if rec.down.contains(&me) {
                break rec.epoch;
            }
            let others = self
                .placement
                .map()
                .nodes
                .iter()
                .filter(|n| n.name != me && !rec.down.contains(&n.name))
                .count();
            if others == 0 {
                self.draining.store(false, Ordering::SeqCst);
                return Ok(None);
            }
            let mut next = rec.clone();
            next.epoch += 1;
            next.at_ms = now_ms();
            next.mark_down(&me, next.at_ms);
            next.floors.insert(me.clone(), self.fan_floor().await);
            if failover::propose(&map_kv, &next, revision).await {
                tracing::info!(epoch = next.epoch, partitions, "draining: proposed this node down");
                break next.epoch;
            }
            if Instant::now() >= deadline {
                return Err("draining: the epoch record kept changing".into());
            }
        };
        // The liveness loop applies the epoch (hands the partitions back) as it is stored.
        while self.placement.epoch() < epoch {
            if Instant::now() >= deadline {
                return Err(format!("draining: epoch {epoch} not applied in time"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut renewals = HashMap::new();
        while !self.acknowledged_by_all(epoch, &map_kv, &alive_kv, &mut renewals).await {
            if Instant::now() >= deadline {
                return Err(format!(
                    "draining: epoch {epoch} not acknowledged by every live node in time"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Some(Drained {
            epoch,
            partitions,
            took: started.elapsed(),
        }))
    }

    /// Whether every node the epoch does not list down has acknowledged `epoch` — or stopped
    /// renewing its liveness record (for two heartbeats: it stopped too, as when a whole
    /// cluster is stopped at once; failover deals with it if it died). `renewals` tracks each
    /// node's record revision across calls.
    async fn acknowledged_by_all(
        &self,
        epoch: u64,
        map_kv: &kv::Store,
        alive_kv: &kv::Store,
        renewals: &mut HashMap<String, (u64, Instant)>,
    ) -> bool {
        let Ok((rec, _)) = read_epoch(map_kv).await else {
            return false;
        };
        let gone_after = 2 * failover::heartbeat_every(self.cfg.suspicion_ms);
        for n in &self.placement.map().nodes {
            if n.name == self.name() || rec.down.contains(&n.name) {
                continue;
            }
            let Ok(Some(entry)) = alive_kv.entry(&n.name).await else {
                return false;
            };
            let acked = serde_json::from_slice::<Alive>(&entry.value).is_ok_and(|a| a.epoch_seen >= epoch);
            if acked {
                continue;
            }
            let r = renewals
                .entry(n.name.clone())
                .or_insert((entry.revision, Instant::now()));
            if r.0 != entry.revision {
                *r = (entry.revision, Instant::now());
            }
            if r.1.elapsed() < gone_after {
                return false;
            }
        }
        true
    }
}
