//! Nodes beside a running test cluster: one that joins it, and starts that must be refused
//! (another map, another partition count).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Node, TestCluster, free_port};

impl TestCluster {
    /// A node that joins the running cluster, not started: node 0's flags with its own name,
    /// port and data folder (and `/metrics` port when node 0 has one), and the cluster's list
    /// with it appended. Push it onto `nodes` once started.
    pub fn joining_node(&self) -> Node {
        let i = self.nodes.len();
        let mut args = self.nodes[0].args.clone();
        let addr = format!("127.0.0.1:{}", free_port());
        let set = |args: &mut Vec<String>, flag: &str, v: String| {
            let k = args.iter().position(|a| a == flag).expect("flag present") + 1;
            args[k] = v;
        };
        set(&mut args, "--listen", addr.clone());
        set(&mut args, "--node", format!("n{i}"));
        let k = args.iter().position(|a| a == "--cluster-nodes").unwrap() + 1;
        args[k] = format!("{},n{i}={addr}", args[k]);
        let dir = self._tmp.path().join(format!("n{i}"));
        set(&mut args, "--data-dir", dir.join("db").display().to_string());
        let metrics = self.nodes[0].metrics.map(|_| {
            let m = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
            set(&mut args, "--metrics-listen", m.to_string());
            m
        });
        Node::new(i, addr, metrics, dir, args)
    }

    /// Runs node 0's command line with a different map (an extra node), a fresh data dir and
    /// port; returns whether it exited with failure within 60 s, and what it wrote to stderr.
    pub fn start_with_other_map(&self) -> (bool, String) {
        self.start_refused("mismatch", |args| {
            let i = args.iter().position(|a| a == "--cluster-nodes").unwrap() + 1;
            args[i] = format!("{},extra=127.0.0.1:1", args[i]);
        })
    }

    /// Starts one more node with node 0's flags but another partition count (the cluster was
    /// created with the default 32); returns whether it exited with a failure, and its stderr.
    pub fn start_with_other_partitions(&self) -> (bool, String) {
        self.start_refused("partitions", |args| {
            args.extend(["--partitions".to_string(), "16".to_string()]);
        })
    }

    /// Starts node 0's flags changed by `change` (on a fresh port and data folder `name`) and
    /// waits, with a deadline, for it to exit; returns whether it failed, and its stderr.
    fn start_refused(&self, name: &str, change: impl FnOnce(&mut Vec<String>)) -> (bool, String) {
        let mut args = self.nodes[0].args.clone();
        change(&mut args);
        let set = |args: &mut Vec<String>, flag: &str, v: String| {
            let i = args.iter().position(|a| a == flag).expect("flag present") + 1;
            args[i] = v;
        };
        set(&mut args, "--listen", format!("127.0.0.1:{}", free_port()));
        let dir = self._tmp.path().join(name);
        set(&mut args, "--data-dir", dir.display().to_string());
        let mut child = Command::new(env!("CARGO_BIN_EXE_feed-server"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("feed-server starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        let failed = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break !st.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (failed, err)
    }
}
