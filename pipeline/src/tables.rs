//! The tables workers read: ports, our addresses, the FIB, next-hop groups and neighbours.
//!
//! A [`Tables`] value is immutable once published. The control thread builds the next one (with
//! [`TablesBuilder`], or by cloning and changing the current one: the FIBs and the neighbour table
//! sit behind `Arc`s so a change copies only what it touches) and swaps it in with
//! [`TableHandle::publish`]; workers load the current snapshot once per burst, so an update never
//! stops forwarding and a burst never sees half an update.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::fib::{Fib4, Fib6, FibError, NextHopId};
use crate::flow::{addr_from_ip, as_v4};
use crate::meta::{Addr, PortId};
use crate::tunnel::{Fdb, Tunnel, TunnelError, TunnelTable};

/// A 48-bit Ethernet address.
pub type MacAddr = [u8; 6];

/// What the dataplane knows about one of its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub mac: MacAddr,
    /// Largest IP packet the port sends (bytes of L3, as `ip link` counts MTU).
    pub mtu: u16,
    /// Interface addresses with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
}

impl PortInfo {
    /// Our first IPv4 address on this port (the source of ARP requests and ICMP errors).
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.addresses.iter().find_map(|(a, _)| match a {
            IpAddr::V4(v4) => Some(*v4),
            _ => None,
        })
    }

    /// Our first global (non link-local) IPv6 address on this port.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.addresses.iter().find_map(|(a, _)| match a {
            IpAddr::V6(v6) if !is_link_local6(v6) => Some(*v6),
            _ => None,
        })
    }

    /// The port's IPv6 link-local address (RFC 4291 2.5.6, modified EUI-64 from the MAC), the
    /// source of neighbour discovery messages (RFC 4861 7.2.2 prefers it).
    pub fn link_local6(&self) -> Ipv6Addr {
        let m = self.mac;
        Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ])
    }

    /// True when `ip` is inside one of this port's connected subnets.
    pub fn on_link(&self, ip: IpAddr) -> bool {
        self.addresses.iter().any(|&(a, len)| same_prefix(a, ip, len))
    }
}

fn is_link_local6(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// True when `a` and `b` share their first `len` bits (and are of one family).
pub fn same_prefix(a: IpAddr, b: IpAddr, len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len.min(32)) };
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - len.min(128)) };
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

/// Where a route sends packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// Out of `port` to `gateway`'s MAC.
    Gateway { port: PortId, gateway: Addr },
    /// Out of `port`, the destination itself is on the link (connected routes, `dev` routes).
    Direct { port: PortId },
    /// Dropped and counted (`blackhole = true`).
    Blackhole,
}

/// A weighted ECMP group: hash-threshold selection (RFC 2992) over cumulative weights, which keeps
/// most flows in place when one member is added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextHopGroup {
    hops: Vec<NextHop>,
    weights: Vec<u32>,
    /// `bounds[i]`: upper bound (exclusive) of member i's share of the 32-bit hash space.
    bounds: Vec<u64>,
}

impl NextHopGroup {
    /// A group of `(next hop, weight)` members; zero weights are raised to 1. Empty groups
    /// blackhole.
    pub fn new(members: &[(NextHop, u32)]) -> NextHopGroup {
        if members.is_empty() {
            return NextHopGroup::new(&[(NextHop::Blackhole, 1)]);
        }
        let total: u64 = members.iter().map(|&(_, w)| w.max(1) as u64).sum();
        let mut acc = 0u64;
        let mut bounds = Vec::with_capacity(members.len());
        for &(_, w) in members {
            acc += w.max(1) as u64;
            bounds.push((acc << 32) / total);
        }
        NextHopGroup {
            hops: members.iter().map(|&(h, _)| h).collect(),
            weights: members.iter().map(|&(_, w)| w.max(1)).collect(),
            bounds,
        }
    }

