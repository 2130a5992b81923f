//! Bringing a target to a steady state after the bulk load, so a run measures its workload and
//! not the load's leftovers.

use std::time::{Duration, Instant};

use feed_engine::store::StorageBacklog;

use crate::target::{OpError, R, Target};

/// The PostgreSQL peer refreshes its planner statistics; the in-process engine waits, up to
/// `wait`, until RocksDB owes no compaction or flush (a run started on a bulk load's compaction
/// debt measures that debt). Returns what it saw, to report.
pub async fn settle(target: &Target, wait: Duration) -> R<Option<String>> {
    match target {
        Target::Postgres(p) => p.analyze().await.map(|()| None),
        Target::InProcess(e) => {
            let start = Instant::now();
            let backlog = || e.storage_backlog().map_err(OpError::from);
            let before = backlog()?;
            let mut now = backlog()?;
            while !now.settled() && start.elapsed() < wait {
                tokio::time::sleep(Duration::from_millis(100)).await;
                now = backlog()?;
            }
            Ok(Some(if now.settled() {
                format!(
                    "storage after the bulk load: {} → settled in {:.1} s",
                    owed(&before),
                    start.elapsed().as_secs_f64()
                )
            } else {
                format!(
                    "storage after the bulk load: {} → NOT settled within {:.0} s ({}); the run pays for it",
                    owed(&before),
                    wait.as_secs_f64(),
                    owed(&now)
                )
            }))
        }
        _ => Ok(None),
    }
}

fn owed(b: &StorageBacklog) -> String {
    format!(
        "{:.1} MB of compaction, {} level-0 files, {} running",
        b.pending_compaction_bytes as f64 / 1e6,
        b.l0_files,
        b.running
    )
}
