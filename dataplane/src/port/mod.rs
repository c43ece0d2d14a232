//! Ports: where frames enter and leave a worker.
//!
//! A port receives into buffers from the worker's pool and transmits buffers the worker hands it;
//! every buffer ends back in the pool (immediately for copying ports, after the completion ring
//! for AF_XDP). Ports never allocate on the fast path.

pub mod af_xdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod memory;

use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::pool::Pool;

/// What a worker needs from a port.
pub trait Port: Send {
    /// The port's configured name.
    fn name(&self) -> &str;

    /// Receives up to `max` frames, appending them to `out` (buffers come from `pool`). Returns
    /// how many were received. `now_ns` stamps frames that carry no time of their own.
    fn rx_burst(
        &mut self,
        pool: &mut Pool,
        out: &mut Vec<PacketBuf>,
        max: usize,
        now_ns: u64,
    ) -> usize;

    /// Transmits the buffers in `pkts`, draining the ones it accepted (their buffers go back to
    /// `pool` now or at [`Port::reclaim`]). What is left in `pkts` was refused (ring full): the
    /// caller drops and counts it. Returns how many were accepted.
    fn tx_burst(&mut self, pool: &mut Pool, pkts: &mut Vec<PacketBuf>) -> usize;

    /// Returns buffers of finished transmissions to `pool` and refills receive rings. Ports that
    /// copy on transmit have nothing to do.
    fn reclaim(&mut self, _pool: &mut Pool) {}

    /// A file descriptor that becomes readable when frames arrive, for workers that sleep after
    /// a run of empty polls (`poll = "adaptive"`). `None`: the worker naps briefly instead.
    fn wait_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// How the port is attached, for `fpctl port show` (AF_XDP: "copy/native" etc.).
    fn mode_name(&self) -> Option<String> {
        None
    }
}

impl Port for Box<dyn Port> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn rx_burst(
        &mut self,
        pool: &mut Pool,
        out: &mut Vec<PacketBuf>,
        max: usize,
        now_ns: u64,
    ) -> usize {
        (**self).rx_burst(pool, out, max, now_ns)
    }

    fn tx_burst(&mut self, pool: &mut Pool, pkts: &mut Vec<PacketBuf>) -> usize {
        (**self).tx_burst(pool, pkts)
    }

    fn reclaim(&mut self, pool: &mut Pool) {
        (**self).reclaim(pool)
    }

    fn wait_fd(&self) -> Option<std::os::fd::RawFd> {
        (**self).wait_fd()
    }

    fn mode_name(&self) -> Option<String> {
        (**self).mode_name()
    }
}
