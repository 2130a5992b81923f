//! Bytes on disk per stored timeline entry: fills timelines through real fanout, compacts the
//! timeline column family, and divides its SST size by its entries.
//!
//! `cargo run --release -p feedline-benches --example footprint -- [READERS] [POSTS_PER_AUTHOR]`

use std::time::Instant;

use feedline_benches::{engine, post_rounds, readers_of, users};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a number"));
    let readers = args.next().unwrap_or(2000);
    let rounds = args.next().unwrap_or(50);
    let dir = tempfile::tempdir().expect("temp dir");
    let e = engine(dir.path(), |c| c.timeline_cap = 1_000_000);
    let authors = users(&e, "a", 100);
    let _r = readers_of(&e, "r", readers, &authors, 20);
    let t0 = Instant::now();
    post_rounds(&e, &authors, rounds);
    let delivered = readers * 20 * rounds + authors.len() * rounds;
    let took = t0.elapsed();
    let (bytes, keys) = e.timeline_disk_usage().expect("disk usage");
    println!(
        "{delivered} timeline entries delivered in {:.1} s ({:.0}/s, one publish at a time)",
        took.as_secs_f64(),
        delivered as f64 / took.as_secs_f64()
    );
    println!(
        "timeline family after compaction: {bytes} bytes for {keys} keys (estimate) = {:.1} bytes per entry",
        bytes as f64 / delivered as f64
    );
}
