//! The tunnel table: which tunnels exist, keyed for O(1) decapsulation, and the forwarding
//! database (FDB) of the multipoint VXLAN/Geneve tunnels.
//!
//! A tunnel is an L3 interface of ferroplane like a port: it has an interface id in the same
//! [`PortId`] space (tunnels come after the ports in [`Tables::ports`], so routes, connected
//! subnets, local addresses and neighbours work for it unchanged), a MAC and an MTU. This table
//! adds what only tunnels have: the outer addresses, VNI, UDP port and Geneve options. It is
//! plain data that lives in the same snapshot as the FIB, so a burst never sees a tunnel without
//! its routes; the `tunnels` crate holds the encap/decap stages that read it.
//!
//! [`Tables::ports`]: crate::tables::Tables::ports

use crate::meta::{Addr, PortId};
use crate::tables::MacAddr;

/// Outer protocol of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// RFC 7348: Ethernet over UDP, 8-byte header.
    Vxlan,
    /// RFC 8926: Ethernet over UDP with TLV options.
    Geneve,
    /// RFC 2003 / 4213 / 2473: IP directly in IP (protocol 4 or 41), no inner Ethernet.
    Ipip,
}

impl TunnelKind {
    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Ipip => "ipip",
        }
    }

    /// Whether the tunnel carries Ethernet frames (so it needs overlay neighbours and an FDB).
    #[inline]
    pub fn l2(self) -> bool {
        !matches!(self, TunnelKind::Ipip)
    }
}

/// The all-zeros MAC: the FDB entry used for broadcast, multicast and unknown destinations
/// (the kernel's `bridge fdb append 00:00:00:00:00:00 dst ...` convention).
pub const FLOOD_MAC: MacAddr = [0; 6];

/// The unspecified address: the `remote` of a multipoint tunnel in decap keys.
pub const ANY: Addr = [0; 16];

/// One tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub name: String,
    pub kind: TunnelKind,
    /// The tunnel's interface id (its entry in `Tables::ports`).
    pub iface: PortId,
    /// Outer source: one of our port addresses. Its family is the outer family.
    pub local: Addr,
    /// Outer destination of a point-to-point tunnel; `None`: multipoint, the FDB decides.
    pub remote: Option<Addr>,
    pub vni: u32,
    /// UDP destination port (VXLAN, Geneve).
    pub dst_port: u16,
    /// Outer TTL / hop limit.
    pub ttl: u8,
    /// IPv6 outer UDP checksum: computed (default), or zero as RFC 6935 allows for tunnels when
    /// the peer accepts it. IPv4 outer headers always carry zero (RFC 7348 5).
    pub udp_checksum6: bool,
    /// Geneve options to send, already encoded as TLVs (a multiple of 4 bytes).
    pub options: Vec<u8>,
}

impl Tunnel {
    #[inline]
    pub fn outer_v6(&self) -> bool {
        crate::flow::as_v4(&self.local).is_none()
    }

    /// Bytes of outer header in front of the inner IP packet (so the tunnel MTU is the underlay
    /// MTU minus this): outer IP, UDP, tunnel header, inner Ethernet.
    pub fn overhead(&self) -> usize {
        let ip = if self.outer_v6() { 40 } else { 20 };
        match self.kind {
            TunnelKind::Vxlan => ip + 8 + 8 + 14,
            TunnelKind::Geneve => ip + 8 + 8 + self.options.len() + 14,
            TunnelKind::Ipip => ip,
        }
    }
}

/// What identifies a tunnel on receive: the listener (UDP port, or [`IPIP_KEY`]), our outer
/// address, the VNI (0 for IP-in-IP) and the peer (the outer source for point-to-point tunnels,
/// [`ANY`] for multipoint ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecapKey {
    pub listener: u32,
    pub local: Addr,
    pub vni: u32,
    pub remote: Addr,
}

/// The listener value of IP-in-IP tunnels in [`DecapKey`] (above any UDP port).
pub const IPIP_KEY: u32 = 1 << 16;

type Map<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

