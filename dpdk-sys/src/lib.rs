//! Raw bindings to the system's DPDK (22.11, found with pkg-config) and to ferroplane's C shim
//! (`shim.c`) over DPDK's inline fast-path functions. Everything here is `unsafe` and unchecked;
//! `ferroplane-dataplane`'s `port::dpdk` module is the safe layer.

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
