//! Feed-read throughput through the real server on loopback (unary and batched), beside the engine called
//! in-process on the same data in the same run (the ratio is the cost of gRPC + HTTP/2 + auth).
//!
//! `cargo run --release -p feed-server --example unary_reads -- [seconds] [concurrency]`
//!
//! Traffic goes only to 127.0.0.1; the run is bounded by its duration and stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use feed_engine::{NewPost, PolicyKind};
use feed_server::Server;
use feed_server::config::ServerConfig;
use feedline_proto::v1 as pb;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use tonic::transport::Channel;

const READERS: u64 = 2_000;
const AUTHORS: u64 = 200;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let conc: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let dir = tempfile::tempdir()?;
    let mut cfg = ServerConfig::for_tests(dir.path().join("db"));
    cfg.engine.policy.kind = PolicyKind::AlwaysPush;
    cfg.engine.hot_bytes = 512 << 20;
    let server = Server::start(cfg).await?;
    let e = server.engine().clone();
    let (first_reader, first_author) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
        let authors: Vec<u64> = (0..AUTHORS)
            .map(|i| e.create_user(&format!("a{i}"), false).map(|u| u.id))
            .collect::<Result<_, _>>()?;
        let readers: Vec<u64> = (0..READERS)
            .map(|i| e.create_user(&format!("r{i}"), false).map(|u| u.id))
            .collect::<Result<_, _>>()?;
        for (i, &r) in readers.iter().enumerate() {
            for k in 0..20 {
                e.follow(r, authors[(i * 7 + k * 13) % authors.len()])?;
            }
        }
        for i in 0..4_000 {
            e.publish(authors[i % authors.len()], NewPost::text(format!("post {i}")))?;
        }
        e.wait_idle(Duration::from_secs(120));
        Ok((readers[0], authors[0]))
    })
    .await??;
    println!("loaded {READERS} readers following 20 of {AUTHORS} authors, 4000 posts (first author {first_author})");

    // Baseline: the engine in-process, 2 threads, same readers.
    let base = {
        let stop = Arc::new(AtomicBool::new(false));
        let n = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let (e, stop, n) = (server.engine().clone(), stop.clone(), n.clone());
                std::thread::spawn(move || {
                    let mut i = t as u64;
                    while !stop.load(Ordering::Relaxed) {
                        e.home_feed(first_reader + i % READERS, 20, None).expect("read");
                        n.fetch_add(1, Ordering::Relaxed);
                        i += 7;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("reader thread");
        }
        n.load(Ordering::Relaxed) as f64 / secs as f64
    };

    let ch = Channel::from_shared(format!("http://{}", server.addr))?
        .connect()
        .await?;
    let token: tonic::metadata::MetadataValue<_> = format!("Bearer {}", server.admin_token).parse()?;
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for t in 0..conc {
        let (ch, token) = (ch.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = FeedServiceClient::new(ch);
            let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
            let mut i = t as u64;
            while Instant::now() < deadline {
                let mut req = tonic::Request::new(pb::GetHomeFeedRequest {
                    reader_id: first_reader + i % READERS,
                    page_size: 20,
                    cursor: String::new(),
                    ..Default::default()
                });
                req.metadata_mut().insert("authorization", token.clone());
                let t0 = Instant::now();
                c.get_home_feed(req).await.expect("read");
                h.record(t0.elapsed().as_micros() as u64).expect("record");
                i += 13;
            }
            h
        }));
    }
    for t in tasks {
        hist.add(t.await?)?;
    }
    let grpc = hist.len() as f64 / secs as f64;
    println!(
        "machine: {} cores; {secs} s per figure; {conc} concurrent unary calls on one connection",
        std::thread::available_parallelism()?
    );
    println!("engine in-process (2 threads): {base:>10.0} reads/s");
    println!(
        "gRPC unary GetHomeFeed:        {grpc:>10.0} reads/s  (ratio {:.2}; p50 {} µs, p99 {} µs, max {} µs)",
        grpc / base,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max()
    );

    // The same reads through the batched RPC, 100 per call.
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for t in 0..(conc / 8).max(1) {
        let (ch, token) = (ch.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = FeedServiceClient::new(ch).max_decoding_message_size(64 << 20);
            let mut n = 0u64;
            let mut i = t as u64;
            while Instant::now() < deadline {
                let reads = (0..100)
                    .map(|k| pb::GetHomeFeedRequest {
                        reader_id: first_reader + (i + k * 17) % READERS,
                        page_size: 20,
                        cursor: String::new(),
                        ..Default::default()
                    })
                    .collect();
                let mut req = tonic::Request::new(pb::GetHomeFeedsRequest { reads });
                req.metadata_mut().insert("authorization", token.clone());
                n += c.get_home_feeds(req).await.expect("batch").into_inner().results.len() as u64;
                i += 101;
            }
            n
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await?;
    }
    let batched = n as f64 / secs as f64;
    println!(
        "gRPC GetHomeFeeds (100/call):  {batched:>10.0} reads/s  (ratio {:.2})",
        batched / base
    );
    server.shutdown().await?;
    Ok(())
}
