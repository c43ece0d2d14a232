//! The encap stage: packets the pipeline sends out of a tunnel interface get their outer
//! headers, in the buffer's headroom (no payload copy), and leave on the underlay port.
//!
//! It runs last, after the rewrite stage has done the overlay part: TTL, and for VXLAN/Geneve
//! the inner Ethernet header from the overlay neighbour table (so the order of DESIGN.md holds:
//! overlay neighbour, encap, FIB lookup of the outer destination, underlay neighbour). The
//! worker also runs it alone over what the slow path sends out of a tunnel interface (ARP and
//! neighbour discovery on the overlay, echo replies, released packets).
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
use ferroplane_pipeline::stage::{Context, Stage};
use ferroplane_pipeline::tables::{MacAddr, NextHop, Tables};
use ferroplane_pipeline::tunnel::{Tunnel, TunnelKind};
use ferroplane_pipeline::verdict::{DropReason, PuntReason, Verdict};

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

/// Encapsulation; see the module documentation.
#[derive(Default)]
pub struct EncapStage;

impl Stage for EncapStage {
    fn name(&self) -> &'static str {
        "encap"
    }

    fn process(&mut self, cx: &Context<'_>, burst: &mut [PacketBuf]) {
        let t = cx.tables;
        if t.tunnels.is_empty() {
            return;
        }
        let first = t.tunnels.first_iface();
        let mut cache = UnderlayCache::default();
        for p in burst.iter_mut() {
            if let Verdict::Forward(port) = p.meta.verdict {
                if port >= first {
                    p.meta.verdict = output_cached(t, p, port, &mut cache);
                }
            }
        }
    }
}
