//! Disk trouble: a data dir that is locked by another process, read-only, or full gives a clear
//! error (at start, or as a status), never a panic. Read-only and full use small tmpfs mounts,
//! which need root; without them those tests say so and skip.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{channel, signup, start, with_token};
use feed_server::Server;
use feed_server::config::ServerConfig;
use feedline_proto::v1 as pb;
use feedline_proto::v1::post_service_client::PostServiceClient;

/// A tmpfs mounted for the test, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs the server binary on `dir`; it must fail to start with a message and no panic.
fn start_fails(dir: &Path, why: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_feed-server"))
        .args(["--listen", "127.0.0.1:0", "--no-metrics"])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run feed-server");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{why}: the server started");
    assert!(!err.contains("panicked"), "{why}: it panicked: {err}");
    assert!(
        err.contains("Error: starting feed-server"),
        "{why}: no clear error: {err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_data_dir_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Server::start(ServerConfig::for_tests(&data)).await.unwrap();
    let err = Server::start(ServerConfig::for_tests(&data))
        .await
        .err()
        .expect("a second server on the same dir");
    assert!(err.to_string().to_lowercase().contains("lock"), "{err}");
    let msg = start_fails(&data, "locked data dir");
    assert!(msg.to_lowercase().contains("lock"), "{msg}");
    first.shutdown().await.unwrap();
}

#[test]
fn a_read_only_data_dir_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_m) = Mount::tmpfs(&dir.path().join("ro"), "ro,size=1m") else {
        eprintln!("skipped: cannot mount a read-only tmpfs here (needs root)");
        return;
    };
    let msg = start_fails(&dir.path().join("ro").join("data"), "read-only data dir");
    assert!(msg.to_lowercase().contains("read-only"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_with_a_status_and_keeps_serving_reads() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_m) = Mount::tmpfs(&dir.path().join("small"), "size=24m") else {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    };
    let s = start(&dir.path().join("small"), |c| c.engine.max_text_bytes = 60_000).await;
    let ch = channel(&s).await;
    let mut posts = PostServiceClient::new(ch.clone());
    let (id, token) = signup(&ch, "filler").await;
    let mut acked = Vec::new();
    let failure = loop {
        let req = pb::PublishRequest {
            author_id: id,
            content_type: 1,
            text: "x".repeat(50_000),
            ..Default::default()
        };
        match posts.publish(with_token(req, &token)).await {
            Ok(p) => acked.push(p.into_inner().id),
            Err(e) => break e,
        }
        assert!(acked.len() < 10_000, "24 MiB never filled");
    };
    assert!(!acked.is_empty(), "the disk was full from the start");
    assert_eq!(failure.code(), tonic::Code::Internal, "{failure:?}");
    assert_eq!(failure.message(), "internal storage error", "no internals leak");
    let first = posts
        .get_post(with_token(
            pb::GetPostRequest {
                user_id: id,
                post_id: acked[0],
            },
            &token,
        ))
        .await;
    assert!(
        first.is_ok(),
        "acknowledged posts stay readable on a full disk: {first:?}"
    );
    eprintln!(
        "full disk: {} posts of 50 KB acknowledged before the first refusal",
        acked.len()
    );
    // Stopping may report the failed flush; it must not panic.
    let _ = s.shutdown().await;
}
