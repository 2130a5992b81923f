//! TLS on the gRPC port with throwaway CAs: trusted clients are served and others refused, the
//! certificate is reloaded when its files change (and on demand, as SIGHUP does) without a
//! restart, mTLS guards the admin and node-to-node paths, and plaintext off loopback is refused.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::certs::{Ca, Leaf};
use common::with_token;
use feed_server::Server;
use feed_server::config::ServerConfig;
use feed_server::tls::TlsConfig;
use feedline_proto::v1 as pb;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn tls_config(server: &Leaf, client_ca: Option<&Path>) -> TlsConfig {
    TlsConfig {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: client_ca.map(Path::to_path_buf),
        peer_ca_file: None,
        reload_check_ms: 50,
    }
}

async fn start_tls(dir: &Path, tls: TlsConfig) -> Server {
    let mut cfg = ServerConfig::for_tests(dir.join("db"));
    cfg.tls = Some(tls);
    Server::start(cfg).await.expect("TLS server starts")
}

/// A TLS channel trusting `ca`, presenting `identity` when given.
async fn connect(addr: SocketAddr, ca: &str, identity: Option<&Leaf>) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(l) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&l.cert).unwrap(),
            std::fs::read(&l.key).unwrap(),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// Signs a user up over `ch`: (id, token), or the status.
async fn signup(ch: &Channel, handle: &str) -> Result<(u64, String), tonic::Status> {
    let r = UserServiceClient::new(ch.clone())
        .create_user(pb::CreateUserRequest {
            handle: handle.into(),
            private: false,
        })
        .await?
        .into_inner();
    Ok((r.user.unwrap().id, r.token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_clients_are_served_and_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("feedline test CA");
    let other = Ca::new("someone else's CA");
    let leaf = ca.leaf(dir.path(), "server");
    let s = start_tls(dir.path(), tls_config(&leaf, None)).await;
    let ch = connect(s.addr, &ca.pem, None)
        .await
        .expect("a client trusting the CA connects");
    signup(&ch, "ada").await.expect("served over TLS");
    let refused = match connect(s.addr, &other.pem, None).await {
        Err(_) => true,
        Ok(ch) => signup(&ch, "eve").await.is_err(),
    };
    assert!(refused, "a client that does not trust the CA must not be served");
    let plain = Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await;
    let served_plain = match plain {
        Err(_) => false,
        Ok(ch) => signup(&ch, "mallory").await.is_ok(),
    };
    assert!(!served_plain, "plaintext is not served on a TLS port");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let leaf = old_ca.leaf(dir.path(), "server");
    let s = start_tls(dir.path(), tls_config(&leaf, None)).await;
    let old_ch = connect(s.addr, &old_ca.pem, None).await.unwrap();
    signup(&old_ch, "before").await.unwrap();

    // Files that do not load are not taken: the server keeps its certificate.
    std::fs::write(&leaf.cert, "not a certificate").unwrap();
    assert!(s.reload_tls().is_err(), "a broken file is reported");
    connect(s.addr, &old_ca.pem, None)
        .await
        .expect("the old certificate still serves");

    // Rotate: new files in place (renamed in whole, as deployment tools do).
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let fresh = new_ca.leaf(&staging, "rotated");
    std::fs::rename(&fresh.key, &leaf.key).unwrap();
    std::fs::rename(&fresh.cert, &leaf.cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(ch) = connect(s.addr, &new_ca.pem, None).await
            && signup(&ch, "after").await.is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        connect(s.addr, &old_ca.pem, None).await.is_err(),
        "new connections get the new certificate only"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_guards_the_admin_and_node_paths() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let rogue = Ca::new("rogue CA");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let server = ca.leaf(dir.path(), "server");
    let node = ca.leaf(dir.path(), "node");
    let fake_node = rogue.leaf(dir.path(), "fake");
    let s = start_tls(dir.path(), tls_config(&server, Some(&ca_file))).await;

    // An ordinary client needs no certificate.
    let anon = connect(s.addr, &ca.pem, None).await.unwrap();
    let (u, tok) = signup(&anon, "ada")
        .await
        .expect("sign-up without a client certificate");
    let read = |reader| pb::GetHomeFeedRequest {
        reader_id: reader,
        page_size: 10,
        cursor: String::new(),
        ..Default::default()
    };
    FeedServiceClient::new(anon.clone())
        .get_home_feed(with_token(read(u), &tok))
        .await
        .expect("a user call without a client certificate");

    // The admin token alone is not enough.
    let e = UserServiceClient::new(anon.clone())
        .get_user(with_token(pb::GetUserRequest { user_id: u }, &s.admin_token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let with_cert = connect(s.addr, &ca.pem, Some(&node)).await.unwrap();
    UserServiceClient::new(with_cert.clone())
        .get_user(with_token(pb::GetUserRequest { user_id: u }, &s.admin_token))
        .await
        .expect("admin with a client certificate");

    // A call marked as forwarded by a node must come from one.
    let mut forwarded = with_token(read(u), &tok);
    forwarded
        .metadata_mut()
        .insert("x-feedline-forwarded", tonic::metadata::MetadataValue::from_static("1"));
    let e = FeedServiceClient::new(anon).get_home_feed(forwarded).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "a forwarded call without a node certificate: {e:?}"
    );
    let mut forwarded = with_token(read(u), &tok);
    forwarded
        .metadata_mut()
        .insert("x-feedline-forwarded", tonic::metadata::MetadataValue::from_static("1"));
    FeedServiceClient::new(with_cert)
        .get_home_feed(forwarded)
        .await
        .expect("a forwarded call with a node certificate");

    // A certificate from another CA fails the handshake.
    let refused = match connect(s.addr, &ca.pem, Some(&fake_node)).await {
        Err(_) => true,
        Ok(ch) => UserServiceClient::new(ch)
            .get_user(with_token(pb::GetUserRequest { user_id: u }, &s.admin_token))
            .await
            .is_err(),
    };
    assert!(refused, "a client certificate of another CA must be refused");
    s.shutdown().await.unwrap();
}

#[test]
fn plaintext_off_loopback_is_refused_unless_meant() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::for_tests(dir.path().join("db"));
    cfg.listen = "0.0.0.0:50051".parse().unwrap();
    let e = cfg.validate().unwrap_err();
    assert!(e.contains("plaintext"), "{e}");
    cfg.allow_plaintext = true;
    cfg.validate().expect("the operator says the network is trusted");

    let mut cfg = ServerConfig::for_tests(dir.path().join("db"));
    cfg.auth.secret_hex = "00112233445566778899aabbccddeeff".into();
    cfg.cluster = Some(feed_server::config::ClusterConfig {
        node: "a".into(),
        nodes: "a=127.0.0.1:1,b=10.1.2.3:50051".into(),
        ..Default::default()
    });
    let e = cfg.validate().unwrap_err();
    assert!(e.contains("node 10.1.2.3:50051"), "{e}");
    let mut c = cfg.cluster.clone().unwrap();
    c.nodes = "a=127.0.0.1:1,b=127.0.0.1:2".into();
    c.nats = "nats://nats.example:4222".into();
    cfg.cluster = Some(c);
    let e = cfg.validate().unwrap_err();
    assert!(e.contains("NATS"), "{e}");
}
