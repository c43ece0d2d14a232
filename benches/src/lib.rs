//! Shared inputs for ferroplane's criterion benchmarks (seeded route tables, frame bursts).

pub mod routes;
