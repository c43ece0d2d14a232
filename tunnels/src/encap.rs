//! The encap stage: packets the pipeline sends out of a tunnel interface get their outer
//! headers, in the buffer's headroom (no payload copy), and leave on the underlay port.
//!
//! It runs last, after the rewrite stage has done the overlay part: TTL, and for VXLAN/Geneve
//! the inner Ethernet header from the overlay neighbour table (so the order of DESIGN.md holds:
//! overlay neighbour, encap, FIB lookup of the outer destination, underlay neighbour). The
//! worker sends what the slow path puts out of a tunnel interface (ARP and neighbour discovery
//! on the overlay, echo replies, released packets) through [`output`], the same general path.
//!
//! Per packet: the remote endpoint (the tunnel's, or the FDB's for the inner destination MAC),
//! the outer headers, a FIB lookup of the remote, the underlay neighbour. A route to the remote
//! through another tunnel nests (up to [`MAX_NESTING`] headers); a remote that is one of our own
//! addresses is a loop. Outer fields: UDP source port from the inner flow hash (RFC 7348 5:
//! entropy for the underlay's ECMP, in the dynamic range), IPv6 flow label from it too (RFC
//! 6438), DS field copied from the inner packet (RFC 6040 normal mode), DF set and ID 0 on IPv4
//! (RFC 6864: the outer packet is never fragmented, the tunnel MTU accounts for the overhead).
//!
//! That general path runs once per point-to-point tunnel and inner family per snapshot: its
//! result becomes a template (the outer headers with the underlay MACs resolved) that the stage
//! keeps until the snapshot's generation changes, so the next packets into the tunnel, in this
//! burst and the following ones, get a copy of it with their lengths, DS field, checksum and
//! UDP source port written in. The flow hash for that source port (and the IPv6 flow label) is
//! computed here, inline, where the outer header needs it, not by the route stage.

use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::checksum;
use ferroplane_pipeline::fib::NextHopId;
use ferroplane_pipeline::meta::{Addr, PortId, L3};
use ferroplane_pipeline::parse::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use ferroplane_pipeline::stage::{Context, PacketStage};
use ferroplane_pipeline::tables::{MacAddr, NextHop, Tables};
use ferroplane_pipeline::tunnel::{Tunnel, TunnelKind};
use ferroplane_pipeline::verdict::{DropReason, PuntReason, Verdict};

use std::sync::Arc;

use crate::counters::TunnelCounters;
use crate::decap::MAX_NESTING;
use crate::ecn;
use crate::geneve;

const ETH_LEN: usize = 14;

/// Outer UDP source port for a flow: the dynamic range 49152-65535 (RFC 6335), as RFC 7348
/// recommends, from the inner flow hash.
#[inline]
pub fn source_port(flow_hash: u32) -> u16 {
    0xc000 | ((flow_hash ^ (flow_hash >> 16)) as u16 & 0x3fff)
}

