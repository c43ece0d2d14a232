//! The L3 forwarding stages: parse, input checks and local delivery, route, rewrite.
//!
//! Their order is the packet path of DESIGN.md for plain routing. Tunnel, conntrack and policy
//! stages slot in between them later without changing these.
//!
//! Offsets: every stage reads headers at the offsets the parse stage stored in [`Meta`], which are
//! inside the packet by the parse stage's contract, so the indexing here cannot go out of bounds;
//! still, the accessors use `get` where a wrong offset would otherwise panic, and drop instead.

use crate::buf::PacketBuf;
use crate::checksum;
use crate::fib::NextHopId;
use crate::flow::as_v4;
use crate::meta::{Addr, Meta, PortId, L3};
use crate::parse;
use crate::stage::{Context, PacketStage, Stage, BURST};
use crate::tables::{MacAddr, NextHop};
use crate::tunnel::Link;
use crate::verdict::{DropReason, PuntReason, Verdict};

const ETH_BROADCAST: [u8; 6] = [0xff; 6];
const ICMPV6: u8 = 58;

/// Parses each frame once; malformed frames are dropped with the parser's reason.
#[derive(Default)]
pub struct ParseStage;

impl PacketStage for ParseStage {
    fn name(&self) -> &'static str {
        "parse"
    }

    #[inline(always)]
    fn packet(&mut self, _cx: &Context<'_>, p: &mut PacketBuf) {
        let (data, meta) = p.data_and_meta();
        if let Err(r) = parse::parse_headers(data, meta) {
            meta.verdict = Verdict::Drop(r);
        }
    }
}

/// Input checks and local delivery: link-layer destination, VLANs, martian addresses, and the
/// packets that are for the dataplane itself (ARP, neighbour discovery, our addresses), which go
/// to the slow path. A packet that goes on to routing has its FIB entry prefetched here, so the
/// route stage's lookups find it in cache.
#[derive(Default)]
pub struct InputStage;

impl InputStage {
    #[inline]
    fn classify(cx: &Context<'_>, data: &[u8], meta: &Meta) -> Verdict {
        if meta.vlan.is_some() {
            return Verdict::Drop(DropReason::VlanNotConfigured);
        }
        let Some(port) = cx.tables.port(meta.in_port) else {
            return Verdict::Drop(DropReason::NotOurMac);
        };
        let dst_mac: [u8; 6] = match data.get(0..6) {
            Some(m) => [m[0], m[1], m[2], m[3], m[4], m[5]],
            None => return Verdict::Drop(DropReason::EthTruncated),
        };
        let l2_unicast_to_us = dst_mac == port.mac;
        let l2_group = dst_mac[0] & 1 == 1; // broadcast or multicast
        if !l2_unicast_to_us && !l2_group {
            return Verdict::Drop(DropReason::NotOurMac);
        }
        match meta.l3 {
            L3::Arp => Verdict::Punt(PuntReason::Arp),
            L3::Ipv4 => {
                let src = u32::from_be_bytes(meta.flow.src[12..16].try_into().unwrap_or_default());
                let dst = u32::from_be_bytes(meta.flow.dst[12..16].try_into().unwrap_or_default());
                // RFC 1812 5.3.7: never forward from 0/8, 127/8, class D/E or broadcast sources.
                let s0 = src >> 24;
                if s0 == 0 || s0 == 127 || s0 >= 224 {
                    return Verdict::Drop(DropReason::Ipv4BadSource);
                }
                if cx.tables.is_local4(dst) {
                    return Verdict::Punt(PuntReason::Local);
                }
                let d0 = dst >> 24;
                if d0 == 0 || d0 == 127 || d0 >= 224 || l2_group {
                    // Multicast, limited broadcast, and unicast IP in a link-layer broadcast
                    // (RFC 1812 5.3.4) are not routed.
                    return Verdict::Drop(DropReason::Ipv4NotRoutable);
                }
                // Routed: start loading its FIB entry, so the route stage finds it in cache.
                cx.tables.fib4.prefetch(dst);
                Verdict::Continue
            }
            L3::Ipv6 => {
                let src = &meta.flow.src;
                let dst = &meta.flow.dst;
                if src[0] == 0xff || u128::from_be_bytes(*src) == 1 {
                    return Verdict::Drop(DropReason::Ipv6BadSource);
                }
                if meta.l4_proto == ICMPV6 && is_nd(data, meta) {
                    return Verdict::Punt(PuntReason::NeighbourDiscovery);
                }
                if cx.tables.is_local6(u128::from_be_bytes(*dst)) {
                    return Verdict::Punt(PuntReason::Local);
                }
                let link_local = |a: &[u8; 16]| a[0] == 0xfe && a[1] & 0xc0 == 0x80;
                // RFC 4291 2.5.6: link-local packets never leave their link.
                if dst[0] == 0xff
                    || link_local(dst)
                    || link_local(src)
                    || u128::from_be_bytes(*dst) <= 1
                    || l2_group
                {
                    return Verdict::Drop(DropReason::Ipv6NotRoutable);
                }
                Verdict::Continue
            }
            L3::None => Verdict::Drop(DropReason::UnknownEthertype),
        }
    }
}