    /// The only member of a one-member group (no hash needed to choose).
    #[inline]
    pub fn single(&self) -> Option<&NextHop> {
        match self.hops.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// The member for a flow hash. Never panics: the last bound is 2^32, so at most
    /// `len - 1` bounds lie at or below any hash.
    ///
    /// Counts the bounds at or below the hash rather than stopping at the first above it: with
    /// spread traffic, where the loop would stop is a coin toss per packet. Together with the
    /// same fix in the rewrite stage's neighbour cache, this took the pipeline bench from 61 to
    /// 48 ns per packet over the full table (see the README). The count has a fixed trip count
    /// and no data-dependent branch.
    #[inline]
    pub fn pick(&self, flow_hash: u32) -> NextHop {
        *self.pick_ref(flow_hash)
    }

    /// [`pick`](Self::pick) without the copy (the route stage reads two fields of it).
    #[inline]
    pub fn pick_ref(&self, flow_hash: u32) -> &NextHop {
        let h = flow_hash as u64;
        let i = self.bounds.iter().map(|&b| (h >= b) as usize).sum::<usize>();
        &self.hops[i.min(self.hops.len() - 1)]
    }

    pub fn members(&self) -> impl Iterator<Item = (NextHop, u32)> + '_ {
        self.hops.iter().copied().zip(self.weights.iter().copied())
    }
}

/// Resolved neighbours: (port, address) -> MAC. hashbrown with foldhash: one probe, no SipHash.
pub type NeighbourMap = hashbrown::HashMap<(PortId, Addr), MacAddr, foldhash::fast::FixedState>;

/// One immutable snapshot of everything a worker reads.
#[derive(Clone)]
pub struct Tables {
    pub ports: Vec<PortInfo>,
    /// Our IPv4 addresses (host order).
    pub local4: Local4,
    /// Our IPv6 addresses, link-local ones included.
    pub local6: Local6,
    pub fib4: Arc<Fib4>,
    pub fib6: Arc<Fib6>,
    /// Indexed by [`NextHopId`].
    pub groups: Arc<Vec<NextHopGroup>>,
    pub neighbours: Arc<NeighbourMap>,
    /// Tunnels (their interfaces are the entries of `ports` after the physical ports).
    pub tunnels: Arc<TunnelTable>,
    /// Where multipoint VXLAN/Geneve tunnels send each inner MAC (own `Arc`: learning a MAC
    /// copies only this).
    pub fdb: Arc<Fdb>,
    /// Seed of the flow hash (ECMP).
    pub hash_seed: u64,
    /// This snapshot's identity: unique in the process (from [`next_generation`]), given by
    /// [`TablesBuilder::build`], [`TableHandle::publish`] and [`Tables::with_neighbours`] and
    /// never reused, so a worker may keep what it derives from a snapshot (the encap stage's
    /// header templates) across bursts for as long as the generation it sees stays the same.
    /// A clone changed in place keeps its original's number until it is published: it must
    /// not reach a pipeline before that.
    pub generation: u64,
}