/// Prepends `tunnel`'s outer headers (Ethernet with zero MACs, IP, UDP, VXLAN/Geneve) to `p`,
/// whose data is an Ethernet frame, for the endpoint `remote`. The outer Ethernet addresses are
/// written later, once the underlay port and neighbour are known.
pub fn encapsulate(
    p: &mut PacketBuf,
    tunnel: &Tunnel,
    remote: &Addr,
    flow_hash: u32,
) -> Result<(), DropReason> {
    let d = p.data();
    if d.len() < ETH_LEN {
        return Err(DropReason::TunnelInnerMalformed);
    }
    let inner_type = u16::from_be_bytes([d[12], d[13]]);
    let ds = match inner_type {
        ETHERTYPE_IPV4 => ecn::ds_field(&d[ETH_LEN..], false),
        ETHERTYPE_IPV6 => ecn::ds_field(&d[ETH_LEN..], true),
        _ => 0,
    };
    let v6 = tunnel.outer_v6();
    let ip_len = if v6 { 40 } else { 20 };
    let (proto, hdr_len) = match tunnel.kind {
        TunnelKind::Ipip => {
            let proto = match inner_type {
                ETHERTYPE_IPV4 => 4,
                ETHERTYPE_IPV6 => 41,
                _ => return Err(DropReason::TunnelInnerMalformed),
            };
            // IP-in-IP carries the IP packet itself: the inner Ethernet header goes.
            p.advance(ETH_LEN).map_err(|_| DropReason::TunnelInnerMalformed)?;
            (proto, 0)
        }
        TunnelKind::Vxlan => (17, 8 + 8),
        TunnelKind::Geneve => (17, 8 + geneve::HEADER_LEN + tunnel.options.len()),
    };
    let payload = p.len();
    let ip_payload = hdr_len + payload;
    let total = ETH_LEN + ip_len + ip_payload;
    let out = p.prepend(total - payload).map_err(|_| DropReason::TunnelNoHeadroom)?;
    out[0..12].fill(0);
    let ethertype = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
    let ip = &mut out[ETH_LEN..ETH_LEN + ip_len];
    let local = &tunnel.local;
    // Headers are written as whole 32-bit words built in registers, and the checksums are
    // summed from those words, never re-read from the buffer: loading a word that narrower
    // stores have just written stalls on store forwarding (it was the costliest part of encap).
    if v6 {
        // Version, traffic class, flow label (from the inner flow: RFC 6438).
        let fl = flow_hash & 0xf_ffff;
        let first = (6u32 << 28) | ((ds as u32) << 20) | fl;
        let second = ((ip_payload as u32) << 16) | ((proto as u32) << 8) | tunnel.ttl as u32;
        ip[0..4].copy_from_slice(&first.to_be_bytes());
        ip[4..8].copy_from_slice(&second.to_be_bytes());
        ip[8..24].copy_from_slice(local);
        ip[24..40].copy_from_slice(remote);
    } else {
        let src = u32::from_be_bytes([local[12], local[13], local[14], local[15]]);
        let dst = u32::from_be_bytes([remote[12], remote[13], remote[14], remote[15]]);
        let w0 = 0x4500_0000 | ((ds as u32) << 16) | (20 + ip_payload) as u32;
        let w1 = 0x0000_4000u32; // ID 0, DF
        let w2 = ((tunnel.ttl as u32) << 24) | ((proto as u32) << 16);
        let acc = w0 as u64 + w1 as u64 + w2 as u64 + src as u64 + dst as u64;
        let c = checksum::finish(checksum::combine(acc as u32, (acc >> 32) as u32));
        ip[0..4].copy_from_slice(&w0.to_be_bytes());
        ip[4..8].copy_from_slice(&w1.to_be_bytes());
        ip[8..12].copy_from_slice(&(w2 | c as u32).to_be_bytes());
        ip[12..16].copy_from_slice(&src.to_be_bytes());
        ip[16..20].copy_from_slice(&dst.to_be_bytes());
    }
    if tunnel.kind == TunnelKind::Ipip {
        return Ok(());
    }
    let at = ETH_LEN + ip_len;
    let vni = (tunnel.vni & 0x00ff_ffff) << 8;
    let opts: &[u8] = if tunnel.kind == TunnelKind::Vxlan { &[] } else { &tunnel.options };
    let flags = if tunnel.kind == TunnelKind::Vxlan {
        (crate::vxlan::FLAG_I as u32) << 24
    } else {
        let critical = if geneve_critical(opts) { 0x40 } else { 0 };
        (((opts.len() / 4) as u32) << 24) | (critical << 16) | geneve::PROTO_ETHERNET as u32
    };
    // UDP (checksum zero for now), then the VXLAN / Geneve base header.
    let words = [
        ((source_port(flow_hash) as u32) << 16) | tunnel.dst_port as u32,
        (ip_payload as u32) << 16,
        flags,
        vni,
    ];
    for (i, w) in words.iter().enumerate() {
        out[at + 4 * i..at + 4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
    out[at + 16..at + hdr_len].copy_from_slice(opts);
    // IPv4: zero UDP checksum (RFC 7348 5). IPv6: computed unless the tunnel opts into the
    // zero checksum of RFC 6935 (the peer must accept it: Linux needs udp6zerocsumrx).
    if v6 && tunnel.udp_checksum6 {
        let hdr = words.iter().map(|&w| w as u64).sum::<u64>();
        let hdr = checksum::combine(hdr as u32, (hdr >> 32) as u32);
        // The tunnel payload (the inner frame) starts at an even offset of the segment.
        let body = checksum::sum(&p.data()[at + hdr_len..]);
        let ph = checksum::pseudo_header_v6(local, remote, 17, ip_payload as u32);
        let seg = checksum::combine(checksum::combine(hdr, checksum::sum(opts)), body);
        let mut c = checksum::finish(checksum::combine(ph, seg));
        if c == 0 {
            c = 0xffff; // RFC 768: a computed zero is sent as all ones.
        }
        p.data_mut()[at + 6..at + 8].copy_from_slice(&c.to_be_bytes());
    }
    Ok(())
}

/// Whether any encoded Geneve option has the critical bit (the C flag of the base header).
fn geneve_critical(opts: &[u8]) -> bool {
    let mut at = 0;
    while at + 4 <= opts.len() {
        if opts[at + 2] & geneve::CRITICAL != 0 {
            return true;
        }
        at += 4 + (opts[at + 3] & 0x1f) as usize * 4;
    }
    false
}

/// What [`output_cached`] learned about the underlay: the last remote's route and whether it is
/// one of our addresses, and the last underlay neighbour. Packets mostly go to one remote, so
/// most of them skip the FIB lookup, the local-address scan and the neighbour probe. Lives as
/// long as the snapshot it came from (the encap stage forgets it when the generation changes).
#[derive(Default)]
pub struct UnderlayCache {
    remote: Option<(Addr, bool, Option<NextHopId>)>,
    neighbour: Option<(PortId, Addr, Option<MacAddr>)>,
}

impl UnderlayCache {
    /// Whether `r` is ours, and its route.
    #[inline]
    fn remote(&mut self, t: &Tables, r: &Addr) -> (bool, Option<NextHopId>) {
        match self.remote {
            Some((a, local, group)) if a == *r => (local, group),
            _ => {
                let (local, group) = (t.is_local(r), t.route(r));
                self.remote = Some((*r, local, group));
                (local, group)
            }
        }
    }

    #[inline]
    fn neighbour(&mut self, t: &Tables, port: PortId, addr: &Addr) -> Option<MacAddr> {
        match self.neighbour {
            Some((p, a, mac)) if p == port && a == *addr => mac,
            _ => {
                let mac = t.neighbour(port, addr);
                self.neighbour = Some((port, *addr, mac));
                mac
            }
        }
    }
}

/// Sends a packet whose verdict is `Forward(port)` on its way: through every tunnel the route
/// leads into, then onto the underlay port with its link-layer header. Returns the new verdict.
pub fn output(t: &Tables, p: &mut PacketBuf, port: PortId) -> Verdict {
    output_cached(t, p, port, &mut UnderlayCache::default())
}

/// [`output`] with the underlay lookups of the current burst remembered in `cache` (which must
/// not outlive the snapshot `t`).
pub fn output_cached(
    t: &Tables,
    p: &mut PacketBuf,
    mut port: PortId,
    cache: &mut UnderlayCache,
) -> Verdict {
    let mut next_hop = p.meta.next_hop;
    let mut depth = 0u8;
    while let Some(tunnel) = t.tunnels.by_iface(port) {
        depth += 1;
        if depth > MAX_NESTING {
            return Verdict::Drop(DropReason::TunnelLoop);
        }
        if depth > 1 && tunnel.kind.l2() {
            // Nested: this tunnel's inner Ethernet header comes from its overlay neighbour,
            // as the rewrite stage does for the first one.
            let Some(iface) = t.port(port) else { return Verdict::Drop(DropReason::NextHopDrop) };
            let d = p.data_mut();
            d[6..12].copy_from_slice(&iface.mac);
            match t.neighbour(port, &next_hop) {
                Some(mac) => d[0..6].copy_from_slice(&mac),
                None => {
                    d[0..6].fill(0xff);
                    p.meta.out_port = port;
                    p.meta.next_hop = next_hop;
                    return Verdict::Punt(PuntReason::NeighbourMiss);
                }
            }
        }
        let remote = match tunnel.remote {
            Some(r) => r,
            None => {
                let d = p.data();
                let dst = [d[0], d[1], d[2], d[3], d[4], d[5]];
                match t.fdb_remote(port, &dst) {
                    Some(r) => r,
                    None => return Verdict::Drop(DropReason::FdbMiss),
                }
            }
        };
        let (remote_is_local, group) = cache.remote(t, &remote);
        if remote_is_local {
            return Verdict::Drop(DropReason::TunnelLoop);
        }
        if let Err(r) = encapsulate(p, tunnel, &remote, p.meta.flow_hash) {
            return Verdict::Drop(r);
        }
        let hop = group.and_then(|g| t.groups.get(g as usize)).map(|g| g.pick(p.meta.flow_hash));
        (port, next_hop) = match hop {
            Some(NextHop::Gateway { port, gateway }) => (port, gateway),
            Some(NextHop::Direct { port }) => (port, remote),
            _ => return Verdict::Drop(DropReason::TunnelNoRoute),
        };
    }
    if depth == 0 {
        return Verdict::Forward(port);
    }
    let Some(out) = t.port(port) else { return Verdict::Drop(DropReason::TunnelNoRoute) };
    if p.len() - ETH_LEN > out.mtu as usize {
        return Verdict::Drop(DropReason::TunnelMtuExceeded);
    }
    p.meta.out_port = port;
    p.meta.next_hop = next_hop;
    let d = p.data_mut();
    d[6..12].copy_from_slice(&out.mac);
    match cache.neighbour(t, port, &next_hop) {
        Some(mac) => {
            d[0..6].copy_from_slice(&mac);
            Verdict::Forward(port)
        }
        None => {
            d[0..6].fill(0xff);
            Verdict::Punt(PuntReason::NeighbourMiss)
        }
    }
}

/// The outer headers one packet to a (tunnel, remote) got (VPP's rewrite string): the next
/// packets there copy them whole and patch only what varies per packet (lengths, DS field, UDP
/// source port, flow label, checksums), skipping the route, neighbour and header-building work.
/// Built from a packet the general path encapsulated, so it can never disagree with it. It
/// depends on nothing but the snapshot it was built in (the tunnel, the route and underlay
/// neighbour of its remote, the underlay port's MAC and MTU), so the stage keeps it for as long
/// as that snapshot is current ([`Tables::generation`]).
#[derive(Clone)]
struct Template {
    iface: PortId,
    remote: Addr,
    /// Inner EtherType the template was built for (IP-in-IP's protocol follows it).
    inner_type: u16,
    /// The inner DS field is `(bytes 14..16 of the inner frame, big-endian) >> ds_shift &
    /// ds_mask`: byte 15 of an IPv4 packet (shift 0), the traffic class across bytes 14 and 15
    /// of an IPv6 one (shift 4), 0 for anything else (mask 0). No branch on the family.
    ds_shift: u8,
    ds_mask: u8,
    out_port: PortId,
    next_hop: Addr,
    /// The longest packet (as the stage gets it: IP-in-IP's still with its inner Ethernet
    /// header) whose outer IP packet fits the underlay port's MTU, so one compare checks it.
    max_payload: isize,
    kind: TunnelKind,
    v6: bool,
    /// Whether the outer headers carry the flow hash (a UDP source port, an IPv6 flow label):
    /// all but IP-in-IP in IPv4.
    hashed: bool,
    /// IPv4 into VXLAN or Geneve over IPv4: the commonest shape, which the stage's fast path
    /// serves with the inner packet's family, DS byte and flow hash known up front.
    v4_in_udp4: bool,
    udp_checksum6: bool,
    /// The UDP destination port (VXLAN and Geneve), kept here so `apply` builds the first UDP
    /// word in a register instead of reading it back from the bytes it has just copied (a
    /// load from narrower stores in flight stalls on store forwarding).
    dst_port: u16,
    len: usize,
    hdr: [u8; TEMPLATE_MAX],
    /// The header again, right-aligned (its last byte is the last of the array) when it is at
    /// most [`BLOCK`] bytes: [`Template::put`] copies a whole fixed-size block ending at the
    /// packet's head.
    right: [u8; BLOCK],
    /// IPv4: the sum of the header's 16-bit words that are the same for every packet, with
    /// the version/IHL byte of the first one (`0x4500`): all but the DS byte, the total length
    /// and the checksum. At most 9 words, so under 2^20.
    csum_base: u32,
}

/// Ethernet, IPv6, UDP, Geneve base header and the largest options area the config allows.
const TEMPLATE_MAX: usize = 14 + 40 + 8 + 8 + 128;

/// The largest header [`Template::put`] writes as fixed-size blocks (64, 96 or 128 bytes): every
/// shape but Geneve with more than 58 bytes of options.
const BLOCK: usize = 128;

/// `Template::iface` of an empty slot (no tunnel interface has it: interface ids index
/// `Tables::ports`, which is far shorter).
const NO_PORT: PortId = PortId::MAX;

impl Template {
    const EMPTY: Template = Template {
        iface: NO_PORT,
        remote: [0; 16],
        inner_type: 0,
        ds_shift: 0,
        ds_mask: 0,
        out_port: 0,
        next_hop: [0; 16],
        max_payload: -1,
        kind: TunnelKind::Vxlan,
        v6: false,
        hashed: false,
        v4_in_udp4: false,
        udp_checksum6: false,
        dst_port: 0,
        len: 0,
        hdr: [0; TEMPLATE_MAX],
        right: [0; BLOCK],
        csum_base: 0,
    };

    /// The template of `p`, which the general path has just encapsulated once (no nesting) and
    /// sent to `out_port`. `None` when the headers do not have the single-level shape.
    fn capture(p: &PacketBuf, tunnel: &Tunnel, remote: Addr, inner_type: u16) -> Option<Template> {
        let v6 = tunnel.outer_v6();
        let ip_len = if v6 { 40 } else { 20 };
        let len = match tunnel.kind {
            TunnelKind::Ipip => ETH_LEN + ip_len,
            TunnelKind::Vxlan => ETH_LEN + ip_len + 16,
            TunnelKind::Geneve => ETH_LEN + ip_len + 16 + tunnel.options.len(),
        };
        let d = p.data().get(..len)?;
        let mut hdr = [0u8; TEMPLATE_MAX];
        hdr.get_mut(..len)?.copy_from_slice(d);
        let mut csum_base = 0;
        if !v6 {
            let w16 = |i: usize| u16::from_be_bytes([hdr[i], hdr[i + 1]]) as u32;
            // Words 2-4 (ID, flags, TTL and protocol) and 6-9 (the addresses).
            let same = [2, 3, 4, 6, 7, 8, 9].map(|i| w16(ETH_LEN + 2 * i));
            csum_base = 0x4500 + same.iter().sum::<u32>();
        }
        if tunnel.kind != TunnelKind::Ipip {
            let at = ETH_LEN + ip_len;
            hdr[at + 6] = 0;
            hdr[at + 7] = 0;
        }
        let mut right = [0u8; BLOCK];
        if let Some(r) = BLOCK.checked_sub(len) {
            right[r..].copy_from_slice(&hdr[..len]);
        }
        let (ds_shift, ds_mask) = match inner_type {
            ETHERTYPE_IPV4 => (0, 0xff),
            ETHERTYPE_IPV6 => (4, 0xff),
            _ => (0, 0),
        };
        Some(Template {
            iface: tunnel.iface,
            remote,
            inner_type,
            ds_shift,
            ds_mask,
            out_port: p.meta.out_port,
            next_hop: p.meta.next_hop,
            max_payload: -1,
            kind: tunnel.kind,
            v6,
            hashed: v6 || tunnel.kind != TunnelKind::Ipip,
            v4_in_udp4: !v6 && tunnel.kind != TunnelKind::Ipip && inner_type == ETHERTYPE_IPV4,
            udp_checksum6: tunnel.udp_checksum6,
            dst_port: tunnel.dst_port,
            len,
            hdr,
            right,
            csum_base,
        })
    }

    /// Prepends the header to `p` and returns its first `N` bytes (`N` at most the shortest
    /// header of the template's shape), or `None` without headroom for it. With the headroom
    /// to spare (nearly always: [`ferroplane_pipeline::buf::HEADROOM`] is 256 bytes), the
    /// header goes in as one copy of a 64-, 96- or 128-byte block ending at the packet's head,
    /// which overwrites only headroom in front of it (see [`PacketBuf::prepend_block`]): a few
    /// wide moves with no dispatch on the length.
    #[inline(always)]
    fn put<'a, const N: usize>(&self, p: &'a mut PacketBuf) -> Option<&'a mut [u8; N]> {
        let n = self.len;
        let out: &mut [u8] = if n <= 64 && p.headroom() >= 64 {
            let b = p.prepend_block::<64>(n)?;
            b.copy_from_slice(&self.right[BLOCK - 64..]);
            &mut b[64 - n..]
        } else if n <= 96 && p.headroom() >= 96 {
            // Geneve with up to 46 bytes of options.
            let b = p.prepend_block::<96>(n)?;
            b.copy_from_slice(&self.right[BLOCK - 96..]);
            &mut b[96 - n..]
        } else if n <= BLOCK && p.headroom() >= BLOCK {
            let b = p.prepend_block::<BLOCK>(n)?;
            b.copy_from_slice(&self.right);
            &mut b[BLOCK - n..]
        } else {
            let out = p.prepend(n).ok()?;
            copy_header(out, &self.hdr);
            out
        };
        out.first_chunk_mut::<N>()
    }

    /// The inner DS field of a frame whose first 16 bytes are `h` (see `ds_shift`), as
    /// `ecn::ds_field` reads it for this template's inner EtherType.
    #[inline(always)]
    fn ds(&self, h: &[u8; 16]) -> u8 {
        (u16::from_be_bytes([h[14], h[15]]) >> self.ds_shift) as u8 & self.ds_mask
    }

    /// [`Template::apply`] for VXLAN and Geneve with an IPv4 outer header, the commonest
    /// shapes: the same bytes. The template already holds every byte that is the same for each
    /// packet (version, ID, flags, TTL, protocol, addresses, ports, the tunnel header), so only
    /// the five fields that are not are written over it: DS, total length, header checksum,
    /// UDP source port and length. `ds`: the inner DS field.
    #[inline(always)]
    fn apply_udp4(&self, p: &mut PacketBuf, ds: u8, hash: u32) -> Verdict {
        let len = p.len();
        if len as isize > self.max_payload {
            return Verdict::Drop(DropReason::TunnelMtuExceeded);
        }
        // Every VXLAN/Geneve IPv4 template holds Ethernet, IPv4 and UDP, so only a lack of
        // headroom fails this.
        let Some(h) = self.put::<{ ETH_LEN + 20 + 8 }>(p) else {
            return Verdict::Drop(DropReason::TunnelNoHeadroom);
        };
        // The outer IP packet: the template after its Ethernet header, then the payload.
        let ip_total = (self.len - ETH_LEN + len) as u32;
        h[15] = ds;
        h[16..18].copy_from_slice(&(ip_total as u16).to_be_bytes());
        h[24..26].copy_from_slice(&self.ip_checksum(ds, ip_total).to_be_bytes());
        h[34..36].copy_from_slice(&source_port(hash).to_be_bytes());
        h[38..40].copy_from_slice(&((ip_total - 20) as u16).to_be_bytes());
        p.meta.out_port = self.out_port;
        p.meta.next_hop = self.next_hop;
        Verdict::Forward(self.out_port)
    }

    /// [`Template::apply`] for IP-in-IP with an IPv4 outer header, as `apply_udp4`: DS, total
    /// length and checksum written over the template. `ds`: the inner DS field.
    #[inline(always)]
    fn apply_ipip4(&self, p: &mut PacketBuf, ds: u8) -> Verdict {
        if p.len() as isize > self.max_payload {
            return Verdict::Drop(DropReason::TunnelMtuExceeded);
        }
        // IP-in-IP carries the IP packet itself: the inner Ethernet header goes.
        if p.advance(ETH_LEN).is_err() {
            return Verdict::Drop(DropReason::TunnelInnerMalformed);
        }
        let ip_total = (20 + p.len()) as u32;
        // Every IPv4 IP-in-IP template is Ethernet and IPv4, so only a lack of headroom fails.
        let Some(h) = self.put::<{ ETH_LEN + 20 }>(p) else {
            return Verdict::Drop(DropReason::TunnelNoHeadroom);
        };
        h[15] = ds;
        h[16..18].copy_from_slice(&(ip_total as u16).to_be_bytes());
        h[24..26].copy_from_slice(&self.ip_checksum(ds, ip_total).to_be_bytes());
        p.meta.out_port = self.out_port;
        p.meta.next_hop = self.next_hop;
        Verdict::Forward(self.out_port)
    }

    /// The outer IPv4 header checksum for DS field `ds` and total length `ip_total` (< 2^16):
    /// the 16-bit words that vary are `0x45 << 8 | ds` and the length, the others are summed in
    /// `csum_base`; a sum of under 2^20 folds to 16 bits in two steps.
    #[inline(always)]
    fn ip_checksum(&self, ds: u8, ip_total: u32) -> u16 {
        let x = self.csum_base + ds as u32 + ip_total;
        let x = (x & 0xffff) + (x >> 16);
        !((x & 0xffff) + (x >> 16)) as u16
    }

    /// Encapsulates `p` (an Ethernet frame of at least 16 bytes, of this template's inner
    /// EtherType, for its tunnel and remote) with the template's headers; `ds` is its inner DS
    /// field, `hash` its flow hash (unused where [`Template::hashed`] is false). Returns its
    /// verdict.
    #[inline(always)]
    fn encap(&self, p: &mut PacketBuf, ds: u8, hash: u32) -> Verdict {
        match (self.v6, self.kind) {
            (false, TunnelKind::Ipip) => self.apply_ipip4(p, ds),
            (false, _) => self.apply_udp4(p, ds, hash),
            (true, _) => self.apply6(p, ds, hash),
        }
    }

    /// [`Template::encap`] for an IPv6 outer header (every kind).
    #[inline]
    fn apply6(&self, p: &mut PacketBuf, ds: u8, hash: u32) -> Verdict {
        if p.len() as isize > self.max_payload {
            return Verdict::Drop(DropReason::TunnelMtuExceeded);
        }
        if self.kind == TunnelKind::Ipip && p.advance(ETH_LEN).is_err() {
            return Verdict::Drop(DropReason::TunnelInnerMalformed);
        }
        let payload = p.len();
        let ip_len = 40;
        let ip_payload = self.len - ETH_LEN - ip_len + payload;
        let Ok(out) = p.prepend(self.len) else {
            return Verdict::Drop(DropReason::TunnelNoHeadroom);
        };
        copy_header(out, &self.hdr);
        let first = (6u32 << 28) | ((ds as u32) << 20) | (hash & 0xf_ffff);
        out[ETH_LEN..ETH_LEN + 4].copy_from_slice(&first.to_be_bytes());
        out[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&(ip_payload as u16).to_be_bytes());
        if self.kind != TunnelKind::Ipip {
            let at = ETH_LEN + ip_len;
            let w = ((source_port(hash) as u32) << 16) | self.dst_port as u32;
            out[at..at + 4].copy_from_slice(&w.to_be_bytes());
            out[at + 4..at + 6].copy_from_slice(&(ip_payload as u16).to_be_bytes());
            if self.udp_checksum6 {
                let d = p.data();
                let (src, dst): ([u8; 16], [u8; 16]) = (
                    d[ETH_LEN + 8..ETH_LEN + 24].try_into().unwrap_or_default(),
                    d[ETH_LEN + 24..ETH_LEN + 40].try_into().unwrap_or_default(),
                );
                let ph = checksum::pseudo_header_v6(&src, &dst, 17, ip_payload as u32);
                let mut c = checksum::finish(checksum::combine(ph, checksum::sum(&d[at..])));
                if c == 0 {
                    c = 0xffff;
                }
                p.data_mut()[at + 6..at + 8].copy_from_slice(&c.to_be_bytes());
            }
        }
        p.meta.out_port = self.out_port;
        p.meta.next_hop = self.next_hop;
        Verdict::Forward(self.out_port)
    }
}