/// ICMPv6 types 133-137: router/neighbour solicitation and advertisement, redirect.
#[inline]
fn is_nd(data: &[u8], meta: &Meta) -> bool {
    meta.l4_offset != 0
        && data.get(meta.l4_offset as usize).is_some_and(|t| (133..=137).contains(t))
}

impl PacketStage for InputStage {
    fn name(&self) -> &'static str {
        "input"
    }

    #[inline(always)]
    fn packet(&mut self, cx: &Context<'_>, p: &mut PacketBuf) {
        p.meta.verdict = Self::classify(cx, p.data(), &p.meta);
    }
}

/// Longest-prefix match, ECMP pick, TTL and MTU checks. Sets `out_port` and `next_hop`.
#[derive(Default)]
pub struct RouteStage;

impl RouteStage {
    #[inline(always)]
    fn route(cx: &Context<'_>, group: Option<NextHopId>, meta: &mut Meta) -> Verdict {
        let t = cx.tables;
        let Some(group_id) = group else {
            return Verdict::Punt(PuntReason::NoRoute);
        };
        let Some(group) = t.groups.get(group_id as usize) else {
            return Verdict::Drop(DropReason::NextHopDrop);
        };
        // The flow hash (the parse stage leaves it 0) only where the choice depends on it: an
        // ECMP group. (The encap stage computes it for the entropy of a tunnel's outer header.)
        let hop = match group.single() {
            Some(hop) => hop,
            None => {
                meta.flow_hash = meta.flow.symmetric_hash(t.hash_seed);
                group.pick_ref(meta.flow_hash)
            }
        };
        let (port, next_hop) = match *hop {
            NextHop::Gateway { port, ref gateway } => (port, *gateway),
            NextHop::Direct { port } => (port, meta.flow.dst),
            NextHop::Blackhole => return Verdict::Drop(DropReason::NextHopDrop),
        };
        let Some(out) = t.port(port) else {
            return Verdict::Drop(DropReason::NextHopDrop);
        };
        // A packet that would leave with TTL / hop limit 0 gets ICMP time exceeded from the
        // slow path (RFC 1812 5.3.1, RFC 8200 3).
        if meta.ttl <= 1 {
            return Verdict::Punt(PuntReason::TtlExpired);
        }
        let ip_len = meta.l3_end as usize - meta.l3_offset as usize;
        meta.out_port = port;
        meta.next_hop = next_hop;
        if ip_len > out.mtu as usize {
            return Verdict::Punt(PuntReason::MtuExceeded);
        }
        Verdict::Continue
    }
}

/// A whole-burst stage rather than a [`PacketStage`], for IPv6: its lookups are gathered and run
/// as one [`Fib6::lookup_burst`](crate::fib::Fib6::lookup_burst), whose lockstep rounds overlap
/// the hash-table misses of the whole burst, where one lookup at a time waits out each of its
/// two or three dependent probes in turn. IPv4 lookups stay one at a time: the input stage
/// prefetched each one's first-level entry, which answers nearly all of them.
impl Stage for RouteStage {
    fn name(&self) -> &'static str {
        "route"
    }

    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut [PacketBuf]) {
        // Bursts are at most BURST long; chunks keep a longer one correct.
        for burst in burst.chunks_mut(BURST) {
            // One pass routes the IPv4 packets and notes where the IPv6 ones are (the family
            // from the parse stage rather than from the address's form), so an IPv4 burst
            // costs about what it did as a per-packet stage.
            let mut at = [0u8; BURST];
            let mut n6 = 0;
            for (i, p) in burst.iter_mut().enumerate() {
                if p.meta.verdict != Verdict::Continue {
                    continue;
                }
                if p.meta.l3 == L3::Ipv4 {
                    let d = &p.meta.flow.dst;
                    let group =
                        cx.tables.fib4.lookup(u32::from_be_bytes([d[12], d[13], d[14], d[15]]));
                    p.meta.verdict = Self::route(cx, group, &mut p.meta);
                } else {
                    at[n6] = i as u8;
                    n6 += 1;
                }
            }
            if n6 > 0 {
                Self::route6(cx, burst, &at[..n6]);
            }
        }
    }
}

