//! The slow path: what the control thread does with punted packets, sans-IO.
//!
//! Workers punt ARP, neighbour discovery, packets for our addresses, expiring TTLs, too-big
//! packets, unrouteable packets and packets whose next hop is unresolved. [`SlowPath`] answers
//! them (ARP replies, neighbour advertisements, echo replies, rate-limited ICMP errors, IPv4
//! fragments), resolves neighbours while holding the packets that wait for them, and tells the
//! caller when the neighbour table changed so it can publish the next [`Tables`] snapshot.
//!
//! Like quinn-proto's endpoint it owns no socket and reads no clock: the caller passes `now` to
//! [`SlowPath::handle_punt`] and [`SlowPath::handle_timeout`], and polls [`SlowPath::poll_output`]
//! for what to send. Replay drives it with frame timestamps; the live process with a monotonic
//! clock. smoltcp's wire module checks the frames it builds in the tests; the builders themselves
//! are small fixed layouts in [`frames`].

pub mod frames;
pub mod neighbour;
pub mod ratelimit;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::counters::{Counter, DropCounters};
use crate::flow::{as_v4, v4_mapped};
use crate::meta::{Addr, PortId, L3};
use crate::tables::{MacAddr, NeighbourMap, NextHop, Tables};
use crate::verdict::{DropReason, PuntReason};
use frames::{Arp, Frame, Nd, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_LEN};
use neighbour::{Action, Cache, Lookup, Refusal};
use ratelimit::TokenBucket;

/// What the slow path hands back to a worker.
///
/// `Emit` carries its frame inline on purpose: handing it to a worker through the reply ring then
/// allocates nothing on either side (a boxed frame would be freed on the worker's fast path).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// Send this (punted, rewritten) buffer out of `port`.
    Transmit { port: PortId, buf: PacketBuf },
    /// Send this frame built by the slow path out of `port` (the worker copies it into a buffer).
    Emit { port: PortId, frame: Frame },
    /// Nothing to send: give the buffer back to its pool (its drop is already counted).
    Free(PacketBuf),
}

/// A packet waiting for a neighbour (inline for the same reason as [`Output`]).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Pending {
    Buf(PacketBuf),
    Frame(Frame),
}

/// What the slow path did, by name (`fpctl stats` prints these beside the workers' counters).
#[derive(Debug, Default)]
pub struct SlowPathCounters {
    pub drops: DropCounters,
    pub arp_replies: Counter,
    pub arp_requests: Counter,
    pub nd_adverts: Counter,
    pub nd_solicits: Counter,
    pub echo_replies: Counter,
    pub icmp_errors: Counter,
    pub fragments: Counter,
    pub neighbours_learned: Counter,
    /// Packets that waited for a neighbour and then went out.
    pub released: Counter,
}

impl SlowPathCounters {
    /// `(name, value)` of the non-drop counters.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        [
            ("arp_replies", &self.arp_replies),
            ("arp_requests", &self.arp_requests),
            ("nd_adverts", &self.nd_adverts),
            ("nd_solicits", &self.nd_solicits),
            ("echo_replies", &self.echo_replies),
            ("icmp_errors", &self.icmp_errors),
            ("fragments", &self.fragments),
            ("neighbours_learned", &self.neighbours_learned),
            ("released", &self.released),
        ]
        .into_iter()
        .map(|(n, c)| (n, c.get()))
    }
}

/// Tunables of the slow path.
#[derive(Debug, Clone)]
pub struct SlowPathConfig {
    /// ICMP errors per second (all kinds together).
    pub icmp_rate: u64,
    /// ICMP error burst.
    pub icmp_burst: u64,
    /// Packets held for unresolved neighbours, over all of them.
    pub neighbour_queue: usize,
}

impl Default for SlowPathConfig {
    fn default() -> Self {
        // Linux: icmp_msgs_per_sec 1000, icmp_msgs_burst 50; unres_qlen ~100 per neighbour.
        SlowPathConfig { icmp_rate: 1000, icmp_burst: 50, neighbour_queue: 256 }
    }
}

/// The control thread's packet-handling core.
pub struct SlowPath {
    cache: Cache<Pending>,
    icmp: TokenBucket,
    out: VecDeque<Output>,
    actions: Vec<Action<Pending>>,
    counters: Arc<SlowPathCounters>,
}

