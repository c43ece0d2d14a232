//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) headers: type, code, checksum, the 4-byte rest of the
//! header (identifier and sequence, MTU, pointer ...) and the body.

use super::{be16, be32, l4_checksum, put16, Error, PseudoHeader, Result};
use crate::checksum;

macro_rules! icmp_view {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug)]
        pub struct $name<T: AsRef<[u8]>> {
            buf: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Checks that the 8-byte header is there; the message is the whole buffer.
            pub fn new_checked(buf: T) -> Result<Self> {
                if buf.as_ref().len() < 8 {
                    return Err(Error::Truncated);
                }
                Ok($name { buf })
            }

            #[inline]
            pub fn msg_type(&self) -> u8 {
                self.buf.as_ref()[0]
            }

            #[inline]
            pub fn code(&self) -> u8 {
                self.buf.as_ref()[1]
            }

            #[inline]
            pub fn checksum(&self) -> u16 {
                be16(self.buf.as_ref(), 2)
            }

            /// The four bytes after the checksum (echo id/seq, next-hop MTU, pointer ...).
            #[inline]
            pub fn rest(&self) -> u32 {
                be32(self.buf.as_ref(), 4)
            }

            #[inline]
            pub fn payload(&self) -> &[u8] {
                &self.buf.as_ref()[8..]
            }
        }
    };
}

icmp_view!(Icmpv4Packet, "An ICMPv4 message (checksum over the message alone).");
icmp_view!(Icmpv6Packet, "An ICMPv6 message (checksum includes the IPv6 pseudo-header).");

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(self.buf.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn fill_checksum(&mut self) {
        let b = self.buf.as_mut();
        put16(b, 2, 0);
        let c = checksum::checksum(b);
        put16(b, 2, c);
    }
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub fn verify_checksum(&self, src: [u8; 16], dst: [u8; 16]) -> bool {
        let ph = PseudoHeader::V6 { src, dst };
        l4_checksum(&ph, 58, self.buf.as_ref(), 2) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn fill_checksum(&mut self, src: [u8; 16], dst: [u8; 16]) {
        let c = l4_checksum(&PseudoHeader::V6 { src, dst }, 58, self.buf.as_ref(), 2);
        put16(self.buf.as_mut(), 2, c);
    }
}
