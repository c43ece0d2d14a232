//! IPv4 headers with options (RFC 791).

use super::{arr, be16, put16, Error, Result};
use crate::checksum;

/// An IPv4 packet: header (20-60 bytes, options included) and payload up to `total_length`.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version 4, IHL >= 5, the header within the buffer, and
    /// `header length <= total_length <= buffer` (bytes past `total_length` are link padding).
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < 20 {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(Error::BadVersion);
        }
        let hl = (b[0] & 0x0f) as usize * 4;
        if hl < 20 {
            return Err(Error::Malformed);
        }
        let total = be16(b, 2) as usize;
        if hl > b.len() || total > b.len() {
            return Err(Error::Truncated);
        }
        if total < hl {
            return Err(Error::Malformed);
        }
        Ok(Ipv4Packet { buf })
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        (self.buf.as_ref()[0] & 0x0f) as usize * 4
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buf.as_ref()[1] >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buf.as_ref()[1] & 3
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    /// Don't fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.buf.as_ref()[6] & 0x40 != 0
    }

    /// More fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.buf.as_ref()[6] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buf.as_ref(), 6) & 0x1fff) * 8
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[8]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[9]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }

    #[inline]
    pub fn src(&self) -> [u8; 4] {
        arr(self.buf.as_ref(), 12)
    }

    #[inline]
    pub fn dst(&self) -> [u8; 4] {
        arr(self.buf.as_ref(), 16)
    }

    /// The options bytes (empty when IHL is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[20..self.header_len()]
    }

    /// True when the header checksum verifies (RFC 1071).
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(&self.buf.as_ref()[..self.header_len()])
    }

    /// The payload, up to `total_length` (link-layer padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the TTL and updates the checksum incrementally (RFC 1624).
    pub fn set_ttl(&mut self, ttl: u8) {
        let b = self.buf.as_mut();
        let old = be16(b, 8);
        b[8] = ttl;
        let new = be16(b, 8);
        let c = checksum::update16(be16(b, 10), old, new);
        put16(b, 10, c);
    }

    pub fn set_src(&mut self, a: [u8; 4]) {
        self.buf.as_mut()[12..16].copy_from_slice(&a);
    }

    pub fn set_dst(&mut self, a: [u8; 4]) {
        self.buf.as_mut()[16..20].copy_from_slice(&a);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buf.as_mut();
        put16(b, 10, 0);
        let c = checksum::checksum(&b[..hl]);
        put16(b, 10, c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), self.total_len() as usize);
        &mut self.buf.as_mut()[hl..total]
    }
}