const ICMP4_DEST_UNREACH: u8 = 3;
const ICMP4_TIME_EXCEEDED: u8 = 11;
const ICMP6_DEST_UNREACH: u8 = 1;
const ICMP6_PACKET_TOO_BIG: u8 = 2;
const ICMP6_TIME_EXCEEDED: u8 = 3;

impl SlowPath {
    /// A slow path whose static neighbours are those of `tables`.
    pub fn new(tables: &Tables, cfg: SlowPathConfig) -> SlowPath {
        let mut cache = Cache::new(cfg.neighbour_queue);
        for (&(port, addr), &mac) in tables.neighbours.iter() {
            cache.add_static(port, addr, mac);
        }
        cache.take_changed();
        SlowPath {
            cache,
            icmp: TokenBucket::new(cfg.icmp_rate, cfg.icmp_burst),
            out: VecDeque::new(),
            actions: Vec::new(),
            counters: Arc::new(SlowPathCounters::default()),
        }
    }

    pub fn counters(&self) -> Arc<SlowPathCounters> {
        self.counters.clone()
    }

    /// Next output for a worker.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`SlowPath::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.cache.next_timer()
    }

    /// The neighbour table to publish, when it changed since the last call.
    pub fn neighbour_update(&mut self) -> Option<NeighbourMap> {
        if !self.cache.take_changed() {
            return None;
        }
        let mut m = NeighbourMap::default();
        for (port, addr, mac, _) in self.cache.usable() {
            m.insert((port, addr), mac);
        }
        Some(m)
    }

    /// Adds or replaces a static neighbour (configuration, control socket).
    pub fn add_static_neighbour(&mut self, port: PortId, addr: Addr, mac: MacAddr) {
        self.cache.add_static(port, addr, mac);
    }

    /// Removes a neighbour, static or learned. Packets waiting for it are dropped and counted.
    /// Returns whether there was one.
    pub fn remove_neighbour(&mut self, port: PortId, addr: &Addr) -> bool {
        let known = self.cache.contains(port, addr);
        for p in self.cache.remove(port, addr) {
            self.counters.drops.inc(DropReason::NeighbourUnresolved);
            if let Pending::Buf(b) = p {
                self.out.push_back(Output::Free(b));
            }
        }
        known
    }

    /// Starts resolving `addr` on `port` without a packet waiting (a generator resolving its
    /// gateway): sends the first solicitation; timers send the rest.
    pub fn probe(&mut self, now: u64, tables: &Tables, port: PortId, addr: Addr) {
        if self.cache.solicit(now, port, addr) {
            self.solicit(tables, port, &addr, None);
        }
    }

    /// The MAC of a resolved neighbour.
    pub fn neighbour(&self, port: PortId, addr: &Addr) -> Option<MacAddr> {
        self.cache.get(port, addr)
    }

    /// Learned and static neighbours: (port, address, mac, is_static).
    pub fn neighbours(&self) -> impl Iterator<Item = (PortId, Addr, MacAddr, bool)> + '_ {
        self.cache.usable()
    }

    /// Ends the session: every packet still waiting for a neighbour is dropped and counted.
    pub fn finish(&mut self) {
        for p in self.cache.drain_queued() {
            self.counters.drops.inc(DropReason::NeighbourPendingAtEnd);
            if let Pending::Buf(b) = p {
                self.out.push_back(Output::Free(b));
            }
        }
    }

    fn drop(&mut self, buf: PacketBuf, r: DropReason) {
        self.counters.drops.inc(r);
        self.out.push_back(Output::Free(buf));
    }

    /// Handles one punted packet.
    pub fn handle_punt(&mut self, now: u64, tables: &Tables, reason: PuntReason, buf: PacketBuf) {
        match reason {
            PuntReason::Arp => self.arp(now, tables, buf),
            PuntReason::NeighbourDiscovery => self.nd(now, tables, buf),
            PuntReason::Local => self.local(now, tables, buf),
            PuntReason::TtlExpired => {
                let v4 = buf.meta.l3 == L3::Ipv4;
                let (t, c) = if v4 { (ICMP4_TIME_EXCEEDED, 0) } else { (ICMP6_TIME_EXCEEDED, 0) };
                self.icmp_error(now, tables, buf, DropReason::TtlExpired, t, c, 0);
            }
            PuntReason::NoRoute => {
                let v4 = buf.meta.l3 == L3::Ipv4;
                // Net unreachable (RFC 792) / no route to destination (RFC 4443 3.1).
                let t = if v4 { ICMP4_DEST_UNREACH } else { ICMP6_DEST_UNREACH };
                self.icmp_error(now, tables, buf, DropReason::NoRoute, t, 0, 0);
            }
            PuntReason::MtuExceeded => self.too_big(now, tables, buf),
            PuntReason::NeighbourMiss => {
                let (port, hop) = (buf.meta.out_port, buf.meta.next_hop);
                self.resolve_and_send(now, tables, port, hop, Pending::Buf(buf));
            }
        }
    }

    /// Runs neighbour timers: probes, give-ups, expiries.
    pub fn handle_timeout(&mut self, now: u64, tables: &Tables) {
        let mut actions = std::mem::take(&mut self.actions);
        self.cache.poll_timers(now, &mut actions);
        for a in actions.drain(..) {
            match a {
                Action::Probe { port, addr } => {
                    let known = self.cache.get(port, &addr);
                    self.solicit(tables, port, &addr, known);
                }
                Action::GiveUp { dropped, .. } => {
                    for p in dropped {
                        self.counters.drops.inc(DropReason::NeighbourUnresolved);
                        if let Pending::Buf(b) = p {
                            self.out.push_back(Output::Free(b));
                        }
                    }
                }
                Action::Expired { .. } => {}
            }
        }
        self.actions = actions;
    }

    /// Sends an ARP request / neighbour solicitation for `addr` on `port` (unicast to `known`
    /// when re-probing a known neighbour).
    fn solicit(&mut self, tables: &Tables, port: PortId, addr: &Addr, known: Option<MacAddr>) {
        let Some(p) = tables.port(port) else { return };
        match as_v4(addr) {
            Some(target) => {
                let Some(src) = p.ipv4() else { return };
                let arp = Arp {
                    op: frames::ARP_REQUEST,
                    sha: p.mac,
                    spa: src.octets(),
                    tha: [0; 6],
                    tpa: target,
                };
                let dst = known.unwrap_or([0xff; 6]);
                self.out
                    .push_back(Output::Emit { port, frame: frames::arp_frame(dst, p.mac, &arp) });
                self.counters.arp_requests.inc();
            }
            None => {
                let src = p.ipv6().unwrap_or_else(|| p.link_local6()).octets();
                self.out.push_back(Output::Emit {
                    port,
                    frame: frames::ns_frame(p.mac, &src, addr, known),
                });
                self.counters.nd_solicits.inc();
            }
        }
    }

    /// Sends `pkt` (its Ethernet source and type already written) to `next_hop` on `port` once
    /// its MAC is known.
    fn resolve_and_send(
        &mut self,
        now: u64,
        tables: &Tables,
        port: PortId,
        next_hop: Addr,
        pkt: Pending,
    ) {
        // IP-in-IP tunnels have no link layer: nothing to resolve (encap strips the header).
        if tables.tunnels.by_iface(port).is_some_and(|t| !t.kind.l2()) {
            return self.send_to(port, [0; 6], pkt);
        }
        match self.cache.resolve(now, port, next_hop, pkt) {
            Lookup::Known(mac, p) => self.send_to(port, mac, p),
            Lookup::Queued { probe } => {
                if probe {
                    self.solicit(tables, port, &next_hop, None);
                }
            }
            Lookup::Refused(p, why) => {
                let r = match why {
                    Refusal::Failed => DropReason::NeighbourUnresolved,
                    Refusal::QueueFull => DropReason::NeighbourQueueFull,
                };
                self.counters.drops.inc(r);
                if let Pending::Buf(b) = p {
                    self.out.push_back(Output::Free(b));
                }
            }
        }
    }

    fn send_to(&mut self, port: PortId, mac: MacAddr, p: Pending) {
        match p {
            Pending::Buf(mut b) => {
                if let Some(d) = b.data_mut().get_mut(0..6) {
                    d.copy_from_slice(&mac);
                }
                self.out.push_back(Output::Transmit { port, buf: b });
            }
            Pending::Frame(mut f) => {
                if let Some(d) = f.as_mut_slice().get_mut(0..6) {
                    d.copy_from_slice(&mac);
                }
                self.out.push_back(Output::Emit { port, frame: f });
            }
        }
    }

    /// A neighbour spoke: learn it and release what waited for it.
    fn learn(&mut self, now: u64, port: PortId, addr: Addr, mac: MacAddr, create: bool) {
        let was_known = self.cache.get(port, &addr).is_some();
        let released = self.cache.learn(now, port, addr, mac, create);
        if !was_known && self.cache.get(port, &addr).is_some() {
            self.counters.neighbours_learned.inc();
        }
        for p in released {
            self.counters.released.inc();
            self.send_to(port, mac, p);
        }
    }

    /// Routes an IP packet the slow path originates (at the start of `buf`, no L2 header yet):
    /// FIB lookup of its destination, Ethernet header, neighbour resolution.
    fn send_ip(&mut self, now: u64, tables: &Tables, mut buf: PacketBuf, dst: Addr, v4: bool) {
        let hop = tables.route(&dst).and_then(|g| tables.groups.get(g as usize)).map(|g| g.pick(0));
        let (port, next_hop) = match hop {
            Some(NextHop::Gateway { port, gateway }) => (port, gateway),
            Some(NextHop::Direct { port }) => (port, dst),
            _ => return self.drop(buf, DropReason::NoRoute),
        };
        let Some(p) = tables.port(port) else { return self.drop(buf, DropReason::NoRoute) };
        let Ok(eth) = buf.prepend(ETH_LEN) else {
            return self.drop(buf, DropReason::SlowPathMalformed);
        };
        frames::write_eth(eth, [0xff; 6], p.mac, if v4 { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 });
        self.resolve_and_send(now, tables, port, next_hop, Pending::Buf(buf));
    }

    fn arp(&mut self, now: u64, tables: &Tables, mut buf: PacketBuf) {
        let port = buf.meta.in_port;
        let l3 = buf.meta.l3_offset as usize;
        let Some(arp) = buf.data().get(l3..).and_then(Arp::parse) else {
            return self.drop(buf, DropReason::SlowPathMalformed);
        };
        let Some(p) = tables.port(port) else { return self.drop(buf, DropReason::SlowPathIgnored) };
        let sender = std::net::Ipv4Addr::from(arp.spa);
        let for_us = p.ipv4().is_some_and(|_| {
            p.addresses.iter().any(|(a, _)| *a == std::net::IpAddr::V4(arp.tpa.into()))
        });
        // RFC 826 merge: update a sender we know; add it if the message is for us. Only senders
        // on the port's own subnets, and never broadcast/multicast MACs.
        let usable_sender = p.on_link(sender.into()) && arp.sha[0] & 1 == 0 && arp.spa != [0; 4];
        if usable_sender {
            self.learn(now, port, v4_mapped(arp.spa), arp.sha, for_us);
        }
        if arp.op != frames::ARP_REQUEST || !for_us {
            // A reply (or a request for someone else) we learned from is consumed, not dropped.
            if usable_sender && (arp.op == frames::ARP_REPLY || for_us) {
                self.out.push_back(Output::Free(buf));
                return;
            }
            return self.drop(buf, DropReason::SlowPathIgnored);
        }
        let reply =
            Arp { op: frames::ARP_REPLY, sha: p.mac, spa: arp.tpa, tha: arp.sha, tpa: arp.spa };
        buf.truncate(l3 + 28);
        let data = buf.data_mut();
        frames::write_eth(data, arp.sha, p.mac, frames::ETHERTYPE_ARP);
        reply.emit(&mut data[l3..]);
        if l3 != ETH_LEN {
            // Tagged frames never reach here (input drops them), but keep the frame well-formed.
            return self.drop(buf, DropReason::SlowPathMalformed);
        }
        self.counters.arp_replies.inc();
        self.out.push_back(Output::Transmit { port, buf });
    }

    fn nd(&mut self, now: u64, tables: &Tables, mut buf: PacketBuf) {
        let port = buf.meta.in_port;
        let (l3, l4) = (buf.meta.l3_offset as usize, buf.meta.l4_offset as usize);
        let end = buf.meta.l3_end as usize;
        let data = buf.data();
        // Router solicitations/advertisements and redirects (133, 134, 137) are for routers
        // that advertise and hosts: well-formed, just not ours to answer.
        if data.get(l4).is_some_and(|&t| t != frames::ND_NS && t != frames::ND_NA) {
            return self.drop(buf, DropReason::SlowPathIgnored);
        }
        // RFC 4861 7.1: hop limit 255 proves the message was not forwarded.
        let hop_limit = data.get(l3 + 7).copied();
        let nd = data.get(l4..end).and_then(Nd::parse);
        let (Some(255), Some(nd)) = (hop_limit, nd) else {
            return self.drop(buf, DropReason::SlowPathMalformed);
        };
        let Some(p) = tables.port(port) else { return self.drop(buf, DropReason::SlowPathIgnored) };
        let src: [u8; 16] = data[l3 + 8..l3 + 24].try_into().unwrap_or([0; 16]);
        let eth_src: MacAddr = data[6..12].try_into().unwrap_or([0; 6]);
        match nd.kind {
            frames::ND_NS => {
                let target_is_ours = tables.is_local6(u128::from_be_bytes(nd.target))
                    && (p.link_local6().octets() == nd.target
                        || p.addresses
                            .iter()
                            .any(|(a, _)| *a == std::net::IpAddr::V6(nd.target.into())));
                let unspecified = src == [0; 16];
                if let (Some(ll), false) = (nd.lladdr, unspecified) {
                    self.learn(now, port, src, ll, target_is_ours);
                }
                if !target_is_ours {
                    return self.drop(buf, DropReason::SlowPathIgnored);
                }
                // A DAD probe (unspecified source) is answered to all-nodes (RFC 4861 7.2.4).
                let (dst, dst_mac) = if unspecified {
                    let all = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                    (all, frames::multicast_mac(&all))
                } else {
                    (src, nd.lladdr.unwrap_or(eth_src))
                };
                let na = frames::na_frame(p.mac, dst_mac, &nd.target, &dst);
                // `fill_from` keeps `meta.worker`, so the buffer still goes back to the worker
                // whose pool owns it.
                if buf.fill_from(&na).is_err() {
                    return self.drop(buf, DropReason::SlowPathMalformed);
                }
                self.counters.nd_adverts.inc();
                self.out.push_back(Output::Transmit { port, buf });
            }
            _ => {
                // NA: learn the target if we asked for it (or update it: override flag); an
                // advertisement we learned from is consumed, not dropped.
                if let Some(ll) = nd.lladdr {
                    self.learn(now, port, nd.target, ll, false);
                    if self.cache.get(port, &nd.target).is_some() {
                        self.out.push_back(Output::Free(buf));
                        return;
                    }
                }
                self.drop(buf, DropReason::SlowPathIgnored);
            }
        }
    }

    fn local(&mut self, now: u64, tables: &Tables, mut buf: PacketBuf) {
        let m = buf.meta;
        let (l3, l4) = (m.l3_offset as usize, m.l4_offset as usize);
        let v4 = m.l3 == L3::Ipv4;
        let echo_request = l4 != 0
            && ((v4 && m.l4_proto == 1 && buf.data().get(l4) == Some(&8))
                || (!v4 && m.l4_proto == 58 && buf.data().get(l4) == Some(&128)));
        if echo_request {
            // Verify the ICMP checksum before answering: a router must not reflect garbage.
            let ok = if v4 {
                buf.data().get(l4..m.l3_end as usize).is_some_and(crate::checksum::verifies)
            } else {
                let d = buf.data();
                let (Some(s), Some(t), Some(icmp)) =
                    (d.get(l3 + 8..l3 + 24), d.get(l3 + 24..l3 + 40), d.get(l4..m.l3_end as usize))
                else {
                    return self.drop(buf, DropReason::SlowPathMalformed);
                };
                let s: [u8; 16] = s.try_into().unwrap_or_default();
                let t: [u8; 16] = t.try_into().unwrap_or_default();
                let ph = crate::checksum::pseudo_header_v6(&s, &t, 58, icmp.len() as u32);
                crate::checksum::finish(crate::checksum::combine(ph, crate::checksum::sum(icmp)))
                    == 0
            };
            if !ok {
                return self.drop(buf, DropReason::SlowPathMalformed);
            }
            buf.truncate(m.l3_end as usize);
            let done = if v4 {
                frames::echo_reply_v4(buf.data_mut(), l3, l4)
            } else {
                frames::echo_reply_v6(buf.data_mut(), l3, l4)
            };
            if done.is_none() || buf.advance(l3).is_err() {
                return self.drop(buf, DropReason::SlowPathMalformed);
            }
            self.counters.echo_replies.inc();
            // The reply goes to the request's source (now the destination of the swapped header).
            return self.send_ip(now, tables, buf, m.flow.src, v4);
        }
        if m.l4_proto == 17 && l4 != 0 {
            // UDP to a port nobody listens on: port unreachable, as a host would (traceroute's
            // last hop, when the probe targets the router itself).
            let (t, c) = if v4 { (ICMP4_DEST_UNREACH, 3) } else { (ICMP6_DEST_UNREACH, 4) };
            return self.icmp_error(now, tables, buf, DropReason::LocalUnhandled, t, c, 0);
        }
        self.drop(buf, DropReason::LocalUnhandled)
    }

    /// Replaces `buf` with an ICMP error about it and sends it, rate-limited. `why` is counted
    /// either way: the original packet is dropped.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        now: u64,
        tables: &Tables,
        mut buf: PacketBuf,
        why: DropReason,
        kind: u8,
        code: u8,
        rest: u32,
    ) {
        self.counters.drops.inc(why);
        let m = buf.meta;
        let (l3, l4) = (m.l3_offset as usize, m.l4_offset as usize);
        let v4 = m.l3 == L3::Ipv4;
        if frames::error_forbidden(buf.data(), l3, l4, v4, m.l4_proto) {
            self.out.push_back(Output::Free(buf));
            return;
        }
        if !self.icmp.allow(now) {
            self.counters.drops.inc(DropReason::IcmpRateLimited);
            self.out.push_back(Output::Free(buf));
            return;
        }
        let Some(p) = tables.port(m.in_port) else {
            self.out.push_back(Output::Free(buf));
            return;
        };
        let built = if v4 {
            match p.ipv4() {
                Some(src) => frames::icmp4_error(
                    &mut buf,
                    l3,
                    m.l3_end as usize,
                    kind,
                    code,
                    rest,
                    src.octets(),
                ),
                None => None,
            }
        } else {
            let src = p.ipv6().unwrap_or_else(|| p.link_local6()).octets();
            frames::icmp6_error(&mut buf, l3, m.l3_end as usize, kind, code, rest, &src)
        };
        if built.is_none() {
            self.counters.drops.inc(DropReason::SlowPathMalformed);
            self.out.push_back(Output::Free(buf));
            return;
        }
        self.counters.icmp_errors.inc();
        self.send_ip(now, tables, buf, m.flow.src, v4);
    }

    /// Too big for the egress MTU: IPv4 with DF clear is fragmented (RFC 791, RFC 1812 5.2.6);
    /// otherwise ICMP fragmentation needed (RFC 1191) / packet too big (RFC 8201).
    fn too_big(&mut self, now: u64, tables: &Tables, mut buf: PacketBuf) {
        let m = buf.meta;
        let l3 = m.l3_offset as usize;
        let mtu = tables.port(m.out_port).map_or(1500, |p| p.mtu as usize);
        let v4 = m.l3 == L3::Ipv4;
        let df = v4 && buf.data().get(l3 + 6).is_some_and(|b| b & 0x40 != 0);
        if !v4 || df {
            let (kind, code) = if v4 { (ICMP4_DEST_UNREACH, 4) } else { (ICMP6_PACKET_TOO_BIG, 0) };
            return self.icmp_error(
                now,
                tables,
                buf,
                DropReason::MtuExceeded,
                kind,
                code,
                mtu as u32,
            );
        }
        // Forward by fragments: the worker punted before its rewrite, so do the TTL here.
        let Some(out) = tables.port(m.out_port) else {
            return self.drop(buf, DropReason::NextHopDrop);
        };
        let src_mac = out.mac;
        {
            let d = buf.data_mut();
            let (Some(&ttl), Some(_)) = (d.get(l3 + 8), d.get(l3 + 19)) else {
                return self.drop(buf, DropReason::SlowPathMalformed);
            };
            d[l3 + 8] = ttl.saturating_sub(1);
        }
        let ip = match buf.data().get(l3..m.l3_end as usize) {
            Some(ip) => ip,
            None => return self.drop(buf, DropReason::SlowPathMalformed),
        };
        let mut frags: Vec<Frame> = Vec::new();
        let made = frames::fragment_v4(ip, mtu, |f| {
            let mut fr = [0u8; frames::FRAME_CAP];
            frames::write_eth(&mut fr, [0xff; 6], src_mac, ETHERTYPE_IPV4);
            fr[ETH_LEN..ETH_LEN + f.len()].copy_from_slice(f);
            if let Some(frame) = Frame::from_slice(&fr[..ETH_LEN + f.len()]) {
                frags.push(frame);
            }
        });
        if made.is_none() {
            return self.drop(buf, DropReason::MtuExceeded);
        }
        self.out.push_back(Output::Free(buf));
        for f in frags {
            self.counters.fragments.inc();
            self.resolve_and_send(now, tables, m.out_port, m.next_hop, Pending::Frame(f));
        }
    }
}
