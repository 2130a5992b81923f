//! Trust: failed authentications throttled per address, tokens revoked per user and for the
//! admin (durably), the dev admin token revoked by the next start, a data folder no other local
//! user can read, no signing key on the command line, and no server left behind by a panic.

mod common;

use common::proc::Proc;
use common::{channel, signup, start, with_token};
use feedline_proto::v1 as pb;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;
use tonic::Code;

fn feed(reader: u64) -> pb::GetHomeFeedRequest {
    pb::GetHomeFeedRequest {
        reader_id: reader,
        page_size: 10,
        cursor: String::new(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_throttled_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |c| c.auth.failed_auth_per_minute = 5).await;
    let ch = channel(&s).await;
    let (a, at) = signup(&ch, "alice").await;
    let mut feeds = FeedServiceClient::new(ch.clone());
    feeds
        .get_home_feed(with_token(feed(a), &at))
        .await
        .expect("a good token works");
    let mut codes = Vec::new();
    for i in 0..8 {
        let forged = format!("v1.{i}.forged");
        codes.push(
            feeds
                .get_home_feed(with_token(feed(a), &forged))
                .await
                .unwrap_err()
                .code(),
        );
    }
    assert!(
        codes[..5].iter().all(|&c| c == Code::Unauthenticated),
        "the first failures are answered: {codes:?}"
    );
    assert_eq!(
        codes[7],
        Code::ResourceExhausted,
        "then the address is refused: {codes:?}"
    );
    let e = feeds.get_home_feed(with_token(feed(a), &at)).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::ResourceExhausted,
        "a refused address gets no token checked, good or bad"
    );
    assert!(e.message().contains("retry in"), "{}", e.message());
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_are_refused_durably() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let ch = channel(&s).await;
    let (a, t1) = signup(&ch, "alice").await;
    let (b, bt) = signup(&ch, "bob").await;
    let mut users = UserServiceClient::new(ch.clone());
    let mut feeds = FeedServiceClient::new(ch.clone());
    let t2 = users
        .issue_token(with_token(
            pb::IssueTokenRequest {
                user_id: a,
                ttl_seconds: 60,
            },
            &s.admin_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .token;
    let e = users
        .revoke_tokens(with_token(pb::RevokeTokensRequest { user_id: a }, &bt))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "bob may not sign alice out");
    let e = users
        .revoke_tokens(with_token(pb::RevokeTokensRequest { user_id: 0 }, &bt))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "a user may not end admin tokens");
    users
        .revoke_tokens(with_token(pb::RevokeTokensRequest { user_id: a }, &t1))
        .await
        .expect("alice signs out everywhere");
    for t in [&t1, &t2] {
        let e = feeds.get_home_feed(with_token(feed(a), t)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert!(e.message().contains("revoked"), "{}", e.message());
    }
    feeds
        .get_home_feed(with_token(feed(b), &bt))
        .await
        .expect("bob's token is unaffected");
    let t3 = users
        .issue_token(with_token(
            pb::IssueTokenRequest {
                user_id: a,
                ttl_seconds: 0,
            },
            &s.admin_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .token;
    feeds
        .get_home_feed(with_token(feed(a), &t3))
        .await
        .expect("a token issued after works");

    // The floor is stored: a restart does not bring the revoked tokens back.
    let admin = s.admin_token.clone();
    s.shutdown().await.unwrap();
    let s = start(dir.path(), |_| {}).await;
    let ch = channel(&s).await;
    let mut feeds = FeedServiceClient::new(ch.clone());
    let mut users = UserServiceClient::new(ch);
    let e = feeds.get_home_feed(with_token(feed(a), &t1)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "revoked before the restart: {e:?}");
    feeds
        .get_home_feed(with_token(feed(a), &t3))
        .await
        .expect("t3 survives");

    // The admin can end every admin token issued so far, their own included.
    users
        .revoke_tokens(with_token(pb::RevokeTokensRequest { user_id: 0 }, &admin))
        .await
        .expect("revoke admin tokens");
    let e = users
        .get_user(with_token(pb::GetUserRequest { user_id: a }, &admin))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    s.shutdown().await.unwrap();
}

/// Every file and folder under `dir` is its owner's alone.
fn assert_private(dir: &std::path::Path) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let mut seen = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
            } else {
                let mode = md.permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", e.path().display());
                seen += 1;
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_keeps_its_data_private_and_one_admin_token_alive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Proc::start(&data);
    let old_admin = first.admin.clone();
    first.kill9();
    let second = Proc::start(&data);
    let files = assert_private(&data);
    assert!(files >= 5, "RocksDB's files were checked ({files})");
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", second.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut users = UserServiceClient::new(ch);
    let new = users
        .create_user(with_token(
            pb::CreateUserRequest {
                handle: "ada".into(),
                private: false,
            },
            &second.admin,
        ))
        .await
        .expect("the new admin token works");
    let id = new.into_inner().user.unwrap().id;
    let e = users
        .get_user(with_token(pb::GetUserRequest { user_id: id }, &old_admin))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unauthenticated,
        "the previous start's admin token is dead: {e:?}"
    );
    second.kill9();
}

#[test]
fn the_signing_key_is_no_command_line_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_feed-server"))
        .args([
            "--secret-hex",
            "00112233445566778899aabbccddeeff",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a key on the command line would show in ps");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--secret-hex"), "{err}");
}

#[test]
fn a_panicking_test_leaves_no_server_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let p = Proc::start(&data);
        tx.send(p.child.id()).unwrap();
        panic!("a failing test, on purpose");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let pid = rx.recv().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "feed-server {pid} outlived the test that started it"
    );
}
