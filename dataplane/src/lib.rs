//! ferroplane's dataplane: ports, workers, configuration, assembly of the pipeline, offline
//! replay, and the `ferroplane` binary's commands.
//!
//! This is the only crate that knows the whole: it turns a checked [`config::Config`] into
//! [`ferroplane_pipeline::tables::Tables`] ([`assemble`]), runs workers over ports ([`worker`],
//! [`port`]) and drives the slow path.

pub mod assemble;
pub mod capture;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod gen;
pub mod metrics;
pub mod netns;
pub mod offline;
pub mod pcap;
pub mod port;
pub mod replay;
pub mod runtime;
pub mod trace;
pub mod worker;