/// Copies the first `out.len()` bytes of `hdr` into `out`. Headers of 32 to 128 bytes (every
/// shape but Geneve with long options) are copied as fixed 32-byte blocks, the last one
/// overlapping the one before where the length is not a multiple of 32, as glibc's memcpy does
/// for these sizes: the same moves, without a call and a dispatch on the size per packet.
#[inline(always)]
fn copy_header(out: &mut [u8], hdr: &[u8; TEMPLATE_MAX]) {
    const B: usize = 32;
    let n = out.len();
    if !(B..=4 * B).contains(&n) {
        out.copy_from_slice(&hdr[..n]);
        return;
    }
    let block = |i: usize| -> [u8; B] { hdr[i..i + B].try_into().unwrap_or([0; B]) };
    let last = n - B;
    out[..B].copy_from_slice(&block(0));
    if n > 2 * B {
        out[B..2 * B].copy_from_slice(&block(B));
    }
    if n > 3 * B {
        out[2 * B..3 * B].copy_from_slice(&block(2 * B));
    }
    out[last..].copy_from_slice(&block(last));
}

/// Point-to-point templates the stage keeps, direct-mapped by tunnel interface and inner family
/// (a power of two).
const SLOTS: usize = 16;

/// The slot of a point-to-point tunnel's template for one inner EtherType: IPv4 and IPv6 into
/// one tunnel (IP-in-IP's protocol differs) take neighbouring slots.
#[inline]
fn slot_of(iface: PortId, inner_type: u16) -> usize {
    (iface as usize * 2 + (inner_type == ETHERTYPE_IPV6) as usize) % SLOTS
}

