//! The packet buffer: one frame of a pool, with headroom in front of the data.
//!
//! A [`PacketBuf`] owns one fixed-size frame (`&'static mut [u8]`, carved from a leaked
//! [`ferroplane_hugepages::Region`]) and a window `head..tail` into it that holds the frame's bytes.
//! Receive places data at [`HEADROOM`], so encapsulation prepends outer headers by moving `head`
//! back (no payload copy) and decapsulation strips them by moving it forward: the Fuchsia
//! `packet` crate's "reserve from the outside in, write from the inside out".
//!
//! 256 bytes of headroom hold the largest outer stack ferroplane builds: Ethernet (14), 802.1Q (4),
//! IPv6 (40), UDP (8), Geneve (8) and up to 124 bytes of Geneve options make 198; WireGuard over
//! IPv6 (14, 40, 8 and a 16-byte data header) fits with room to spare.

use crate::meta::Meta;

/// Bytes reserved in front of received data for outer headers.
pub const HEADROOM: usize = 256;
/// Size of one frame in the in-memory pools: headroom plus a 1500-byte MTU frame with VLAN tag
/// and room for jumbo-ish frames up to 1792 bytes of data.
pub const FRAME_SIZE: usize = 2048;

/// One packet: a frame it owns exclusively, the byte window holding the packet, and metadata.
///
/// Invariant: `head <= tail <= frame.len()`. The constructors establish it and every method
/// that moves `head` or `tail` checks the move against it, so the window accessors
/// ([`PacketBuf::data`] and its siblings) index the frame without checking it again. Dropping
/// those checks took the L3 path from 323 to 308 instructions a packet (callgrind, the tunnels
/// bench's plain case).
pub struct PacketBuf {
    frame: &'static mut [u8],
    head: u16,
    tail: u16,
    /// Index of the frame in its pool (the pool's free list and AF_XDP descriptors use it).
    index: u32,
    /// What the stages learned and decided about this packet.
    pub meta: Meta,
}

/// Why a buffer operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufError {
    /// Not enough headroom left to prepend.
    NoHeadroom,
    /// Not enough tailroom to append / set this length.
    NoTailroom,
    /// Asked to strip more bytes than the packet holds.
    TooShort,
}

impl PacketBuf {
    /// Wraps a frame. `frame.len()` must fit in `u16` (frames are at most 64 KiB).
    pub fn new(frame: &'static mut [u8], index: u32) -> PacketBuf {
        assert!(frame.len() <= u16::MAX as usize && frame.len() > HEADROOM);
        PacketBuf { frame, head: HEADROOM as u16, tail: HEADROOM as u16, index, meta: Meta::EMPTY }
    }

    /// Wraps a frame whose bytes `head..head + len` already hold a packet (a device wrote them
    /// there): the receive path's constructor, which writes the buffer once. A window past the
    /// frame's end is cut at it (receive checks the window first, so that never happens there).
    #[inline]
    pub fn with_window(
        frame: &'static mut [u8],
        index: u32,
        head: usize,
        len: usize,
        timestamp_ns: u64,
    ) -> PacketBuf {
        assert!(frame.len() <= u16::MAX as usize && frame.len() > HEADROOM);
        let head = head.min(frame.len());
        let tail = head.saturating_add(len).min(frame.len());
        PacketBuf {
            frame,
            head: head as u16,
            tail: tail as u16,
            index,
            meta: Meta { timestamp_ns, ..Meta::EMPTY },
        }
    }

    /// Resets the window to empty at the standard headroom and clears the metadata, except
    /// `meta.worker`: that says whose pool the buffer belongs to, which no reuse of the buffer
    /// changes (a slow-path reply built in a received buffer must still go back to that pool).
    pub fn reset(&mut self) {
        self.head = HEADROOM as u16;
        self.tail = HEADROOM as u16;
        self.meta = Meta { worker: self.meta.worker, ..Meta::EMPTY };
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// Address of the frame's first byte (pools check that a freed buffer is theirs).
    pub fn frame_ptr(&self) -> *const u8 {
        self.frame.as_ptr()
    }

    /// Capacity of the whole frame.
    pub fn capacity(&self) -> usize {
        self.frame.len()
    }

    /// Bytes that can still be prepended.
    pub fn headroom(&self) -> usize {
        self.head as usize
    }

    /// Bytes that can still be appended.
    pub fn tailroom(&self) -> usize {
        self.frame.len() - self.tail as usize
    }

    /// Offset of the data's first byte inside the frame (AF_XDP descriptors need it).
    pub fn head_offset(&self) -> usize {
        self.head as usize
    }

    pub fn len(&self) -> usize {
        (self.tail - self.head) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.tail == self.head
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        debug_assert!(self.head <= self.tail && self.tail as usize <= self.frame.len());
        // SAFETY: `head <= tail <= frame.len()` is the type's invariant (see above).
        unsafe { self.frame.get_unchecked(self.head as usize..self.tail as usize) }
    }

    /// The packet's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        debug_assert!(self.head <= self.tail && self.tail as usize <= self.frame.len());
        // SAFETY: as in `data`.
        unsafe { self.frame.get_unchecked_mut(self.head as usize..self.tail as usize) }
    }

