//! ARP for Ethernet and IPv4 (RFC 826).

use super::{arr, be16, put16, Error, Result};

/// An ARP packet with 6-byte hardware and 4-byte protocol addresses (the only kind on Ethernet).
#[derive(Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

pub const ARP_LEN: usize = 28;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Checks the length and that the address sizes are Ethernet's and IPv4's.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < ARP_LEN {
            return Err(Error::Truncated);
        }
        if b[4] != 6 || b[5] != 4 {
            return Err(Error::Malformed);
        }
        Ok(ArpPacket { buf })
    }

    /// Hardware type (1: Ethernet).
    #[inline]
    pub fn htype(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    /// Protocol type (0x0800: IPv4).
    #[inline]
    pub fn ptype(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    #[inline]
    pub fn hlen(&self) -> u8 {
        self.buf.as_ref()[4]
    }

    #[inline]
    pub fn plen(&self) -> u8 {
        self.buf.as_ref()[5]
    }

    #[inline]
    pub fn op(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sha(&self) -> [u8; 6] {
        arr(self.buf.as_ref(), 8)
    }

    /// Sender protocol address.
    #[inline]
    pub fn spa(&self) -> [u8; 4] {
        arr(self.buf.as_ref(), 14)
    }

    /// Target hardware address.
    #[inline]
    pub fn tha(&self) -> [u8; 6] {
        arr(self.buf.as_ref(), 18)
    }

    /// Target protocol address.
    #[inline]
    pub fn tpa(&self) -> [u8; 4] {
        arr(self.buf.as_ref(), 24)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes a whole Ethernet/IPv4 ARP packet into `buf` (at least 28 bytes).
    pub fn emit(
        mut buf: T,
        op: u16,
        sha: [u8; 6],
        spa: [u8; 4],
        tha: [u8; 6],
        tpa: [u8; 4],
    ) -> Result<Self> {
        let b = buf.as_mut();
        if b.len() < ARP_LEN {
            return Err(Error::Truncated);
        }
        put16(b, 0, 1);
        put16(b, 2, 0x0800);
        b[4] = 6;
        b[5] = 4;
        put16(b, 6, op);
        b[8..14].copy_from_slice(&sha);
        b[14..18].copy_from_slice(&spa);
        b[18..24].copy_from_slice(&tha);
        b[24..28].copy_from_slice(&tpa);
        Ok(ArpPacket { buf })
    }
}
