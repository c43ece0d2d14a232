//! IPv6 fixed headers and extension-header chains (RFC 8200, RFC 4302 for AH).

use super::{arr, be16, be32, Error, Result};

/// Extension headers walked before giving up: RFC 8200 sets no bound, a router must.
pub const MAX_EXTENSION_HEADERS: usize = 8;

pub const HOP_BY_HOP: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const AUTH: u8 = 51;
pub const DEST_OPTS: u8 = 60;

/// An IPv6 packet: the 40-byte fixed header and a payload of `payload_length` bytes.
#[derive(Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

/// Where the upper-layer header starts, past every extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Protocol number of the upper layer (6 TCP, 17 UDP, 58 ICMPv6, 4/41 tunnels ...).
    pub protocol: u8,
    /// Offset of its header from the start of the IPv6 header.
    pub offset: usize,
    /// True when a fragment header with a non-zero offset was crossed: no L4 header follows.
    pub later_fragment: bool,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks version 6 and that `40 + payload_length` bytes are present.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < 40 {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Error::BadVersion);
        }
        if 40 + be16(b, 4) as usize > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Ipv6Packet { buf })
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be16(self.buf.as_ref(), 0) >> 4) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.buf.as_ref(), 0) & 0x000f_ffff
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[6]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[7]
    }

    #[inline]
    pub fn src(&self) -> [u8; 16] {
        arr(self.buf.as_ref(), 8)
    }

    #[inline]
    pub fn dst(&self) -> [u8; 16] {
        arr(self.buf.as_ref(), 24)
    }

    /// The payload (extension headers included), `payload_length` bytes.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[40..40 + self.payload_len() as usize]
    }

    /// Walks the extension headers to the upper layer. A chain that runs past the payload is
    /// `Truncated`; one longer than [`MAX_EXTENSION_HEADERS`] is `TooManyExtensions`.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let end = 40 + self.payload_len() as usize;
        let b = &self.buf.as_ref()[..end];
        let mut next = self.next_header();
        let mut off = 40;
        let mut later_fragment = false;
        for _ in 0..=MAX_EXTENSION_HEADERS {
            let len = match next {
                HOP_BY_HOP | ROUTING | DEST_OPTS => {
                    if off + 2 > end {
                        return Err(Error::Truncated);
                    }
                    (b[off + 1] as usize + 1) * 8
                }
                FRAGMENT => {
                    if off + 8 > end {
                        return Err(Error::Truncated);
                    }
                    later_fragment |= be16(b, off + 2) & 0xfff8 != 0;
                    8
                }
                AUTH => {
                    if off + 2 > end {
                        return Err(Error::Truncated);
                    }
                    (b[off + 1] as usize + 2) * 4
                }
                protocol => return Ok(UpperLayer { protocol, offset: off, later_fragment }),
            };
            if off + len > end {
                return Err(Error::Truncated);
            }
            next = b[off];
            off += len;
        }
        Err(Error::TooManyExtensions)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_hop_limit(&mut self, h: u8) {
        self.buf.as_mut()[7] = h;
    }

    pub fn set_src(&mut self, a: [u8; 16]) {
        self.buf.as_mut()[8..24].copy_from_slice(&a);
    }

    pub fn set_dst(&mut self, a: [u8; 16]) {
        self.buf.as_mut()[24..40].copy_from_slice(&a);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = 40 + self.payload_len() as usize;
        &mut self.buf.as_mut()[40..end]
    }
}
