//! Shared inputs for ferroplane's criterion benchmarks (seeded route tables, frame bursts).

pub mod interleave;
pub mod routes;
