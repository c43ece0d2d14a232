//! Counters a single thread writes and any thread reads.
//!
//! Each worker owns its counters; the control thread, `fpctl stats` and the metrics endpoint read
//! them while the worker runs. A counter has exactly one writer, so an increment is a relaxed
//! load and store (a plain `mov`, no `lock` prefix) rather than a `fetch_add`; readers may see a
//! value a few packets old, never a torn one.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::verdict::{DropReason, PuntReason};

/// A single-writer counter.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread may call it.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// Packets and bytes in each direction of one port, as seen by one worker.
#[derive(Debug, Default)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
}

/// One counter per drop reason.
pub struct DropCounters([Counter; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters(std::array::from_fn(|_| Counter::default()))
    }
}

impl DropCounters {
    #[inline]
    pub fn inc(&self, r: DropReason) {
        self.0[r.index()].inc();
    }

    pub fn add(&self, r: DropReason, n: u64) {
        self.0[r.index()].add(n);
    }

    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()].get()
    }

    /// `(name, value)` for every reason, zeroes included.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(Counter::get).sum()
    }
}

impl std::fmt::Debug for DropCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().filter(|(_, v)| *v != 0).map(|(r, v)| (r.name(), v)))
            .finish()
    }
}

/// One counter per punt reason.
pub struct PuntCounters([Counter; PuntReason::COUNT]);

impl Default for PuntCounters {
    fn default() -> Self {
        PuntCounters(std::array::from_fn(|_| Counter::default()))
    }
}

impl PuntCounters {
    #[inline]
    pub fn inc(&self, r: PuntReason) {
        self.0[r.index()].inc();
    }

    pub fn get(&self, r: PuntReason) -> u64 {
        self.0[r.index()].get()
    }

    pub fn iter(&self) -> impl Iterator<Item = (PuntReason, u64)> + '_ {
        PuntReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(Counter::get).sum()
    }
}

impl std::fmt::Debug for PuntCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().filter(|(_, v)| *v != 0).map(|(r, v)| (r.name(), v)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let d = DropCounters::default();
        d.inc(DropReason::NoRoute);
        d.add(DropReason::NoRoute, 2);
        d.inc(DropReason::TxFull);
        assert_eq!(d.get(DropReason::NoRoute), 3);
        assert_eq!(d.total(), 4);
        assert_eq!(format!("{d:?}"), r#"{"no_route": 3, "tx_full": 1}"#);
    }
}
