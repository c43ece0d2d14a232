//! Zero-copy, bounds-checked header views over byte slices, in the manner of smoltcp's `wire`.
//!
//! A view wraps a buffer (`&[u8]` to read, `&mut [u8]` to write) and is made only by
//! `new_checked`, which proves once that every fixed field (and, where a header has a length
//! field, the whole header) lies inside the buffer. Getters then read fixed offsets and cannot
//! panic; nothing is copied and nothing allocates. `payload()` is bounded by the header's own
//! length fields, so a lying length is an error at `new_checked`, never an out-of-bounds read.
//!
//! The parse stage ([`crate::parse`]) is the fast path's one-pass reader; these views serve the
//! stages that rewrite headers (tunnels, NAT) and the slow path, and they are checked against
//! etherparse in the tests.

pub mod arp;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;

#[cfg(test)]
mod tests;

pub use arp::ArpPacket;
pub use ethernet::{EthernetFrame, ETHERNET_HEADER_LEN};
pub use icmp::{Icmpv4Packet, Icmpv6Packet};
pub use ipv4::Ipv4Packet;
pub use ipv6::{Ipv6Packet, UpperLayer, MAX_EXTENSION_HEADERS};
pub use tcp::TcpPacket;
pub use udp::UdpPacket;
pub use vlan::{skip_vlan_tags, VlanTag};

/// Why a buffer is not a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header (or than its own length fields say).
    Truncated,
    /// A field holds a value the header cannot have (IHL < 5, data offset < 5, ...).
    Malformed,
    /// The version field is not the one this view reads.
    BadVersion,
    /// An IPv6 extension-header chain longer than [`MAX_EXTENSION_HEADERS`].
    TooManyExtensions,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated header",
            Error::Malformed => "malformed header field",
            Error::BadVersion => "wrong IP version",
            Error::TooManyExtensions => "IPv6 extension header chain too long",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// The pseudo-header sum an L4 checksum covers, for either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudoHeader {
    V4 { src: [u8; 4], dst: [u8; 4] },
    V6 { src: [u8; 16], dst: [u8; 16] },
}

impl PseudoHeader {
    fn sum(&self, proto: u8, len: usize) -> u32 {
        match self {
            PseudoHeader::V4 { src, dst } => {
                crate::checksum::pseudo_header_v4(*src, *dst, proto, len as u16)
            }
            PseudoHeader::V6 { src, dst } => {
                crate::checksum::pseudo_header_v6(src, dst, proto, len as u32)
            }
        }
    }
}

/// The checksum of `seg` (an L4 header plus payload, its checksum field zero or not) under `ph`.
fn l4_checksum(ph: &PseudoHeader, proto: u8, seg: &[u8], check_at: usize) -> u16 {
    use crate::checksum::{combine, finish, sum};
    // Everything but the checksum field itself (its offset is even, so words stay aligned).
    let acc = combine(sum(&seg[..check_at]), sum(&seg[check_at + 2..]));
    finish(combine(acc, ph.sum(proto, seg.len())))
}
