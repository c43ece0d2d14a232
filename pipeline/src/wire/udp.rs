//! UDP (RFC 768).

use super::{be16, l4_checksum, put16, Error, PseudoHeader, Result};

/// A UDP datagram, bounded by its own length field.
#[derive(Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Checks `8 <= length <= buffer`.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < 8 {
            return Err(Error::Truncated);
        }
        let len = be16(b, 4) as usize;
        if len < 8 {
            return Err(Error::Malformed);
        }
        if len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(UdpPacket { buf })
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    #[inline]
    pub fn len(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    /// Never true for a checked datagram (the length is at least 8); for API symmetry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[8..self.len() as usize]
    }

    /// True when the checksum verifies; a zero checksum over IPv4 means "not computed".
    pub fn verify_checksum(&self, ph: &PseudoHeader) -> bool {
        if self.checksum() == 0 {
            return matches!(ph, PseudoHeader::V4 { .. });
        }
        let want = match l4_checksum(ph, 17, &self.buf.as_ref()[..self.len() as usize], 6) {
            0 => 0xffff,
            c => c,
        };
        want == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 0, p);
    }

    pub fn set_dst_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 2, p);
    }

    /// Computes the checksum (0 is sent as 0xFFFF, RFC 768).
    pub fn fill_checksum(&mut self, ph: &PseudoHeader) {
        let len = self.len() as usize;
        let c = match l4_checksum(ph, 17, &self.buf.as_ref()[..len], 6) {
            0 => 0xffff,
            c => c,
        };
        put16(self.buf.as_mut(), 6, c);
    }
}
