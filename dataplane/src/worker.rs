//! The worker: polls its ports, runs each burst through the pipeline to completion, transmits
//! per egress port, punts exceptions to the control thread and applies what it sends back.
//!
//! One call to [`Worker::poll`] is one turn of the poll loop. It never blocks, allocates, or takes
//! a lock: the punt and reply queues are bounded lock-free rings (crossbeam `ArrayQueue`), and a
//! full ring is a counted drop.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::counters::{Counter, DropCounters, PortCounters, PuntCounters};
use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::pool::Pool;
use ferroplane_pipeline::slowpath::Output;
use ferroplane_pipeline::stage::{Context, Pipeline, BURST};
use ferroplane_pipeline::tables::TableHandle;
use ferroplane_pipeline::verdict::{DropReason, PuntReason, Verdict};
use ferroplane_tunnels::TunnelCounters;

use crate::capture::{Capture, Direction};
use crate::port::Port;
use crate::trace::{Record, Trace};

/// A packet on its way to the slow path.
#[derive(Debug)]
pub struct Punt {
    pub reason: PuntReason,
    pub buf: PacketBuf,
}

/// What the slow path sends back, stamped with the pipeline time that caused it (replay writes
/// it into the output capture; the live process ignores it).
#[derive(Debug)]
pub struct Reply {
    pub output: Output,
    pub stamp_ns: u64,
}

/// The two rings between one worker and the control thread.
pub struct Queues {
    pub punt: ArrayQueue<Punt>,
    pub reply: ArrayQueue<Reply>,
}

impl Queues {
    pub fn new(capacity: usize) -> Queues {
        Queues { punt: ArrayQueue::new(capacity), reply: ArrayQueue::new(capacity) }
    }
}

/// Everything a worker counts; read by others while it runs.
pub struct WorkerCounters {
    /// Indexed by port id.
    pub ports: Vec<PortCounters>,
    pub drops: DropCounters,
    pub punts: PuntCounters,
    /// Non-empty polls.
    pub bursts: Counter,
    pub empty_polls: Counter,
    /// Time spent in non-empty polls (the live loop measures it; 0 in replay).
    pub busy_ns: Counter,
}

impl WorkerCounters {
    pub fn new(ports: usize) -> WorkerCounters {
        WorkerCounters {
            ports: (0..ports).map(|_| PortCounters::default()).collect(),
            drops: DropCounters::default(),
            punts: PuntCounters::default(),
            bursts: Counter::default(),
            empty_polls: Counter::default(),
            busy_ns: Counter::default(),
        }
    }
}

/// One poll-mode worker.
pub struct Worker<P: Port> {
    pool: Pool,
    /// Every port, indexed by [`PortId`]: a worker may transmit on any of them.
    ports: Vec<P>,
    /// The ports this worker receives from.
    rx_ports: Vec<PortId>,
    pipeline: Pipeline,
    tables: Arc<TableHandle>,
    queues: Arc<Queues>,
    counters: Arc<WorkerCounters>,
    burst: Vec<PacketBuf>,
    tx: Vec<Vec<PacketBuf>>,
    id: u8,
    trace: Option<Arc<Trace>>,
    capture: Option<Arc<Capture>>,
    /// The per-tunnel counters the pipeline's encap stage counts into: what the slow path
    /// sends into a tunnel counts there too.
    tunnel_counters: Option<Arc<TunnelCounters>>,
    now_ns: u64,
}

impl<P: Port> Worker<P> {
    pub fn new(
        pool: Pool,
        ports: Vec<P>,
        rx_ports: Vec<PortId>,
        pipeline: Pipeline,
        tables: Arc<TableHandle>,
        queues: Arc<Queues>,
    ) -> Worker<P> {
        let n = ports.len();
        Worker {
            pool,
            ports,
            rx_ports,
            pipeline,
            tables,
            queues,
            counters: Arc::new(WorkerCounters::new(n)),
            burst: Vec::with_capacity(BURST),
            tx: (0..n).map(|_| Vec::with_capacity(BURST)).collect(),
            id: 0,
            trace: None,
            capture: None,
            tunnel_counters: None,
            now_ns: 0,
        }
    }

