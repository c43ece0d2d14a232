//! Packet trace (`fpctl trace add N` / `trace show`), after VPP's: the next N packets received
//! carry a flag, every stage's verdict on them is recorded, and the records go to the control
//! side over a bounded ring.
//!
//! Workers pay one relaxed load per burst while no trace is armed. While one is, a traced
//! packet costs a copy of its first bytes and of a few verdicts into a fixed-size record: no
//! allocation, no lock; a full ring is a counted drop (`lost`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_queue::ArrayQueue;
use ferroplane_ctl::{TraceStep as WireStep, TracedPacket};
use ferroplane_pipeline::stage::TraceStep;
use ferroplane_pipeline::verdict::Verdict;

/// Bytes of each traced frame kept for its one-line decode.
pub const HEAD: usize = 128;
/// Stages recorded per packet.
pub const MAX_STEPS: usize = 12;
/// Records waiting for `trace show`.
const RING: usize = 1024;
/// Records kept for `trace show` after they leave the ring.
const KEEP: usize = 4096;

/// One traced packet, fixed size so it moves through the ring without allocating.
#[derive(Clone, Copy)]
pub struct Record {
    pub worker: u8,
    pub port: u16,
    pub timestamp_ns: u64,
    pub len: u32,
    head: [u8; HEAD],
    steps: [Option<TraceStep>; MAX_STEPS],
    nsteps: u8,
}

impl Record {
    pub fn new(worker: u8, port: u16, timestamp_ns: u64, frame: &[u8]) -> Record {
        let mut head = [0u8; HEAD];
        let n = frame.len().min(HEAD);
        head[..n].copy_from_slice(&frame[..n]);
        Record {
            worker,
            port,
            timestamp_ns,
            len: frame.len() as u32,
            head,
            steps: [None; MAX_STEPS],
            nsteps: 0,
        }
    }

    /// Appends a stage's verdict (stages past [`MAX_STEPS`] are not recorded).
    pub fn push(&mut self, step: TraceStep) {
        if let Some(slot) = self.steps.get_mut(self.nsteps as usize) {
            *slot = Some(step);
            self.nsteps += 1;
        }
    }

    fn head(&self) -> &[u8] {
        &self.head[..(self.len as usize).min(HEAD)]
    }
}

/// The trace shared by the workers and the control socket.
pub struct Trace {
    /// Packets still to trace; workers claim them one by one.
    remaining: AtomicU32,
    ring: ArrayQueue<Record>,
    lost: AtomicU64,
    /// Records already taken off the ring (control side only).
    shown: Mutex<Vec<TracedPacket>>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

impl Trace {
    pub fn new() -> Trace {
        Trace {
            remaining: AtomicU32::new(0),
            ring: ArrayQueue::new(RING),
            lost: AtomicU64::new(0),
            shown: Mutex::new(Vec::new()),
        }
    }

    /// Arms the trace for `n` more packets.
    pub fn add(&self, n: u32) {
        let _ = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| Some(r.saturating_add(n)));
    }

    /// Worker: is a trace armed? (one relaxed load per burst)
    #[inline]
    pub fn armed(&self) -> bool {
        self.remaining.load(Ordering::Relaxed) > 0
    }

    /// Worker: claims one packet to trace; false when the budget is spent.
    #[inline]
    pub fn claim(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
            .is_ok()
    }

