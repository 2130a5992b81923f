//! How far the log keeps its **replicated** subjects (`feedline.r.>`: sign-ups, profiles,
//! blocks, posts, count announcements), which every node applies, and what becomes of a node
//! that stays down longer than the log waits for it.
//!
//! They are dropped up to the **floor**: the oldest checkpoint of the nodes the log waits for —
//! every node of the map but the retired and the *behind* ones — as each partition's own
//! subjects are dropped up to a snapshot below it. Whoever needs them afterwards is covered:
//! - a node restarted on its own folder has applied past its own checkpoint;
//! - a node on an empty folder restores its own checkpoint, or when it never took one (a node
//!   joining) the newest of any node's (`checkpoint::restore`): at or past the floor, because the
//!   floor is the oldest of them. A joining node is in the map before it restores, and has no
//!   checkpoint until it has caught up, so the floor cannot pass what it restored meanwhile.
//!
//! **Down nodes are waited for only so long** (`--down-node-retention-s`). Past it, a checkpoint
//! round lists the node *behind* in the epoch record, and the floor leaves it out. A behind node
//! never returns with the database it has: when it starts, its database is moved aside and it
//! rebuilds from the newest checkpoint, and it leaves `behind` (before downloading) only if that
//! checkpoint is at or past the drop point. A node that was cut off, not stopped, and finds
//! itself behind while it runs asks to be restarted (`Cluster::must_restart`) instead of
//! returning: its consumer may have skipped what the log dropped.
//!
//! The drop point lives in the epoch record (`dropped_to`), written by a compare-and-set on the
//! revision the floor was computed from. So a drop and a node leaving `behind` are ordered: a
//! drop decided without a node that left `behind` meanwhile fails and is decided again next
//! round, with the node's (older) checkpoint holding the floor back until it takes a new one.

use std::path::{Path, PathBuf};

use async_nats::jetstream;

use super::failover::{map_bucket, propose, read_epoch};
use super::placement::EpochRecord;
use super::snapshots::Snapshots;
use super::{Cluster, Connected, checkpoint, now_ms, subjects};

/// Attempts at the epoch record's compare-and-set before giving up until the next round.
const CAS_ATTEMPTS: usize = 16;

/// A file in the data folder while its database is being replaced by the newest checkpoint:
/// whatever database the folder holds then is not to be trusted (a crash mid-rebuild starts the
/// rebuild again).
pub(super) const REBUILDING: &str = "REBUILDING";

/// The floor the log's drops may reach, with the epoch record it was computed from.
pub(super) struct Floor {
    /// The oldest checkpoint sequence of the nodes the log waits for (0 while one has none).
    pub seq: u64,
    rec: EpochRecord,
    revision: u64,
}

impl Snapshots {
    /// How far the replicated subjects were dropped (0: never).
    pub async fn replicated_purged_to(&self) -> Result<u64, String> {
        Ok(read_epoch(self.map_kv()).await?.0.dropped_to)
    }

    /// Lists behind every node down for longer than `retention_ms` (0: never). Returns their
    /// names.
    pub async fn release_down_nodes(&self, retention_ms: u64) -> Result<Vec<String>, String> {
        for _ in 0..CAS_ATTEMPTS {
            let (rec, revision) = read_epoch(self.map_kv()).await?;
            let Some(next) = released(&rec, now_ms(), retention_ms) else {
                return Ok(Vec::new());
            };
            if propose(self.map_kv(), &next, revision).await {
                let names: Vec<String> = next
                    .behind
                    .iter()
                    .filter(|n| !rec.behind.contains(n))
                    .cloned()
                    .collect();
                for n in &names {
                    tracing::warn!(
                        node = %n,
                        down_since_ms = rec.down_since(n),
                        "the log no longer waits for a down node; it rebuilds from a checkpoint when it returns"
                    );
                }
                return Ok(names);
            }
        }
        Err("listing down nodes behind: the epoch record kept changing".into())
    }

