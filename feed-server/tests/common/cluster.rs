//! A real cluster on loopback for the cluster tests: three nats-server processes forming a
//! JetStream cluster (file storage, fsync before ack) and N feed-server processes, each killable
//! with SIGKILL, restartable on the same ports and data, and wipeable. Every hop is TLS with a
//! throwaway CA, as a deployment off one machine must run it: clients → nodes, node → node
//! (mTLS), nodes → NATS (mTLS plus a password) and NATS → NATS routes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use feed_server::auth::{Signer, Subject};
use tonic::Request;
use tonic::transport::Channel;

pub mod checks;
mod joining;

/// The shared signing key of every node.
pub const SECRET: &str = "00112233445566778899aabbccddeeff";

/// A free loopback port for a server the test starts, taken in turn from below the kernel's
/// ephemeral range (32768–60999 by default). A port the kernel picked (binding port 0) could
/// be handed to some process's outgoing connection between this check and the server's own
/// bind — CI saw a node fail with "Address already in use" — while outgoing connections never
/// get a port from below the range. A port another listener holds is skipped; each test
/// process starts at its own place in the span.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 16_384;
    const SPAN: u32 = 16_384;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN);
}

/// Polls `f` until it returns Some, or panics with `what` at the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn nats_binary() -> PathBuf {
    if let Ok(p) = std::env::var("FEEDLINE_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(home).join(".cache/feedline/nats/bin/nats-server");
    assert!(
        p.exists(),
        "nats-server not found at {}: ./scripts/bootstrap installs it (./scripts/test runs it)",
        p.display()
    );
    p
}

/// The throwaway CA and certificates of a test cluster, and the NATS credentials.
pub struct Pki {
    /// The CA every certificate chains to.
    pub ca: super::certs::Ca,
    /// Its certificate file.
    pub ca_file: PathBuf,
    /// The nodes' certificate (server and client use, for 127.0.0.1).
    pub node: super::certs::Leaf,
    /// The NATS servers' certificate.
    pub nats: super::certs::Leaf,
    /// A file holding the NATS password.
    pub nats_password_file: PathBuf,
}

/// The NATS user of the feed nodes.
pub const NATS_USER: &str = "feedline";

impl Pki {
    /// A fresh CA and certificates in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca = super::certs::Ca::new("feedline test cluster CA");
        let ca_file = ca.write(&dir.join("ca.pem"));
        let node = ca.leaf(dir, "node");
        let nats = ca.leaf(dir, "nats");
        let nats_password_file = dir.join("nats-password");
        std::fs::write(&nats_password_file, format!("pw-{}", free_port())).unwrap();
        Pki {
            ca,
            ca_file,
            node,
            nats,
            nats_password_file,
        }
    }

    fn nats_password(&self) -> String {
        std::fs::read_to_string(&self.nats_password_file).unwrap()
    }
}

/// Three NATS servers in one JetStream cluster.
pub struct Nats {
    dir: PathBuf,
    client_ports: Vec<u16>,
    procs: Vec<Option<Child>>,
}

