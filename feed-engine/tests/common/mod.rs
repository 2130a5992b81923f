//! Helpers shared by the engine's integration tests: a real RocksDB in a temp dir, a manual
//! clock, and shortcuts for users and posts.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use feed_engine::{Engine, EngineConfig, ManualClock, NewPost, PolicyKind, Post, UserId};

/// 2026-11-01T00:00:00Z.
pub const T0: u64 = 1_793_491_200_000;
pub const HOUR: u64 = 3_600_000;
pub const DAY: u64 = 24 * HOUR;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub cfg: EngineConfig,
    pub engine: Option<Engine>,
}

impl Env {
    /// A fresh engine whose readers are all pushed to, unless `tweak` says otherwise.
    pub fn new(tweak: impl FnOnce(&mut EngineConfig)) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = EngineConfig::tmp(dir.path().join("db"));
        cfg.policy.kind = PolicyKind::AlwaysPush;
        tweak(&mut cfg);
        let clock = Arc::new(ManualClock::new(T0));
        let engine = Engine::open_with_clock(cfg.clone(), clock.clone()).expect("open");
        Env {
            dir,
            clock,
            cfg,
            engine: Some(engine),
        }
    }

    /// Another engine opened on a checkpoint of this one (in a temp dir of its own, returned
    /// with it), at its own clock at [`T0`]: another node's copy of the same database.
    pub fn open_copy(&self, name: &str) -> (Engine, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join(name);
        self.e().checkpoint(&db).expect("checkpoint");
        let mut cfg = self.cfg.clone();
        cfg.data_dir = db;
        let e = Engine::open_with_clock(cfg, Arc::new(ManualClock::new(T0))).expect("open the copy");
        (e, dir)
    }

    pub fn e(&self) -> &Engine {
        self.engine.as_ref().expect("engine open")
    }

    /// Closes the engine (as a crash would: fanout not drained) and opens it again, with
    /// `tweak` applied to the config.
    pub fn reopen_with(&mut self, tweak: impl FnOnce(&mut EngineConfig)) {
        drop(self.engine.take());
        tweak(&mut self.cfg);
        self.engine = Some(Engine::open_with_clock(self.cfg.clone(), self.clock.clone()).expect("reopen"));
    }

    pub fn reopen(&mut self) {
        self.reopen_with(|_| {});
    }

    pub fn user(&self, handle: &str) -> UserId {
        self.e().create_user(handle, false).expect("create user").id
    }

    pub fn users(&self, prefix: &str, n: usize) -> Vec<UserId> {
        (0..n).map(|i| self.user(&format!("{prefix}{i}"))).collect()
    }

    /// Publishes a text post and advances the clock by a second so posts are ordered in time.
    pub fn post(&self, author: UserId, text: &str) -> Arc<Post> {
        let p = self.e().publish(author, NewPost::text(text)).expect("publish");
        self.clock.advance(1000);
        p
    }

    /// Fifty reads spread over a day: an active reader, whom the cost-based policy pushes to.
    pub fn read_actively_for_a_day(&self, reader: UserId) {
        for _ in 0..50 {
            self.e().home_feed(reader, 5, None).expect("home feed");
            self.clock.advance(DAY / 50);
        }
    }

    pub fn idle(&self) {
        assert!(
            self.e().wait_idle(Duration::from_secs(30)),
            "fanout did not finish within 30 s"
        );
    }

    /// The post ids of the first page of a reader's home feed.
    pub fn page_ids(&self, reader: UserId, page: usize) -> Vec<u64> {
        let p = self.e().home_feed(reader, page, None).expect("home feed");
        p.items.iter().map(|i| i.post.id).collect()
    }

    /// The post ids of a reader's whole home feed, paging through it.
    pub fn feed_ids(&self, reader: UserId, page: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let p = self.e().home_feed(reader, page, cursor.as_deref()).expect("home feed");
            out.extend(p.items.iter().map(|i| i.post.id));
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
            assert!(out.len() < 100_000, "feed never ends");
        }
    }

    pub fn stored_ids(&self, reader: UserId) -> Vec<u64> {
        self.e()
            .stored_timeline(reader)
            .expect("timeline")
            .iter()
            .map(|e| e.post)
            .collect()
    }
}