    /// The bytes and the metadata at once (stages read one and write the other).
    #[inline]
    pub fn data_and_meta(&mut self) -> (&[u8], &mut Meta) {
        debug_assert!(self.head <= self.tail && self.tail as usize <= self.frame.len());
        // SAFETY: as in `data`.
        let data = unsafe { self.frame.get_unchecked(self.head as usize..self.tail as usize) };
        (data, &mut self.meta)
    }

    /// The writable bytes and the metadata at once.
    #[inline]
    pub fn data_mut_and_meta(&mut self) -> (&mut [u8], &mut Meta) {
        debug_assert!(self.head <= self.tail && self.tail as usize <= self.frame.len());
        // SAFETY: as in `data`.
        let data = unsafe { self.frame.get_unchecked_mut(self.head as usize..self.tail as usize) };
        (data, &mut self.meta)
    }

    /// Bytes at frame offset `at..at + len` in front of the packet's head: headers an earlier
    /// stage stripped but left in place (Geneve options, see [`crate::meta::TunnelMeta`]).
    /// `None` unless the whole range is before the head.
    pub fn before_head(&self, at: usize, len: usize) -> Option<&[u8]> {
        if at + len > self.head as usize {
            return None;
        }
        self.frame.get(at..at + len)
    }

    /// Copies `bytes` in as the whole packet, at the standard headroom. Refuses (and leaves the
    /// buffer empty) when they do not fit.
    pub fn fill_from(&mut self, bytes: &[u8]) -> Result<(), BufError> {
        self.reset();
        if bytes.len() > self.tailroom() {
            return Err(BufError::NoTailroom);
        }
        let h = self.head as usize;
        self.frame[h..h + bytes.len()].copy_from_slice(bytes);
        self.tail = (h + bytes.len()) as u16;
        Ok(())
    }

    /// Sets the window to `len` bytes from the standard headroom: for ports that DMA/copy the
    /// frame straight into [`PacketBuf::raw_at_headroom`].
    pub fn set_len_at_headroom(&mut self, len: usize) -> Result<(), BufError> {
        if HEADROOM + len > self.frame.len() {
            return Err(BufError::NoTailroom);
        }
        self.head = HEADROOM as u16;
        self.tail = (HEADROOM + len) as u16;
        Ok(())
    }

    /// Everything from the standard headroom to the end of the frame (a receive target).
    pub fn raw_at_headroom(&mut self) -> &mut [u8] {
        &mut self.frame[HEADROOM..]
    }