impl Nats {
    /// Starts the three servers (TLS for clients and routes, clients verified and with a
    /// password) and waits until each accepts connections. A port taken between being picked
    /// and being bound (another process's connection got it: seen in CI) means new ports and
    /// another try.
    pub fn start(dir: &Path, pki: &Pki) -> Nats {
        for attempt in 1.. {
            match Nats::try_start(dir, pki) {
                Ok(n) => return n,
                Err(e) if attempt < 5 && e.contains("address already in use") => {
                    eprintln!("NATS start, attempt {attempt}: a port was taken ({e}); new ports");
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn try_start(dir: &Path, pki: &Pki) -> Result<Nats, String> {
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        for i in 0..3 {
            let store = dir.join(format!("nats{i}"));
            // Empty: a failed try may have left a store behind.
            let _ = std::fs::remove_dir_all(&store);
            std::fs::create_dir_all(&store).unwrap();
            let tls = format!(
                "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\", verify: true, timeout: 5 }}",
                pki.nats.cert.display(),
                pki.nats.key.display(),
                pki.ca_file.display()
            );
            let conf = format!(
                "server_name: nats{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
                 {tls}\nauthorization {{ user: {NATS_USER}, password: \"{}\" }}\n\
                 cluster {{ name: feedline-test, listen: 127.0.0.1:{}, routes: [{}], {tls} }}\n",
                client_ports[i],
                store.display(),
                pki.nats_password(),
                route_ports[i],
                routes.join(", ")
            );
            std::fs::write(dir.join(format!("nats{i}.conf")), conf).unwrap();
        }
        let mut n = Nats {
            dir: dir.to_path_buf(),
            client_ports,
            procs: vec![None, None, None],
        };
        for i in 0..3 {
            // On failure `n` is dropped, which kills the servers already started.
            n.try_start_server(i)?;
        }
        Ok(n)
    }

    /// (Re)starts server `i` on its config and store.
    pub fn start_server(&mut self, i: usize) {
        if let Err(e) = self.try_start_server(i) {
            panic!("{e}");
        }
    }

    /// Starts server `i` and waits (up to 60 s) until it listens; why not, if it does not.
    fn try_start_server(&mut self, i: usize) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join(format!("nats{i}.log"))).unwrap();
        let child = Command::new(nats_binary())
            .arg("-c")
            .arg(self.dir.join(format!("nats{i}.conf")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.procs[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.client_ports[i])).is_err() {
            let exited = self.procs[i].as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join(format!("nats{i}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                return Err(format!(
                    "nats{i} did not listen on {} (exit: {exited:?}); its log ends:\n{}",
                    self.client_ports[i],
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Process id of server `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i].as_ref().map(|c| c.id())
    }

    /// SIGKILLs server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Client URLs of all three, comma-separated.
    pub fn urls(&self) -> String {
        self.client_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

/// One feed-server process of the cluster.
pub struct Node {
    /// Its name in the map.
    pub name: String,
    /// Its gRPC address.
    pub addr: String,
    /// Its `/metrics` address, when started with metrics.
    pub metrics: Option<std::net::SocketAddr>,
    dir: PathBuf,
    args: Vec<String>,
    proc: Option<Child>,
    starts: usize,
}

impl Node {
    /// Node `n{i}` at `addr`, not started, run from `dir` with `args`.
    fn new(i: usize, addr: String, metrics: Option<std::net::SocketAddr>, dir: PathBuf, args: Vec<String>) -> Node {
        Node {
            name: format!("n{i}"),
            addr,
            metrics,
            dir,
            args,
            proc: None,
            starts: 0,
        }
    }

    /// Its RocksDB folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("db")
    }

    /// Path of the current run's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("run{}.log", self.starts))
    }

    /// Starts the process; the receiver hears once it listens.
    fn spawn(&mut self) -> (std::process::Child, std::sync::mpsc::Receiver<()>) {
        self.starts += 1;
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::File::create(self.log_path()).unwrap();
        // FEEDLINE_SERVER_BIN runs another build (a measurement comparing two in one session).
        let bin = std::env::var_os("FEEDLINE_SERVER_BIN")
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_feed-server").into());
        let mut child = Command::new(bin)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("feed-server starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        (child, rx)
    }

    /// Starts the process and `kill -9`s it `after` from now, whatever it was doing; whether it
    /// was listening by then.
    pub fn start_and_kill9_after(&mut self, after: Duration) -> bool {
        let (mut child, rx) = self.spawn();
        std::thread::sleep(after);
        let listening = rx.try_recv().is_ok();
        let _ = child.kill();
        let _ = child.wait();
        listening
    }

    /// Starts the process and waits (up to 90 s) until it listens.
    pub fn start(&mut self) {
        let (mut child, rx) = self.spawn();
        if rx.recv_timeout(Duration::from_secs(90)).is_err() {
            let _ = child.kill();
            panic!("node {} did not start; {}", self.name, self.log_excerpt());
        }
        self.proc = Some(child);
    }

    /// The telling part of the current run's log: from a panic's or an error's message (which
    /// comes before its backtrace), else the tail.
    pub fn log_excerpt(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines
            .iter()
            .position(|l| l.contains("panicked at") || l.starts_with("Error:"))
            .unwrap_or(lines.len().saturating_sub(15));
        let shown = lines[from..].iter().take(20).copied().collect::<Vec<_>>().join("\n");
        format!("its log from line {from}:\n{shown}")
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.proc.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit (after a SIGTERM sent by its pid); whether
    /// it exited with success. Killed if it did not exit in time.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.proc.take() else { return false };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match c.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Runs the binary once more with this node's arguments plus `extra` (a one-shot command,
    /// or a start that must be refused) and waits up to `timeout` for it to exit: whether it
    /// exited with success, and what it printed (stdout, then stderr). A process still running
    /// at the deadline is killed and reported as a failure.
    pub fn run_once(&self, extra: &[&str], timeout: Duration) -> (bool, String) {
        let bin = std::env::var_os("FEEDLINE_SERVER_BIN")
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_feed-server").into());
        let out = self.dir.join(format!("once{}.out", self.starts));
        let err = self.dir.join(format!("once{}.err", self.starts));
        std::fs::create_dir_all(&self.dir).unwrap();
        let mut child = Command::new(bin)
            .args(&self.args)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("feed-server starts");
        let deadline = Instant::now() + timeout;
        let ok = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.success(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break false;
                }
            }
        };
        let text = [&out, &err]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        (ok, text)
    }

    /// Whether the current run's log holds `text`.
    pub fn log_has(&self, text: &str) -> bool {
        std::fs::read_to_string(self.log_path()).is_ok_and(|l| l.contains(text))
    }

    /// Whether the log of any of its runs so far contains `text`.
    pub fn any_log_has(&self, text: &str) -> bool {
        (1..=self.starts)
            .any(|k| std::fs::read_to_string(self.dir.join(format!("run{k}.log"))).is_ok_and(|l| l.contains(text)))
    }

    /// The value of field `field` (a number) on each line of the current run's log that
    /// contains `text`, in order.
    pub fn log_numbers(&self, text: &str, field: &str) -> Vec<u64> {
        let raw = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        // Without the colour codes around field names.
        let mut log = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                log.push(c);
            }
        }
        let key = format!("{field}=");
        log.lines()
            .filter(|l| l.contains(text))
            .filter_map(|l| {
                let at = l.find(&key)? + key.len();
                let digits: String = l[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
                digits.parse().ok()
            })
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// NATS plus feed nodes, and an admin client.
pub struct TestCluster {
    /// The JetStream cluster.
    pub nats: Nats,
    /// The feed nodes, in map order.
    pub nodes: Vec<Node>,
    /// The certificates every hop uses.
    pub pki: Pki,
    /// The cluster's partition count (`--partitions`, 32 by default).
    pub partitions: u32,
    admin: String,
    _tmp: tempfile::TempDir,
}

impl TestCluster {
    /// Starts NATS and `n` feed nodes (checkpoints every `checkpoint_s` seconds; 0 = none).
    pub async fn start(n: usize, checkpoint_s: u64) -> TestCluster {
        Self::start_opts(n, checkpoint_s, false).await
    }

    /// [`TestCluster::start`], each node serving `/metrics` on a port of its own when `metrics`.
    pub async fn start_opts(n: usize, checkpoint_s: u64, metrics: bool) -> TestCluster {
        Self::start_args(n, checkpoint_s, metrics, &[]).await
    }

    /// [`TestCluster::start_opts`] with `extra` flags on every node's command line (failover off
    /// unless `extra` sets `--suspicion-ms`).
    pub async fn start_args(n: usize, checkpoint_s: u64, metrics: bool, extra: &[&str]) -> TestCluster {
        Self::start_toml(n, checkpoint_s, metrics, extra, "").await
    }

    /// [`TestCluster::start_args`] with `toml` added to every node's configuration file (after
    /// its `[cluster]` section: e.g. an `[engine]` section).
    pub async fn start_toml(n: usize, checkpoint_s: u64, metrics: bool, extra: &[&str], toml: &str) -> TestCluster {
        // FEEDLINE_KEEP_CLUSTER_DIR=1 keeps the nodes' and NATS servers' logs for a look after.
        let keep = std::env::var_os("FEEDLINE_KEEP_CLUSTER_DIR").is_some();
        let tmp = tempfile::Builder::new().disable_cleanup(keep).tempdir().unwrap();
        if keep {
            eprintln!("cluster dir kept: {}", tmp.path().display());
        }
        let pki = Pki::new(&tmp.path().join("pki"));
        let nats = Nats::start(tmp.path(), &pki);
        let secret_file = tmp.path().join("secret");
        std::fs::write(&secret_file, SECRET).unwrap();
        let node_toml = tmp.path().join("node.toml");
        std::fs::write(
            &node_toml,
            format!(
                "[cluster]\nnats-ca-file = {:?}\nnats-cert-file = {:?}\nnats-key-file = {:?}\n\
                 nats-user = {NATS_USER:?}\nnats-password-file = {:?}\n{toml}",
                pki.ca_file, pki.node.cert, pki.node.key, pki.nats_password_file
            ),
        )
        .unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let map = (0..n)
            .map(|i| format!("n{i}=127.0.0.1:{}", ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        // With failover on, every node serves metrics: the start waits on their placement.
        let failover = extra.contains(&"--suspicion-ms");
        let partitions = extra
            .iter()
            .position(|a| *a == "--partitions")
            .map_or(32, |k| extra[k + 1].parse().expect("--partitions N"));
        let metrics = metrics || failover;
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let dir = tmp.path().join(format!("n{i}"));
                let addr = format!("127.0.0.1:{}", ports[i]);
                let metrics = metrics.then(|| std::net::SocketAddr::from(([127, 0, 0, 1], free_port())));
                let mut args: Vec<String> = vec![
                    "--config".into(),
                    node_toml.display().to_string(),
                    "--listen".into(),
                    addr.clone(),
                    "--no-metrics".into(),
                    "--data-dir".into(),
                    dir.join("db").display().to_string(),
                    "--secret-file".into(),
                    secret_file.display().to_string(),
                    "--tls-cert".into(),
                    pki.node.cert.display().to_string(),
                    "--tls-key".into(),
                    pki.node.key.display().to_string(),
                    "--tls-client-ca".into(),
                    pki.ca_file.display().to_string(),
                    "--nats".into(),
                    nats.urls(),
                    "--node".into(),
                    format!("n{i}"),
                    "--cluster-nodes".into(),
                    map.clone(),
                    "--checkpoint-interval-s".into(),
                    checkpoint_s.to_string(),
                    "--user-requests-per-hour".into(),
                    "1000000".into(),
                    "--policy".into(),
                    "always-push".into(),
                ];
                args.extend(extra.iter().map(|a| a.to_string()));
                // Failover is off unless a test asks for it (tests/failover.rs): a test binary
                // runs its clusters side by side on two cores, where a starved heartbeat could
                // lapse a lease in a test about something else.
                if !extra.contains(&"--suspicion-ms") {
                    args.extend(["--suspicion-ms".to_string(), "0".to_string()]);
                }
                if let Some(m) = metrics {
                    let k = args.iter().position(|a| a == "--no-metrics").unwrap();
                    args.splice(k..=k, ["--metrics-listen".into(), m.to_string()]);
                }
                Node::new(i, addr, metrics, dir, args)
            })
            .collect();
        let mut c = TestCluster {
            nats,
            nodes,
            pki,
            partitions,
            admin: Signer::new(hex_key()).issue(Subject::Admin, 3600),
            _tmp: tmp,
        };
        // Nodes start concurrently: each waits for JetStream and then for the others' map.
        let handles: Vec<_> = c
            .nodes
            .drain(..)
            .map(|mut n| {
                std::thread::spawn(move || {
                    n.start();
                    n
                })
            })
            .collect();
        c.nodes = handles.into_iter().map(|h| h.join().expect("node started")).collect();
        if failover {
            c.wait_placement_settled(super::cluster_calls::WAIT).await;
        }
        c
    }

    /// Waits until every node has applied the same placement epoch and serves partitions of
    /// its own, all taken over. A node slow to start (two busy cores) may be declared down and
    /// come back before this: a test that picks "a user node `i` holds" before that settles
    /// can see the user move away with the node's return.
    ///
    /// Also how a test waits for a node that joined or came back to hold its partitions again,
    /// whichever of its runs took them (a run killed between proposing its return and logging
    /// the handover leaves the next run holding them from its start, with no handover logged).
    pub async fn wait_placement_settled(&self, within: Duration) {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_placement_settled_among(&all, within).await;
    }

    /// [`TestCluster::wait_placement_settled`] for the nodes `live` alone (the others are
    /// down, their partitions taken over).
    pub async fn wait_placement_settled_among(&self, live: &[usize], within: Duration) {
        use super::cluster_calls::metric_sum;
        wait_for("every node to serve its partitions under one epoch", within, || async {
            let mut epochs = Vec::new();
            let mut served = Vec::new();
            for &i in live {
                let text = self.scrape(i);
                epochs.push(metric_sum(&text, "feedline_cluster_epoch", ""));
                served.push(metric_sum(&text, "feedline_cluster_partitions_served", ""));
            }
            let one_epoch = epochs.windows(2).all(|w| w[0] == w[1]);
            let total: f64 = served.iter().sum();
            (one_epoch && served.iter().all(|&s| s > 0.0) && total == f64::from(self.partitions)).then_some(())
        })
        .await;
    }

    /// A connection to node `i`.
    /// A TLS connection to node `i`, trusting the test CA and presenting a client certificate
    /// (the admin token needs one).
    pub async fn channel(&self, i: usize) -> Channel {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.pki.ca.pem))
            .identity(tonic::transport::Identity::from_pem(
                std::fs::read(&self.pki.node.cert).unwrap(),
                std::fs::read(&self.pki.node.key).unwrap(),
            ))
            .domain_name("localhost");
        Channel::from_shared(format!("https://{}", self.nodes[i].addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .expect("connect")
    }

    /// A request with the admin token.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {}", self.admin).parse().unwrap());
        r
    }
}

fn hex_key() -> Vec<u8> {
    (0..SECRET.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&SECRET[i..i + 2], 16).unwrap())
        .collect()
}