    /// The oldest checkpoint sequence of the nodes the log waits for (not retired, not
    /// behind), 0 while one of them has none: no event is dropped past it.
    pub async fn node_floor(&self, cluster: &Cluster) -> Result<Floor, String> {
        let (rec, revision) = read_epoch(self.map_kv()).await?;
        let mut floor = u64::MAX;
        for n in cluster.map().nodes {
            if rec.retired.contains(&n.name) || rec.behind.contains(&n.name) {
                continue;
            }
            match checkpoint::read_manifest(self.objects(), &n.name).await? {
                Some(m) => floor = floor.min(m.seq),
                None => {
                    floor = 0;
                    break;
                }
            }
        }
        Ok(Floor {
            seq: if floor == u64::MAX { 0 } else { floor },
            rec,
            revision,
        })
    }

    /// Drops the replicated subjects up to `floor`, recording the point first in the epoch
    /// record at the revision the floor was computed from; when the record changed meanwhile,
    /// nothing is dropped this round. Returns how many messages went.
    pub async fn purge_replicated(&self, floor: &Floor) -> Result<u64, String> {
        if floor.seq <= floor.rec.dropped_to {
            return Ok(0);
        }
        let mut next = floor.rec.clone();
        next.dropped_to = floor.seq;
        if !propose(self.map_kv(), &next, floor.revision).await {
            return Ok(0);
        }
        let purged = self
            .drop_up_to(subjects::replicated_all(), floor.seq)
            .await
            .map_err(|e| format!("purging the replicated events: {e}"))?;
        tracing::info!(
            to = floor.seq,
            messages = purged,
            "dropped the replicated events every node's checkpoint covers"
        );
        Ok(purged)
    }
}

/// `rec` with every node down for `retention_ms` or longer at `now_ms` listed behind (the
/// retired and those listed already aside); `None` when there is none, or retention is off (0).
pub(super) fn released(rec: &EpochRecord, now_ms: u64, retention_ms: u64) -> Option<EpochRecord> {
    if retention_ms == 0 {
        return None;
    }
    let due: Vec<String> = rec
        .down
        .iter()
        .filter(|n| !rec.retired.contains(n) && !rec.behind.contains(n))
        .filter(|n| now_ms.saturating_sub(rec.down_since(n)) >= retention_ms)
        .cloned()
        .collect();
    if due.is_empty() {
        return None;
    }
    let mut next = rec.clone();
    next.behind.extend(due);
    Some(next)
}

/// `rec` with `node` no longer behind, when the checkpoint at `seq` it rebuilds from covers the
/// drop point. An error when the checkpoint is older than the drop point (another one must be
/// chosen).
///
/// A node rebuilding stays down until it proposes its return, so its down clock restarts at
/// `now_ms`, on leaving `behind` and on a rebuild resumed after a crash alike: counted from when
/// it was declared down, the next checkpoint round would list it behind again while it
/// rebuilds, and once serving it would stop itself to be rebuilt once more. `Ok(None)`: it is
/// neither behind nor down.
pub(super) fn leaving_behind(
    rec: &EpochRecord,
    node: &str,
    seq: u64,
    now_ms: u64,
) -> Result<Option<EpochRecord>, String> {
    let behind = rec.behind.iter().any(|n| n == node);
    let down = rec.down.iter().any(|n| n == node);
    if behind && seq < rec.dropped_to {
        return Err(format!(
            "the newest checkpoint ({seq}) is older than the log's drop point ({}); choosing again",
            rec.dropped_to
        ));
    }
    if !behind && !down {
        return Ok(None);
    }
    let mut next = rec.clone();
    next.behind.retain(|n| n != node);
    if down {
        next.down_at.insert(node.to_string(), now_ms);
    }
    Ok(Some(next))
}

/// Whether `node` may offer a checkpoint of its database, by `rec` read after the checkpoint
/// was taken: not while it is listed behind (its consumer may have skipped what was dropped).
pub(super) fn may_offer_checkpoint(rec: &EpochRecord, node: &str) -> Result<(), String> {
    if rec.behind.iter().any(|n| n == node) {
        return Err("this node is listed behind: no checkpoint until it has rebuilt".into());
    }
    Ok(())
}

