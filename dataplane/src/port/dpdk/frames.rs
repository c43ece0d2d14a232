//! The frames of one worker's pool as DPDK sees them: address arithmetic between mbuf buffers and
//! [`PacketBuf`] frames, and the IO addresses DPDK needs for them.
//!
//! Every frame of the pool's region is, at any time, owned by exactly one of: the pool's free
//! list, a [`PacketBuf`] in the pipeline, or one mbuf header of this worker's DPDK mempools (its
//! `buf_addr` points into the frame). The port moves frames between these owners; this module
//! only knows where frames are. A receive mbuf may also be parked with a frame that a buffer or
//! the pool owns (see the `parked` module): it then belongs to whoever takes it out of its slot,
//! and points at a frame it does not own.

use ferroplane_pipeline::buf::{BufError, PacketBuf, FRAME_SIZE, HEADROOM};
use ferroplane_pipeline::pool::Pool;

/// How an mbuf that waits for a received packet points into its frame. A PMD receives at
/// `buf_addr + RTE_PKTMBUF_HEADROOM` (128), so `buf_addr = frame + 128` puts received bytes at
/// `frame + 256`: exactly [`HEADROOM`], where the pipeline expects them.
pub(crate) const RX_BUF_OFFSET: usize = HEADROOM - MBUF_HEADROOM;
/// DPDK's compile-time `RTE_PKTMBUF_HEADROOM` (Debian's build: 128).
pub(crate) const MBUF_HEADROOM: usize = 128;
/// An receive mbuf's `buf_len`: from [`RX_BUF_OFFSET`] to the end of the frame, so no PMD can
/// write past the frame (at most FRAME_SIZE - HEADROOM = 1792 bytes of packet).
pub(crate) const RX_BUF_LEN: usize = FRAME_SIZE - RX_BUF_OFFSET;

/// IO addresses of the region's frames, for devices that DMA.
#[derive(Debug, Clone)]
pub(crate) enum IovaMap {
    /// IOVA as VA (vdevs, VFIO with an IOMMU): the address is the IO address.
    Va,
    /// Physical addresses, page by page (`1 << page_shift` bytes each, from the region's base).
    Pages { page_shift: u32, iovas: Vec<u64> },
}

/// One worker's pool region.
#[derive(Debug, Clone)]
pub(crate) struct FrameRegion {
    base: usize,
    frames: usize,
    iova: IovaMap,
}

impl FrameRegion {
    /// The region of `pool`, found from one of its buffers: buffer `i` is frame `i` of one
    /// contiguous region (see `Pool::new`), with the IO addresses `iova` gives for it (called
    /// with the region's base and length; its error is the caller's). Fails when the pool is
    /// empty.
    pub fn of(
        pool: &mut Pool,
        iova: impl FnOnce(usize, usize) -> Result<IovaMap, String>,
    ) -> Result<FrameRegion, String> {
        let b = pool.alloc().ok_or_else(|| "the worker's pool is empty".to_string())?;
        let base = b.frame_ptr() as usize - b.index() as usize * FRAME_SIZE;
        pool.free(b);
        let frames = pool.size();
        Ok(FrameRegion { base, frames, iova: iova(base, frames * FRAME_SIZE)? })
    }

    pub fn base(&self) -> usize {
        self.base
    }

    /// Frames in the region.
    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn len(&self) -> usize {
        self.frames * FRAME_SIZE
    }

    /// The index of the frame that holds `addr`, if it is in this region.
    #[inline]
    pub fn frame_of(&self, addr: usize) -> Option<usize> {
        let off = addr.checked_sub(self.base)?;
        let i = off / FRAME_SIZE;
        (i < self.frames).then_some(i)
    }

    /// Address of frame `i`'s first byte.
    #[inline]
    pub fn frame_addr(&self, i: usize) -> usize {
        self.base + i * FRAME_SIZE
    }

    /// Whether `b` is one of this region's buffers.
    #[inline]
    pub fn owns(&self, b: &PacketBuf) -> bool {
        self.frame_of(b.frame_ptr() as usize) == Some(b.index() as usize)
    }

    /// The IO address of `addr` (inside the region).
    #[inline]
    pub fn iova(&self, addr: usize) -> u64 {
        match &self.iova {
            IovaMap::Va => addr as u64,
            IovaMap::Pages { page_shift, iovas } => {
                // Shifts, not divisions: this runs for every packet in physical-address mode.
                let off = addr - self.base;
                let mask = (1usize << page_shift) - 1;
                iovas.get(off >> page_shift).map_or(u64::MAX, |p| p + (off & mask) as u64)
            }
        }
    }

