//! The decap stage: packets to one of our tunnel endpoints lose their outer headers, in place,
//! and go on through the pipeline as packets received on the tunnel's interface.
//!
//! It runs right after the parse stage. A packet is a tunnel packet when its outer destination is
//! one of our addresses and it arrives on a UDP port some VXLAN/Geneve tunnel listens on, or with
//! protocol 4/41 while an IP-in-IP tunnel exists; everything else passes untouched (the stage costs
//! one branch per burst while no tunnel is configured, and while one is, a compare of each packet's
//! protocol and UDP port with the listening ports held in the stage). The tunnel is found by its
//! decap key in O(1); the outer headers are stripped by moving the buffer's head (no copy), the
//! inner packet is parsed again, and ECN is merged per RFC 6040. A packet may be a tunnel packet
//! again after decapsulation (nested tunnels): that repeats up to [`MAX_NESTING`] times, beyond
//! which it is a loop.
//!
//! Multipoint VXLAN/Geneve tunnels learn where inner MACs live: a source MAC whose FDB entry is
//! missing or names another remote is reported to the control thread through a bounded
//! lock-free queue ([`LearnQueue`]); the control thread publishes the next FDB snapshot. Workers
//! never write the table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::meta::{Addr, Meta, PortId, TunnelMeta, L3};
use ferroplane_pipeline::parse::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use ferroplane_pipeline::stage::{Context, PacketStage};
use ferroplane_pipeline::tables::{MacAddr, Tables};
use ferroplane_pipeline::tunnel::{DecapKey, Tunnel, TunnelKind, IPIP_KEY, LISTENER_SLOTS};
use ferroplane_pipeline::verdict::{DropReason, Verdict};

use crate::counters::TunnelCounters;
use crate::ecn;
use crate::geneve::{self, GenevePacket};
use crate::vxlan::{self, VxlanPacket};

/// Tunnel headers one packet may lose or gain in one pass; more is treated as a loop.
pub const MAX_NESTING: u8 = 4;

const ETH_LEN: usize = 14;
const UDP: u8 = 17;
const IPV4_IN_IP: u8 = 4;
const IPV6_IN_IP: u8 = 41;

/// An inner source MAC seen behind a remote endpoint of a multipoint tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FdbLearn {
    pub iface: PortId,
    pub mac: MacAddr,
    pub remote: Addr,
}

/// The bounded queue of learned MACs from the workers to the control thread. Full: the event is
/// counted in `dropped` and the next packet from that MAC reports it again.
pub struct LearnQueue {
    pub queue: ArrayQueue<FdbLearn>,
    pub dropped: AtomicU64,
}

impl LearnQueue {
    pub fn new(capacity: usize) -> LearnQueue {
        LearnQueue { queue: ArrayQueue::new(capacity.max(1)), dropped: AtomicU64::new(0) }
    }
}

/// How long a worker waits before reporting the same (MAC, remote) again while the control
/// thread has not published it yet.
const LEARN_REPEAT_NS: u64 = 1_000_000_000;

/// Decapsulation; see the module documentation.
#[derive(Default)]
pub struct DecapStage {
    learn: Option<Arc<LearnQueue>>,
    counters: Option<Arc<TunnelCounters>>,
    /// The last reports, so a burst of frames from one new MAC makes one report.
    recent: [(FdbLearn, u64); 4],
    next: usize,
    /// The burst's snapshot's listeners (set by `begin`) as flow-key words `protocol << 16 |
    /// destination port` ([`listener_key`]): (UDP, port) for each listening UDP port, and
    /// (4, 0) and (41, 0) while an IP-in-IP tunnel exists (a packet without ports has port 0
    /// in its flow key); unused entries hold [`NO_KEY`]. Plus whether more UDP ports listen
    /// than the slots hold.
    keys: [u32; 8],
    udp_many: bool,
    /// A one-word Bloom filter of `keys`: the bit [`filter_bit`] of each (all bits while
    /// `udp_many`). A packet whose key's bit is clear is for no tunnel.
    filter: u64,
    /// The burst's last decap key and the interface of the tunnel it found: a burst's tunnel
    /// packets mostly come from one remote, and comparing the 40-byte key costs less than
    /// hashing it and probing the table. Reset by `begin` (never older than the snapshot).
    last_lookup: Option<(DecapKey, PortId)>,
}

enum Step {
    /// Not for a tunnel of ours: the input stage decides.
    NotTunnel,
    Decapsulated,
    Drop(DropReason),
}