/// Takes `node` off the epoch record's `behind` list for a rebuild from the checkpoint at `seq`
/// (0: none), and restarts its down clock, by a compare-and-set (`leaving_behind`). An error (retried by the caller) when that checkpoint is
/// older than the drop point or the record kept changing.
pub(super) async fn leave_behind(js: &jetstream::Context, node: &str, seq: u64) -> Result<(), String> {
    let map_kv = map_bucket(js).await?;
    for _ in 0..CAS_ATTEMPTS {
        let (rec, revision) = read_epoch(&map_kv).await?;
        let Some(next) = leaving_behind(&rec, node, seq, now_ms())? else {
            return Ok(());
        };
        if propose(&map_kv, &next, revision).await {
            if rec.behind.iter().any(|n| n == node) {
                tracing::info!(
                    seq,
                    "rebuilding from a checkpoint at or past the log's drop point: no longer behind"
                );
            } else {
                tracing::info!(seq, "resuming a rebuild: the log waits for this node again from now");
            }
            return Ok(());
        }
    }
    Err("leaving the behind list: the epoch record kept changing".into())
}

/// Ends a rebuild: the data folder's database is whole and the node's own from here on.
pub(super) fn rebuild_done(data_dir: &Path) -> Result<(), String> {
    match std::fs::remove_file(data_dir.join(REBUILDING)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{REBUILDING}: {e}")),
        _ => Ok(()),
    }
}

impl Connected {
    /// Whether the node must rebuild its database from the newest checkpoint: it is listed
    /// behind, or a rebuild was interrupted (the marker is in `data_dir`). Then the marker is
    /// written and the database in `data_dir` moved aside.
    pub(super) async fn rebuild_if_behind(&self, data_dir: &Path) -> Result<bool, String> {
        let marker = data_dir.join(REBUILDING);
        if !marker.exists() {
            let rec = self.epoch_record().await?;
            if !rec.behind.contains(&self.cfg.node) {
                return Ok(false);
            }
            std::fs::create_dir_all(data_dir).map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
            checkpoint::write_synced(&marker, b"the log no longer held what this database had not applied").await?;
        }
        if let Some(aside) = move_database_aside(data_dir)? {
            tracing::warn!(
                aside = %aside.display(),
                "this node was down longer than the log waits for a node: its database was moved aside, and it rebuilds from the newest checkpoint"
            );
        }
        Ok(true)
    }
}

