//! Per-tunnel packet and byte counters, kept by each worker's decap and encap stages.
//!
//! A tunnel is an interface, and its users expect interface counters: packets and bytes received
//! (decapsulated) and sent (encapsulated), counted on the inner frame as a tunnel interface sees
//! it. Each worker has its own set (relaxed atomics nobody else writes, so no cache line is
//! shared between cores); readers sum them. Indexed by tunnel slot (`iface - first_iface`), which
//! is stable across tunnel changes; a slot beyond [`MAX_COUNTED`] is simply not counted.

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
