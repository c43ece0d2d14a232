//! Ethernet II frames.

use super::{arr, be16, put16, Error, Result};

pub const ETHERNET_HEADER_LEN: usize = 14;

/// An Ethernet II frame: destination, source, ethertype, payload.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks that the 14-byte header is there.
    pub fn new_checked(buf: T) -> Result<Self> {
        if buf.as_ref().len() < ETHERNET_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(EthernetFrame { buf })
    }

    #[inline]
    pub fn dst(&self) -> [u8; 6] {
        arr(self.buf.as_ref(), 0)
    }

    #[inline]
    pub fn src(&self) -> [u8; 6] {
        arr(self.buf.as_ref(), 6)
    }

    /// The ethertype field (a VLAN TPID when the frame is tagged).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buf.as_ref(), 12)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[ETHERNET_HEADER_LEN..]
    }

    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[0..6].copy_from_slice(&mac);
    }

    #[inline]
    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[6..12].copy_from_slice(&mac);
    }

    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buf.as_mut(), 12, t);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[ETHERNET_HEADER_LEN..]
    }
}