impl RouteStage {
    /// Routes the IPv6 packets of a burst of at most [`BURST`] (`at`: their indices) with one
    /// burst lookup. Out of line: inlined, the lookup's registers and stack crowded the IPv4
    /// loop above into spills, 11 more instructions a packet (callgrind).
    #[inline(never)]
    fn route6(cx: &Context<'_>, burst: &mut [PacketBuf], at: &[u8]) {
        let n = at.len().min(BURST);
        let mut dsts = [0u128; BURST];
        for (d, &i) in dsts.iter_mut().zip(at) {
            *d = u128::from_be_bytes(burst[i as usize].meta.flow.dst);
        }
        let mut groups = [None; BURST];
        cx.tables.fib6.lookup_burst(&dsts[..n], &mut groups[..n]);
        for (&i, &group) in at.iter().zip(&groups[..n]) {
            let p = &mut burst[i as usize];
            p.meta.verdict = Self::route(cx, group, &mut p.meta);
        }
    }
}

/// Decrements TTL / hop limit (RFC 1624 incremental checksum for IPv4), strips Ethernet padding
/// and writes the link-layer header from the neighbour table. A missing neighbour punts the
/// already-rewritten packet so the slow path only has to fill in the MAC once it resolves.
/// A packet routed into a tunnel stays `Continue` with its `out_port` set: the encap stage
/// settles it.
pub struct RewriteStage {
    cache: NeighbourCache,
}

impl Default for RewriteStage {
    fn default() -> RewriteStage {
        RewriteStage { cache: NeighbourCache::new() }
    }
}

impl RewriteStage {
    #[inline]
    fn rewrite(cx: &Context<'_>, p: &mut PacketBuf, cache: &mut NeighbourCache) -> Verdict {
        let end = p.meta.l3_end as usize;
        p.truncate(end);
        let (data, meta) = p.data_mut_and_meta();
        let l3 = meta.l3_offset as usize;
        if data.len() < l3 + 20 {
            return Verdict::Drop(DropReason::Ipv4Truncated);
        }
        if meta.l3 == L3::Ipv4 {
            // The route stage let only TTLs above 1 through.
            data[l3 + 8] = data[l3 + 8].wrapping_sub(1);
            let check = u16::from_be_bytes([data[l3 + 10], data[l3 + 11]]);
            data[l3 + 10..l3 + 12].copy_from_slice(&checksum::ttl_decremented(check).to_be_bytes());
        } else {
            data[l3 + 7] = data[l3 + 7].wrapping_sub(1);
        }
        let Some(out) = cx.tables.port(meta.out_port) else {
            return Verdict::Drop(DropReason::NextHopDrop);
        };
        data[6..12].copy_from_slice(&out.mac);
        let link = cx.tables.tunnels.link(meta.out_port);
        if link == Link::IpTunnel {
            // IP-in-IP has no link layer: the encap stage strips this header.
            return Verdict::Continue;
        }
        match cache.get(cx, meta.out_port, &meta.next_hop) {
            // Into a VXLAN/Geneve tunnel: the encap stage decides.
            Some(mac) if link == Link::EthernetTunnel => {
                data[0..6].copy_from_slice(&mac);
                Verdict::Continue
            }
            Some(mac) => {
                data[0..6].copy_from_slice(&mac);
                Verdict::Forward(meta.out_port)
            }
            None => {
                data[0..6].copy_from_slice(&ETH_BROADCAST);
                Verdict::Punt(PuntReason::NeighbourMiss)
            }
        }
    }
}

impl PacketStage for RewriteStage {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    #[inline]
    fn begin(&mut self, _cx: &Context<'_>) -> bool {
        self.cache = NeighbourCache::new();
        true
    }