impl DecapStage {
    /// A decap stage that reports learned MACs into `learn` (none: multipoint tunnels only use
    /// their static FDB entries).
    pub fn new(learn: Option<Arc<LearnQueue>>) -> DecapStage {
        DecapStage { learn, ..Default::default() }
    }

    /// Counts what each tunnel receives into `counters`.
    pub fn with_counters(mut self, counters: Arc<TunnelCounters>) -> DecapStage {
        self.counters = Some(counters);
        self
    }

    fn report(&mut self, e: FdbLearn, now: u64) {
        let Some(q) = &self.learn else { return };
        if self.recent.iter().any(|(r, t)| *r == e && now.wrapping_sub(*t) < LEARN_REPEAT_NS) {
            return;
        }
        if q.queue.push(e).is_err() {
            q.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.recent[self.next] = (e, now);
        self.next = (self.next + 1) % self.recent.len();
    }

    /// [`TunnelTable::decap_lookup`](ferroplane_pipeline::tunnel::TunnelTable::decap_lookup)
    /// through the burst's last answer.
    #[inline]
    fn lookup<'t>(
        &mut self,
        t: &'t Tables,
        listener: u32,
        local: &Addr,
        vni: u32,
        remote: &Addr,
    ) -> Option<&'t Tunnel> {
        let key = DecapKey { listener, local: *local, vni, remote: *remote };
        if let Some((k, iface)) = &self.last_lookup {
            if *k == key {
                return t.tunnels.by_iface(*iface);
            }
        }
        let tun = t.tunnels.decap_lookup(listener, local, vni, remote)?;
        self.last_lookup = Some((key, tun.iface));
        Some(tun)
    }

    /// Removes one layer of tunnel headers from `p` when it is addressed to one of our tunnels.
    #[inline]
    fn decap_one(&mut self, cx: &Context<'_>, p: &mut PacketBuf) -> Step {
        let t: &Tables = cx.tables;
        // Every packet of the burst comes through here while a tunnel exists: the checks that
        // let the others pass read the metadata in place, and only a tunnel packet copies it.
        let m = &p.meta;
        let kind = match m.l4_proto {
            UDP if m.l4_offset != 0 => match t.tunnels.udp_listener(m.flow.dst_port) {
                Some(k) => k,
                None => return Step::NotTunnel,
            },
            IPV4_IN_IP | IPV6_IN_IP if t.tunnels.has_ipip() => TunnelKind::Ipip,
            _ => return Step::NotTunnel,
        };
        if m.vlan.is_some() || !t.is_local(&m.flow.dst) {
            return Step::NotTunnel;
        }
        let m = p.meta;
        let data = p.data();
        // Only frames unicast to the receiving interface: the input stage drops the others.
        match t.port(m.in_port) {
            Some(port) if data.get(0..6) == Some(&port.mac[..]) => {}
            _ => return Step::NotTunnel,
        }
        if let Some(r) = martian_source(&m) {
            return Step::Drop(r);
        }
        let (l3, end) = (m.l3_offset as usize, m.l3_end as usize);
        let v6_outer = m.l3 == L3::Ipv6;
        let outer_ecn = ecn::ds_field(&data[l3..], v6_outer) & 3;
        let outer_src = m.flow.src;
        let mut options = (0u16, 0u16);
        // (tunnel, offset of the inner packet, its ethertype)
        let (tunnel, inner_at, ethertype) = match kind {
            TunnelKind::Vxlan | TunnelKind::Geneve => {
                let l4 = m.l4_offset as usize;
                let udp_len = match data.get(l4 + 4..l4 + 6) {
                    Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
                    None => return Step::Drop(DropReason::TunnelTruncated),
                };
                // The UDP length must agree with the IP length (RFC 768; a lying length field
                // would otherwise make us forward bytes past the datagram).
                if udp_len < 8 || l4 + udp_len != end {
                    return Step::Drop(DropReason::TunnelTruncated);
                }
                let body = &data[l4 + 8..end];
                let (vni, hdr_len, proto) = if kind == TunnelKind::Vxlan {
                    match VxlanPacket::new_checked(body) {
                        Ok(v) => (v.vni(), vxlan::HEADER_LEN, geneve::PROTO_ETHERNET),
                        Err(vxlan::Error::Truncated) => {
                            return Step::Drop(DropReason::TunnelTruncated)
                        }
                        Err(vxlan::Error::NoVni) => return Step::Drop(DropReason::TunnelBadHeader),
                    }
                } else {
                    let g = match GenevePacket::new_checked(body) {
                        Ok(g) => g,
                        Err(geneve::Error::Truncated) => {
                            return Step::Drop(DropReason::TunnelTruncated)
                        }
                        Err(geneve::Error::BadVersion) => {
                            return Step::Drop(DropReason::TunnelBadHeader)
                        }
                        Err(geneve::Error::BadOption) => {
                            return Step::Drop(DropReason::GeneveBadOption)
                        }
                    };
                    // RFC 8926 3.4: an OAM (control) packet's payload must not be forwarded.
                    if g.oam() {
                        return Step::Drop(DropReason::TunnelBadHeader);
                    }
                    // We implement no option, so every critical one is one we do not
                    // understand (3.5.1: drop). Non-critical ones are kept as metadata.
                    if g.options().critical_unknown(|_, _| false).is_some() {
                        return Step::Drop(DropReason::GeneveCriticalOption);
                    }
                    let opts_at = p.head_offset() + l4 + 8 + geneve::HEADER_LEN;
                    options = (opts_at as u16, g.options_len() as u16);
                    (g.vni(), geneve::HEADER_LEN + g.options_len(), g.protocol())
                };
                let Some(tun) =
                    self.lookup(t, m.flow.dst_port as u32, &m.flow.dst, vni, &outer_src)
                else {
                    return Step::Drop(DropReason::TunnelUnknown);
                };
                if tun.kind != kind {
                    return Step::Drop(DropReason::TunnelUnknown);
                }
                let ethertype = match proto {
                    geneve::PROTO_ETHERNET => None,
                    ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Some(proto),
                    _ => return Step::Drop(DropReason::TunnelBadHeader),
                };
                (tun, l4 + 8 + hdr_len, ethertype)
            }
            TunnelKind::Ipip => {
                // A non-first fragment (no transport offset) cannot be decapsulated: outer
                // fragments are not reassembled.
                if m.l4_offset == 0 {
                    return Step::Drop(DropReason::TunnelTruncated);
                }
                let Some(tun) = self.lookup(t, IPIP_KEY, &m.flow.dst, 0, &outer_src) else {
                    return Step::Drop(DropReason::TunnelUnknown);
                };
                let et = if m.l4_proto == IPV4_IN_IP { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
                (tun, m.l4_offset as usize, Some(et))
            }
        };
        // Only a real inner Ethernet header teaches the FDB anything (an inner IP packet gets
        // a synthetic header carrying our own MAC).
        let (iface, tun_vni, learns) = (
            tunnel.iface,
            tunnel.vni,
            tunnel.remote.is_none() && tunnel.kind.l2() && ethertype.is_none(),
        );
        let Some(iface_mac) = t.port(iface).map(|i| i.mac) else {
            return Step::Drop(DropReason::TunnelUnknown);
        };
        // Strip: the inner Ethernet frame starts at `inner_at`; an inner IP packet gets a
        // synthetic Ethernet header in the last 14 bytes of what was outer header.
        let start = match ethertype {
            None => inner_at,
            Some(_) => inner_at - ETH_LEN,
        };
        if start >= end || p.advance(start).is_err() {
            return Step::Drop(DropReason::TunnelTruncated);
        }
        p.truncate(end - start);
        if let Some(et) = ethertype {
            let d = p.data_mut();
            d[0..6].copy_from_slice(&iface_mac);
            d[6..12].copy_from_slice(&iface_mac);
            d[12..14].copy_from_slice(&et.to_be_bytes());
        }
        let depth = m.tunnel.depth + 1;
        p.meta = Meta {
            in_port: iface,
            worker: m.worker,
            timestamp_ns: m.timestamp_ns,
            traced: m.traced,
            tunnel: TunnelMeta {
                depth,
                vni: tun_vni,
                options_at: options.0,
                options_len: options.1,
            },
            ..Meta::default()
        };
        let (data, meta) = p.data_mut_and_meta();
        // As the parse stage does: no flow hash; the route stage computes it where the path
        // depends on it.
        if parse::parse_headers(data, meta).is_err() {
            return Step::Drop(DropReason::TunnelInnerMalformed);
        }
        if matches!(meta.l3, L3::Ipv4 | L3::Ipv6) {
            let il3 = meta.l3_offset as usize;
            let v6 = meta.l3 == L3::Ipv6;
            let inner = ecn::ds_field(&data[il3..], v6) & 3;
            match ecn::decap_ecn(outer_ecn, inner) {
                None => return Step::Drop(DropReason::TunnelEcnDrop),
                Some(e) if e != inner => ecn::set_ecn(&mut data[il3..], v6, e),
                Some(_) => {}
            }
        }
        if learns {
            let src: MacAddr = [data[6], data[7], data[8], data[9], data[10], data[11]];
            if src[0] & 1 == 0 && src != [0; 6] && t.fdb.get(&(iface, src)) != Some(&outer_src) {
                self.report(FdbLearn { iface, mac: src, remote: outer_src }, cx.now_ns);
            }
        }
        Step::Decapsulated
    }
}