/// Moves the database files of `data_dir` into a folder beside it (`<name>.behind-<ms>`, for
/// whoever wants to look at them), leaving the node's other files (its dev-mode key). Returns
/// the folder, or `None` when there was nothing to move.
pub(super) fn move_database_aside(data_dir: &Path) -> Result<Option<PathBuf>, String> {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "data".into());
    let aside = data_dir.with_file_name(format!("{name}.behind-{}", now_ms()));
    let mut moved = false;
    for ent in std::fs::read_dir(data_dir).map_err(|e| format!("reading {}: {e}", data_dir.display()))? {
        let ent = ent.map_err(|e| e.to_string())?;
        let file = ent.file_name().to_string_lossy().to_string();
        if file == "auth-secret" || file == REBUILDING {
            continue;
        }
        if !moved {
            std::fs::create_dir_all(&aside).map_err(|e| format!("creating {}: {e}", aside.display()))?;
            moved = true;
        }
        std::fs::rename(ent.path(), aside.join(&file)).map_err(|e| format!("moving {file} aside: {e}"))?;
    }
    Ok(moved.then_some(aside))
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
    use super::*;

    #[test]
    fn a_database_behind_the_drop_point_is_refused_with_the_way_out() {
        let dir = std::path::Path::new("/data/n1");
        assert!(refuse_if_behind(10, 10, dir).is_ok());
        assert!(refuse_if_behind(0, 0, dir).is_ok());
        let e = refuse_if_behind(9, 10, dir).unwrap_err();
        assert!(
            e.contains("up to 9") && e.contains("up to 10") && e.contains("/data/n1"),
            "{e}"
        );
    }

    fn down(names: &[(&str, u64)]) -> EpochRecord {
        let mut r = EpochRecord {
            epoch: 3,
            at_ms: 1_000,
            ..Default::default()
        };
        for (n, at) in names {
            r.mark_down(n, *at);
        }
        r
    }

    #[test]
    fn only_nodes_down_past_the_retention_are_listed_behind_and_only_once() {
        let mut r = down(&[("a", 1_000), ("b", 5_000)]);
        assert!(released(&r, 10_000, 0).is_none(), "0 keeps the log for ever");
        assert!(released(&r, 5_999, 5_000).is_none());
        let next = released(&r, 6_000, 5_000).expect("a is due");
        assert_eq!(next.behind, vec!["a".to_string()]);
        assert_eq!((next.epoch, next.down.clone()), (r.epoch, r.down.clone()));
        assert!(released(&next, 6_000, 5_000).is_none(), "listed once");
        r.retired.push("b".into());
        let next = released(&r, 60_000, 5_000).unwrap();
        assert_eq!(next.behind, vec!["a".to_string()], "a retired node is never behind");
    }

    #[test]
    fn a_record_from_before_down_at_counts_from_the_nodes_floor() {
        let mut r = down(&[]);
        r.down.push("old".into());
        r.floors.insert("old".into(), 2_000);
        assert_eq!(r.down_since("old"), 2_000);
        assert!(released(&r, 6_999, 5_000).is_none());
        assert!(released(&r, 7_000, 5_000).is_some());
    }

    #[test]
    fn a_node_leaves_behind_only_with_a_checkpoint_at_or_past_the_drop_point() {
        let mut r = down(&[("a", 1_000)]);
        r.behind.push("a".into());
        r.dropped_to = 500;
        let e = leaving_behind(&r, "a", 499, 9_000).unwrap_err();
        assert!(e.contains("499") && e.contains("500"), "{e}");
        let next = leaving_behind(&r, "a", 500, 9_000).unwrap().unwrap();
        assert!(next.behind.is_empty() && next.down.contains(&"a".to_string()));
        let mut up = next.clone();
        up.mark_up("a");
        assert!(
            leaving_behind(&up, "a", 0, 9_000).unwrap().is_none(),
            "neither behind nor down"
        );
    }

    #[test]
    fn a_node_rebuilding_is_not_listed_behind_again_until_a_full_retention_has_passed() {
        let mut r = down(&[("a", 1_000)]);
        r.behind.push("a".into());
        // Left behind at 9 s, still down while it rebuilds: due again only at 9 s + retention.
        let left = leaving_behind(&r, "a", 0, 9_000).unwrap().unwrap();
        assert_eq!(left.down_since("a"), 9_000);
        assert!(
            released(&left, 13_999, 5_000).is_none(),
            "listed behind again mid-rebuild"
        );
        let again = released(&left, 14_000, 5_000).expect("a rebuild that never returns is due again");
        assert_eq!(again.behind, vec!["a".to_string()]);
        // Killed mid-rebuild and started again: no longer behind, its clock restarts all the same.
        let resumed = leaving_behind(&left, "a", 0, 12_000).unwrap().unwrap();
        assert!(resumed.behind.is_empty());
        assert!(released(&resumed, 16_999, 5_000).is_none());
        assert!(released(&resumed, 17_000, 5_000).is_some());
    }

    #[test]
    fn a_behind_node_offers_no_checkpoint_and_a_rebuilt_one_does() {
        let mut r = down(&[("a", 1_000)]);
        assert!(may_offer_checkpoint(&r, "a").is_ok(), "down, not behind yet");
        r.behind.push("a".into());
        let e = may_offer_checkpoint(&r, "a").unwrap_err();
        assert!(e.contains("behind"), "{e}");
        assert!(may_offer_checkpoint(&r, "b").is_ok());
        let left = leaving_behind(&r, "a", 0, 9_000).unwrap().unwrap();
        assert!(may_offer_checkpoint(&left, "a").is_ok());
    }

    #[test]
    fn the_database_goes_aside_and_the_key_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        std::fs::create_dir_all(db.join("sub")).unwrap();
        for f in ["CURRENT", "000012.sst", "auth-secret", REBUILDING] {
            std::fs::write(db.join(f), f).unwrap();
        }
        let aside = move_database_aside(&db).unwrap().expect("moved");
        let mut left: Vec<String> = std::fs::read_dir(&db)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, vec![REBUILDING.to_string(), "auth-secret".to_string()]);
        assert!(aside.join("CURRENT").exists() && aside.join("sub").is_dir());
        assert!(move_database_aside(&db).unwrap().is_none(), "nothing left to move");
    }
}
