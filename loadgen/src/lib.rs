//! # loadgen
//!
//! feedline's load generator as a library (the `loadgen` binary is its command line; tests drive
//! it directly).
//!
//! # Layout
//! - [`workload`]: the seeded population — power-law follow graph, heavy-tailed activity.
//! - [`target`]: where the load goes — the engine in-process or a server over gRPC.
//! - [`driver`]: bulk load, the open-loop generators, fanout-lag probes.
//! - [`report`]: percentiles, rates, errors; terminal summary and JSON.
#![deny(missing_docs)]

pub mod driver;
pub mod report;
pub mod target;
pub mod workload;