/// RFC 1812 5.3.7 / RFC 4291 2.7 martian outer sources (the input stage checks the inner ones).
#[inline]
fn martian_source(m: &Meta) -> Option<DropReason> {
    let s = &m.flow.src;
    if m.l3 == L3::Ipv4 {
        let s0 = s[12];
        (s0 == 0 || s0 == 127 || s0 >= 224).then_some(DropReason::Ipv4BadSource)
    } else {
        (s[0] == 0xff || u128::from_be_bytes(*s) <= 1).then_some(DropReason::Ipv6BadSource)
    }
}

/// A listener key: the flow key's protocol and destination port in one word.
#[inline(always)]
fn listener_key(proto: u8, dst_port: u16) -> u32 {
    (proto as u32) << 16 | dst_port as u32
}

/// The bit of listener key `k` in `DecapStage::filter`: the top 6 bits of a multiplicative
/// hash (Knuth's), so the handful of listener keys rarely share one and other keys spread
/// over all 64.
#[inline(always)]
fn filter_bit(k: u32) -> u64 {
    1 << (k.wrapping_mul(0x9e37_79b1) >> 26)
}

/// A listener key no packet has (a protocol is at most 255).
const NO_KEY: u32 = u32::MAX;

// The UDP slots and the two IP-in-IP keys fit in `DecapStage::keys`.
const _: () = assert!(LISTENER_SLOTS + 2 <= 8);

