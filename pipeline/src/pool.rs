//! A per-worker pool of packet buffers.
//!
//! Each worker owns one pool and every port of that worker allocates from and frees into it, the
//! way a DPDK lcore uses its mempool cache. The pool is single-owner (`&mut self`), so allocation
//! and free are a `Vec` pop/push within preallocated capacity: no locks, no allocator calls.

use crate::buf::{PacketBuf, FRAME_SIZE};
use ferroplane_hugepages::{Backing, Policy, Region};

/// A fixed set of frames and the stack of the free ones.
pub struct Pool {
    free: Vec<PacketBuf>,
    size: usize,
    backing: Backing,
}

impl Pool {
    /// A pool of `count` frames of [`FRAME_SIZE`] bytes, on huge pages when the kernel has them.
    pub fn new(count: usize, policy: Policy) -> Result<Pool, ferroplane_hugepages::Error> {
        let region = Region::new(count.max(1) * FRAME_SIZE, policy)?;
        let backing = region.backing();
        let mem = region.leak();
        let mut free = Vec::with_capacity(count);
        for (i, frame) in mem.chunks_exact_mut(FRAME_SIZE).take(count).enumerate() {
            free.push(PacketBuf::new(frame, i as u32));
        }
        // Pop from the end hands out low indices first: keeps the working set small and dense.
        free.reverse();
        Ok(Pool { free, size: count, backing })
    }

    /// Takes an empty buffer, or `None` when every frame is in use (the caller counts it).
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        let mut b = self.free.pop()?;
        b.reset();
        Some(b)
    }

    /// Returns a buffer. Never allocates: the free stack has capacity for every frame.
    #[inline]
    pub fn free(&mut self, buf: PacketBuf) {
        debug_assert!(
            self.free.len() < self.size,
            "more frees than frames: a buffer was duplicated"
        );
        if self.free.len() < self.free.capacity() {
            self.free.push(buf);
        }
    }

    /// Frames currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Frames in all.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn backing(&self) -> Backing {
        self.backing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_until_empty_then_free_all() {
        let mut p = Pool::new(8, Policy::SmallOnly).unwrap();
        let bufs: Vec<_> = std::iter::from_fn(|| p.alloc()).collect();
        assert_eq!(bufs.len(), 8);
        assert!(p.alloc().is_none());
        let mut idx: Vec<u32> = bufs.iter().map(|b| b.index()).collect();
        idx.sort();
        assert_eq!(idx, (0..8).collect::<Vec<_>>());
        for b in bufs {
            p.free(b);
        }
        assert_eq!(p.available(), 8);
    }
}