/// True when the tunnel output settled a packet with `verdict` encapsulated and on its
/// way: forwarded, or punted to wait for its underlay neighbour with the outer headers already
/// on (`out_port` then an underlay port, not a tunnel interface). The slow path sends the
/// latter out of that port as it is once the neighbour resolves, past any tunnel code, so a
/// tunnel's tx counts it here or never.
#[inline]
pub fn left_encapsulated(t: &Tables, verdict: Verdict, out_port: PortId) -> bool {
    match verdict {
        Verdict::Forward(_) => true,
        Verdict::Punt(PuntReason::NeighbourMiss) => out_port < t.tunnels.first_iface(),
        _ => false,
    }
}

/// Encapsulation; see the module documentation.
pub struct EncapStage {
    counters: Option<Arc<TunnelCounters>>,
    /// The snapshot everything below was derived from: `begin` forgets it all when the
    /// current snapshot has another generation.
    generation: u64,
    /// The underlay lookups of the general path.
    cache: UnderlayCache,
    /// Templates of point-to-point tunnels (their remote is fixed, so one fits every packet
    /// into the tunnel with its inner EtherType), at [`slot_of`].
    p2p: Box<[Template; SLOTS]>,
    /// The slot of the template the last packet into a point-to-point tunnel took, and that
    /// tunnel's interface ([`NO_IFACE`]: none): the one compare most packets need.
    cur: usize,
    p2p_iface: u32,
    /// The last template of a multipoint tunnel (its remote follows each packet's FDB entry).
    multipoint: Option<Template>,
}