impl DecapStage {
    /// Whether `m` may be a packet for one of the burst's tunnels: its UDP destination port is
    /// one some tunnel listens on, or it is IP-in-IP while such a tunnel exists. Every packet
    /// is asked this while a tunnel exists, so it compares against the listeners `begin` took
    /// from the snapshot (no table pointers to follow, no loop); only a packet that passes
    /// goes through `decap_one`'s full checks.
    ///
    /// One word of the flow key, with no branch on the protocol: first its bit in `filter`,
    /// which turns away nearly every packet of no tunnel (a few instructions), then the eight
    /// listener keys at once for the rest. The check and the stage's loop took 22
    /// instructions a packet as eight compares alone, 17 with the filter in front (callgrind,
    /// the tunnels bench's native traffic with tunnels configured).
    #[inline(always)]
    fn maybe_tunnel(&self, m: &Meta) -> bool {
        let k = listener_key(m.l4_proto, m.flow.dst_port);
        if self.filter & filter_bit(k) == 0 {
            return false;
        }
        let hit = self.keys.iter().fold(false, |hit, &x| hit | (x == k));
        hit | (self.udp_many & (m.l4_proto == UDP))
    }

    /// Decapsulates `p`, repeatedly while it is a tunnel packet again. Out of line: the stage's
    /// loop over a burst of native packets stays small.
    #[inline(never)]
    fn decapsulate(&mut self, cx: &Context<'_>, p: &mut PacketBuf) {
        if !matches!(p.meta.l3, L3::Ipv4 | L3::Ipv6) {
            return;
        }
        loop {
            match self.decap_one(cx, p) {
                Step::NotTunnel => break,
                Step::Drop(r) => {
                    p.meta.verdict = Verdict::Drop(r);
                    break;
                }
                Step::Decapsulated => {
                    if let Some(c) =
                        self.counters.as_ref().and_then(|c| c.of(cx.tables, p.meta.in_port))
                    {
                        c.rx_packets.inc();
                        c.rx_bytes.add(p.len() as u64);
                    }
                    if p.meta.tunnel.depth > MAX_NESTING {
                        p.meta.verdict = Verdict::Drop(DropReason::TunnelLoop);
                        break;
                    }
                    if !matches!(p.meta.l3, L3::Ipv4 | L3::Ipv6) {
                        break;
                    }
                }
            }
        }
    }
}