    /// Makes a buffer of frame `i`.
    ///
    /// # Safety
    /// Frame `i` must be in the region and owned by the caller (it was attached to an mbuf that
    /// no longer points at it, or otherwise out of every other owner's hands): the buffer
    /// becomes its only owner.
    #[inline]
    pub unsafe fn take(&self, i: usize) -> PacketBuf {
        debug_assert!(i < self.frames);
        let p = self.frame_addr(i) as *mut u8;
        // SAFETY: the caller guarantees exclusive ownership of these FRAME_SIZE bytes, which
        // lie in the pool's leaked ('static) region.
        let frame = unsafe { std::slice::from_raw_parts_mut(p, FRAME_SIZE) };
        PacketBuf::new(frame, i as u32)
    }

    /// Makes a buffer of frame `i` holding the packet at `head..head + len` of it, received at
    /// `timestamp_ns`.
    ///
    /// # Safety
    /// As [`FrameRegion::take`].
    #[inline]
    pub unsafe fn take_window(
        &self,
        i: usize,
        head: usize,
        len: usize,
        timestamp_ns: u64,
    ) -> PacketBuf {
        debug_assert!(i < self.frames && head + len <= FRAME_SIZE);
        let p = self.frame_addr(i) as *mut u8;
        // SAFETY: as in `take`.
        let frame = unsafe { std::slice::from_raw_parts_mut(p, FRAME_SIZE) };
        PacketBuf::with_window(frame, i as u32, head, len, timestamp_ns)
    }
}

/// Sets `b`'s window to `len` bytes from offset `head` of its frame (an mbuf's data, where the
/// device or the peer put it), with the standard headroom API only.
pub(crate) fn set_window(b: &mut PacketBuf, head: usize, len: usize) -> Result<(), BufError> {
    if head + len > b.capacity() {
        return Err(BufError::NoTailroom);
    }
    if head >= HEADROOM {
        b.set_len_at_headroom(head - HEADROOM + len)?;
        b.advance(head - HEADROOM)
    } else {
        b.set_len_at_headroom(b.capacity() - HEADROOM)?;
        b.prepend(HEADROOM - head)?;
        b.truncate(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroplane_hugepages::Policy;

    #[test]
    fn region_finds_frames_and_windows_land_where_the_mbuf_had_them() {
        let mut pool = Pool::new(16, Policy::SmallOnly).unwrap();
        let r = FrameRegion::of(&mut pool, |_, _| Ok(IovaMap::Va)).unwrap();
        let b = pool.alloc().unwrap();
        assert!(r.owns(&b));
        let a = b.frame_ptr() as usize;
        assert_eq!(r.frame_of(a + 2047), Some(b.index() as usize));
        assert_eq!(r.frame_of(r.base() + r.len()), None);
        assert_eq!(r.frame_of(r.base().wrapping_sub(1)), None);
        assert_eq!(r.iova(a + 5), a as u64 + 5);
        pool.free(b);
        // Frame 3 out of the pool for good, so that `take` below is its only owner.
        let mut out = Vec::new();
        while let Some(b) = pool.alloc() {
            out.push(b);
        }
        let three = out.iter().position(|b| b.index() == 3).unwrap();
        out.swap_remove(three);
        // SAFETY: frame 3 left the pool above and its buffer was forgotten: nothing else owns it.
        let mut t = unsafe { r.take(3) };
        for (head, len) in [(256, 60), (384, 1000), (128, 1920), (0, 2048), (58, 100), (256, 1792)]
        {
            set_window(&mut t, head, len).unwrap();
            assert_eq!((t.head_offset(), t.len()), (head, len), "head {head} len {len}");
        }
        assert!(set_window(&mut t, 1000, 1049).is_err());
        assert_eq!(RX_BUF_OFFSET + MBUF_HEADROOM, HEADROOM);
        assert_eq!(RX_BUF_OFFSET + RX_BUF_LEN, FRAME_SIZE);
    }

    #[test]
    fn physical_iova_is_looked_up_per_page() {
        let mut pool = Pool::new(8, Policy::SmallOnly).unwrap();
        let r = FrameRegion::of(&mut pool, |_, len| {
            Ok(IovaMap::Pages {
                page_shift: 12,
                iovas: (0..len.div_ceil(4096) as u64)
                    .map(|i| 0x1_0000_0000 + i * 0x10_0000)
                    .collect(),
            })
        })
        .unwrap();
        assert_eq!(r.iova(r.base() + 4096 + 7), 0x1_0010_0007);
        assert_eq!(r.iova(r.base() + 10), 0x1_0000_000a);
    }
}