/// A snapshot generation no other snapshot of this process has had (see
/// [`Tables::generation`]).
pub fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Tables {
    /// A port by id.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortInfo> {
        self.ports.get(id as usize)
    }

    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.ports.iter().position(|p| p.name == name).map(|i| i as PortId)
    }

    #[inline]
    pub fn is_local4(&self, a: u32) -> bool {
        self.local4.contains(a)
    }

    #[inline]
    pub fn is_local6(&self, a: u128) -> bool {
        self.local6.contains(a)
    }

    /// True when `addr` (IPv4-mapped or IPv6) is one of ours.
    pub fn is_local(&self, addr: &Addr) -> bool {
        match as_v4(addr) {
            Some(v4) => self.is_local4(u32::from_be_bytes(v4)),
            None => self.is_local6(u128::from_be_bytes(*addr)),
        }
    }

    /// Longest-prefix match for either family, to the group's id.
    #[inline]
    pub fn route(&self, dst: &Addr) -> Option<NextHopId> {
        match as_v4(dst) {
            Some(v4) => self.fib4.lookup(u32::from_be_bytes(v4)),
            None => self.fib6.lookup(u128::from_be_bytes(*dst)),
        }
    }

    #[inline]
    pub fn neighbour(&self, port: PortId, addr: &Addr) -> Option<MacAddr> {
        self.neighbours.get(&(port, *addr)).copied()
    }

    /// Where a multipoint tunnel sends a frame for `mac`: its FDB entry, else the flood entry
    /// (broadcast, multicast and unknown unicast go there).
    #[inline]
    pub fn fdb_remote(&self, iface: PortId, mac: &MacAddr) -> Option<Addr> {
        if mac[0] & 1 == 0 {
            if let Some(r) = self.fdb.get(&(iface, *mac)) {
                return Some(*r);
            }
        }
        self.fdb.get(&(iface, crate::tunnel::FLOOD_MAC)).copied()
    }

    /// A copy with a different neighbour table (cheap: the FIBs are shared).
    pub fn with_neighbours(&self, neighbours: NeighbourMap) -> Tables {
        Tables { neighbours: Arc::new(neighbours), generation: next_generation(), ..self.clone() }
    }
}

/// The published snapshot: workers `load()` it once per burst, the control thread `publish()`es.
pub struct TableHandle(ArcSwap<Tables>);

impl TableHandle {
    pub fn new(t: Tables) -> TableHandle {
        TableHandle(ArcSwap::from_pointee(t))
    }

    /// The current snapshot. The guard is cheap (no refcount traffic in the common case) and
    /// must not be held across bursts.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Tables>> {
        self.0.load()
    }

    pub fn load_full(&self) -> Arc<Tables> {
        self.0.load_full()
    }

    /// Makes `t` current, under a generation of its own. Workers see it from their next burst.
    pub fn publish(&self, mut t: Tables) {
        t.generation = next_generation();
        self.0.store(Arc::new(t));
    }
}

/// A next hop as configuration states it: an address (`via`), a port (`dev`), or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHopSpec {
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    pub weight: u32,
}

/// Why tables could not be built. Configuration validation catches these first with file and
/// line; the builder checks again because the control socket feeds it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    UnknownPort(String),
    /// `via` is not inside any port's connected subnet (or not inside `dev`'s).
    ViaNotOnLink(IpAddr),
    /// `via` is not of the prefix's family.
    FamilyMismatch,
    NoNextHops,
    Fib(FibError),
    Tunnel(TunnelError),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::UnknownPort(p) => write!(f, "no port named `{p}`"),
            BuildError::ViaNotOnLink(a) => {
                write!(f, "next hop {a} is not inside any connected subnet of the port")
            }
            BuildError::FamilyMismatch => {
                write!(f, "next hop and prefix are of different families")
            }
            BuildError::NoNextHops => write!(f, "a route needs at least one next hop"),
            BuildError::Fib(e) => write!(f, "{e}"),
            BuildError::Tunnel(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<FibError> for BuildError {
    fn from(e: FibError) -> Self {
        BuildError::Fib(e)
    }
}

/// Our addresses on `ports` (IPv4 host order; IPv6 with each port's link-local address),
/// sorted, for [`Tables::local4`] and [`Tables::local6`]. Unnamed entries are free interface
/// slots and have none.
pub fn local_addresses(ports: &[PortInfo]) -> (Local4, Local6) {
    let (mut local4, mut local6) = (Vec::new(), Vec::new());
    for p in ports.iter().filter(|p| !p.name.is_empty()) {
        local6.push(u128::from(p.link_local6()));
        for &(a, _) in &p.addresses {
            match a {
                IpAddr::V4(v4) => local4.push(u32::from(v4)),
                IpAddr::V6(v6) => local6.push(u128::from(v6)),
            }
        }
    }
    (Local4::new(local4), Local6::new(local6))
}

/// Our IPv4 addresses, which the input stage checks every packet's destination against. A
/// router has a handful (each tunnel's overlay addresses add to them): up to [`Local4::FEW`] sit
/// in a fixed array, padded with copies of the first, and are compared all at once, with no
/// loop and no branch per address; more are binary-searched. A scan with an early exit cost
/// plain forwarding about 4 ns per packet once tunnels took the list from 2 addresses to 7.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local4 {
    few: [u32; Local4::FEW],
    /// Sorted, deduplicated: all of them.
    all: Vec<u32>,
    /// The lowest address and the distance to the highest (`u32::MAX` and 0 when empty): a
    /// packet passing through, whose destination is rarely near ours, is answered by one
    /// compare.
    lo: u32,
    span: u32,
}

