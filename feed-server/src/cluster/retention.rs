//! How far the log keeps its **replicated** subjects (`feedline.r.>`: sign-ups, profiles,
//! blocks, posts, count announcements), which every node applies.
//!
//! They are dropped up to the oldest checkpoint of any node in the map that is not retired
//! (`Snapshots::node_floor`), as each partition's own subjects are dropped up to a snapshot
//! below it. Whoever needs them afterwards is covered:
//! - a node restarted on its own folder has applied past its own checkpoint;
//! - a node on an empty folder restores its own checkpoint, or when it never took one (a node
//!   joining) the newest of any node's (`checkpoint::restore`): at or past the floor, because the
//!   floor is the oldest of them. A joining node is in the map before it restores, and has no
//!   checkpoint until it has caught up, so the floor cannot pass what it restored meanwhile.
//!
//! The drop point is recorded (KV `feedline-partitions`, key `replicated`) before the purge, so a
//! node whose folder is older than it refuses to start, and says why, instead of applying the
//! log with a gap.

use std::path::Path;

use super::snapshots::Snapshots;
use super::subjects;

/// The key of the replicated subjects' drop point.
const KEY: &str = "replicated";
/// Attempts at the drop point's compare-and-set before giving up until the next round.
const CAS_ATTEMPTS: usize = 16;

impl Snapshots {
    /// How far the replicated subjects were dropped (0: never), and the record's revision.
    pub async fn replicated_purged_to(&self) -> Result<(u64, u64), String> {
        match self
            .kv()
            .entry(KEY)
            .await
            .map_err(|e| format!("reading the replicated events' drop point: {e}"))?
        {
            Some(e) if !e.value.is_empty() => {
                let s = std::str::from_utf8(&e.value).map_err(|x| x.to_string())?;
                let to = s
                    .parse()
                    .map_err(|x| format!("the replicated events' drop point {s:?}: {x}"))?;
                Ok((to, e.revision))
            }
            _ => Ok((0, 0)),
        }
    }

    /// Drops the replicated subjects up to `node_floor` (the oldest node checkpoint), recording
    /// the point first. Returns how many messages went.
    pub async fn purge_replicated(&self, node_floor: u64) -> Result<u64, String> {
        for _ in 0..CAS_ATTEMPTS {
            let (to, rev) = self.replicated_purged_to().await?;
            if node_floor <= to {
                return Ok(0);
            }
            if !self.put_if(KEY, node_floor.to_string().into_bytes(), rev).await {
                continue;
            }
            let purged = self
                .drop_up_to(subjects::replicated_all(), node_floor)
                .await
                .map_err(|e| format!("purging the replicated events: {e}"))?;
            tracing::info!(
                to = node_floor,
                messages = purged,
                "dropped the replicated events every node's checkpoint covers"
            );
            return Ok(purged);
        }
        Err("recording the replicated events' drop point: it kept changing".into())
    }
}

/// Refuses a database that has applied the log only to `applied` when the replicated events up
/// to `purged_to` are gone: applying on would skip them.
pub(super) fn refuse_if_behind(applied: u64, purged_to: u64, data_dir: &Path) -> Result<(), String> {
    if applied >= purged_to {
        return Ok(());
    }
    Err(format!(
        "this node's database has applied the log up to {applied}, but the log no longer holds \
         the replicated events up to {purged_to} (every node's checkpoint covers them). Move the \
         data folder {} away and start again: the node then restores the newest checkpoint",
        data_dir.display()
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_behind_the_drop_point_is_refused_with_the_way_out() {
        let dir = std::path::Path::new("/data/n1");
        assert!(super::refuse_if_behind(10, 10, dir).is_ok());
        assert!(super::refuse_if_behind(0, 0, dir).is_ok());
        let e = super::refuse_if_behind(9, 10, dir).unwrap_err();
        assert!(
            e.contains("up to 9") && e.contains("up to 10") && e.contains("/data/n1"),
            "{e}"
        );
    }
}
