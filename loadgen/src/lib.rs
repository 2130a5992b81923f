//! # loadgen
//!
//! feedline's load generator as a library (the `loadgen` binary is its command line; tests drive
//! it directly).
//!
//! # Layout
//! - [`workload`]: the seeded population — power-law follow graph, heavy-tailed activity.
//! - [`target`]: where the load goes — the engine in-process, a server over gRPC, or the peer
//!   designs on Redis and PostgreSQL (likes and comments in `target_engage.rs`).
//! - [`grpc_client`]: the server clients behind a gRPC target, round-robin over a cluster's
//!   nodes, with per-node figures.
//! - [`redis_peer`]: the classic Redis sorted-set feed, for side-by-side runs.
//! - [`postgres_peer`]: the product spec's own design (PostgreSQL `precomputed_feeds`).
//! - [`driver`]: bulk load, the open-loop generators, fanout-lag probes.
//! - [`notify_probe`]: like ack → live notification on the author's stream (in-process or gRPC).
//! - [`ramp`]: `--find-max`, the run repeated at rising rates.
//! - [`report`]: percentiles, rates, errors; terminal summary and JSON.
//! - [`plot`]: the latency-percentile chart (SVG) of one or more reports.
#![deny(missing_docs)]

pub mod bulk;
pub mod driver;
pub mod engine_stats;
pub mod grpc_client;
pub mod notify_probe;
pub mod plot;
pub mod postgres_peer;
pub mod ramp;
pub mod redis_peer;
pub mod report;
pub mod settle;
pub mod target;
mod target_engage;
pub mod workload;
