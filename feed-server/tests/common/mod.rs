//! Helpers shared by the server's integration tests: a real server on 127.0.0.1:0 with a temp
//! RocksDB, a connected channel, sign-up, and bearer-token requests.
#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod cluster_calls;
pub mod proc;
pub mod webdriver;

use std::path::Path;

use feed_server::Server;
use feed_server::config::ServerConfig;
use feedline_proto::v1 as pb;
use feedline_proto::v1::user_service_client::UserServiceClient;
use tonic::Request;
use tonic::transport::Channel;

/// Starts a server on `dir` with the test config, adjusted by `tweak`.
pub async fn start(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut cfg = ServerConfig::for_tests(dir.join("db"));
    tweak(&mut cfg);
    Server::start(cfg).await.expect("server starts")
}

/// A connection to the server.
pub async fn channel(s: &Server) -> Channel {
    Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

/// Signs a user up through the API: (id, token).
pub async fn signup(ch: &Channel, handle: &str) -> (u64, String) {
    let mut users = UserServiceClient::new(ch.clone());
    let r = users
        .create_user(pb::CreateUserRequest {
            handle: handle.into(),
            private: false,
        })
        .await
        .unwrap();
    let r = r.into_inner();
    (r.user.unwrap().id, r.token)
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// A server's Prometheus text, fetched with a plain HTTP/1.1 GET of `/metrics`.
pub fn scrape(addr: std::net::SocketAddr) -> String {
    try_scrape(addr).unwrap_or_else(|e| panic!("GET http://{addr}/metrics: {e}"))
}

/// [`scrape`], with the error of a server that is not there (or went away mid-answer).
pub fn try_scrape(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A seeded xorshift: the same workload or fault points for the same seed.
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The seeds of a seeded fault test's rounds: `FEEDLINE_SEED` (else one made from the process id
/// and `salt`), then the next one for each further round of `FEEDLINE_CLUSTER_ROUNDS` (default 1).
pub fn seeded_rounds(salt: u64) -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let seed = var("FEEDLINE_SEED").unwrap_or_else(|| std::process::id() as u64 ^ salt);
    (0..var("FEEDLINE_CLUSTER_ROUNDS").unwrap_or(1))
        .map(|r| seed + r)
        .collect()
}
