//! Ports: where frames enter and leave a worker.
//!
//! A port receives into buffers from the worker's pool and transmits buffers the worker hands it;
//! every buffer ends back in the pool (immediately for copying ports, after the completion ring
//! for AF_XDP). Ports never allocate on the fast path.

pub mod memory;

use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::pool::Pool;

/// What a worker needs from a port.
pub trait Port: Send {
    /// The port's configured name.
    fn name(&self) -> &str;

    /// Receives up to `max` frames, appending them to `out` (buffers come from `pool`). Returns
    /// how many were received. `now_ns` stamps frames that carry no time of their own.
    fn rx_burst(&mut self, pool: &mut Pool, out: &mut Vec<PacketBuf>, max: usize, now_ns: u64) -> usize;

    /// Transmits the buffers in `pkts`, draining the ones it accepted (their buffers go back to
    /// `pool` now or at [`Port::reclaim`]). What is left in `pkts` was refused (ring full): the
    /// caller drops and counts it. Returns how many were accepted.
    fn tx_burst(&mut self, pool: &mut Pool, pkts: &mut Vec<PacketBuf>) -> usize;

    /// Returns buffers of finished transmissions to `pool` and refills receive rings. Ports that
    /// copy on transmit have nothing to do.
    fn reclaim(&mut self, _pool: &mut Pool) {}
}
