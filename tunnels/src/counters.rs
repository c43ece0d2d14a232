//! Per-tunnel packet and byte counters, kept by each worker's decap and encap stages.
//!
//! A tunnel is an interface, and its users expect interface counters: packets and bytes received
//! (decapsulated) and sent (encapsulated), counted on the inner frame as a tunnel interface sees
//! it. Each worker has its own set (relaxed atomics nobody else writes, so no cache line is
//! shared between cores); readers sum them. Indexed by tunnel slot (`iface - first_iface`), which
//! is stable across tunnel changes; a slot beyond [`MAX_COUNTED`] is simply not counted.
//! [`TunnelTotals`] reads them as the tunnel interfaces' counters: a tunnel that reuses a
//! deleted one's slot starts from zero.

use std::sync::{Arc, Mutex};

use ferroplane_pipeline::counters::PortCounters;
use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::tables::Tables;

/// Tunnel slots with counters.
pub const MAX_COUNTED: usize = 1024;

pub struct TunnelCounters(Box<[PortCounters]>);

impl Default for TunnelCounters {
    fn default() -> Self {
        TunnelCounters((0..MAX_COUNTED).map(|_| PortCounters::default()).collect())
    }
}

impl TunnelCounters {
    /// The counters of tunnel interface `iface` in `t`.
    #[inline]
    pub fn of(&self, t: &Tables, iface: PortId) -> Option<&PortCounters> {
        let slot = iface.checked_sub(t.tunnels.first_iface())?;
        self.0.get(slot as usize)
    }

    /// The counters of tunnel slot `slot`.
    pub fn slot(&self, slot: usize) -> Option<&PortCounters> {
        self.0.get(slot)
    }
}

/// One tunnel slot's counters summed over every worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl SlotTotals {
    fn saturating_sub(self, o: SlotTotals) -> SlotTotals {
        SlotTotals {
            rx_packets: self.rx_packets.saturating_sub(o.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(o.rx_bytes),
            tx_packets: self.tx_packets.saturating_sub(o.tx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(o.tx_bytes),
        }
    }
}

/// Every worker's tunnel counters, read as interface counters of the tunnel holding each slot.
///
/// A slot outlives its tunnel: a tunnel added later reuses the lowest free one. The counters are
/// never zeroed (each has one writer, its worker, which increments with a plain load and store:
/// a reset from another thread could be lost or undone), so when the control plane hands a slot
/// to a new tunnel it [`restart`]s it: the slot's current sums become its baseline, and
/// [`slot`] reads the counts since. Packets a worker was still sending through the old tunnel
/// when the slot changed hands (the last burst on the previous snapshot) may count for the new
/// one.
///
/// [`restart`]: TunnelTotals::restart
/// [`slot`]: TunnelTotals::slot
pub struct TunnelTotals {
    workers: Vec<Arc<TunnelCounters>>,
    /// Per slot, the sums when its tunnel took it.
    baseline: Mutex<Vec<SlotTotals>>,
}

impl TunnelTotals {
    pub fn new(workers: Vec<Arc<TunnelCounters>>) -> TunnelTotals {
        TunnelTotals { workers, baseline: Mutex::new(vec![SlotTotals::default(); MAX_COUNTED]) }
    }

    /// Each worker's counters.
    pub fn workers(&self) -> &[Arc<TunnelCounters>] {
        &self.workers
    }

    /// The raw sums of `slot` over the workers.
    fn sum(&self, slot: usize) -> SlotTotals {
        let mut s = SlotTotals::default();
        for c in self.workers.iter().filter_map(|w| w.slot(slot)) {
            s.rx_packets += c.rx_packets.get();
            s.rx_bytes += c.rx_bytes.get();
            s.tx_packets += c.tx_packets.get();
            s.tx_bytes += c.tx_bytes.get();
        }
        s
    }

    /// What the tunnel holding `slot` has counted since it took the slot.
    pub fn slot(&self, slot: usize) -> SlotTotals {
        let base = self.lock().get(slot).copied().unwrap_or_default();
        self.sum(slot).saturating_sub(base)
    }

    /// The counters of tunnel interface `iface` in `t` (zero for an interface beyond
    /// [`MAX_COUNTED`] or not a tunnel).
    pub fn of(&self, t: &Tables, iface: PortId) -> SlotTotals {
        match iface.checked_sub(t.tunnels.first_iface()) {
            Some(slot) => self.slot(slot as usize),
            None => SlotTotals::default(),
        }
    }

    /// `slot` has a new tunnel: its counts start from zero.
    pub fn restart(&self, slot: usize) {
        let now = self.sum(slot);
        if let Some(b) = self.lock().get_mut(slot) {
            *b = now;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SlotTotals>> {
        // The baselines are plain numbers: a panic elsewhere cannot leave them half-written.
        self.baseline.lock().unwrap_or_else(|e| e.into_inner())
    }
}
