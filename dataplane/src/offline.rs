//! A whole router on in-memory ports, driven by the caller's clock: the worker's pipeline and the
//! slow path, single-threaded and deterministic. Replay, the golden tests and the benches use it;
//! it runs the very worker and slow-path code the live process runs.

use std::sync::Arc;

use ferroplane_hugepages::Policy;
use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::pool::Pool;
use ferroplane_pipeline::slowpath::{SlowPath, SlowPathConfig, SlowPathCounters};
use ferroplane_pipeline::stage::{Pipeline, BURST};
use ferroplane_pipeline::tables::{TableHandle, Tables};
use ferroplane_pipeline::verdict::DropReason;

use ferroplane_tunnels::LearnQueue;

use crate::port::memory::MemoryPort;
use crate::worker::{Queues, Reply, Worker, WorkerCounters};

/// Packet buffers of an offline router.
pub const POOL_FRAMES: usize = 4096;
/// Frames each in-memory ring holds.
pub const RING_FRAMES: usize = 1024;

/// The router.
pub struct OfflineRouter {
    worker: Worker<MemoryPort>,
    slow: SlowPath,
    handle: Arc<TableHandle>,
    queues: Arc<Queues>,
    learn: Arc<LearnQueue>,
}

impl OfflineRouter {
    pub fn new(tables: Tables) -> Result<OfflineRouter, ferroplane_hugepages::Error> {
        // Tunnel interfaces come after the ports and have no ring of their own.
        let nports = tables.tunnels.first_iface() as usize;
        let names: Vec<String> = tables.ports.iter().take(nports).map(|p| p.name.clone()).collect();
        let handle = Arc::new(TableHandle::new(tables));
        let slow = SlowPath::new(&handle.load(), SlowPathConfig::default());
        let pool = Pool::new(POOL_FRAMES, Policy::PreferHuge)?;
        let ports = names.iter().map(|n| MemoryPort::new(n, RING_FRAMES)).collect();
        let queues = Arc::new(Queues::new(1024));
        let learn = Arc::new(LearnQueue::new(1024));
        let rx_ports = (0..names.len() as PortId).collect();
        let worker = Worker::new(
            pool,
            ports,
            rx_ports,
            Pipeline::new(crate::assemble::stages(Some(learn.clone()))),
            handle.clone(),
            queues.clone(),
        );
        Ok(OfflineRouter { worker, slow, handle, queues, learn })
    }

    pub fn tables(&self) -> Arc<TableHandle> {
        self.handle.clone()
    }

    pub fn worker_counters(&self) -> Arc<WorkerCounters> {
        self.worker.counters()
    }

    pub fn slow_counters(&self) -> Arc<SlowPathCounters> {
        self.slow.counters()
    }

    pub fn port_names(&self) -> Vec<String> {
        self.worker.ports().iter().map(|p| crate::port::Port::name(p).to_string()).collect()
    }

    /// Free buffers in the worker's pool (a leak shows here).
    pub fn pool_available(&self) -> usize {
        self.worker.pool().available()
    }

    /// Hands everything the slow path produced to the worker, stamped `stamp`, and publishes a
    /// changed neighbour table.
    fn drain_slow(&mut self, stamp: u64) {
        while let Some(output) = self.slow.poll_output() {
            let mut r = Reply { output, stamp_ns: stamp };
            while let Err(back) = self.queues.reply.push(r) {
                self.worker.service_replies();
                r = back;
            }
        }
        if let Some(n) = self.slow.neighbour_update() {
            let next = self.handle.load().with_neighbours(n);
            self.handle.publish(next);
        }
        self.apply_learned();
    }

    /// Publishes the MACs multipoint tunnels learned (the live control thread does the same).
    fn apply_learned(&mut self) {
        if self.learn.queue.is_empty() {
            return;
        }
        let mut next = Tables::clone(&self.handle.load());
        let fdb = Arc::make_mut(&mut next.fdb);
        while let Some(e) = self.learn.queue.pop() {
            fdb.insert((e.iface, e.mac), e.remote);
        }
        self.handle.publish(next);
    }

    /// Runs the slow path's timers due up to `now`, each at its own time.
    pub fn advance_to(&mut self, now: u64) {
        while let Some(t) = self.slow.poll_timeout().filter(|&t| t <= now) {
            self.slow.handle_timeout(t, &self.handle.load());
            self.drain_slow(t);
        }
        self.worker.service_replies();
    }

    /// Receives one burst (at most [`BURST`] frames: `(port, frame, time)`) at time `now`, runs
    /// it to completion, drains the slow path. Returns how many frames were accepted.
    pub fn run_burst(&mut self, now: u64, frames: &[(PortId, &[u8], u64)]) -> usize {
        self.advance_to(now);
        let mut accepted = 0;
        for &(port, data, ts) in frames.iter().take(BURST) {
            if let Some(p) = self.worker.ports_mut().get_mut(port as usize) {
                if p.inject(data, ts) {
                    accepted += 1;
                } else {
                    // The burst is at most BURST frames, far below the ring: only a frame
                    // bigger than a buffer is refused. Counted, never silently skipped.
                    self.worker.counters().drops.inc(DropReason::FrameTooBig);
                }
            }
        }
        while self.worker.ports().iter().any(|p| p.rx_pending() > 0) {
            self.worker.poll(now);
            self.service_punts();
            self.apply_learned();
        }
        accepted
    }

    /// The steady-state fast path alone: one poll of the worker, punts served. Frames must have
    /// been injected with [`OfflineRouter::inject`].
    pub fn poll(&mut self, now: u64) -> usize {
        let n = self.worker.poll(now);
        self.service_punts();
        n
    }

    /// Queues a frame for reception without running anything.
    pub fn inject(&mut self, port: PortId, frame: &[u8], ts: u64) -> bool {
        self.worker.ports_mut().get_mut(port as usize).is_some_and(|p| p.inject(frame, ts))
    }

    fn service_punts(&mut self) {
        let mut any = false;
        while let Some(p) = self.queues.punt.pop() {
            let t = p.buf.meta.timestamp_ns;
            self.slow.handle_punt(t, &self.handle.load(), p.reason, p.buf);
            self.drain_slow(t);
            any = true;
        }
        if any || !self.queues.reply.is_empty() {
            self.worker.service_replies();
        }
    }

    /// Takes every frame transmitted so far: `f(port, frame, time)`.
    pub fn drain_tx(&mut self, mut f: impl FnMut(PortId, &[u8], u64)) {
        for (i, p) in self.worker.ports_mut().iter_mut().enumerate() {
            p.drain_tx(|frame, ts| f(i as PortId, frame, ts));
        }
    }

    /// Ends the run at time `now`: packets still waiting for neighbours are dropped and counted.
    pub fn finish(&mut self, now: u64) {
        self.slow.finish();
        self.drain_slow(now);
        self.worker.service_replies();
    }
}
