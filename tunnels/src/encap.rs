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

use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::checksum;
use ferroplane_pipeline::fib::NextHopId;
use ferroplane_pipeline::meta::{Addr, PortId};
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

/// What [`output_cached`] learned about the underlay during one burst: the last remote's route
/// and whether it is one of our addresses, and the last underlay neighbour. A burst's packets
/// mostly go to one remote, so most of them skip the FIB lookup, the local-address scan and the
/// neighbour probe. Lives for one burst (one snapshot) only, as the rewrite stage's neighbour
/// cache does, so it can never be staler than the tables it came from.
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

/// The outer headers the last packet to one (tunnel, remote) got, kept for the rest of the burst
/// (VPP's rewrite string): the next packets copy them whole and patch only what varies per
/// packet (lengths, DS field, UDP source port, flow label, checksums), skipping the route,
/// neighbour and header-building work. Built from a packet the general path encapsulated, so it
/// can never disagree with it; lives for one burst, so it can never be staler than the snapshot.
struct Template {
    iface: PortId,
    remote: Addr,
    /// Inner EtherType the template was built for (IP-in-IP's protocol follows it).
    inner_type: u16,
    out_port: PortId,
    next_hop: Addr,
    /// The longest packet (as the stage gets it: IP-in-IP's still with its inner Ethernet
    /// header) whose outer IP packet fits the underlay port's MTU, so one compare checks it.
    max_payload: isize,
    kind: TunnelKind,
    v6: bool,
    udp_checksum6: bool,
    /// The UDP destination port (VXLAN and Geneve), kept here so `apply` builds the first UDP
    /// word in a register instead of reading it back from the bytes it has just copied (a
    /// load from narrower stores in flight stalls on store forwarding).
    dst_port: u16,
    len: usize,
    hdr: [u8; TEMPLATE_MAX],
    /// IPv4: the one's-complement sum of the header words that never change (all but the first
    /// word and the checksum), folded to 16 bits, and the TTL/protocol word.
    rest: u32,
    ttl_proto: u32,
}

/// Ethernet, IPv6, UDP, Geneve base header and the largest options area the config allows.
const TEMPLATE_MAX: usize = 14 + 40 + 8 + 8 + 128;

