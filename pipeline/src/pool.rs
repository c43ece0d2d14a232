//! A per-worker pool of packet buffers.
//!
//! Each worker owns one pool and every port of that worker allocates from and frees into it, the
//! way a DPDK lcore uses its mempool cache. The pool is single-owner (`&mut self`), so allocation
//! and free are a `Vec` pop/push within preallocated capacity: no locks, no allocator calls.
//!
//! Frames are `&'static mut` slices of a leaked region, so buffers need no lifetimes. Dropping the
//! pool gives the memory back only when every buffer is home (then nothing else can point into
//! it); a pool dropped with buffers still out leaks its region rather than free memory in use.

use crate::buf::{PacketBuf, FRAME_SIZE};
use ferroplane_hugepages::{Backing, Policy, Region};

/// A fixed set of frames and the stack of the free ones.
pub struct Pool {
    free: Vec<PacketBuf>,
    size: usize,
    backing: Backing,
    /// The leaked region: start address and length.
    base: *mut u8,
    len: usize,
}

// SAFETY: the raw pointer is only the address of memory the pool's buffers own; it is used to
// check membership and, when every buffer is back, to unmap.
unsafe impl Send for Pool {}

impl Pool {
    /// A pool of `count` frames of [`FRAME_SIZE`] bytes, on huge pages when the kernel has them.
    pub fn new(count: usize, policy: Policy) -> Result<Pool, ferroplane_hugepages::Error> {
        let region = Region::new(count.max(1) * FRAME_SIZE, policy)?;
        let backing = region.backing();
        let mem = region.leak();
        let (base, len) = (mem.as_mut_ptr(), mem.len());
        let mut free = Vec::with_capacity(count);
        for (i, frame) in mem.chunks_exact_mut(FRAME_SIZE).take(count).enumerate() {
            free.push(PacketBuf::new(frame, i as u32));
        }
        // Pop from the end hands out low indices first: keeps the working set small and dense.
        free.reverse();
        Ok(Pool { free, size: count, backing, base, len })
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

    /// The first byte of the pool's region: frame `i` is at `base + i * FRAME_SIZE`.
    pub fn base(&self) -> *const u8 {
        self.base
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.free.len() == self.size {
            self.free.clear();
            // SAFETY: every buffer (the only references into the region) was just dropped, and
            // base/len/backing are what `Region::leak` gave back in `Pool::new`.
            drop(unsafe { Region::reclaim(self.base, self.len, self.backing) });
        }
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

    #[test]
    fn foreign_buffers_are_refused() {
        let mut a = Pool::new(2, Policy::SmallOnly).unwrap();
        let mut b = Pool::new(2, Policy::SmallOnly).unwrap();
        let x = a.alloc().unwrap();
        if cfg!(debug_assertions) {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.free(x)));
            assert!(r.is_err());
        } else {
            b.free(x);
            assert_eq!(b.available(), 2);
        }
    }

    fn vm_size_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmSize:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn dropping_a_pool_with_every_buffer_home_unmaps_it() {
        let before = vm_size_kib();
        for _ in 0..64 {
            let mut p = Pool::new(8192, Policy::SmallOnly).unwrap();
            let b = p.alloc().unwrap();
            p.free(b);
        }
        // 64 pools of 16 MiB: a leak would add 1 GiB of address space; allow noise from other
        // tests' threads.
        assert!(vm_size_kib() < before + 256 * 1024, "{} -> {} KiB", before, vm_size_kib());
    }
}