/// Every tunnel and the keys decapsulation looks them up by.
#[derive(Debug, Clone, Default)]
pub struct TunnelTable {
    /// Indexed by `iface - first_iface`; `None` for a deleted tunnel's slot.
    tunnels: Vec<Option<Tunnel>>,
    /// Interface id of the first tunnel (the number of ports).
    first_iface: PortId,
    decap: Map<DecapKey, u16>,
    /// UDP ports some tunnel listens on, with the header format behind them (a handful: scanned).
    udp_ports: Vec<(u16, TunnelKind)>,
    /// The first [`LISTENER_SLOTS`] of `udp_ports`' ports, padded with the first one, for
    /// [`TunnelTable::udp_listener_slots`].
    udp_slots: [u16; LISTENER_SLOTS],
    ipip: bool,
    /// [`TunnelTable::link`] of each slot, beside `tunnels` in one byte each: the rewrite
    /// stage asks it for every packet into a tunnel, and an `Option<Tunnel>` is a long way
    /// from its kind.
    links: Vec<Link>,
}

/// What an egress interface puts under the IP packet, which the rewrite stage needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Link {
    /// A port, or no tunnel at all: an Ethernet header from the neighbour table.
    #[default]
    Port,
    /// VXLAN or Geneve: an inner Ethernet header from the overlay neighbours, then the encap
    /// stage.
    EthernetTunnel,
    /// IP-in-IP: no link layer; the encap stage strips the Ethernet header.
    IpTunnel,
}

/// Listening UDP ports the decap stage compares every packet against without a loop.
pub const LISTENER_SLOTS: usize = 4;

/// Why a tunnel could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelError {
    /// Another tunnel receives the same (listener, local, VNI, remote).
    Duplicate(String),
    /// A VXLAN and a Geneve tunnel on one UDP port: the header format would be ambiguous.
    PortConflict(u16),
}

impl std::fmt::Display for TunnelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TunnelError::Duplicate(other) => write!(
                f,
                "tunnel `{other}` already receives the same local address, VNI and remote"
            ),
            TunnelError::PortConflict(p) => {
                write!(f, "UDP port {p} is used by a tunnel of another kind")
            }
        }
    }
}

impl std::error::Error for TunnelError {}

impl TunnelTable {
    /// An empty table for a dataplane with `ports` ports (tunnel interfaces start after them).
    pub fn new(ports: usize) -> TunnelTable {
        TunnelTable { first_iface: ports as PortId, ..Default::default() }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.decap.is_empty()
    }

    pub fn first_iface(&self) -> PortId {
        self.first_iface
    }

    /// The slot the next added tunnel takes: the first free one, or a new one at the end.
    pub fn next_iface(&self) -> PortId {
        let slot = self.tunnels.iter().position(Option::is_none).unwrap_or(self.tunnels.len());
        self.first_iface + slot as PortId
    }

    /// The decap key a tunnel is received under.
    pub fn key_of(t: &Tunnel) -> DecapKey {
        DecapKey {
            listener: match t.kind {
                TunnelKind::Ipip => IPIP_KEY,
                _ => t.dst_port as u32,
            },
            local: t.local,
            vni: if t.kind == TunnelKind::Ipip { 0 } else { t.vni },
            remote: t.remote.unwrap_or(ANY),
        }
    }

    /// Adds `t` at its `iface` (from [`TunnelTable::next_iface`] or a rebuild).
    pub fn insert(&mut self, t: Tunnel) -> Result<(), TunnelError> {
        let key = Self::key_of(&t);
        if let Some(&other) = self.decap.get(&key) {
            let name = self.tunnels[other as usize].as_ref().map_or("?", |t| t.name.as_str());
            return Err(TunnelError::Duplicate(name.to_string()));
        }
        if t.kind != TunnelKind::Ipip {
            match self.udp_ports.iter().find(|(p, _)| *p == t.dst_port) {
                Some((_, k)) if *k != t.kind => return Err(TunnelError::PortConflict(t.dst_port)),
                Some(_) => {}
                None => {
                    self.udp_ports.push((t.dst_port, t.kind));
                    self.fill_udp_slots();
                }
            }
        } else {
            self.ipip = true;
        }
        let slot = (t.iface - self.first_iface) as usize;
        if self.tunnels.len() <= slot {
            self.tunnels.resize(slot + 1, None);
        }
        self.decap.insert(key, slot as u16);
        if self.links.len() <= slot {
            self.links.resize(slot + 1, Link::Port);
        }
        self.links[slot] = if t.kind.l2() { Link::EthernetTunnel } else { Link::IpTunnel };
        self.tunnels[slot] = Some(t);
        Ok(())
    }