impl Template {
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
        let w = |i: usize| u32::from_be_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
        let (mut rest, mut ttl_proto) = (0, 0);
        if !v6 {
            ttl_proto = w(ETH_LEN + 8) & 0xffff_0000;
            let sum = w(ETH_LEN + 4) as u64
                + ttl_proto as u64
                + w(ETH_LEN + 12) as u64
                + w(ETH_LEN + 16) as u64;
            rest = fold16(sum) as u32;
        }
        if tunnel.kind != TunnelKind::Ipip {
            let at = ETH_LEN + ip_len;
            hdr[at + 6] = 0;
            hdr[at + 7] = 0;
        }
        Some(Template {
            iface: tunnel.iface,
            remote,
            inner_type,
            out_port: p.meta.out_port,
            next_hop: p.meta.next_hop,
            max_payload: -1,
            kind: tunnel.kind,
            v6,
            udp_checksum6: tunnel.udp_checksum6,
            dst_port: tunnel.dst_port,
            len,
            hdr,
            rest,
            ttl_proto,
        })
    }

    /// [`Template::apply`] for an IPv4 outer header (VXLAN, Geneve, IP-in-IP), the commonest
    /// shapes: the same bytes, from the header offsets IPv4 fixes and without IPv6's branches
    /// and checksum. A profile of `apply` showed its time spread evenly over its instructions
    /// (no stall stood out), so fewer instructions is what makes it faster.
    #[inline(always)]
    fn apply_v4(&self, p: &mut PacketBuf) -> Verdict {
        const IP: usize = ETH_LEN;
        const UDP: usize = ETH_LEN + 20;
        let inner = p.data().get(ETH_LEN..).unwrap_or_default();
        let ds = match self.inner_type {
            ETHERTYPE_IPV4 => ecn::ds_field(inner, false),
            ETHERTYPE_IPV6 => ecn::ds_field(inner, true),
            _ => 0,
        };
        if p.len() as isize > self.max_payload {
            return Verdict::Drop(DropReason::TunnelMtuExceeded);
        }
        let ipip = self.kind == TunnelKind::Ipip;
        if ipip && p.advance(ETH_LEN).is_err() {
            return Verdict::Drop(DropReason::TunnelInnerMalformed);
        }
        let hash = p.meta.flow_hash;
        // The outer IP packet: the template after its Ethernet header, then the payload.
        let ip_total = self.len - IP + p.len();
        let Ok(out) = p.prepend(self.len) else {
            return Verdict::Drop(DropReason::TunnelNoHeadroom);
        };
        copy_header(out, &self.hdr);
        // Every IPv4 template holds the whole IPv4 header (and a UDP one unless IP-in-IP),
        // so these never fail.
        let Some(h) = out.first_chunk_mut::<UDP>() else {
            return Verdict::Drop(DropReason::TunnelInnerMalformed);
        };
        let w0 = 0x4500_0000 | ((ds as u32) << 16) | ip_total as u32;
        let c = !fold16(self.rest as u64 + w0 as u64);
        h[IP..IP + 4].copy_from_slice(&w0.to_be_bytes());
        h[IP + 8..IP + 12].copy_from_slice(&(self.ttl_proto | c as u32).to_be_bytes());
        if !ipip {
            let Some(h) = out.first_chunk_mut::<{ UDP + 8 }>() else {
                return Verdict::Drop(DropReason::TunnelInnerMalformed);
            };
            let udp0 = ((source_port(hash) as u32) << 16) | self.dst_port as u32;
            h[UDP..UDP + 4].copy_from_slice(&udp0.to_be_bytes());
            h[UDP + 4..UDP + 6].copy_from_slice(&((ip_total - 20) as u16).to_be_bytes());
        }
        p.meta.out_port = self.out_port;
        p.meta.next_hop = self.next_hop;
        Verdict::Forward(self.out_port)
    }

    /// Encapsulates `p` (an Ethernet frame of at least [`ETH_LEN`] bytes for this template's
    /// tunnel and remote) with the template's headers and returns its verdict.
    #[inline(always)]
    fn encap(&self, p: &mut PacketBuf) -> Verdict {
        if !self.v6 {
            self.apply_v4(p)
        } else {
            self.apply(p)
        }
    }

    /// [`Template::encap`] for every shape.
    #[inline]
    fn apply(&self, p: &mut PacketBuf) -> Verdict {
        let d = p.data();
        let ds = match self.inner_type {
            ETHERTYPE_IPV4 => ecn::ds_field(&d[ETH_LEN..], false),
            ETHERTYPE_IPV6 => ecn::ds_field(&d[ETH_LEN..], true),
            _ => 0,
        };
        let hash = p.meta.flow_hash;
        if p.len() as isize > self.max_payload {
            return Verdict::Drop(DropReason::TunnelMtuExceeded);
        }
        if self.kind == TunnelKind::Ipip && p.advance(ETH_LEN).is_err() {
            return Verdict::Drop(DropReason::TunnelInnerMalformed);
        }
        let payload = p.len();
        let ip_len = if self.v6 { 40 } else { 20 };
        let ip_payload = self.len - ETH_LEN - ip_len + payload;
        let Ok(out) = p.prepend(self.len) else {
            return Verdict::Drop(DropReason::TunnelNoHeadroom);
        };
        copy_header(out, &self.hdr);
        if self.v6 {
            let first = (6u32 << 28) | ((ds as u32) << 20) | (hash & 0xf_ffff);
            out[ETH_LEN..ETH_LEN + 4].copy_from_slice(&first.to_be_bytes());
            out[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&(ip_payload as u16).to_be_bytes());
        } else {
            let w0 = 0x4500_0000 | ((ds as u32) << 16) | (20 + ip_payload) as u32;
            let c = !fold16(self.rest as u64 + w0 as u64);
            out[ETH_LEN..ETH_LEN + 4].copy_from_slice(&w0.to_be_bytes());
            out[ETH_LEN + 8..ETH_LEN + 12]
                .copy_from_slice(&(self.ttl_proto | c as u32).to_be_bytes());
        }
        if self.kind != TunnelKind::Ipip {
            let at = ETH_LEN + ip_len;
            let w = ((source_port(hash) as u32) << 16) | self.dst_port as u32;
            out[at..at + 4].copy_from_slice(&w.to_be_bytes());
            out[at + 4..at + 6].copy_from_slice(&(ip_payload as u16).to_be_bytes());
            if self.v6 && self.udp_checksum6 {
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

/// The one's-complement sum `acc` (of at most a few dozen 32-bit words) folded to 16 bits, in
/// a fixed number of steps: `checksum::finish`'s loop runs as often as the carries need, a
/// branch that follows each packet's length and DS field.
#[inline(always)]
fn fold16(acc: u64) -> u16 {
    let x = (acc & 0xffff_ffff) + (acc >> 32); // < 2^33
    let x = (x & 0xffff) + (x >> 16); // < 2^18
    let x = (x & 0xffff) + (x >> 16); // <= 0xffff + 3
    ((x & 0xffff) + (x >> 16)) as u16 // <= 0xffff: a carry here leaves at most 3
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

/// Encapsulation; see the module documentation.
pub struct EncapStage {
    counters: Option<Arc<TunnelCounters>>,
    /// The burst's underlay lookups and header template (reset by `begin`).
    cache: UnderlayCache,
    template: Option<Template>,
    /// The tunnel interface of `template` when that tunnel is point-to-point, else
    /// [`NO_IFACE`]: the one compare a packet needs to take the template.
    p2p_iface: u32,
}

impl Default for EncapStage {
    fn default() -> EncapStage {
        EncapStage {
            counters: None,
            cache: UnderlayCache::default(),
            template: None,
            p2p_iface: NO_IFACE,
        }
    }
}

impl EncapStage {
    /// Counts what each tunnel sends into `counters`.
    pub fn with_counters(counters: Arc<TunnelCounters>) -> EncapStage {
        EncapStage { counters: Some(counters), ..Default::default() }
    }

    #[inline]
    fn count(&self, t: &Tables, iface: PortId, verdict: Verdict, bytes: usize) {
        if let (Verdict::Forward(_), Some(c)) = (verdict, &self.counters) {
            if let Some(c) = c.of(t, iface) {
                c.tx_packets.inc();
                c.tx_bytes.add(bytes as u64);
            }
        }
    }
}

impl EncapStage {
    /// Every packet the fast path of `packet` does not take: the general path, and a template
    /// from its result. Out of line, so the loop over a burst that goes into one tunnel stays
    /// small.
    #[inline(never)]
    fn general(&mut self, t: &Tables, p: &mut PacketBuf) {
        let port = p.meta.out_port;
        let Some(tunnel) = t.tunnels.by_iface(port) else { return };
        let d = p.data();
        if d.len() < ETH_LEN {
            p.meta.verdict = Verdict::Drop(DropReason::TunnelInnerMalformed);
            return;
        }
        let inner_type = u16::from_be_bytes([d[12], d[13]]);
        let remote = match tunnel.remote {
            Some(r) => Some(r),
            None => t.fdb_remote(port, &[d[0], d[1], d[2], d[3], d[4], d[5]]),
        };
        if let (Some(tpl), Some(r)) = (&self.template, remote) {
            if tpl.iface == port && tpl.remote == r && tpl.inner_type == inner_type {
                let bytes = p.len();
                p.meta.verdict = tpl.encap(p);
                self.count(t, port, p.meta.verdict, bytes);
                return;
            }
        }
        let before = p.len();
        p.meta.verdict = output_cached(t, p, port, &mut self.cache);
        self.count(t, port, p.meta.verdict, before);
        // A single-level encapsulation onto a port (not a nested one) becomes the template.
        if let (Verdict::Forward(out), Some(r)) = (p.meta.verdict, remote) {
            let added = p.len() as isize - before as isize;
            let ip = if tunnel.outer_v6() { 40 } else { 20 };
            let single = match tunnel.kind {
                TunnelKind::Ipip => ip,
                TunnelKind::Vxlan => ETH_LEN + ip + 16,
                TunnelKind::Geneve => ETH_LEN + ip + 16 + tunnel.options.len(),
            };
            // Underlay ECMP picks a path per flow: a template would pin the burst to the
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
                self.template = Template::capture(p, tunnel, r, inner_type).map(|mut tpl| {
                    let mtu = t.port(out).map_or(0, |o| o.mtu) as isize;
                    // The outer IP packet is the template after its Ethernet header plus the
                    // packet, less IP-in-IP's inner Ethernet header.
                    let strip = if tpl.kind == TunnelKind::Ipip { ETH_LEN } else { 0 };
                    tpl.max_payload = mtu - (tpl.len - ETH_LEN) as isize + strip as isize;
                    tpl
                });
                // A point-to-point tunnel's remote is the same for every packet, so its
                // template fits every packet to the tunnel with this inner EtherType.
                self.p2p_iface = match (&self.template, tunnel.remote) {
                    (Some(_), Some(_)) => port as u32,
                    _ => NO_IFACE,
                };
            }
        }
    }
}

/// `EncapStage::p2p_iface` when the burst has no point-to-point template (above any `PortId`).
const NO_IFACE: u32 = u32::MAX;

impl PacketStage for EncapStage {
    fn name(&self) -> &'static str {
        "encap"
    }

    #[inline]
    fn begin(&mut self, cx: &Context<'_>) -> bool {
        self.cache = UnderlayCache::default();
        self.template = None;
        self.p2p_iface = NO_IFACE;
        !cx.tables.tunnels.is_empty()
    }

    /// Takes the packets the rewrite stage left `Continue` with a tunnel as `out_port`. A
    /// packet into the tunnel of the burst's point-to-point template, with the template's
    /// inner EtherType, gets the template straight away: the tunnel, its remote and the route
    /// are the ones the template was built from, in this burst's snapshot.
    #[inline(always)]
    fn packet(&mut self, cx: &Context<'_>, p: &mut PacketBuf) {
        if p.meta.out_port as u32 == self.p2p_iface {
            if let (Some(tpl), Some(ty)) = (&self.template, p.data().get(12..14)) {
                if u16::from_be_bytes([ty[0], ty[1]]) == tpl.inner_type {
                    let (port, bytes) = (p.meta.out_port, p.len());
                    p.meta.verdict = tpl.encap(p);
                    self.count(cx.tables, port, p.meta.verdict, bytes);
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
    use ferroplane_pipeline::tables::{NextHopSpec, PortInfo, TablesBuilder};

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
        let shapes: [Shape<'_>; 5] = [
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
        // A remote behind an ECMP route of two gateways: each flow picks its own underlay path.
        let id = b.tunnel(
            PortInfo { name: "t5".into(), mac: [2, 0, 0, 0, 9, 5], mtu: 1400, addresses: vec![] },
            Tunnel {
                name: "t5".into(),
                kind: TunnelKind::Vxlan,
                iface: 0,
                local: addr_from_ip(ip("10.2.0.1")),
                remote: Some(addr_from_ip(ip("192.0.2.7"))),
                vni: 105,
                dst_port: 4789,
                ttl: 60,
                udp_checksum6: true,
                options: vec![],
            },
        );
        ids.push(id);
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
        } else {
            f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            f[14] = 0x45;
            f[15] = (i * 13) as u8;
            f[16..18].copy_from_slice(&(len as u16).to_be_bytes());
            f[22] = 64;
            f[23] = 17;
        }
        for (j, b) in f.iter_mut().enumerate().skip(54) {
            *b = (i * 7 + j) as u8;
        }
        f
    }

    fn buf(bytes: &[u8], port: PortId, hash: u32) -> PacketBuf {
        let mut b = PacketBuf::new(Box::leak(vec![0u8; FRAME_SIZE].into_boxed_slice()), 0);
        b.fill_from(bytes).unwrap();
        // As the rewrite stage leaves a packet routed into a tunnel.
        b.meta.verdict = Verdict::Continue;
        b.meta.out_port = port;
        b.meta.flow_hash = hash;
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
                let hash = (i as u32).wrapping_mul(0x9e37_79b9);
                burst.push(buf(&f, port, hash));
                let mut b = buf(&f, port, hash);
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

    /// The fixed-step fold gives what the checksum module's folding loops give.
    #[test]
    fn fold16_matches_the_checksum_module() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut edges = vec![0, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000_0000, 0xffff_ffff_ffff];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            edges.push(x >> (x % 26));
        }
        for acc in edges {
            let expect = checksum::finish(checksum::combine(acc as u32, (acc >> 32) as u32));
            assert_eq!(!fold16(acc), expect, "{acc:#x}");
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
                        burst.push(buf(&f, port, 7));
                        let mut b = buf(&f, port, 7);
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
}
