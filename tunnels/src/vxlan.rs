//! VXLAN (RFC 7348 section 5): an 8-byte header after UDP (destination port 4789), carrying a
//! 24-bit VNI and the inner Ethernet frame.
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//!
//! Receivers must check the I flag and ignore the reserved bits (RFC 7348 5: "reserved fields
//! MUST be set to zero on transmission and ignored on receipt").

/// The IANA port (RFC 7348 5). iproute2's default is still Linux's old 8472.
pub const PORT: u16 = 4789;
/// Header length.
pub const HEADER_LEN: usize = 8;
/// The "VNI is valid" flag.
pub const FLAG_I: u8 = 0x08;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Why a VXLAN header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer than 8 bytes, or no inner Ethernet header after them.
    Truncated,
    /// The I flag is clear: the VNI is not valid (RFC 7348 5).
    NoVni,
}

/// A VXLAN header and what follows it, bounds-checked once.
#[derive(Debug)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Checks the length (header plus an inner Ethernet header) and the I flag.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN + 14 {
            return Err(Error::Truncated);
        }
        if b[0] & FLAG_I == 0 {
            return Err(Error::NoVni);
        }
        Ok(VxlanPacket { buf })
    }

    #[inline]
    pub fn vni(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn inner(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

/// Writes a VXLAN header for `vni` into `out[..8]`; false when `out` is too short or the VNI does
/// not fit in 24 bits.
#[inline]
pub fn emit(out: &mut [u8], vni: u32) -> bool {
    let Some(h) = out.get_mut(..HEADER_LEN) else { return false };
    if vni > MAX_VNI {
        return false;
    }
    let v = vni.to_be_bytes();
    h.copy_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of RFC 7348's format with VNI 0x123456, as Wireshark shows it.
    const VNI_123456: [u8; 8] = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0];

    #[test]
    fn header_vector_round_trip() {
        let mut b = [0u8; HEADER_LEN + 14];
        assert!(emit(&mut b, 0x12_3456));
        assert_eq!(b[..8], VNI_123456);
        let p = VxlanPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.vni(), 0x12_3456);
        assert_eq!(p.inner().len(), 14);
    }

    #[test]
    fn reserved_bits_are_ignored_and_bad_headers_refused() {
        let mut b = [0xffu8; HEADER_LEN + 14];
        b[4..7].copy_from_slice(&[0, 0, 7]);
        assert_eq!(VxlanPacket::new_checked(&b[..]).unwrap().vni(), 7);
        b[0] = 0xf7; // I clear, every reserved bit set
        assert_eq!(VxlanPacket::new_checked(&b[..]).unwrap_err(), Error::NoVni);
        assert_eq!(VxlanPacket::new_checked(&b[..HEADER_LEN + 13]).unwrap_err(), Error::Truncated);
        assert!(!emit(&mut [0u8; 7], 1));
        assert!(!emit(&mut [0u8; 8], MAX_VNI + 1));
    }
}