    fn fill_udp_slots(&mut self) {
        let first = self.udp_ports.first().map_or(0, |&(p, _)| p);
        for (i, s) in self.udp_slots.iter_mut().enumerate() {
            *s = self.udp_ports.get(i).map_or(first, |&(p, _)| p);
        }
    }

    /// Removes the tunnel at interface `iface`; its slot stays free for the next one.
    pub fn remove(&mut self, iface: PortId) -> Option<Tunnel> {
        let slot = iface.checked_sub(self.first_iface)? as usize;
        let t = self.tunnels.get_mut(slot)?.take()?;
        self.decap.remove(&Self::key_of(&t));
        self.udp_ports.retain(|(p, _)| self.tunnels.iter().flatten().any(|o| o.dst_port == *p));
        self.fill_udp_slots();
        self.ipip = self.tunnels.iter().flatten().any(|o| o.kind == TunnelKind::Ipip);
        if let Some(l) = self.links.get_mut(slot) {
            *l = Link::Port;
        }
        while self.tunnels.last().is_some_and(Option::is_none) {
            self.tunnels.pop();
            self.links.pop();
        }
        Some(t)
    }

    /// The tunnel behind an interface id, if it is a tunnel's.
    #[inline]
    pub fn by_iface(&self, iface: PortId) -> Option<&Tunnel> {
        let slot = iface.checked_sub(self.first_iface)? as usize;
        self.tunnels.get(slot)?.as_ref()
    }

    /// What `iface` puts under the IP packet ([`Link::Port`] for anything but a tunnel).
    #[inline]
    pub fn link(&self, iface: PortId) -> Link {
        if iface < self.first_iface {
            return Link::Port;
        }
        self.links.get((iface - self.first_iface) as usize).copied().unwrap_or_default()
    }

    /// True when `iface` is a tunnel's interface id (cheap: the fast path asks for every packet).
    #[inline]
    pub fn is_tunnel(&self, iface: PortId) -> bool {
        iface >= self.first_iface && self.by_iface(iface).is_some()
    }