impl Default for EncapStage {
    fn default() -> EncapStage {
        EncapStage {
            counters: None,
            generation: 0,
            cache: UnderlayCache::default(),
            p2p: Box::new([const { Template::EMPTY }; SLOTS]),
            cur: 0,
            p2p_iface: NO_IFACE,
            multipoint: None,
        }
    }
}

impl EncapStage {
    /// Counts what each tunnel sends into `counters`.
    pub fn with_counters(counters: Arc<TunnelCounters>) -> EncapStage {
        EncapStage { counters: Some(counters), ..Default::default() }
    }

    #[inline]
    fn count(&self, t: &Tables, iface: PortId, p: &PacketBuf, bytes: usize) {
        if let (true, Some(c)) =
            (left_encapsulated(t, p.meta.verdict, p.meta.out_port), &self.counters)
        {
            if let Some(c) = c.of(t, iface) {
                c.tx_packets.inc();
                c.tx_bytes.add(bytes as u64);
            }
        }
    }

    /// Forgets every template and underlay lookup (they belong to another snapshot).
    fn forget(&mut self) {
        self.cache = UnderlayCache::default();
        for tpl in self.p2p.iter_mut() {
            tpl.iface = NO_PORT;
        }
        self.p2p_iface = NO_IFACE;
        self.multipoint = None;
    }

