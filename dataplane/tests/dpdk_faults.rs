//! Faults of the DPDK driver, each in a `ferroplane run` process of its own (EAL starts once per
//! process): filled in below.