impl Local4 {
    pub const FEW: usize = 8;

    pub fn new(mut all: Vec<u32>) -> Local4 {
        all.sort_unstable();
        all.dedup();
        let mut few = [all.first().copied().unwrap_or(0); Local4::FEW];
        for (f, &a) in few.iter_mut().zip(&all) {
            *f = a;
        }
        let (lo, span) = match (all.first(), all.last()) {
            (Some(&lo), Some(&hi)) => (lo, hi - lo),
            _ => (u32::MAX, 0),
        };
        Local4 { few, all, lo, span }
    }

    #[inline]
    pub fn contains(&self, a: u32) -> bool {
        if a.wrapping_sub(self.lo) > self.span {
            return false;
        }
        match self.all.len() {
            0 => false,
            1..=Local4::FEW => self.few.iter().fold(false, |hit, &x| hit | (x == a)),
            _ => self.all.binary_search(&a).is_ok(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.all.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// Our IPv6 addresses, which the input stage checks every IPv6 packet's destination against.
/// Every port has two at least (its link-local and a global one), each tunnel adds its own, and
/// the span trick of [`Local4`] does not work here (fe80:: and 2001:db8:: bracket most of the
/// unicast space). So a 64-bit filter, one bit per address's hash, answers a packet passing
/// through in a few instructions; only a destination whose bit is set (ours, or about one in
/// sixteen others with four addresses) is binary-searched. A scan of the four addresses of the
/// pipeline bench's router took 42 of the input stage's 141 instructions per IPv6 packet, and
/// grew by 10 per address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local6 {
    /// Sorted, deduplicated: all of them.
    all: Vec<u128>,
    /// Bit [`Local6::bit`] of each address.
    filter: u64,
}

impl Local6 {
    pub fn new(mut all: Vec<u128>) -> Local6 {
        all.sort_unstable();
        all.dedup();
        let filter = all.iter().fold(0, |f, &a| f | Local6::bit(a));
        Local6 { all, filter }
    }

    /// The filter bit of `a`: both halves folded, then a multiplicative hash's top 6 bits
    /// (addresses of one subnet differ in the low half, subnets in the high one).
    #[inline(always)]
    fn bit(a: u128) -> u64 {
        let folded = (a as u64) ^ ((a >> 64) as u64);
        1 << (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
    }

    #[inline]
    pub fn contains(&self, a: u128) -> bool {
        self.filter & Local6::bit(a) != 0 && self.all.binary_search(&a).is_ok()
    }
}

/// Builds a [`Tables`] from ports, routes and static neighbours.
pub struct TablesBuilder {
    ports: Vec<PortInfo>,
    routes4: Vec<(Ipv4Addr, u8, NextHopId)>,
    routes6: Vec<(Ipv6Addr, u8, NextHopId)>,
    groups: Vec<NextHopGroup>,
    neighbours: NeighbourMap,
    tunnels: Vec<Tunnel>,
    fdb: Fdb,
    hash_seed: u64,
}

impl TablesBuilder {
    pub fn new(hash_seed: u64) -> TablesBuilder {
        TablesBuilder {
            ports: Vec::new(),
            routes4: Vec::new(),
            routes6: Vec::new(),
            groups: Vec::new(),
            neighbours: NeighbourMap::default(),
            tunnels: Vec::new(),
            fdb: Fdb::default(),
            hash_seed,
        }
    }

    /// Adds a tunnel and its interface (`info`: name, MAC, MTU, overlay addresses). Tunnels go
    /// after every port; the tunnel's `iface` is set here.
    pub fn tunnel(&mut self, info: PortInfo, mut t: Tunnel) -> PortId {
        self.ports.push(info);
        let id = (self.ports.len() - 1) as PortId;
        t.iface = id;
        self.tunnels.push(t);
        id
    }

    /// A static FDB entry of a multipoint tunnel.
    pub fn fdb(&mut self, iface: PortId, mac: MacAddr, remote: IpAddr) {
        self.fdb.insert((iface, mac), addr_from_ip(remote));
    }

    /// Adds a port; its id is its position. Its addresses become local addresses and their
    /// subnets connected routes. Ports come before every tunnel (tunnel interfaces are numbered
    /// after the ports): adding one after a tunnel is a programming error of the caller.
    pub fn port(&mut self, info: PortInfo) -> PortId {
        assert!(self.tunnels.is_empty(), "TablesBuilder: add every port before the tunnels");
        self.ports.push(info);
        (self.ports.len() - 1) as PortId
    }

    fn group(&mut self, g: NextHopGroup) -> NextHopId {
        if let Some(i) = self.groups.iter().position(|x| *x == g) {
            return i as NextHopId;
        }
        self.groups.push(g);
        (self.groups.len() - 1) as NextHopId
    }

    /// Resolves one next hop spec to a [`NextHop`].
    pub fn resolve(ports: &[PortInfo], spec: &NextHopSpec) -> Result<NextHop, BuildError> {
        let dev = match &spec.dev {
            Some(name) => Some(
                ports
                    .iter()
                    .position(|p| &p.name == name)
                    .ok_or_else(|| BuildError::UnknownPort(name.clone()))?
                    as PortId,
            ),
            None => None,
        };
        match (spec.via, dev) {
            (Some(via), Some(port)) => {
                if !ports[port as usize].on_link(via) {
                    return Err(BuildError::ViaNotOnLink(via));
                }
                Ok(NextHop::Gateway { port, gateway: addr_from_ip(via) })
            }
            (Some(via), None) => {
                let port = ports
                    .iter()
                    .position(|p| p.on_link(via))
                    .ok_or(BuildError::ViaNotOnLink(via))?;
                Ok(NextHop::Gateway { port: port as PortId, gateway: addr_from_ip(via) })
            }
            (None, Some(port)) => Ok(NextHop::Direct { port }),
            (None, None) => Err(BuildError::NoNextHops),
        }
    }

    /// Adds a route. `blackhole` routes ignore `nexthops`.
    pub fn route(
        &mut self,
        prefix: IpAddr,
        len: u8,
        nexthops: &[NextHopSpec],
        blackhole: bool,
    ) -> Result<(), BuildError> {
        let group = if blackhole {
            NextHopGroup::new(&[(NextHop::Blackhole, 1)])
        } else {
            if nexthops.is_empty() {
                return Err(BuildError::NoNextHops);
            }
            let mut members = Vec::with_capacity(nexthops.len());
            for spec in nexthops {
                if spec.via.is_some_and(|v| v.is_ipv4() != prefix.is_ipv4()) {
                    return Err(BuildError::FamilyMismatch);
                }
                members.push((Self::resolve(&self.ports, spec)?, spec.weight));
            }
            NextHopGroup::new(&members)
        };
        let id = self.group(group);
        match prefix {
            IpAddr::V4(p) => self.routes4.push((p, len, id)),
            IpAddr::V6(p) => self.routes6.push((p, len, id)),
        }
        Ok(())
    }

    /// A static neighbour entry.
    pub fn neighbour(&mut self, port: PortId, addr: IpAddr, mac: MacAddr) {
        self.neighbours.insert((port, addr_from_ip(addr)), mac);
    }

    pub fn build(mut self) -> Result<Tables, BuildError> {
        // Connected routes first: configured routes for the same prefix replace them.
        let mut connected4 = Vec::new();
        let mut connected6 = Vec::new();
        for (i, p) in self.ports.clone().iter().enumerate() {
            for &(a, len) in &p.addresses {
                let g =
                    self.group(NextHopGroup::new(&[(NextHop::Direct { port: i as PortId }, 1)]));
                match a {
                    IpAddr::V4(v4) => {
                        let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                        connected4.push((Ipv4Addr::from(u32::from(v4) & m), len, g));
                    }
                    IpAddr::V6(v6) => {
                        let m = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                        connected6.push((Ipv6Addr::from(u128::from(v6) & m), len, g));
                    }
                }
            }
        }
        // Configured routes go in after the connected ones, so a configured route for the same
        // prefix wins; both structures are built once from the whole set.
        let fib4 = Fib4::from_routes(connected4.into_iter().chain(self.routes4))?;
        let fib6 = Fib6::from_routes(connected6.into_iter().chain(self.routes6))?;
        let (local4, local6) = local_addresses(&self.ports);
        let nports = self.ports.len() - self.tunnels.len();
        let mut tunnels = TunnelTable::new(nports);
        for t in self.tunnels {
            tunnels.insert(t).map_err(BuildError::Tunnel)?;
        }
        Ok(Tables {
            ports: self.ports,
            local4,
            local6,
            fib4: Arc::new(fib4),
            fib6: Arc::new(fib6),
            groups: Arc::new(self.groups),
            neighbours: Arc::new(self.neighbours),
            tunnels: Arc::new(tunnels),
            fdb: Arc::new(self.fdb),
            hash_seed: self.hash_seed,
            generation: next_generation(),
        })
    }
}

#[cfg(test)]
mod local4_tests {
    use super::Local4;

    /// Every size, below, at and above the fixed array: exactly the addresses given are ours,
    /// whatever the padding, and 0.0.0.0 is never ours unless given.
    #[test]
    fn contains_exactly_the_addresses_given() {
        for n in 0..20u32 {
            let addrs: Vec<u32> = (0..n).map(|i| 0x0a00_0001 + i * 7).rev().collect();
            let l = Local4::new(addrs.clone());
            assert_eq!(l.len(), n as usize);
            for a in 0x0a00_0000..0x0a00_0100 {
                assert_eq!(l.contains(a), addrs.contains(&a), "n {n} addr {a:#x}");
            }
            assert!(!l.contains(0) && !l.contains(u32::MAX));
        }
        assert_eq!(Local4::new(vec![5, 5, 3]).iter().collect::<Vec<_>>(), vec![3, 5]);
    }
}

#[cfg(test)]
mod local6_tests {
    use super::Local6;

    /// Exactly the addresses given are ours, for sets of every size up to 40 mixing link-local,
    /// one subnet's hosts and other subnets, against neighbours of each and random addresses
    /// (some of which pass the filter and must be refused by the search).
    #[test]
    fn contains_exactly_the_addresses_given() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in 0..40u128 {
            let addrs: Vec<u128> = (0..n)
                .map(|i| match i % 3 {
                    0 => (0xfe80u128 << 112) | (i * 0x1_0000_0001),
                    1 => (0x2001_0db8_0001u128 << 80) | i,
                    _ => (0x2001_0db8_0000_0000u128 << 64) | (i << 64) | 1,
                })
                .collect();
            let l = Local6::new(addrs.iter().rev().copied().collect());
            assert_eq!(l.all.len(), n as usize);
            let mut filtered_out = 0;
            for &a in &addrs {
                assert!(l.contains(a));
                for other in [a + 1, a - 1, a ^ (1 << 64), a ^ (1 << 127)] {
                    assert_eq!(l.contains(other), addrs.contains(&other), "n {n} addr {other:#x}");
                }
            }
            for _ in 0..1000 {
                let a = ((rand() as u128) << 64) | rand() as u128;
                assert_eq!(l.contains(a), addrs.contains(&a));
                filtered_out += usize::from(l.filter & Local6::bit(a) == 0);
            }
            if n <= 4 {
                // The filter is what answers a packet passing through.
                assert!(filtered_out > 900, "n {n}: only {filtered_out} of 1000 filtered out");
            }
            assert!(!l.contains(0) && !l.contains(u128::MAX));
        }
        assert_eq!(Local6::new(vec![5, 5, 3]).all, vec![3, 5]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecmp_shares_follow_weights() {
        let a = NextHop::Direct { port: 0 };
        let b = NextHop::Direct { port: 1 };
        let g = NextHopGroup::new(&[(a, 3), (b, 1)]);
        let mut n = [0u32; 2];
        for i in 0..100_000u32 {
            let h = i.wrapping_mul(0x9e37_79b9);
            match g.pick(h) {
                NextHop::Direct { port } => n[port as usize] += 1,
                _ => unreachable!(),
            }
        }
        // 75% / 25% within a point.
        assert!((74_000..76_000).contains(&n[0]), "{n:?}");
        assert_eq!(g.pick(u32::MAX), b);
        assert_eq!(g.pick(0), a);
    }

    /// The branch-free count picks exactly the member the first bound above the hash names,
    /// at every bound and on either side of it.
    #[test]
    fn ecmp_pick_is_the_first_bound_above_the_hash() {
        let hops: Vec<NextHop> = (0..5).map(|port| NextHop::Direct { port }).collect();
        let weights = [1, 7, 2, 1, 5];
        let members: Vec<(NextHop, u32)> = hops.iter().copied().zip(weights).collect();
        let g = NextHopGroup::new(&members);
        let reference = |h: u32| {
            let i = g.bounds.iter().position(|&b| (h as u64) < b).unwrap();
            g.hops[i]
        };
        let mut hashes: Vec<u32> = (0..10_000u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
        for &b in &g.bounds {
            let b = b.min(u32::MAX as u64) as u32;
            hashes.extend([b.saturating_sub(1), b, b.saturating_add(1)]);
        }
        hashes.extend([0, u32::MAX]);
        for h in hashes {
            assert_eq!(g.pick(h), reference(h), "hash {h:#x}");
        }
        let one = NextHopGroup::new(&[(hops[3], 9)]);
        assert_eq!(one.pick(0), hops[3]);
        assert_eq!(one.pick(u32::MAX), hops[3]);
    }

    /// Every way a snapshot comes to be gives it a generation no other snapshot had, so a cache
    /// keyed by it can never mistake one snapshot for another.
    #[test]
    fn every_snapshot_has_a_generation_of_its_own() {
        let a = TablesBuilder::new(1).build().unwrap();
        let b = TablesBuilder::new(1).build().unwrap();
        let c = a.with_neighbours(NeighbourMap::default());
        let h = TableHandle::new(b.clone());
        h.publish(a.clone());
        let d = h.load().generation;
        h.publish(Tables::clone(&h.load()));
        let e = h.load().generation;
        let mut g = vec![a.generation, b.generation, c.generation, d, e];
        g.sort_unstable();
        g.dedup();
        assert_eq!(g.len(), 5, "{g:?}");
    }

    #[test]
    fn link_local_from_mac() {
        let p = PortInfo {
            name: "x".into(),
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            mtu: 1500,
            addresses: vec![],
        };
        assert_eq!(p.link_local6(), "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap());
    }
}