    /// Every packet the fast path of `packet` does not take: a kept template of its tunnel, or
    /// the general path and a template from its result. Out of line, so the loop over a burst
    /// that goes into one tunnel stays small.
    #[inline(never)]
    fn general(&mut self, t: &Tables, p: &mut PacketBuf) {
        let port = p.meta.out_port;
        let Some(tunnel) = t.tunnels.by_iface(port) else { return };
        // The outer headers' entropy, and the underlay's ECMP choice, follow the inner flow.
        p.meta.flow_hash = p.meta.flow_hash_of(t.hash_seed);
        let d = p.data();
        if d.len() < ETH_LEN {
            p.meta.verdict = Verdict::Drop(DropReason::TunnelInnerMalformed);
            return;
        }
        let inner_type = u16::from_be_bytes([d[12], d[13]]);
        let ds = match inner_type {
            ETHERTYPE_IPV4 => ecn::ds_field(&d[ETH_LEN..], false),
            ETHERTYPE_IPV6 => ecn::ds_field(&d[ETH_LEN..], true),
            _ => 0,
        };
        let remote = match tunnel.remote {
            Some(r) => {
                let slot = slot_of(port, inner_type);
                if self.p2p[slot].iface == port && self.p2p[slot].inner_type == inner_type {
                    self.cur = slot;
                    self.p2p_iface = port as u32;
                    let bytes = p.len();
                    p.meta.verdict = self.p2p[slot].encap(p, ds, p.meta.flow_hash);
                    self.count(t, port, p, bytes);
                    return;
                }
                Some(r)
            }
            None => {
                let r = t.fdb_remote(port, &[d[0], d[1], d[2], d[3], d[4], d[5]]);
                if let (Some(tpl), Some(r)) = (&self.multipoint, r) {
                    if tpl.iface == port && tpl.remote == r && tpl.inner_type == inner_type {
                        let bytes = p.len();
                        p.meta.verdict = tpl.encap(p, ds, p.meta.flow_hash);
                        self.count(t, port, p, bytes);
                        return;
                    }
                }
                r
            }
        };
        let before = p.len();
        p.meta.verdict = output_cached(t, p, port, &mut self.cache);
        self.count(t, port, p, before);
        // A single-level encapsulation onto a port (not a nested one) becomes the template.
        if let (Verdict::Forward(out), Some(r)) = (p.meta.verdict, remote) {
            let added = p.len() as isize - before as isize;
            let ip = if tunnel.outer_v6() { 40 } else { 20 };
            let single = match tunnel.kind {
                TunnelKind::Ipip => ip,
                TunnelKind::Vxlan => ETH_LEN + ip + 16,
                TunnelKind::Geneve => ETH_LEN + ip + 16 + tunnel.options.len(),
            };
            // Underlay ECMP picks a path per flow: a template would pin the tunnel to the
            // first packet's, so only a remote with a single path gets one. The route is the
            // one output_cached has just looked up for `r` (a single-level encapsulation, so
            // the cache holds `r` itself; otherwise it looks it up again).
            let (_, group) = self.cache.remote(t, &r);
            let one_path = group
                .and_then(|g| t.groups.get(g as usize))
                .is_some_and(|g| g.members().nth(1).is_none());
            // output_cached forwards only out of a port: its loop ends when `by_iface` finds
            // no tunnel, so `out` is never a tunnel interface here.
            debug_assert!(!t.tunnels.is_tunnel(out));
            if added == single as isize && one_path {
                let Some(mut tpl) = Template::capture(p, tunnel, r, inner_type) else { return };
                let mtu = t.port(out).map_or(0, |o| o.mtu) as isize;
                // The outer IP packet is the template after its Ethernet header plus the
                // packet, less IP-in-IP's inner Ethernet header.
                let strip = if tpl.kind == TunnelKind::Ipip { ETH_LEN } else { 0 };
                tpl.max_payload = mtu - (tpl.len - ETH_LEN) as isize + strip as isize;
                if tunnel.remote.is_some() {
                    let slot = slot_of(port, inner_type);
                    self.p2p[slot] = tpl;
                    self.cur = slot;
                    self.p2p_iface = port as u32;
                } else {
                    self.multipoint = Some(tpl);
                }
            }
        }
    }
}

/// `EncapStage::p2p_iface` when no point-to-point template is current (above any `PortId`).
const NO_IFACE: u32 = u32::MAX;

