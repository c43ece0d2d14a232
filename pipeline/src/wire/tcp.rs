//! TCP headers (RFC 9293).

use super::{be16, be32, l4_checksum, put16, Error, PseudoHeader, Result};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// A TCP segment: header with options, and payload (the rest of the buffer, which the caller
/// bounds by the IP length).
#[derive(Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Checks `5 <= data offset` and the whole header within the buffer.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < 20 {
            return Err(Error::Truncated);
        }
        let hl = (b[12] >> 4) as usize * 4;
        if hl < 20 {
            return Err(Error::Malformed);
        }
        if hl > b.len() {
            return Err(Error::Truncated);
        }
        Ok(TcpPacket { buf })
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
    pub fn seq(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }

    #[inline]
    pub fn ack(&self) -> u32 {
        be32(self.buf.as_ref(), 8)
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        (self.buf.as_ref()[12] >> 4) as usize * 4
    }

    /// The eight flag bits (CWR ECE URG ACK PSH RST SYN FIN).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[13]
    }

    #[inline]
    pub fn window(&self) -> u16 {
        be16(self.buf.as_ref(), 14)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 16)
    }

    #[inline]
    pub fn urgent(&self) -> u16 {
        be16(self.buf.as_ref(), 18)
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[20..self.header_len()]
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }

    pub fn verify_checksum(&self, ph: &PseudoHeader) -> bool {
        l4_checksum(ph, 6, self.buf.as_ref(), 16) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 0, p);
    }

    pub fn set_dst_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 2, p);
    }

    pub fn fill_checksum(&mut self, ph: &PseudoHeader) {
        let c = l4_checksum(ph, 6, self.buf.as_ref(), 16);
        put16(self.buf.as_mut(), 16, c);
    }
}
