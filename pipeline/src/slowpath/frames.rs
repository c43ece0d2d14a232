//! Builders and readers for the frames the slow path answers with: ARP (RFC 826), neighbour
//! discovery (RFC 4861), ICMP echo and errors (RFC 792, RFC 1812 4.3, RFC 4443), IPv4
//! fragmentation (RFC 791).
//!
//! They work on raw byte offsets of well-known fixed layouts; inputs come from the parse stage,
//! which has already checked the IP header and the presence of the L4 header. Every read that is
//! not covered by that is a checked `get`, and a short buffer means `None`, never a panic.

use crate::buf::{PacketBuf, FRAME_SIZE, HEADROOM};
use crate::checksum;
use crate::tables::MacAddr;

pub const ETH_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
/// RFC 1812 4.3.2.3: an ICMPv4 error holds as much of the original as fits in 576 bytes.
const ICMP4_ERROR_MAX: usize = 576;
/// RFC 4443 2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU.
const ICMP6_ERROR_MAX: usize = 1280;
/// TTL / hop limit of packets the slow path originates (Linux's default).
pub const ORIGIN_TTL: u8 = 64;

/// Largest frame the slow path builds out of thin air (it ends up in a pool buffer).
pub const FRAME_CAP: usize = FRAME_SIZE - HEADROOM;

/// A frame built by the slow path, inline so that handing it to a worker allocates nothing.
#[derive(Clone)]
pub struct Frame {
    len: u16,
    bytes: [u8; FRAME_CAP],
}

impl Frame {
    /// Copies `data` in; `None` when it is larger than [`FRAME_CAP`].
    pub fn from_slice(data: &[u8]) -> Option<Frame> {
        if data.len() > FRAME_CAP {
            return None;
        }
        let mut f = Frame { len: data.len() as u16, bytes: [0; FRAME_CAP] };
        f.bytes[..data.len()].copy_from_slice(data);
        Some(f)
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({} bytes)", self.len)
    }
}