    #[inline(always)]
    fn packet(&mut self, cx: &Context<'_>, p: &mut PacketBuf) {
        p.meta.verdict = Self::rewrite(cx, p, &mut self.cache);
    }
}

/// The last two neighbour lookups of a burst. A burst's packets mostly share a few next hops
/// (an ECMP group's members), so most of them skip the hash probe. Lives for one burst only, so
/// it can never be staler than the snapshot the burst runs on.
///
/// Which of the two entries a packet hits is a coin toss with spread ECMP traffic, so the entry
/// is chosen without a branch on which matched; only a miss branches.
/// The MAC is kept as a u64 (bit 48: resolved) so an entry is one plain 32-byte record.
struct NeighbourCache {
    /// (address, port, MAC | RESOLVED or 0 for unresolved); port `u32::MAX` marks an empty
    /// slot, which no real port id (u16) equals.
    entries: [(u128, u32, u64); 2],
    next: usize,
}

const RESOLVED: u64 = 1 << 48;

impl NeighbourCache {
    fn new() -> NeighbourCache {
        NeighbourCache { entries: [(0, u32::MAX, 0); 2], next: 0 }
    }

    #[inline(always)]
    fn get(&mut self, cx: &Context<'_>, port: PortId, addr: &Addr) -> Option<MacAddr> {
        let a = u128::from_ne_bytes(*addr);
        let p = port as u32;
        let (a0, p0, _) = self.entries[0];
        // The entry to try: 0 if it matches, else 1. Then one compare of that entry decides hit
        // or miss; testing `hit0 | hit1` directly was compiled as two branches, the first of
        // which is the coin toss again.
        let (ai, pi, m) = self.entries[((a0 != a) | (p0 != p)) as usize];
        let m = if (ai == a) & (pi == p) {
            m
        } else {
            let m = cx.tables.neighbour(port, addr).map_or(0, |mac| {
                let mut b = [0u8; 8];
                b[..6].copy_from_slice(&mac);
                u64::from_le_bytes(b) | RESOLVED
            });
            self.entries[self.next & 1] = (a, p, m);
            self.next ^= 1;
            m
        };
        if m & RESOLVED == 0 {
            return None;
        }
        let b = m.to_le_bytes();
        Some([b[0], b[1], b[2], b[3], b[4], b[5]])
    }
}

