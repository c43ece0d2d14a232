//! Receive mbufs parked with their frames, so that transmit can send a forwarded packet in the
//! very mbuf it arrived in.
//!
//! The exchange of the module above costs, per forwarded packet, a re-arm and mempool put on
//! receive and a carrier allocation and attach on transmit. A packet that is received and
//! forwarded within one poll needs neither: receive leaves the mbuf *parked* with the frame
//! (its `buf_addr` still points into it, it is in no mempool) and records it here under the
//! frame's index; transmit, on any port of the same worker, finds it by the packet's frame,
//! sets its data window and hands it to the device, which frees it, with the frame, back to its
//! receive mempool: the state both started in. What is not transmitted by the start of the next
//! poll (dropped, punted, refused by a device) is taken back by the receiving port's `reclaim`
//! (or its next receive, for callers that do not reclaim), re-armed with a spare frame and put
//! back, as the exchange would have done at once, so a mempool is never short by more than the
//! bursts in flight.
//!
//! Entries are valid while the frame's owner holds it; whoever takes an entry out owns the mbuf.
//! Only the thread that holds the worker's `&mut Pool` touches a table (every port call that
//! reads or writes it takes that pool and checks it is the region's), so the atomics are only
//! there to make sharing the table between the worker's ports sound: relaxed loads and stores,
//! plain moves on x86.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ferroplane_dpdk_sys as sys;

/// One worker region's parked mbufs, indexed by frame.
pub(crate) struct Parked {
    slots: Box<[AtomicPtr<sys::rte_mbuf>]>,
    /// Non-null slots: 0 lets a receive skip looking for mbufs to take back.
    count: AtomicUsize,
}

impl Parked {
    /// The mbuf parked with frame `f`, or null.
    #[inline]
    pub fn get(&self, f: usize) -> *mut sys::rte_mbuf {
        self.slots.get(f).map_or(std::ptr::null_mut(), |s| s.load(Ordering::Relaxed))
    }

    /// Parks `m` with frame `f`, in place of `prev`, what the slot held (the caller has dealt
    /// with it; null when the slot was empty).
    #[inline]
    pub fn park(&self, f: usize, m: *mut sys::rte_mbuf, prev: *mut sys::rte_mbuf) {
        if let Some(s) = self.slots.get(f) {
            if prev.is_null() {
                self.add(1);
            }
            s.store(m, Ordering::Relaxed);
        }
    }

    /// Takes `m` out of frame `f`'s slot if it is still there.
    #[inline]
    pub fn take_if(&self, f: usize, m: *mut sys::rte_mbuf) -> bool {
        match self.slots.get(f) {
            Some(s) if s.load(Ordering::Relaxed) == m && !m.is_null() => {
                s.store(std::ptr::null_mut(), Ordering::Relaxed);
                self.add(usize::MAX);
                true
            }
            _ => false,
        }
    }

    /// Mbufs parked in the whole region.
    #[inline]
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Adds `n` (wrapping: `usize::MAX` takes one away). Single writer, as the slots.
    #[inline]
    fn add(&self, n: usize) {
        self.count.store(self.count.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

/// The table of the region at `base` with `frames` frames: one per region, shared by every
/// port (every device's queue) over it, so a packet received on one port is found by the
/// transmit of another.
pub(crate) fn for_region(base: usize, frames: usize) -> Arc<Parked> {
    static TABLES: Mutex<Vec<(usize, Weak<Parked>)>> = Mutex::new(Vec::new());
    let mut t = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    t.retain(|(_, w)| w.strong_count() > 0);
    if let Some(p) = t.iter().find(|(b, _)| *b == base).and_then(|(_, w)| w.upgrade()) {
        return p;
    }
    let slots = (0..frames).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect();
    let p = Arc::new(Parked { slots, count: AtomicUsize::new(0) });
    t.push((base, Arc::downgrade(&p)));
    p
}