/// Writes an Ethernet II header.
pub fn write_eth(out: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    out[0..6].copy_from_slice(&dst);
    out[6..12].copy_from_slice(&src);
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// The fields of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sha: MacAddr,
    pub spa: [u8; 4],
    pub tha: MacAddr,
    pub tpa: [u8; 4],
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

impl Arp {
    /// Reads an ARP packet (`data` starts at the ARP header). Only Ethernet/IPv4 is accepted.
    pub fn parse(data: &[u8]) -> Option<Arp> {
        let d = data.get(..28)?;
        if d[0..2] != [0, 1] || d[2..4] != [0x08, 0x00] || d[4] != 6 || d[5] != 4 {
            return None;
        }
        Some(Arp {
            op: u16::from_be_bytes([d[6], d[7]]),
            sha: d[8..14].try_into().ok()?,
            spa: d[14..18].try_into().ok()?,
            tha: d[18..24].try_into().ok()?,
            tpa: d[24..28].try_into().ok()?,
        })
    }

    /// Writes the 28-byte ARP packet.
    pub fn emit(&self, out: &mut [u8]) {
        out[0..6].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
        out[6..8].copy_from_slice(&self.op.to_be_bytes());
        out[8..14].copy_from_slice(&self.sha);
        out[14..18].copy_from_slice(&self.spa);
        out[18..24].copy_from_slice(&self.tha);
        out[24..28].copy_from_slice(&self.tpa);
    }
}

/// A whole Ethernet frame carrying `arp` (42 bytes; the port pads if it must).
pub fn arp_frame(eth_dst: MacAddr, eth_src: MacAddr, arp: &Arp) -> Frame {
    let mut b = [0u8; ETH_LEN + 28];
    write_eth(&mut b, eth_dst, eth_src, ETHERTYPE_ARP);
    arp.emit(&mut b[ETH_LEN..]);
    Frame::from_slice(&b).expect("42 bytes fit")
}

/// The solicited-node multicast address of `target` (RFC 4291 2.7.1).
pub fn solicited_node(target: &[u8; 16]) -> [u8; 16] {
    let mut a = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    a[13..16].copy_from_slice(&target[13..16]);
    a
}

/// The Ethernet address of an IPv6 multicast group (RFC 2464 7).
pub fn multicast_mac(group: &[u8; 16]) -> MacAddr {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

/// Writes an IPv6 header.
pub fn write_ipv6(
    out: &mut [u8],
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
) {
    out[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    out[4..6].copy_from_slice(&payload_len.to_be_bytes());
    out[6] = next_header;
    out[7] = hop_limit;
    out[8..24].copy_from_slice(src);
    out[24..40].copy_from_slice(dst);
}

/// Writes an IPv4 header without options, checksum included.
pub fn write_ipv4(
    out: &mut [u8],
    total_len: u16,
    tos: u8,
    ttl: u8,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
) {
    out[0] = 0x45;
    out[1] = tos;
    out[2..4].copy_from_slice(&total_len.to_be_bytes());
    out[4..8].copy_from_slice(&[0, 0, 0, 0]);
    out[8] = ttl;
    out[9] = proto;
    out[10..12].copy_from_slice(&[0, 0]);
    out[12..16].copy_from_slice(&src);
    out[16..20].copy_from_slice(&dst);
    let c = checksum::checksum(&out[..20]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Computes and stores the ICMPv6 checksum of `icmp` (the whole ICMPv6 message).
pub fn fill_icmpv6_checksum(icmp: &mut [u8], src: &[u8; 16], dst: &[u8; 16]) {
    icmp[2..4].copy_from_slice(&[0, 0]);
    let acc = checksum::combine(
        checksum::pseudo_header_v6(src, dst, 58, icmp.len() as u32),
        checksum::sum(icmp),
    );
    let c = checksum::finish(acc);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}

pub const ND_NS: u8 = 135;
pub const ND_NA: u8 = 136;
const ND_OPT_SLLA: u8 = 1;
const ND_OPT_TLLA: u8 = 2;

/// A neighbour solicitation (RFC 4861 4.3) for `target`, multicast to its solicited-node group,
/// or unicast to `unicast_to` (a re-probe of a known neighbour).
pub fn ns_frame(
    src_mac: MacAddr,
    src: &[u8; 16],
    target: &[u8; 16],
    unicast_to: Option<MacAddr>,
) -> Frame {
    let mut b = [0u8; ETH_LEN + IPV6_LEN + 32];
    let (dst, dst_mac) = match unicast_to {
        Some(mac) => (*target, mac),
        None => {
            let g = solicited_node(target);
            (g, multicast_mac(&g))
        }
    };
    write_eth(&mut b, dst_mac, src_mac, ETHERTYPE_IPV6);
    write_ipv6(&mut b[ETH_LEN..], 32, 58, 255, src, &dst);
    let icmp = &mut b[ETH_LEN + IPV6_LEN..];
    icmp[0] = ND_NS;
    icmp[8..24].copy_from_slice(target);
    icmp[24] = ND_OPT_SLLA;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&src_mac);
    fill_icmpv6_checksum(icmp, src, &dst);
    Frame::from_slice(&b).expect("86 bytes fit")
}

/// A neighbour advertisement (RFC 4861 4.4) for `target` (ours) to `dst`, as a router,
/// solicited unless sent to a multicast group, with the override flag and our MAC.
pub fn na_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    target: &[u8; 16],
    dst: &[u8; 16],
) -> [u8; ETH_LEN + IPV6_LEN + 32] {
    let mut b = [0u8; ETH_LEN + IPV6_LEN + 32];
    write_eth(&mut b, dst_mac, src_mac, ETHERTYPE_IPV6);
    write_ipv6(&mut b[ETH_LEN..], 32, 58, 255, target, dst);
    let icmp = &mut b[ETH_LEN + IPV6_LEN..];
    icmp[0] = ND_NA;
    let solicited = if dst[0] == 0xff { 0 } else { 0x40 };
    icmp[4] = 0x80 | solicited | 0x20; // Router, Solicited, Override
    icmp[8..24].copy_from_slice(target);
    icmp[24] = ND_OPT_TLLA;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&src_mac);
    fill_icmpv6_checksum(icmp, target, dst);
    b
}

/// A neighbour discovery message's target and link-layer address option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nd {
    pub kind: u8,
    pub target: [u8; 16],
    /// Source (NS) or target (NA) link-layer address option.
    pub lladdr: Option<MacAddr>,
    /// NA flags byte (R, S, O in the top bits); 0 for NS.
    pub flags: u8,
}

impl Nd {
    /// Reads an NS or NA (`icmp` starts at the ICMPv6 header). Checks code 0, the minimum length
    /// and that options are well-formed (RFC 4861 7.1.1: a zero-length option invalidates it).
    pub fn parse(icmp: &[u8]) -> Option<Nd> {
        let kind = *icmp.first()?;
        if !(kind == ND_NS || kind == ND_NA) || *icmp.get(1)? != 0 || icmp.len() < 24 {
            return None;
        }
        let target: [u8; 16] = icmp[8..24].try_into().ok()?;
        let want = if kind == ND_NS { ND_OPT_SLLA } else { ND_OPT_TLLA };
        let mut lladdr = None;
        let mut opts = &icmp[24..];
        while !opts.is_empty() {
            let len = *opts.get(1)? as usize * 8;
            if len == 0 || len > opts.len() {
                return None;
            }
            if opts[0] == want && len >= 8 {
                lladdr = Some(opts[2..8].try_into().ok()?);
            }
            opts = &opts[len..];
        }
        Some(Nd { kind, target, lladdr, flags: if kind == ND_NA { icmp[4] } else { 0 } })
    }
}

/// Turns an ICMPv4 echo request (IP packet at `l3`) into the reply, in place: addresses swapped,
/// fresh TTL, type 0, checksums updated. The Ethernet header is rewritten by the caller.
pub fn echo_reply_v4(data: &mut [u8], l3: usize, l4: usize) -> Option<()> {
    let ihl = (*data.get(l3)? & 0x0f) as usize * 4;
    data.get(l4 + 4)?;
    let (src, dst) = (l3 + 12, l3 + 16);
    for i in 0..4 {
        data.swap(src + i, dst + i);
    }
    data[l3 + 8] = ORIGIN_TTL;
    data[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(data.get(l3..l3 + ihl)?);
    data[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    let check = u16::from_be_bytes([data[l4 + 2], data[l4 + 3]]);
    let old = u16::from_be_bytes([data[l4], data[l4 + 1]]);
    data[l4] = 0;
    let new = u16::from_be_bytes([0, data[l4 + 1]]);
    data[l4 + 2..l4 + 4].copy_from_slice(&checksum::update16(check, old, new).to_be_bytes());
    Some(())
}

/// Turns an ICMPv6 echo request into the reply, in place. Swapping the addresses leaves the
/// pseudo-header sum unchanged, so only the type word enters the checksum update.
pub fn echo_reply_v6(data: &mut [u8], l3: usize, l4: usize) -> Option<()> {
    data.get(l4 + 4)?;
    for i in 0..16 {
        data.swap(l3 + 8 + i, l3 + 24 + i);
    }
    data[l3 + 7] = ORIGIN_TTL;
    let check = u16::from_be_bytes([data[l4 + 2], data[l4 + 3]]);
    let old = u16::from_be_bytes([data[l4], data[l4 + 1]]);
    data[l4] = 129;
    let new = u16::from_be_bytes([129, data[l4 + 1]]);
    data[l4 + 2..l4 + 4].copy_from_slice(&checksum::update16(check, old, new).to_be_bytes());
    Some(())
}

/// True when an ICMP error must not be sent about this packet (RFC 1812 4.3.2.7, RFC 4443 2.4(e)):
/// it is itself an ICMP error, or a non-first fragment.
pub fn error_forbidden(data: &[u8], l3: usize, l4: usize, v4: bool, l4_proto: u8) -> bool {
    if v4 {
        let frag = u16::from_be_bytes([
            data.get(l3 + 6).copied().unwrap_or(0),
            data.get(l3 + 7).copied().unwrap_or(0),
        ]);
        if frag & 0x1fff != 0 {
            return true;
        }
        l4_proto == 1
            && l4 != 0
            && data.get(l4).is_some_and(|t| !matches!(t, 0 | 8 | 13 | 14 | 15 | 16))
    } else {
        // Non-first fragments have no L4 offset; errors (type < 128) are not answered.
        (l4 == 0 && l4_proto == 44)
            || (l4_proto == 58 && l4 != 0 && data.get(l4).is_some_and(|t| *t < 128))
    }
}

/// Replaces the packet in `buf` (original IPv4 packet starting at `l3`) with an ICMPv4 error about
/// it, in place: original L2 header dropped, quote truncated, ICMP and IP headers prepended.
/// Leaves the IP packet at the start of the buffer; the caller adds the Ethernet header.
pub fn icmp4_error(
    buf: &mut PacketBuf,
    l3: usize,
    l3_end: usize,
    kind: u8,
    code: u8,
    rest: u32,
    src: [u8; 4],
) -> Option<()> {
    let orig_src: [u8; 4] = buf.data().get(l3 + 12..l3 + 16)?.try_into().ok()?;
    buf.truncate(l3_end);
    buf.advance(l3).ok()?;
    buf.truncate(ICMP4_ERROR_MAX - IPV4_LEN - 8);
    let icmp = buf.prepend(8).ok()?;
    icmp[0] = kind;
    icmp[1] = code;
    icmp[2..4].copy_from_slice(&[0, 0]);
    icmp[4..8].copy_from_slice(&rest.to_be_bytes());
    let c = checksum::checksum(buf.data());
    buf.data_mut()[2..4].copy_from_slice(&c.to_be_bytes());
    let total = buf.len() + IPV4_LEN;
    let ip = buf.prepend(IPV4_LEN).ok()?;
    // TOS 0xc0 (internetwork control) as Linux sends its errors.
    write_ipv4(ip, total as u16, 0xc0, ORIGIN_TTL, 1, src, orig_src);
    Some(())
}

/// The ICMPv6 counterpart of [`icmp4_error`] (RFC 4443 3).
pub fn icmp6_error(
    buf: &mut PacketBuf,
    l3: usize,
    l3_end: usize,
    kind: u8,
    code: u8,
    rest: u32,
    src: &[u8; 16],
) -> Option<()> {
    let orig_src: [u8; 16] = buf.data().get(l3 + 8..l3 + 24)?.try_into().ok()?;
    buf.truncate(l3_end);
    buf.advance(l3).ok()?;
    buf.truncate(ICMP6_ERROR_MAX - IPV6_LEN - 8);
    let icmp = buf.prepend(8).ok()?;
    icmp[0] = kind;
    icmp[1] = code;
    icmp[4..8].copy_from_slice(&rest.to_be_bytes());
    let len = buf.len();
    fill_icmpv6_checksum(buf.data_mut(), src, &orig_src);
    let ip = buf.prepend(IPV6_LEN).ok()?;
    write_ipv6(ip, len as u16, 58, ORIGIN_TTL, src, &orig_src);
    Some(())
}

/// Splits an IPv4 packet (`ip`, header included, TTL already decremented) into fragments that fit
/// `mtu`, per RFC 791: 8-byte-aligned offsets, MF on all but the last, options whose copied flag is
/// clear only in the first fragment. Each fragment goes to `emit` as a full IP packet.
/// Returns `None` (nothing emitted) when the packet cannot be fragmented into `mtu`.
pub fn fragment_v4(ip: &[u8], mtu: usize, mut emit: impl FnMut(&[u8])) -> Option<usize> {
    let ihl = (*ip.first()? & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]) as usize;
    if ihl < 20 || total > ip.len() || total <= ihl {
        return None;
    }
    let header = &ip[..ihl];
    // Options copied into later fragments (RFC 791: copied flag = top bit of the type).
    let mut later_opts = [0u8; 40];
    let mut later_len = 0;
    let mut o = &header[20..];
    while let Some(&t) = o.first() {
        match t {
            0 => break,
            1 => o = &o[1..],
            _ => {
                let l = *o.get(1)? as usize;
                if l < 2 || l > o.len() {
                    return None;
                }
                if t & 0x80 != 0 {
                    later_opts[later_len..later_len + l].copy_from_slice(&o[..l]);
                    later_len += l;
                }
                o = &o[l..];
            }
        }
    }
    let later_ihl = (20 + later_len).div_ceil(4) * 4;
    let payload = &ip[ihl..total];
    let orig_frag = u16::from_be_bytes([ip[6], ip[7]]);
    let orig_mf = orig_frag & 0x2000 != 0;
    let base_off = (orig_frag & 0x1fff) as usize * 8;
    let mut off = 0;
    let mut count = 0;
    let mut pkt = [0u8; FRAME_CAP];
    while off < payload.len() {
        let hl = if off == 0 { ihl } else { later_ihl };
        if mtu <= hl + 8 {
            return None;
        }
        let max = (mtu - hl) & !7;
        let n = max.min(payload.len() - off);
        let last = off + n == payload.len();
        if hl + n > pkt.len() {
            return None;
        }
        if off == 0 {
            pkt[..ihl].copy_from_slice(header);
        } else {
            pkt[..20].copy_from_slice(&header[..20]);
            pkt[20..20 + later_len].copy_from_slice(&later_opts[..later_len]);
            pkt[20 + later_len..hl].fill(0); // end-of-options padding
            pkt[0] = 0x40 | (hl / 4) as u8;
        }
        pkt[2..4].copy_from_slice(&((hl + n) as u16).to_be_bytes());
        let mf = if last && !orig_mf { 0 } else { 0x2000 };
        let frag = mf | (((base_off + off) / 8) as u16 & 0x1fff);
        pkt[6..8].copy_from_slice(&frag.to_be_bytes());
        pkt[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&pkt[..hl]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
        pkt[hl..hl + n].copy_from_slice(&payload[off..off + n]);
        emit(&pkt[..hl + n]);
        off += n;
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ARP request captured from Linux (who-has 10.0.0.1 tell 10.0.0.2).
    const ARP_REQ: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 0,
        0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1,
    ];

    #[test]
    fn arp_parse_emit_round_trip() {
        let a = Arp::parse(&ARP_REQ).unwrap();
        assert_eq!(a.op, ARP_REQUEST);
        assert_eq!(a.spa, [10, 0, 0, 2]);
        assert_eq!(a.tpa, [10, 0, 0, 1]);
        let mut b = [0u8; 28];
        a.emit(&mut b);
        assert_eq!(b, ARP_REQ);
        let mut bad = ARP_REQ;
        bad[5] = 16; // IPv6-length protocol addresses: not ours
        assert_eq!(Arp::parse(&bad), None);
        assert_eq!(Arp::parse(&ARP_REQ[..27]), None);
    }

    #[test]
    fn ns_checks_with_smoltcp() {
        use smoltcp::wire::{EthernetFrame, Icmpv6Packet, Icmpv6Repr, Ipv6Packet, NdiscRepr};
        let mac = [0x02, 0, 0, 0, 0, 1];
        let src: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let target: [u8; 16] = "2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let f = ns_frame(mac, &src, &target, None);
        let eth = EthernetFrame::new_checked(f.as_slice()).unwrap();
        assert_eq!(eth.dst_addr().as_bytes(), &[0x33, 0x33, 0xff, 0, 0, 2]);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.hop_limit(), 255);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        let repr =
            Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp, &Default::default()).unwrap();
        match repr {
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr, lladdr: Some(ll) }) => {
                assert_eq!(target_addr.octets(), target);
                assert_eq!(ll.as_bytes(), &mac);
            }
            other => panic!("{other:?}"),
        }
        let nd = Nd::parse(ip.payload()).unwrap();
        assert_eq!((nd.kind, nd.target, nd.lladdr), (ND_NS, target, Some(mac)));
    }

    #[test]
    fn nd_rejects_zero_length_option() {
        let mut icmp = [0u8; 32];
        icmp[0] = ND_NS;
        icmp[24] = 1;
        icmp[25] = 0;
        assert_eq!(Nd::parse(&icmp), None);
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        let mut ip = vec![0u8; 20 + 1000];
        write_ipv4(&mut ip[..20], 1020, 0, 63, 17, [10, 0, 0, 1], [10, 0, 0, 2]);
        for (i, b) in ip[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut frags: Vec<Vec<u8>> = Vec::new();
        let n = fragment_v4(&ip, 300, |f| frags.push(f.to_vec())).unwrap();
        assert_eq!(n, 4); // 280 + 280 + 280 + 160
        let mut payload = vec![0u8; 1000];
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= 300);
            assert!(checksum::verifies(&f[..20]));
            let fo = u16::from_be_bytes([f[6], f[7]]);
            assert_eq!(fo & 0x2000 != 0, i + 1 < frags.len());
            let off = (fo & 0x1fff) as usize * 8;
            payload[off..off + f.len() - 20].copy_from_slice(&f[20..]);
        }
        assert_eq!(&payload[..], &ip[20..]);
        assert_eq!(fragment_v4(&ip, 27, |_| {}), None);
    }
}