    /// Grows the packet at the front by `n` bytes and returns them (for outer headers).
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.head as usize {
            return Err(BufError::NoHeadroom);
        }
        self.head -= n as u16;
        let h = self.head as usize;
        Ok(&mut self.frame[h..h + n])
    }

    /// [`prepend`](Self::prepend) for a header written as one block of a fixed size `B`:
    /// moves the head back by `n` and returns the `B` bytes that end at the old head. The new
    /// header is their last `n` bytes; the `B - n` in front of it are headroom, free to
    /// overwrite. A copy of a fixed size compiles to a few wide moves, where a copy of `n`
    /// bytes dispatches on `n` (the encap stage's templates). `None`, with nothing moved, when
    /// `n > B` or the headroom is shorter than `B`.
    #[inline]
    pub fn prepend_block<const B: usize>(&mut self, n: usize) -> Option<&mut [u8; B]> {
        let h = self.head as usize;
        if n > B || h < B {
            return None;
        }
        self.head = (h - n) as u16;
        debug_assert!(h <= self.frame.len());
        // SAFETY: `h - B .. h` is inside the frame: `B <= h <= tail <= frame.len()`; so the
        // `B` bytes from its start are an array of `B` bytes (cast, not converted: a
        // conversion's `Option` cost a null check per packet).
        Some(unsafe { &mut *(self.frame.as_mut_ptr().add(h - B) as *mut [u8; B]) })
    }

    /// Strips `n` bytes from the front (decapsulation, VLAN pop).
    #[inline]
    pub fn advance(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len() {
            return Err(BufError::TooShort);
        }
        self.head += n as u16;
        Ok(())
    }

    /// Grows the packet at the back by `n` bytes and returns them.
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.tailroom() {
            return Err(BufError::NoTailroom);
        }
        let t = self.tail as usize;
        self.tail += n as u16;
        Ok(&mut self.frame[t..t + n])
    }

    /// Cuts the packet to `len` bytes (Ethernet padding removal, ICMP error truncation).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.tail = self.head + len as u16;
        }
    }
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("index", &self.index)
            .field("head", &self.head)
            .field("len", &self.len())
            .field("meta", &self.meta)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Verdict;

    fn buf() -> PacketBuf {
        PacketBuf::new(Box::leak(vec![0u8; FRAME_SIZE].into_boxed_slice()), 0)
    }

    /// A received window is taken as it is, with fresh metadata; one running past the frame is
    /// cut at its end, never out of bounds.
    #[test]
    fn with_window_takes_the_device_window() {
        let frame = Box::leak(vec![7u8; FRAME_SIZE].into_boxed_slice());
        let b = PacketBuf::with_window(frame, 3, 200, 60, 42);
        assert_eq!((b.head_offset(), b.len(), b.index()), (200, 60, 3));
        assert_eq!((b.meta.timestamp_ns, b.meta.verdict), (42, Verdict::Continue));
        assert_eq!(b.headroom(), 200);
        let frame = Box::leak(vec![0u8; FRAME_SIZE].into_boxed_slice());
        let b = PacketBuf::with_window(frame, 0, FRAME_SIZE - 10, 100, 0);
        assert_eq!((b.head_offset(), b.len()), (FRAME_SIZE - 10, 10));
    }

    #[test]
    fn headroom_prepend_and_advance_round_trip() {
        let mut b = buf();
        b.fill_from(&[1, 2, 3, 4]).unwrap();
        assert_eq!(b.headroom(), HEADROOM);
        b.prepend(4).unwrap().copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(b.data(), &[9, 9, 9, 9, 1, 2, 3, 4]);
        b.advance(4).unwrap();
        assert_eq!(b.data(), &[1, 2, 3, 4]);
        assert_eq!(b.prepend(HEADROOM + 1).unwrap_err(), BufError::NoHeadroom);
        assert_eq!(b.advance(5).unwrap_err(), BufError::TooShort);
    }

    #[test]
    fn a_block_prepend_puts_the_header_right_before_the_data() {
        let mut b = buf();
        b.fill_from(&[1, 2, 3]).unwrap();
        let block = b.prepend_block::<8>(2).unwrap();
        *block = [7, 7, 7, 7, 7, 7, 9, 8];
        assert_eq!(b.data(), &[9, 8, 1, 2, 3]);
        assert_eq!(b.headroom(), HEADROOM - 2);
        assert!(b.prepend_block::<8>(9).is_none(), "longer than the block");
        b.advance(2).unwrap();
        b.prepend(HEADROOM - 4).unwrap();
        assert!(b.prepend_block::<8>(2).is_none(), "4 bytes of headroom left");
        assert_eq!(b.headroom(), 4);
    }

    #[test]
    fn refilling_keeps_the_owning_worker_even_when_refused() {
        let mut b = buf();
        b.fill_from(&[1; 60]).unwrap();
        b.meta.worker = 3;
        b.meta.in_port = 5;
        b.fill_from(&[2; 60]).unwrap();
        assert_eq!((b.meta.worker, b.meta.in_port), (3, 0));
        assert_eq!(b.fill_from(&[0; FRAME_SIZE]).unwrap_err(), BufError::NoTailroom);
        assert_eq!(b.meta.worker, 3);
    }

    #[test]
    fn fill_refuses_oversize_and_truncate_cuts() {
        let mut b = buf();
        assert_eq!(b.fill_from(&[0; FRAME_SIZE]).unwrap_err(), BufError::NoTailroom);
        assert!(b.is_empty());
        b.fill_from(&[5; 100]).unwrap();
        b.truncate(60);
        assert_eq!(b.len(), 60);
        b.truncate(80);
        assert_eq!(b.len(), 60);
        assert_eq!(b.append(FRAME_SIZE).unwrap_err(), BufError::NoTailroom);
    }
}
