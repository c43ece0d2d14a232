//! The in-memory port: frames are injected into a receive ring and collected from a transmit
//! ring, both preallocated. It is the port of `ferroplane replay`, of the golden tests and of the
//! benches; it exercises exactly the worker code that AF_XDP and DPDK ports do.

use ferroplane_pipeline::buf::{PacketBuf, FRAME_SIZE, HEADROOM};
use ferroplane_pipeline::pool::Pool;

use super::Port;

/// A fixed ring of frames with timestamps. Push and pop copy; nothing allocates after `new`.
pub struct FrameRing {
    bytes: Vec<u8>,
    lens: Vec<u16>,
    stamps: Vec<u64>,
    head: usize,
    len: usize,
}

impl FrameRing {
    /// Room for `capacity` frames of up to [`FRAME_SIZE`] bytes.
    pub fn new(capacity: usize) -> FrameRing {
        FrameRing {
            bytes: vec![0; capacity * FRAME_SIZE],
            lens: vec![0; capacity],
            stamps: vec![0; capacity],
            head: 0,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `frame`; `false` when the ring is full or the frame too large.
    pub fn push(&mut self, frame: &[u8], stamp_ns: u64) -> bool {
        // A frame must fit a packet buffer behind its headroom, or it could not be received.
        if self.len == self.capacity() || frame.len() > FRAME_SIZE - HEADROOM {
            return false;
        }
        let slot = (self.head + self.len) % self.capacity();
        self.bytes[slot * FRAME_SIZE..slot * FRAME_SIZE + frame.len()].copy_from_slice(frame);
        self.lens[slot] = frame.len() as u16;
        self.stamps[slot] = stamp_ns;
        self.len += 1;
        true
    }

    /// The oldest frame and its stamp, without removing it.
    pub fn front(&self) -> Option<(&[u8], u64)> {
        if self.len == 0 {
            return None;
        }
        let s = self.head;
        Some((&self.bytes[s * FRAME_SIZE..s * FRAME_SIZE + self.lens[s] as usize], self.stamps[s]))
    }

    /// Drops the oldest frame.
    pub fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.capacity();
            self.len -= 1;
        }
    }
}

/// An in-memory port.
pub struct MemoryPort {
    name: String,
    rx: FrameRing,
    tx: FrameRing,
    /// Frames that could not be received into a buffer because the pool was empty.
    pub rx_no_buffer: u64,
}

impl MemoryPort {
    /// A port whose rings each hold `capacity` frames.
    pub fn new(name: &str, capacity: usize) -> MemoryPort {
        MemoryPort {
            name: name.to_string(),
            rx: FrameRing::new(capacity),
            tx: FrameRing::new(capacity),
            rx_no_buffer: 0,
        }
    }

    /// Queues a frame for reception at time `stamp_ns`; `false` when the ring is full.
    pub fn inject(&mut self, frame: &[u8], stamp_ns: u64) -> bool {
        self.rx.push(frame, stamp_ns)
    }

    /// Frames waiting to be received.
    pub fn rx_pending(&self) -> usize {
        self.rx.len()
    }

    /// Takes every transmitted frame out, oldest first, with the time the pipeline stamped it.
    pub fn drain_tx(&mut self, mut f: impl FnMut(&[u8], u64)) {
        while let Some((frame, stamp)) = self.tx.front() {
            f(frame, stamp);
            self.tx.pop();
        }
    }

    /// Transmitted frames not yet drained.
    pub fn tx_pending(&self) -> usize {
        self.tx.len()
    }
}

impl Port for MemoryPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(
        &mut self,
        pool: &mut Pool,
        out: &mut Vec<PacketBuf>,
        max: usize,
        _now_ns: u64,
    ) -> usize {
        let mut n = 0;
        while n < max {
            let Some((frame, stamp)) = self.rx.front() else { break };
            let Some(mut b) = pool.alloc() else {
                self.rx_no_buffer += 1;
                break;
            };
            if b.fill_from(frame).is_err() {
                // Larger than a buffer: a real NIC would not have delivered it either.
                pool.free(b);
                self.rx.pop();
                continue;
            }
            b.meta.timestamp_ns = stamp;
            out.push(b);
            self.rx.pop();
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, pool: &mut Pool, pkts: &mut Vec<PacketBuf>) -> usize {
        let mut sent = 0;
        let mut keep = 0;
        for i in 0..pkts.len() {
            if self.tx.push(pkts[i].data(), pkts[i].meta.timestamp_ns) {
                sent += 1;
            } else {
                pkts.swap(keep, i);
                keep += 1;
            }
        }
        // Accepted buffers (now at keep..) go back to the pool; refused ones stay in `pkts`.
        while pkts.len() > keep {
            if let Some(b) = pkts.pop() {
                pool.free(b);
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroplane_hugepages::Policy;

    #[test]
    fn inject_receive_transmit_drain() {
        let mut pool = Pool::new(8, Policy::SmallOnly).unwrap();
        let mut p = MemoryPort::new("m", 4);
        assert!(p.inject(&[1, 2, 3], 10));
        assert!(p.inject(&[4, 5], 20));
        let mut burst = Vec::with_capacity(64);
        assert_eq!(p.rx_burst(&mut pool, &mut burst, 64, 0), 2);
        assert_eq!(burst[1].data(), &[4, 5]);
        assert_eq!(burst[1].meta.timestamp_ns, 20);
        assert_eq!(p.tx_burst(&mut pool, &mut burst), 2);
        assert!(burst.is_empty());
        assert_eq!(pool.available(), 8);
        let mut got = Vec::new();
        p.drain_tx(|f, t| got.push((f.to_vec(), t)));
        assert_eq!(got, vec![(vec![1, 2, 3], 10), (vec![4, 5], 20)]);
    }

    #[test]
    fn full_tx_ring_leaves_refused_buffers() {
        let mut pool = Pool::new(8, Policy::SmallOnly).unwrap();
        let mut p = MemoryPort::new("m", 2);
        let mut burst: Vec<PacketBuf> = (0..3)
            .map(|i| {
                let mut b = pool.alloc().unwrap();
                b.fill_from(&[i]).unwrap();
                b
            })
            .collect();
        assert_eq!(p.tx_burst(&mut pool, &mut burst), 2);
        assert_eq!(burst.len(), 1);
        assert_eq!(burst[0].data(), &[2]);
        assert_eq!(pool.available(), 7);
    }
}