    /// Connects the packet trace and the capture of the control socket.
    pub fn with_observers(mut self, trace: Arc<Trace>, capture: Arc<Capture>) -> Self {
        self.trace = Some(trace);
        self.capture = Some(capture);
        self
    }

    /// Counts what the slow path sends into a tunnel (overlay ARP/ND, echo replies, released
    /// packets) as the tunnel's tx, into the counters its pipeline's encap stage counts into.
    pub fn with_tunnel_counters(mut self, counters: Arc<TunnelCounters>) -> Self {
        self.tunnel_counters = Some(counters);
        self
    }

    /// Sets the worker's number (stamped into each received packet's metadata).
    pub fn with_id(mut self, id: u8) -> Self {
        self.id = id;
        self
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    /// Descriptors to sleep on when idle (see [`Port::wait_fd`]).
    pub fn wait_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.rx_ports.iter().filter_map(|&p| self.ports.get(p as usize)?.wait_fd()).collect()
    }

    pub fn counters(&self) -> Arc<WorkerCounters> {
        self.counters.clone()
    }

    pub fn ports(&self) -> &[P] {
        &self.ports
    }

    pub fn ports_mut(&mut self) -> &mut [P] {
        &mut self.ports
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// One turn of the poll loop. Returns the number of packets received.
    pub fn poll(&mut self, now_ns: u64) -> usize {
        for p in &mut self.ports {
            p.reclaim(&mut self.pool);
        }
        self.apply_replies();
        let mut n = 0;
        for &pid in &self.rx_ports {
            let room = BURST - self.burst.len();
            if room == 0 {
                break;
            }
            let start = self.burst.len();
            let Some(port) = self.ports.get_mut(pid as usize) else { continue };
            let got = port.rx_burst(&mut self.pool, &mut self.burst, room, now_ns);
            let pc = &self.counters.ports[pid as usize];
            pc.rx_packets.add(got as u64);
            // Bytes summed here and counted once: a counter update per packet is a load and a
            // store the next one has to wait for.
            let mut bytes = 0;
            for b in &mut self.burst[start..] {
                b.meta.in_port = pid;
                b.meta.worker = self.id;
                bytes += b.len() as u64;
            }
            pc.rx_bytes.add(bytes);
            n += got;
        }
        if n == 0 {
            self.counters.empty_polls.inc();
            self.flush_tx();
            return 0;
        }
        self.counters.bursts.inc();
        self.now_ns = now_ns;
        self.capture_frames(Direction::Rx, None);
        if self.trace.as_ref().is_some_and(|t| t.armed()) {
            self.run_traced(now_ns);
        } else {
            let tables = self.tables.load();
            let cx = Context { tables: &tables, now_ns };
            self.pipeline.run(&cx, &mut self.burst);
        }
        self.dispose();
        self.flush_tx();
        n
    }

    /// Copies the frames of the captured port to the capture: received ones from the burst
    /// (`tx_port` None), or those about to leave on `tx_port`. One relaxed load when no
    /// capture runs.
    #[inline]
    fn capture_frames(&mut self, dir: Direction, tx_port: Option<usize>) {
        let Some(c) = &self.capture else { return };
        let Some((port, want)) = c.active() else { return };
        let wanted = matches!(
            (want, &dir),
            (Direction::Both, _) | (Direction::Rx, Direction::Rx) | (Direction::Tx, Direction::Tx)
        );
        if !wanted {
            return;
        }
        match tx_port {
            None => {
                for b in self.burst.iter().filter(|b| b.meta.in_port == port) {
                    c.offer(port, Direction::Rx, self.now_ns, b.data());
                }
            }
            Some(i) if i == port as usize => {
                for b in &self.tx[i] {
                    c.offer(port, Direction::Tx, self.now_ns, b.data());
                }
            }
            Some(_) => {}
        }
    }

    /// The pipeline with the packet trace on: claims packets from the trace budget, records
    /// every stage's verdict on them, and hands the records over. Only runs while a trace is
    /// armed.
    fn run_traced(&mut self, now_ns: u64) {
        let Some(trace) = self.trace.clone() else { return };
        let mut records = [None::<Record>; BURST];
        for (b, r) in self.burst.iter_mut().zip(records.iter_mut()) {
            if trace.claim() {
                b.meta.traced = true;
                *r = Some(Record::new(self.id, b.meta.in_port, now_ns, b.data()));
            }
        }
        {
            let tables = self.tables.load();
            let cx = Context { tables: &tables, now_ns };
            self.pipeline.run_traced(&cx, &mut self.burst, &mut |i, step| {
                if let Some(Some(r)) = records.get_mut(i) {
                    r.push(step);
                }
            });
        }
        for r in records.into_iter().flatten() {
            trace.submit(r);
        }
    }

    /// Sends every packet of the burst where its verdict says, in receive order (punts reach the
    /// slow path in the order they arrived: an ARP reply after the packet that waited for it).
    fn dispose(&mut self) {
        // The common case, a whole burst forwarded out of one port whose queue is empty: the
        // burst becomes that queue by swapping the two Vecs (both have capacity BURST), so no
        // packet is moved. Moving each 128-byte PacketBuf into its queue one by one was about
        // half of the worker loop's own time on DPDK ports.
        if let Some(Verdict::Forward(port)) = self.burst.first().map(|b| b.meta.verdict) {
            let same = self.burst.iter().all(|b| b.meta.verdict == Verdict::Forward(port));
            if let (true, Some(q)) = (same, self.tx.get_mut(port as usize)) {
                if q.is_empty() {
                    std::mem::swap(q, &mut self.burst);
                    return;
                }
            }
        }
        // Taking the Vec out and putting it back keeps its capacity: no allocation.
        let mut burst = std::mem::take(&mut self.burst);
        for b in burst.drain(..) {
            let v = b.meta.verdict;
            self.settle(b, v);
        }
        self.burst = burst;
    }

    /// Carries out one packet's verdict: its transmit queue, the punt ring, or the pool with its
    /// drop counted. A packet still `Continue` left the stage list undecided (`no_verdict`).
    #[inline]
    fn settle(&mut self, b: PacketBuf, verdict: Verdict) {
        match verdict {
            Verdict::Forward(port) => self.enqueue_tx(port, b),
            Verdict::Punt(reason) => {
                self.counters.punts.inc(reason);
                if let Err(p) = self.queues.punt.push(Punt { reason, buf: b }) {
                    self.counters.drops.inc(DropReason::PuntQueueFull);
                    self.pool.free(p.buf);
                }
            }
            Verdict::Drop(r) => {
                self.counters.drops.inc(r);
                self.pool.free(b);
            }
            Verdict::Continue => {
                self.counters.drops.inc(DropReason::NoVerdict);
                self.pool.free(b);
            }
        }
    }

    fn enqueue_tx(&mut self, port: PortId, b: PacketBuf) {
        let Some(q) = self.tx.get_mut(port as usize) else {
            self.counters.drops.inc(DropReason::NoTxPort);
            self.pool.free(b);
            return;
        };
        if q.len() == BURST {
            self.flush_port(port as usize);
        }
        self.tx[port as usize].push(b);
    }

    /// Applies what the control thread sent back: transmissions, built frames, freed buffers.
    fn apply_replies(&mut self) {
        while let Some(r) = self.queues.reply.pop() {
            match r.output {
                Output::Transmit { port, mut buf } => {
                    buf.meta.timestamp_ns = r.stamp_ns;
                    self.output(port, buf);
                }
                Output::Emit { port, frame } => {
                    let Some(mut b) = self.pool.alloc() else {
                        self.counters.drops.inc(DropReason::NoBuffer);
                        continue;
                    };
                    if b.fill_from(frame.as_slice()).is_err() {
                        self.counters.drops.inc(DropReason::NoBuffer);
                        self.pool.free(b);
                        continue;
                    }
                    b.meta.timestamp_ns = r.stamp_ns;
                    // A frame never received into has no owner yet; if tunnel output punts it
                    // (underlay neighbour unresolved), the slow path returns it by this.
                    b.meta.worker = self.id;
                    self.output(port, b);
                }
                Output::Free(b) => self.pool.free(b),
            }
        }
    }

    /// Sends what the slow path hands back out of `port`: straight to a port's ring, or through
    /// the tunnel output (encap, underlay route and neighbour) when `port` is a tunnel's
    /// interface (ARP/ND on the overlay, echo replies and released packets routed into one).
    fn output(&mut self, port: PortId, mut b: PacketBuf) {
        if (port as usize) < self.tx.len() {
            return self.enqueue_tx(port, b);
        }
        let verdict = {
            let tables = self.tables.load();
            let bytes = b.len();
            let v = ferroplane_tunnels::encap::output(&tables, &mut b, port);
            // Counted as the encap stage counts: the inner frame, once it is on its way
            // (forwarded, or encapsulated and waiting for the underlay neighbour).
            let on_its_way =
                ferroplane_tunnels::encap::left_encapsulated(&tables, v, b.meta.out_port);
            if let (true, Some(c)) = (on_its_way, &self.tunnel_counters) {
                if let Some(c) = c.of(&tables, port) {
                    c.tx_packets.inc();
                    c.tx_bytes.add(bytes as u64);
                }
            }
            v
        };
        // `output` ends on a port or decides otherwise; a tunnel id here would be a bug, which
        // enqueue_tx counts as no_tx_port.
        self.settle(b, verdict);
    }

    fn flush_port(&mut self, i: usize) {
        let q = &mut self.tx[i];
        if q.is_empty() {
            return;
        }
        self.capture_frames(Direction::Tx, Some(i));
        let q = &mut self.tx[i];
        let bytes: usize = q.iter().map(|b| b.len()).sum();
        let offered = q.len();
        let sent = self.ports[i].tx_burst(&mut self.pool, q);
        let left_bytes: usize = q.iter().map(|b| b.len()).sum();
        let pc = &self.counters.ports[i];
        pc.tx_packets.add(sent as u64);
        pc.tx_bytes.add((bytes - left_bytes) as u64);
        debug_assert_eq!(offered, sent + q.len());
        while let Some(b) = q.pop() {
            self.counters.drops.inc(DropReason::TxFull);
            self.pool.free(b);
        }
    }

    /// Transmits everything queued for every port.
    pub fn flush_tx(&mut self) {
        for i in 0..self.tx.len() {
            self.flush_port(i);
        }
    }

    /// Applies pending replies and flushes (replay calls it after the slow path drained).
    pub fn service_replies(&mut self) {
        self.apply_replies();
        self.flush_tx();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::memory::MemoryPort;
    use ferroplane_pipeline::flow::addr_from_ip;
    use ferroplane_pipeline::slowpath::frames::Frame;
    use ferroplane_pipeline::stage::Stage;
    use ferroplane_pipeline::tables::{PortInfo, TablesBuilder};
    use ferroplane_pipeline::tunnel::{Tunnel, TunnelKind};

    /// Forwards each packet out of the port its first byte names.
    struct ByFirstByte;

    impl Stage for ByFirstByte {
        fn name(&self) -> &'static str {
            "by-first-byte"
        }
        fn process(&mut self, _cx: &Context<'_>, burst: &mut [PacketBuf]) {
            for b in burst {
                b.meta.verdict = Verdict::Forward(b.data()[0] as PortId);
            }
        }
    }

    fn two_port_worker() -> Worker<MemoryPort> {
        let tables = Arc::new(TableHandle::new(TablesBuilder::new(1).build().unwrap()));
        let pool = Pool::new(256, ferroplane_hugepages::Policy::PreferHuge).unwrap();
        let ports = vec![MemoryPort::new("a", 256), MemoryPort::new("b", 256)];
        let stages: Vec<Box<dyn Stage>> = vec![Box::new(ByFirstByte)];
        Worker::new(pool, ports, vec![0], Pipeline::new(stages), tables, Arc::new(Queues::new(16)))
    }

    fn sent(w: &mut Worker<MemoryPort>, port: usize) -> Vec<u8> {
        let mut got = Vec::new();
        w.ports_mut()[port].drain_tx(|f, _| got.push(f[1]));
        got
    }

    /// A burst forwarded whole out of one port (the queue swap) and a mixed one (packet by
    /// packet) both leave in receive order, with every packet counted once.
    #[test]
    fn dispose_keeps_order_whole_burst_or_mixed() {
        let mut w = two_port_worker();
        for seq in 0..BURST as u8 {
            assert!(w.ports_mut()[0].inject(&[1, seq, 0, 0], 0));
        }
        assert_eq!(w.poll(1), BURST);
        assert_eq!(sent(&mut w, 1), (0..BURST as u8).collect::<Vec<_>>());
        for seq in 0..10u8 {
            assert!(w.ports_mut()[0].inject(&[seq % 2, seq, 0, 0], 0));
        }
        assert_eq!(w.poll(2), 10);
        assert_eq!(sent(&mut w, 0), vec![0, 2, 4, 6, 8]);
        assert_eq!(sent(&mut w, 1), vec![1, 3, 5, 7, 9]);
        let c = w.counters();
        assert_eq!(c.ports[1].tx_packets.get(), BURST as u64 + 5);
        assert_eq!(c.ports[0].tx_packets.get(), 5);
    }

    /// When the port's queue already holds packets (the slow path's replies go out in the same
    /// turn), a whole burst for that port queues behind them rather than replacing them.
    #[test]
    fn whole_burst_queues_behind_pending_replies() {
        let mut w = two_port_worker();
        let frame = Frame::from_slice(&[1, 200, 0, 0]).unwrap();
        w.queues
            .reply
            .push(Reply { output: Output::Emit { port: 1, frame }, stamp_ns: 0 })
            .unwrap();
        w.apply_replies();
        for seq in 0..3u8 {
            assert!(w.ports_mut()[0].inject(&[1, seq, 0, 0], 0));
        }
        let pool = &mut w.pool;
        let n = w.ports[0].rx_burst(pool, &mut w.burst, BURST, 0);
        assert_eq!(n, 3);
        let tables = w.tables.load();
        w.pipeline.run(&Context { tables: &tables, now_ns: 0 }, &mut w.burst);
        drop(tables);
        w.dispose();
        w.flush_tx();
        assert_eq!(sent(&mut w, 1), vec![200, 0, 1, 2]);
    }

    /// A worker with one underlay port "u" (10.2.0.1/24) and a VXLAN tunnel vx0 to 10.2.0.2,
    /// whose MAC is known when `underlay_resolved`; its tunnel counters; vx0's interface.
    fn tunnel_worker(
        underlay_resolved: bool,
    ) -> (Worker<MemoryPort>, Arc<TableHandle>, Arc<Queues>, Arc<TunnelCounters>, PortId) {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let mut b = TablesBuilder::new(1);
        b.port(PortInfo {
            name: "u".into(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            addresses: vec![(ip("10.2.0.1"), 24)],
        });
        let vx = b.tunnel(
            PortInfo {
                name: "vx0".into(),
                mac: [2, 0, 0, 0, 9, 1],
                mtu: 1450,
                addresses: vec![(ip("10.100.0.1"), 24)],
            },
            Tunnel {
                name: "vx0".into(),
                kind: TunnelKind::Vxlan,
                iface: 0,
                local: addr_from_ip(ip("10.2.0.1")),
                remote: Some(addr_from_ip(ip("10.2.0.2"))),
                vni: 100,
                dst_port: 4789,
                ttl: 64,
                udp_checksum6: true,
                options: vec![],
            },
        );
        if underlay_resolved {
            b.neighbour(0, ip("10.2.0.2"), [2, 0, 0, 0, 0, 2]);
        }
        let tables = Arc::new(TableHandle::new(b.build().unwrap()));
        let queues = Arc::new(Queues::new(16));
        let counters = Arc::new(TunnelCounters::default());
        let pool = Pool::new(64, ferroplane_hugepages::Policy::PreferHuge).unwrap();
        let w = Worker::new(
            pool,
            vec![MemoryPort::new("u", 16)],
            vec![0],
            Pipeline::new(Vec::new()),
            tables.clone(),
            queues.clone(),
        )
        .with_tunnel_counters(counters.clone());
        (w, tables, queues, counters, vx)
    }

    /// An ARP reply of 42 bytes and a 98-byte echo reply from the slow path, out of `vx`.
    fn replies_into(queues: &Queues, vx: PortId) {
        for len in [42, 98] {
            let mut f = vec![0u8; len];
            f[12..14].copy_from_slice(&[0x08, 0x06]);
            let frame = Frame::from_slice(&f).unwrap();
            let output = Output::Emit { port: vx, frame };
            queues.reply.push(Reply { output, stamp_ns: 0 }).unwrap();
        }
    }

    /// What the slow path sends out of a tunnel interface (an ARP reply on the overlay, an echo
    /// reply, a released packet) counts as the tunnel's tx, as the encap stage counts routed
    /// packets: one packet, the inner frame's bytes.
    #[test]
    fn slow_path_output_into_a_tunnel_counts_as_its_tx() {
        let (mut w, tables, queues, counters, vx) = tunnel_worker(true);
        replies_into(&queues, vx);
        w.service_replies();
        assert_eq!(w.ports()[0].tx_pending(), 2, "both left encapsulated on the underlay");
        let c = counters.of(&tables.load(), vx).unwrap();
        assert_eq!((c.tx_packets.get(), c.tx_bytes.get()), (2, 42 + 98));
        assert_eq!((c.rx_packets.get(), c.rx_bytes.get()), (0, 0));
    }

    /// With the underlay neighbour unknown, the packets are encapsulated and wait in the slow
    /// path, which later sends them out of the underlay port as they are: they count as the
    /// tunnel's tx when they are encapsulated, once, not again when they leave.
    #[test]
    fn encapsulated_packets_waiting_for_the_underlay_neighbour_count_as_tunnel_tx_once() {
        let (mut w, tables, queues, counters, vx) = tunnel_worker(false);
        replies_into(&queues, vx);
        w.service_replies();
        assert_eq!(w.ports()[0].tx_pending(), 0, "nothing can leave before ARP resolves");
        let c = counters.of(&tables.load(), vx).unwrap();
        assert_eq!((c.tx_packets.get(), c.tx_bytes.get()), (2, 42 + 98));
        // The slow path holds them, encapsulated; once resolved it sends them out of "u".
        let mut held = Vec::new();
        while let Some(p) = queues.punt.pop() {
            assert_eq!(p.reason, PuntReason::NeighbourMiss);
            assert_eq!(p.buf.meta.out_port, 0, "waiting for the underlay port's neighbour");
            held.push(Frame::from_slice(p.buf.data()).unwrap());
        }
        assert_eq!(held.iter().map(|f| f.as_slice().len()).collect::<Vec<_>>(), vec![92, 148]);
        for frame in held {
            let output = Output::Emit { port: 0, frame };
            queues.reply.push(Reply { output, stamp_ns: 0 }).unwrap();
        }
        w.service_replies();
        assert_eq!(w.ports()[0].tx_pending(), 2);
        assert_eq!((c.tx_packets.get(), c.tx_bytes.get()), (2, 42 + 98), "counted twice");
    }
}
