//! A real `feed-server` process started from the test binary: its address and the admin token
//! it prints, its log, `kill -9` — and a kill on drop, so a test that panics leaves no server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running `feed-server` process.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its gRPC address.
    pub addr: String,
    /// The admin token it printed.
    pub admin: String,
    /// Its stderr lines so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts the server on `dir` (push to everyone, so feeds are checkable) and waits until it
    /// prints its address and admin token.
    pub fn start(dir: &std::path::Path) -> Proc {
        Self::start_with(dir, &[])
    }

    /// As [`Proc::start`], with extra flags.
    pub fn start_with(dir: &std::path::Path, extra: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_feed-server"))
            .args(["--listen", "127.0.0.1:0", "--no-metrics", "--policy", "always-push"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn feed-server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let line = lines
                .next()
                .expect("server exited before it was ready")
                .expect("stdout");
            if let Some(rest) = line.strip_prefix("feed-server listening on ") {
                addr = rest.split_whitespace().next().map(str::to_owned);
            } else if line.starts_with("v1.") {
                admin = Some(line);
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Proc {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            log,
        }
    }

    /// SIGKILL, then its log.
    pub fn kill9(mut self) -> Vec<String> {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
        self.log.lock().unwrap().clone()
    }
}

/// A test that panics still kills (and reaps) its server: no process outlives its test.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