impl PacketStage for DecapStage {
    fn name(&self) -> &'static str {
        "decap"
    }

    #[inline]
    fn begin(&mut self, cx: &Context<'_>) -> bool {
        let t = &cx.tables.tunnels;
        self.keys = [NO_KEY; 8];
        self.udp_many = false;
        match t.udp_listener_slots() {
            Some(slots) if t.udp_listener(slots[0]).is_some() => {
                for (k, &port) in self.keys.iter_mut().zip(&slots) {
                    *k = listener_key(UDP, port);
                }
            }
            Some(_) => {}
            None => self.udp_many = true,
        }
        if t.has_ipip() {
            self.keys[LISTENER_SLOTS] = listener_key(IPV4_IN_IP, 0);
            self.keys[LISTENER_SLOTS + 1] = listener_key(IPV6_IN_IP, 0);
        }
        self.filter = match self.udp_many {
            true => u64::MAX,
            false => self.keys.iter().filter(|&&k| k != NO_KEY).fold(0, |f, &k| f | filter_bit(k)),
        };
        self.last_lookup = None;
        !t.is_empty()
    }

    #[inline(always)]
    fn packet(&mut self, cx: &Context<'_>, p: &mut PacketBuf) {
        if self.maybe_tunnel(&p.meta) {
            self.decapsulate(cx, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroplane_pipeline::flow::v4_mapped;
    use ferroplane_pipeline::tables::{PortInfo, TablesBuilder};

    /// A table with one port and, for each UDP port in `udp` (VXLAN), a tunnel, plus an
    /// IP-in-IP tunnel when `ipip`.
    fn tables(udp: &[u16], ipip: bool) -> Tables {
        let mut b = TablesBuilder::new(1);
        let addr = "192.0.2.1".parse().unwrap();
        b.port(PortInfo { name: "p".into(), mac: [2; 6], mtu: 1500, addresses: vec![(addr, 24)] });
        let mut kinds: Vec<(TunnelKind, u16)> =
            udp.iter().map(|&p| (TunnelKind::Vxlan, p)).collect();
        if ipip {
            kinds.push((TunnelKind::Ipip, 0));
        }
        for (i, (kind, port)) in kinds.into_iter().enumerate() {
            let info =
                PortInfo { name: format!("t{i}"), mac: [4; 6], mtu: 1400, addresses: vec![] };
            let t = Tunnel {
                name: format!("t{i}"),
                kind,
                iface: 0,
                local: v4_mapped([192, 0, 2, 1]),
                remote: Some(v4_mapped([192, 0, 2, 10 + i as u8])),
                vni: 100,
                dst_port: port,
                ttl: 64,
                udp_checksum6: false,
                options: Vec::new(),
            };
            b.tunnel(info, t);
        }
        b.build().unwrap()
    }

    fn meta(proto: u8, dst_port: u16) -> Meta {
        let mut m = Meta::EMPTY;
        m.l4_proto = proto;
        m.flow.dst_port = dst_port;
        m
    }

    /// The listener check (its Bloom filter, then the exact keys) says yes to every listener
    /// and no to everything else, for every shape of listener set: a few UDP ports, IP-in-IP,
    /// both, and more UDP ports than the slots hold (then every UDP packet may be one).
    #[test]
    fn the_listener_check_passes_exactly_the_listeners() {
        for (udp, ipip) in [
            (vec![4789], false),
            (vec![], true),
            (vec![4789, 6081], true),
            (vec![4789, 4790, 4791, 4792], true),
            (vec![4789, 4790, 4791, 4792, 4793], false),
        ] {
            let t = tables(&udp, ipip);
            let mut d = DecapStage::new(None);
            assert!(d.begin(&Context { tables: &t, now_ns: 0 }));
            let many = udp.len() > LISTENER_SLOTS;
            for proto in [1, 4, 6, 17, 41, 47, 58, 132] {
                for port in (0..=u16::MAX).step_by(7).chain(udp.iter().copied()).chain([0]) {
                    let want = match proto {
                        UDP => many || udp.contains(&port),
                        IPV4_IN_IP | IPV6_IN_IP => ipip && port == 0,
                        _ => false,
                    };
                    assert_eq!(
                        d.maybe_tunnel(&meta(proto, port)),
                        want,
                        "{udp:?} {ipip} {proto} {port}"
                    );
                }
            }
        }
    }
}
