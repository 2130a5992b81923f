//! One JetStream stream against several, for the partitioned log (issue 15): acknowledged
//! appends per second and the ack latency, on a real 3-server NATS cluster started here (file
//! storage, `sync_interval: always`, every stream R3), for each stream count asked.
//!
//! `FEEDLINE_NATS_SERVER=$(scripts/nats-server) cargo run --release -p feed-server --example log_streams -- [events] [in_flight] [streams…]`
//!
//! Events are spread over 32 partitions' subjects (`bench.<p>`) as a partitioned cluster would
//! write them; with S streams, partition p's subject belongs to stream p mod S. Every event is
//! 256 bytes and carries a message id (the dedup window, as the cluster's appends do). The
//! servers listen on 127.0.0.1 only, the run is bounded by its event count, and every server
//! started is killed when the example ends.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

/// Partitions the events are spread over (the default of a partitioned cluster).
const PARTITIONS: u64 = 32;
/// Bytes per event (about what a post event stores, SCALING.md).
const EVENT_BYTES: usize = 256;

/// The NATS servers started here; killed on drop, pass or panic.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts three clustered JetStream servers under `dir`; returns them and their client URLs.
fn start(bin: &str, dir: &Path) -> anyhow::Result<(Servers, Vec<String>)> {
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let route_urls: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
    let mut servers = Servers(Vec::new());
    for i in 0..3 {
        let store = dir.join(format!("nats{i}"));
        std::fs::create_dir_all(&store)?;
        let conf = dir.join(format!("nats{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
                 cluster {{ name: bench, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                clients[i],
                store.display(),
                routes[i],
                route_urls.join(", ")
            ),
        )?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        servers.0.push(child);
    }
    let urls = clients.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
    Ok((servers, urls))
}

/// Connects and waits (with a deadline) until JetStream can create an R3 stream.
async fn ready(urls: &[String]) -> anyhow::Result<jetstream::Context> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    loop {
        match async_nats::connect(urls).await {
            Err(e) => last = e.to_string(),
            Ok(c) => {
                let js = jetstream::new(c);
                let probe = stream::Config {
                    name: "READY".into(),
                    subjects: vec!["ready".into()],
                    num_replicas: 3,
                    storage: stream::StorageType::File,
                    ..Default::default()
                };
                match js.get_or_create_stream(probe).await {
                    Ok(_) => {
                        js.delete_stream("READY").await?;
                        return Ok(js);
                    }
                    Err(e) => last = e.to_string(),
                }
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the NATS cluster did not form within 60 s: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one configuration achieved.
struct Run {
    streams: u64,
    per_s: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

async fn run(js: &jetstream::Context, streams: u64, events: u64, in_flight: usize) -> anyhow::Result<Run> {
    for s in 0..streams {
        let subjects = (0..PARTITIONS)
            .filter(|p| p % streams == s)
            .map(|p| format!("bench.{p}"))
            .collect();
        js.create_stream(stream::Config {
            name: format!("BENCH{s}"),
            subjects,
            num_replicas: 3,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    }
    let payload = bytes::Bytes::from(vec![7u8; EVENT_BYTES]);
    let slots = Arc::new(Semaphore::new(in_flight));
    let hist = Arc::new(parking_lot::Mutex::new(Histogram::<u64>::new(3)?));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(events as usize);
    for i in 0..events {
        let permit = slots.clone().acquire_owned().await?;
        let (js, payload, hist) = (js.clone(), payload.clone(), hist.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{streams}-{i}").as_str());
            let ack = js
                .publish_with_headers(format!("bench.{}", i % PARTITIONS), headers, payload)
                .await?
                .await?;
            anyhow::ensure!(!ack.duplicate, "event {i} taken for a duplicate");
            let _ = hist.lock().record(started.elapsed().as_micros().max(1) as u64);
            drop(permit);
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = t0.elapsed();
    for s in 0..streams {
        js.delete_stream(format!("BENCH{s}")).await?;
    }
    let h = hist.lock();
    Ok(Run {
        streams,
        per_s: events as f64 / took.as_secs_f64(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20_000);
    let in_flight: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);
    let mut counts: Vec<u64> = args.map(|s| s.parse()).collect::<Result<_, _>>()?;
    if counts.is_empty() {
        counts = vec![1, 4, 16, 1];
    }
    let bin = std::env::var("FEEDLINE_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let dir = tempfile::tempdir()?;
    let (_servers, urls) = start(&bin, dir.path())?;
    let js = ready(&urls).await?;
    println!(
        "{events} events of {EVENT_BYTES} B over {PARTITIONS} partition subjects, {in_flight} in flight, R3, file storage, fsync on every append"
    );
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>10}",
        "streams", "appends/s", "p50 µs", "p99 µs", "max µs"
    );
    for s in counts {
        let r = run(&js, s.clamp(1, PARTITIONS), events, in_flight).await?;
        println!(
            "{:>8} {:>12.0} {:>10} {:>10} {:>10}",
            r.streams, r.per_s, r.p50_us, r.p99_us, r.max_us
        );
    }
    Ok(())
}
