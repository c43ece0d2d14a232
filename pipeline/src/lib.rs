//! ferroplane's packet model and the stages of its pipeline.
//!
//! - [`buf`], [`pool`], [`meta`]: a packet is a pool frame with headroom plus metadata.
//! - [`wire`]: zero-copy, bounds-checked header views and `Repr`s for building headers.
//! - [`parse`]: the parse stage, which checks a frame once and records its offsets and 5-tuple.
//! - [`checksum`], [`flow`]: RFC 1071/1624 checksums; the flow key and its symmetric hash.
//! - [`fib`]: longest-prefix match for IPv4 and IPv6; [`mirror`]: incremental updates of big tables.
//! - [`tunnel`]: the tunnel table (decap keys, FDB) the `tunnels` crate's stages read.
//! - [`verdict`], [`counters`]: every packet ends forwarded, punted or dropped for a named reason.
//!
//! Nothing here knows about ports, threads or clocks: time is an argument.

pub mod buf;
pub mod checksum;
pub mod counters;
pub mod fib;
pub mod flow;
pub mod l3;
pub mod meta;
pub mod mirror;
pub mod parse;
pub mod pool;
pub mod slowpath;
pub mod stage;
pub mod tables;
pub mod tunnel;
pub mod verdict;
pub mod wire;