    /// Worker: hands a finished record to the control side.
    #[inline]
    pub fn submit(&self, r: Record) {
        if self.ring.push(r).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Packets armed but not traced yet.
    pub fn pending(&self) -> u32 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Records lost to a full ring.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Everything traced so far (oldest first); `clear` forgets it afterwards.
    pub fn show(&self, port_name: &dyn Fn(u16) -> String, clear: bool) -> Vec<TracedPacket> {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(r) = self.ring.pop() {
            if shown.len() == KEEP {
                shown.remove(0);
            }
            shown.push(TracedPacket {
                worker: r.worker as usize,
                port: port_name(r.port),
                timestamp_ns: r.timestamp_ns,
                len: r.len as usize,
                summary: summary(r.head()),
                steps: r.steps[..r.nsteps as usize]
                    .iter()
                    .flatten()
                    .map(|s| WireStep {
                        stage: s.stage.to_string(),
                        verdict: verdict_text(s.verdict),
                    })
                    .collect(),
            });
        }
        if clear {
            std::mem::take(&mut *shown)
        } else {
            shown.clone()
        }
    }
}

/// A verdict as the trace prints it: `continue`, `forward 1`, `punt ttl_expired`, `drop ...`.
pub fn verdict_text(v: Verdict) -> String {
    match v {
        Verdict::Continue => "continue".into(),
        Verdict::Forward(p) => format!("forward port {p}"),
        Verdict::Punt(r) => format!("punt {r}"),
        Verdict::Drop(r) => format!("drop {r}"),
    }
}

/// One-line decode of a frame's first bytes, tcpdump style, with etherparse's lax parser (it
/// decodes what is there even when the frame was cut at [`HEAD`] bytes).
pub fn summary(frame: &[u8]) -> String {
    use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice as LaxTransportSlice};
    let Ok(p) = LaxSlicedPacket::from_ethernet(frame) else {
        return format!("{} bytes, not Ethernet", frame.len());
    };
    let (src, dst, ttl, proto) = match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (h.source_addr().to_string(), h.destination_addr().to_string(), h.ttl(), h.protocol().0)
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (
                h.source_addr().to_string(),
                h.destination_addr().to_string(),
                h.hop_limit(),
                ip.payload().ip_number.0,
            )
        }
        None => {
            let et = p.link.as_ref().and_then(|l| l.to_header()).map(|h| match h {
                etherparse::LinkHeader::Ethernet2(e) => e.ether_type.0,
                _ => 0,
            });
            return match et {
                Some(0x0806) => "arp".into(),
                Some(t) => format!("ethertype 0x{t:04x}"),
                None => "unknown link".into(),
            };
        }
    };
    let l4 = match &p.transport {
        Some(LaxTransportSlice::Udp(u)) => {
            format!("{src}.{} > {dst}.{} udp", u.source_port(), u.destination_port())
        }
        Some(LaxTransportSlice::Tcp(t)) => {
            format!("{src}.{} > {dst}.{} tcp", t.source_port(), t.destination_port())
        }
        Some(LaxTransportSlice::Icmpv4(i)) => format!("{src} > {dst} icmp type {}", i.type_u8()),
        Some(LaxTransportSlice::Icmpv6(i)) => format!("{src} > {dst} icmp6 type {}", i.type_u8()),
        None => format!("{src} > {dst} proto {proto}"),
    };
    format!("{l4} ttl {ttl}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroplane_pipeline::verdict::DropReason;

    #[test]
    fn budget_records_and_show() {
        let t = Trace::new();
        assert!(!t.armed());
        t.add(2);
        assert!(t.claim() && t.claim() && !t.claim());
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 1, 0, 2], 64)
            .udp(1234, 80)
            .write(&mut f, &[0; 200])
            .unwrap();
        let mut r = Record::new(0, 1, 5, &f);
        r.push(TraceStep { stage: "parse", verdict: Verdict::Continue });
        r.push(TraceStep { stage: "input", verdict: Verdict::Drop(DropReason::NotOurMac) });
        t.submit(r);
        let shown = t.show(&|p| format!("p{p}"), false);
        assert_eq!(shown.len(), 1);
        let p = &shown[0];
        assert_eq!((p.port.as_str(), p.len), ("p1", f.len()));
        assert_eq!(p.summary, "10.0.0.1.1234 > 10.1.0.2.80 udp ttl 64");
        assert_eq!(p.steps[1].verdict, "drop not_our_mac");
        assert_eq!(t.show(&|p| format!("p{p}"), true).len(), 1);
        assert!(t.show(&|p| format!("p{p}"), false).is_empty());
    }

    #[test]
    fn summaries_never_panic_on_garbage() {
        for n in 0..200 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = summary(&junk);
        }
    }
}