/// True when `addr` is an IPv4-mapped address (helper for callers choosing a family).
pub fn is_v4(addr: &crate::meta::Addr) -> bool {
    as_v4(addr).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{PortInfo, TablesBuilder};
    use std::net::IpAddr;

    fn addr(s: &str) -> Addr {
        crate::flow::addr_from_ip(s.parse::<IpAddr>().unwrap())
    }

    /// The branch-free cache answers like the table in every order: hits in either slot, a
    /// third address evicting one, an unresolved neighbour, and the same address on another
    /// port (a different entry).
    #[test]
    fn neighbour_cache_answers_like_the_table() {
        let mut b = TablesBuilder::new(1);
        for (i, name) in ["a", "b"].iter().enumerate() {
            b.port(PortInfo {
                name: (*name).into(),
                mac: [2, 0, 0, 0, 0, i as u8],
                mtu: 1500,
                addresses: vec![],
            });
        }
        b.neighbour(0, "10.0.0.1".parse().unwrap(), [2, 1, 1, 1, 1, 1]);
        b.neighbour(0, "10.0.0.2".parse().unwrap(), [2, 2, 2, 2, 2, 2]);
        b.neighbour(1, "10.0.0.1".parse().unwrap(), [2, 3, 3, 3, 3, 3]);
        b.neighbour(0, "2001:db8::1".parse().unwrap(), [0xff; 6]);
        let t = b.build().unwrap();
        let cx = Context { tables: &t, now_ns: 0 };
        let keys = [
            (0, "10.0.0.1"),
            (0, "10.0.0.2"),
            (1, "10.0.0.1"),
            (0, "10.0.0.3"),
            (0, "2001:db8::1"),
            (1, "10.0.0.2"),
        ];
        let mut cache = NeighbourCache::new();
        let mut x = 7u32;
        for _ in 0..1000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let (port, a) = keys[(x >> 16) as usize % keys.len()];
            let a = addr(a);
            assert_eq!(cache.get(&cx, port, &a), t.neighbour(port, &a), "{port} {a:?}");
        }
    }

    /// The route stage's gathered IPv6 burst lookup gives every packet what a lookup of its own
    /// gives, in bursts that mix IPv6 with IPv4 and with packets an earlier stage settled (the
    /// answers must line up with the packets they were gathered from).
    #[test]
    fn route_stage_answers_each_packet_as_its_own_lookup() {
        use crate::pool::Pool;
        use crate::stage::Stage;
        use crate::tables::NextHopSpec;
        use etherparse::PacketBuilder;
        use ferroplane_hugepages::Policy;

        let mut b = TablesBuilder::new(1);
        for i in 0..3u8 {
            b.port(PortInfo {
                name: format!("p{i}"),
                mac: [2, 0, 0, 0, 0, i],
                mtu: 1500,
                addresses: vec![
                    (format!("10.{i}.0.1").parse().unwrap(), 24),
                    (format!("fd00:{i}::1").parse().unwrap(), 64),
                ],
            });
        }
        let via =
            |a: &str| vec![NextHopSpec { via: Some(a.parse().unwrap()), dev: None, weight: 1 }];
        for (prefix, len, hop) in [
            ("2001:db8::", 32, "fd00:1::2"),
            ("2001:db8:1::", 48, "fd00:2::2"),
            ("2001:db8:1:2::", 64, "fd00:1::3"),
            ("2001:db8:4::", 47, "fd00:2::3"),
            ("198.51.100.0", 24, "10.2.0.2"),
        ] {
            b.route(prefix.parse().unwrap(), len, &via(hop), false).unwrap();
        }
        let t = b.build().unwrap();
        let cx = Context { tables: &t, now_ns: 0 };
        let dsts = [
            "2001:db8::5",
            "2001:db8:1::9",
            "2001:db8:1:2::1",
            "2001:db8:5:1::1",
            "2001:db8:6::1",
            "2001:db9::1",
            "fd00:2::7",
            "fd00::1",
            "198.51.100.7",
            "10.2.0.9",
            "203.0.113.1",
        ];
        let frame = |dst: IpAddr, hops: u8| {
            let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 9, 9], [2, 0, 0, 0, 0, 0]);
            let ip = match dst {
                IpAddr::V4(d) => eth.ipv4([10, 0, 0, 9], d.octets(), hops),
                IpAddr::V6(d) => eth.ipv6(
                    "fd00::9".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                    d.octets(),
                    hops,
                ),
            };
            let builder = ip.udp(1000, 2000);
            let mut f = Vec::with_capacity(builder.size(8));
            builder.write(&mut f, &[0; 8]).unwrap();
            f
        };
        let mut pool = Pool::new(BURST, Policy::SmallOnly).unwrap();
        let mut burst: Vec<PacketBuf> = (0..BURST).map(|_| pool.alloc().unwrap()).collect();
        let (mut x, mut routed6, mut settled) = (5u32, 0, 0);
        let mut ports6 = std::collections::HashSet::new();
        for _ in 0..20 {
            for p in burst.iter_mut() {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let dst: IpAddr = dsts[(x >> 8) as usize % dsts.len()].parse().unwrap();
                p.fill_from(&frame(dst, if x >> 28 == 0 { 1 } else { 64 })).unwrap();
            }
            ParseStage.process(&cx, &mut burst);
            InputStage.process(&cx, &mut burst);
            let before: Vec<Meta> = burst.iter().map(|p| p.meta).collect();
            RouteStage.process(&cx, &mut burst);
            for (p, m) in burst.iter().zip(&before) {
                if m.verdict != Verdict::Continue {
                    settled += 1;
                    assert_eq!(p.meta.verdict, m.verdict);
                    continue;
                }
                let mut want = *m;
                want.verdict = RouteStage::route(&cx, t.route(&m.flow.dst), &mut want);
                assert_eq!(p.meta.verdict, want.verdict, "{:?}", m.flow.dst);
                assert_eq!((p.meta.out_port, p.meta.next_hop), (want.out_port, want.next_hop));
                if m.l3 == L3::Ipv6 && want.verdict == Verdict::Continue {
                    routed6 += 1;
                    ports6.insert(want.next_hop);
                }
            }
        }
        // Not vacuous: IPv6 packets went to every next hop (four gateways and one connected
        // destination), and some never reached the stage.
        assert!(
            routed6 > 200 && ports6.len() == 5 && settled > 100,
            "{routed6} {ports6:?} {settled}"
        );
    }
}