impl PacketStage for EncapStage {
    fn name(&self) -> &'static str {
        "encap"
    }

    #[inline]
    fn begin(&mut self, cx: &Context<'_>) -> bool {
        let t = cx.tables;
        if t.tunnels.is_empty() {
            return false;
        }
        if t.generation != self.generation {
            self.forget();
            self.generation = t.generation;
        }
        true
    }

    /// Takes the packets the rewrite stage left `Continue` with a tunnel as `out_port`. A
    /// packet into the tunnel whose point-to-point template the last one took, with the
    /// template's inner EtherType, gets it straight away: the tunnel, its remote and the route
    /// are the ones the template was built from, in this snapshot.
    #[inline(always)]
    fn packet(&mut self, cx: &Context<'_>, p: &mut PacketBuf) {
        if p.meta.out_port as u32 == self.p2p_iface {
            let tpl = &self.p2p[self.cur % SLOTS];
            // An IPv4 packet (the parse stage's word; untagged, or the input stage would have
            // dropped it) into an IPv4 VXLAN/Geneve template: the inner DS field is byte 15
            // and the flow hash the IPv4 one, with no EtherType to read and nothing to select.
            if tpl.v4_in_udp4 && p.meta.l3 == L3::Ipv4 {
                if let Some(&ds) = p.data().get(ETH_LEN + 1) {
                    debug_assert_eq!(p.data()[12..14], ETHERTYPE_IPV4.to_be_bytes());
                    let (port, bytes) = (p.meta.out_port, p.len());
                    let hash = p.meta.flow_hash_v4(cx.tables.hash_seed);
                    p.meta.verdict = tpl.apply_udp4(p, ds, hash);
                    self.count(cx.tables, port, p, bytes);
                    return;
                }
            }
            if let Some(h) = p.data().first_chunk::<16>() {
                if u16::from_be_bytes([h[12], h[13]]) == tpl.inner_type {
                    let (port, bytes, ds) = (p.meta.out_port, p.len(), tpl.ds(h));
                    // Computed here rather than by the route stage: inline, and only for the
                    // outer headers that carry it (not IPv4 IP-in-IP's).
                    let hash = match tpl.hashed {
                        true => p.meta.flow_hash_of(cx.tables.hash_seed),
                        false => 0,
                    };
                    p.meta.verdict = tpl.encap(p, ds, hash);
                    self.count(cx.tables, port, p, bytes);
                    return;
                }
            }
        }
        self.general(cx.tables, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroplane_pipeline::buf::FRAME_SIZE;
    use ferroplane_pipeline::flow::addr_from_ip;
    use ferroplane_pipeline::stage::Stage;
    use ferroplane_pipeline::tables::{NextHopSpec, PortInfo, TableHandle, TablesBuilder};

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    /// A port with an underlay neighbour and one tunnel of each shape, all routed.
    fn tables() -> (Tables, Vec<PortId>) {
        let mut b = TablesBuilder::new(1);
        b.port(PortInfo {
            name: "u".into(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            addresses: vec![(ip("10.2.0.1"), 24), (ip("2001:db8:2::1"), 64)],
        });
        type Shape<'a> = (TunnelKind, &'a str, Option<&'a str>, Vec<u8>, bool);
        let shapes: [Shape<'_>; 7] = [
            (TunnelKind::Vxlan, "10.2.0.1", Some("10.2.0.2"), vec![], true),
            (
                TunnelKind::Geneve,
                "2001:db8:2::1",
                Some("2001:db8:2::2"),
                vec![1, 2, 3, 1, 9, 9, 9, 9],
                true,
            ),
            (TunnelKind::Vxlan, "2001:db8:2::1", Some("2001:db8:2::3"), vec![], false),
            (TunnelKind::Ipip, "10.2.0.1", Some("10.2.0.4"), vec![], true),
            (TunnelKind::Vxlan, "10.2.0.1", None, vec![], true),
            // A remote behind an ECMP route of two gateways: each flow picks its own underlay
            // path.
            (TunnelKind::Vxlan, "10.2.0.1", Some("192.0.2.7"), vec![], true),
            // Geneve with options over IPv4 (the template's UDP/IPv4 path with a longer header).
            (
                TunnelKind::Geneve,
                "10.2.0.1",
                Some("10.2.0.8"),
                vec![1, 2, 3, 1, 9, 9, 9, 9, 1, 2, 4, 1, 7, 7, 7, 7],
                true,
            ),
        ];
        let mut ids = Vec::new();
        for (i, (kind, local, remote, options, csum)) in shapes.into_iter().enumerate() {
            let id = b.tunnel(
                PortInfo {
                    name: format!("t{i}"),
                    mac: [2, 0, 0, 0, 9, i as u8],
                    mtu: 1400,
                    addresses: vec![(ip(&format!("10.10{i}.0.1")), 24)],
                },
                Tunnel {
                    name: format!("t{i}"),
                    kind,
                    iface: 0,
                    local: addr_from_ip(ip(local)),
                    remote: remote.map(|r| addr_from_ip(ip(r))),
                    vni: 100 + i as u32,
                    dst_port: if kind == TunnelKind::Geneve { 6081 } else { 4789 },
                    ttl: 60,
                    udp_checksum6: csum,
                    options,
                },
            );
            ids.push(id);
        }
        for (i, r) in
            ["10.2.0.2", "2001:db8:2::2", "2001:db8:2::3", "10.2.0.4", "10.2.0.5", "10.2.0.6"]
                .iter()
                .enumerate()
        {
            b.neighbour(0, ip(r), [2, 0, 0, 0, 0xee, i as u8]);
        }
        b.neighbour(0, ip("10.2.0.8"), [2, 0, 0, 0, 0xee, 8]);
        let via = |a: &str| NextHopSpec { via: Some(ip(a)), dev: None, weight: 1 };
        b.route(ip("192.0.2.0"), 24, &[via("10.2.0.2"), via("10.2.0.4")], false).unwrap();
        b.fdb(ids[4], [2, 0, 0, 0, 0xaa, 1], ip("10.2.0.5"));
        b.fdb(ids[4], [0; 6], ip("10.2.0.6"));
        (b.build().unwrap(), ids)
    }

    fn frame(i: usize) -> Vec<u8> {
        let v6 = i.is_multiple_of(3);
        let len = 60 + (i * 37) % 900;
        let mut f = vec![0u8; 14 + len];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, if i.is_multiple_of(4) { 0xaa } else { 0xbb }, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 9, 9]);
        if v6 {
            f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            f[14] = 0x60 | (i as u8 & 0x0f);
            f[15] = (i as u8) << 4;
            f[18..20].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            f[20] = 17;
            f[21] = 64;
            f[22..38]
                .copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i as u8]);
            f[38..54].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, 7]);
        } else {
            f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            f[14] = 0x45;
            f[15] = (i * 13) as u8;
            f[16..18].copy_from_slice(&(len as u16).to_be_bytes());
            f[22] = 64;
            f[23] = 17;
            f[26..30].copy_from_slice(&[10, 1, 0, i as u8]);
            f[30..34].copy_from_slice(&[172, 16, (i * 3) as u8, 7]);
            f[34..36].copy_from_slice(&(1024 + i as u16 * 11).to_be_bytes());
            f[36..38].copy_from_slice(&53u16.to_be_bytes());
        }
        for (j, b) in f.iter_mut().enumerate().skip(54) {
            *b = (i * 7 + j) as u8;
        }
        f
    }

    /// A packet as the rewrite stage leaves one routed into a tunnel: parsed (the encap stage
    /// takes the flow hash from its flow key), `Continue`, out of `port`.
    fn buf(bytes: &[u8], port: PortId) -> PacketBuf {
        let mut f = bytes.to_vec();
        if f[12..14] == ETHERTYPE_IPV4.to_be_bytes() {
            f[24..26].fill(0);
            let c = checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
        let mut b = PacketBuf::new(Box::leak(vec![0u8; FRAME_SIZE].into_boxed_slice()), 0);
        b.fill_from(&f).unwrap();
        let (data, meta) = b.data_and_meta();
        ferroplane_pipeline::parse::parse_headers(data, meta).unwrap();
        b.meta.verdict = Verdict::Continue;
        b.meta.out_port = port;
        b
    }

    /// [`buf`] as [`output`] alone needs it: with the flow hash the stage computes (from the
    /// general function, so the stage's inline one is checked against it).
    fn buf_alone(bytes: &[u8], port: PortId, t: &Tables) -> PacketBuf {
        let mut b = buf(bytes, port);
        b.meta.flow_hash = b.meta.flow.symmetric_hash(t.hash_seed);
        b
    }

    /// The stage's per-burst templates give every packet exactly the bytes and verdict the
    /// general path gives it alone: runs of one tunnel, alternating tunnels, both families
    /// inside, every size, DS values, flow hashes, the FDB's remotes, the MTU limit.
    #[test]
    fn templates_match_the_general_path_byte_for_byte() {
        let (t, ids) = tables();
        let cx = Context { tables: &t, now_ns: 0 };
        for pattern in 0..4 {
            let mut burst = Vec::new();
            let mut alone = Vec::new();
            for i in 0..64 {
                let port = match pattern {
                    0 => ids[i % ids.len()],
                    1 => ids[(i / 16) % ids.len()],
                    2 => ids[0],
                    _ => ids[5],
                };
                let mut f = frame(i);
                if i == 7 {
                    f.resize(14 + 1450, 0); // over the tunnel's underlay room
                    let l = (1450u16).to_be_bytes();
                    f[16..18].copy_from_slice(&l);
                }
                burst.push(buf(&f, port));
                let mut b = buf_alone(&f, port, &t);
                let v = output(&t, &mut b, port);
                alone.push((v, b));
            }
            Stage::process(&mut EncapStage::default(), &cx, &mut burst);
            for (i, (p, (v, a))) in burst.iter().zip(&alone).enumerate() {
                assert_eq!(p.meta.verdict, *v, "pattern {pattern} packet {i}");
                if matches!(v, Verdict::Forward(_)) {
                    assert_eq!(p.data(), a.data(), "pattern {pattern} packet {i}");
                    assert_eq!(p.meta.next_hop, a.meta.next_hop);
                }
            }
        }
    }

    /// The template's IPv4 header checksum, from the sum of the words that do not change and
    /// the two that do, is the checksum of the whole header, for any addresses, TTL, DS field
    /// and length (the folds' carries at their limits included).
    #[test]
    fn template_ip_checksum_is_the_header_checksum() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_be_bytes();
            let mut hdr = [0u8; TEMPLATE_MAX];
            let ip = &mut hdr[ETH_LEN..ETH_LEN + 20];
            ip[0] = 0x45;
            ip[6] = 0x40;
            ip[8] = if n % 3 == 0 { 0xff } else { b[0] };
            ip[9] = 17;
            let addr = if n % 5 == 0 { [0xff; 8] } else { b };
            ip[12..20].copy_from_slice(&addr);
            let w16 = |i: usize| u16::from_be_bytes([hdr[i], hdr[i + 1]]) as u32;
            let same = [2, 3, 4, 6, 7, 8, 9].map(|i| w16(ETH_LEN + 2 * i));
            let tpl = Template { csum_base: 0x4500 + same.iter().sum::<u32>(), ..Template::EMPTY };
            let ds = b[1];
            let total = if n % 7 == 0 { 0xffff } else { 20 + (x >> 20) as u32 % 65000 };
            let ip = &mut hdr[ETH_LEN..ETH_LEN + 20];
            ip[1] = ds;
            ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            assert_eq!(tpl.ip_checksum(ds, total), checksum::checksum(ip), "{n}");
        }
    }

    /// The templates' MTU check agrees with the general path's to the byte: for every tunnel,
    /// bursts of frames of every length around the underlay MTU (1500) less each shape's
    /// overhead, both inner families.
    #[test]
    fn templates_check_the_mtu_like_the_general_path() {
        let (t, ids) = tables();
        let cx = Context { tables: &t, now_ns: 0 };
        for &port in &ids {
            for v6 in [false, true] {
                let mut fits = [0, 0];
                for lens in [1400..1464usize, 1450..1514] {
                    let mut burst = Vec::new();
                    let mut alone = Vec::new();
                    for len in lens {
                        let mut f = frame(if v6 { 3 } else { 1 });
                        f.resize(len, 0);
                        let ip_len = (len - 14) as u16;
                        if v6 {
                            f[18..20].copy_from_slice(&(ip_len - 40).to_be_bytes());
                        } else {
                            f[16..18].copy_from_slice(&ip_len.to_be_bytes());
                        }
                        burst.push(buf(&f, port));
                        let mut b = buf_alone(&f, port, &t);
                        alone.push((output(&t, &mut b, port), b));
                    }
                    Stage::process(&mut EncapStage::default(), &cx, &mut burst);
                    for (p, (v, a)) in burst.iter().zip(&alone) {
                        assert_eq!(p.meta.verdict, *v, "port {port} v6 {v6} length {}", a.len());
                        if matches!(v, Verdict::Forward(_)) {
                            assert_eq!(p.data(), a.data());
                            fits[0] += 1;
                        } else {
                            fits[1] += 1;
                        }
                    }
                }
                // Both sides of the limit were tried.
                assert!(fits[0] > 0 && fits[1] > 0, "port {port} v6 {v6}: {fits:?}");
            }
        }
    }

    /// Runs `frames` (routed into `port`) through `stage` over `t` as one burst.
    fn burst_through(stage: &mut EncapStage, t: &Tables, port: PortId, n: usize) -> Vec<PacketBuf> {
        let cx = Context { tables: t, now_ns: 0 };
        let mut burst: Vec<PacketBuf> = (0..n).map(|i| buf(&frame(3 * i + 1), port)).collect();
        Stage::process(stage, &cx, &mut burst);
        burst
    }

    /// The stage keeps a point-to-point tunnel's template from one burst to the next while the
    /// snapshot is the same, and never into another: a snapshot with a new underlay neighbour
    /// MAC (a new generation) gives the very next packet the new outer destination MAC, and
    /// every packet stays byte for byte what the general path makes of it alone.
    #[test]
    fn a_new_snapshot_replaces_the_kept_templates() {
        let (t, ids) = tables();
        let port = ids[0]; // VXLAN over IPv4 to 10.2.0.2
        let mut stage = EncapStage::default();
        let check = |t: &Tables, burst: &[PacketBuf], mac: MacAddr| {
            for (i, p) in burst.iter().enumerate() {
                let mut a = buf_alone(&frame(3 * i + 1), port, t);
                assert_eq!(output(t, &mut a, port), p.meta.verdict);
                assert_eq!(p.data(), a.data());
                assert_eq!(p.data()[0..6], mac);
            }
        };
        let first = burst_through(&mut stage, &t, port, 8);
        check(&t, &first, [2, 0, 0, 0, 0xee, 0]);
        // The same snapshot again: the kept template serves the whole burst.
        assert_eq!(stage.p2p_iface, port as u32);
        let again = burst_through(&mut stage, &t, port, 8);
        check(&t, &again, [2, 0, 0, 0, 0xee, 0]);
        // The underlay neighbour moves: a new snapshot, published as the control thread does.
        let handle = TableHandle::new(t.clone());
        let mut n = (*t.neighbours).clone();
        let moved = [2, 0, 0, 0, 0x77, 1];
        n.insert((0, addr_from_ip(ip("10.2.0.2"))), moved);
        handle.publish(t.with_neighbours(n));
        let t2 = handle.load_full();
        assert_ne!(t2.generation, t.generation);
        let after = burst_through(&mut stage, &t2, port, 8);
        check(&t2, &after, moved);
        // And back to the first snapshot (a worker never goes back, but nothing kept from the
        // second may leak into it).
        let back = burst_through(&mut stage, &t, port, 8);
        check(&t, &back, [2, 0, 0, 0, 0xee, 0]);
    }

    /// A snapshot in which the remote has no route any more drops the next packet with the
    /// general path's reason instead of using the template kept from the last snapshot.
    #[test]
    fn a_kept_template_never_outlives_its_route() {
        let (t, ids) = tables();
        let port = ids[0];
        let mut stage = EncapStage::default();
        let first = burst_through(&mut stage, &t, port, 4);
        assert!(first.iter().all(|p| p.meta.verdict == Verdict::Forward(0)));
        // The same tunnels, no underlay port address (so no connected route to the remote).
        let mut b = TablesBuilder::new(1);
        b.port(PortInfo {
            name: "u".into(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            addresses: vec![],
        });
        for tn in t.tunnels.iter() {
            let info = t.port(tn.iface).unwrap().clone();
            b.tunnel(info, tn.clone());
        }
        let t2 = b.build().unwrap();
        let after = burst_through(&mut stage, &t2, port, 4);
        for p in &after {
            assert_eq!(p.meta.verdict, Verdict::Drop(DropReason::TunnelNoRoute));
        }
    }
}