    pub fn by_name(&self, name: &str) -> Option<&Tunnel> {
        self.iter().find(|t| t.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tunnel> {
        self.tunnels.iter().flatten()
    }

    /// The header format some tunnel receives on UDP port `port`.
    #[inline]
    pub fn udp_listener(&self, port: u16) -> Option<TunnelKind> {
        self.udp_ports.iter().find(|(p, _)| *p == port).map(|&(_, k)| k)
    }

    /// The listening UDP ports as a fixed array (unused slots repeat a listening port, or hold 0
    /// when there is none), so that the decap stage can tell a packet for none of them with four
    /// compares and no loop; `None` when more ports listen than the array holds (then
    /// [`TunnelTable::udp_listener`] must be asked).
    #[inline]
    pub fn udp_listener_slots(&self) -> Option<[u16; LISTENER_SLOTS]> {
        (self.udp_ports.len() <= LISTENER_SLOTS).then_some(self.udp_slots)
    }

    /// Whether any IP-in-IP tunnel exists.
    #[inline]
    pub fn has_ipip(&self) -> bool {
        self.ipip
    }

    /// The tunnel for a received packet: a point-to-point tunnel of the outer source first,
    /// then a multipoint one.
    #[inline]
    pub fn decap_lookup(
        &self,
        listener: u32,
        local: &Addr,
        vni: u32,
        remote: &Addr,
    ) -> Option<&Tunnel> {
        let mut key = DecapKey { listener, local: *local, vni, remote: *remote };
        let slot = match self.decap.get(&key) {
            Some(&s) => s,
            None => {
                key.remote = ANY;
                *self.decap.get(&key)?
            }
        };
        self.tunnels.get(slot as usize)?.as_ref()
    }
}

/// The forwarding database of multipoint VXLAN/Geneve tunnels: (tunnel interface, inner
/// destination MAC) -> the remote endpoint to send to. Static entries come from the config,
/// learned ones from decapsulated frames via the control thread.
pub type Fdb = Map<(PortId, MacAddr), Addr>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::v4_mapped;

    fn vx(name: &str, iface: PortId, vni: u32, remote: Option<Addr>) -> Tunnel {
        Tunnel {
            name: name.into(),
            kind: TunnelKind::Vxlan,
            iface,
            local: v4_mapped([192, 0, 2, 1]),
            remote,
            vni,
            dst_port: 4789,
            ttl: 64,
            udp_checksum6: true,
            options: Vec::new(),
        }
    }

    /// The decap stage's fixed listener array says exactly which ports listen, or that there
    /// are too many for it; it follows additions and removals.
    #[test]
    fn listener_slots_follow_the_listening_ports() {
        let mut t = TunnelTable::new(1);
        assert_eq!(t.udp_listener_slots(), Some([0; LISTENER_SLOTS]));
        let mut ports = Vec::new();
        for i in 0..=LISTENER_SLOTS as u16 {
            let mut v = vx(&format!("v{i}"), 1 + i, 100 + i as u32, None);
            v.dst_port = 4789 + i;
            t.insert(v).unwrap();
            ports.push(4789 + i);
            match t.udp_listener_slots() {
                Some(s) => {
                    assert!(ports.len() <= LISTENER_SLOTS);
                    assert!(s.iter().all(|p| ports.contains(p)));
                    assert!(ports.iter().all(|p| s.contains(p)));
                }
                None => assert!(ports.len() > LISTENER_SLOTS),
            }
        }
        assert_eq!(t.remove(1).unwrap().dst_port, 4789);
        assert_eq!(t.udp_listener_slots(), Some([4790, 4791, 4792, 4793]));
        for i in 2..=LISTENER_SLOTS as u16 {
            t.remove(i);
        }
        assert_eq!(t.udp_listener_slots(), Some([4793; LISTENER_SLOTS]));
    }

    #[test]
    fn point_to_point_wins_over_multipoint_and_slots_are_reused() {
        let mut t = TunnelTable::new(2);
        let peer = v4_mapped([192, 0, 2, 20]);
        t.insert(vx("mp", 2, 100, None)).unwrap();
        t.insert(vx("p2p", 3, 100, Some(peer))).unwrap();
        let local = v4_mapped([192, 0, 2, 1]);
        assert_eq!(t.decap_lookup(4789, &local, 100, &peer).unwrap().name, "p2p");
        let other = v4_mapped([192, 0, 2, 30]);
        assert_eq!(t.decap_lookup(4789, &local, 100, &other).unwrap().name, "mp");
        assert!(t.decap_lookup(4789, &local, 101, &other).is_none());
        assert!(
            matches!(t.insert(vx("dup", 4, 100, None)), Err(TunnelError::Duplicate(n)) if n == "mp")
        );
        let mut g = vx("g", 4, 7, None);
        g.kind = TunnelKind::Geneve;
        assert_eq!(t.insert(g), Err(TunnelError::PortConflict(4789)));
        assert_eq!(t.remove(2).unwrap().name, "mp");
        assert!(!t.is_tunnel(2));
        assert_eq!(t.next_iface(), 2);
        assert_eq!(t.decap_lookup(4789, &local, 100, &other).map(|t| &t.name), None);
        assert!(t.is_tunnel(3));
        assert!(!t.is_tunnel(0));
    }

    /// The rewrite stage's per-interface link kind follows additions and removals, and says
    /// `Port` for ports, free slots and ids past the last tunnel.
    #[test]
    fn links_follow_the_tunnels() {
        let mut t = TunnelTable::new(2);
        t.insert(vx("a", 2, 100, None)).unwrap();
        let mut ip = vx("b", 3, 0, Some(v4_mapped([192, 0, 2, 9])));
        ip.kind = TunnelKind::Ipip;
        t.insert(ip).unwrap();
        let links = |t: &TunnelTable| (0..6).map(|i| t.link(i)).collect::<Vec<_>>();
        use Link::*;
        assert_eq!(links(&t), [Port, Port, EthernetTunnel, IpTunnel, Port, Port]);
        t.remove(2).unwrap();
        assert_eq!(links(&t), [Port, Port, Port, IpTunnel, Port, Port]);
        t.remove(3).unwrap();
        assert_eq!(links(&t), [Port; 6]);
        t.insert(vx("c", 2, 100, None)).unwrap();
        assert_eq!(links(&t), [Port, Port, EthernetTunnel, Port, Port, Port]);
    }
}
