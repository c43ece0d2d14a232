//! The control thread's routing state: the routes as configured (file plus run-time changes),
//! the connected routes the ports' addresses imply, interned next-hop groups, and the two FIBs
//! behind [`Mirrored`] so that a change costs its own size, not the table's.
//!
//! Changes are staged (`add`, `del`) and made live together by `commit`, once per coalesced
//! batch of requests. Connected routes sit under configured ones: a configured route for the
//! same prefix wins, and deleting it brings the connected route back.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ferroplane_ctl::{NextHop as WireNextHop, RouteEntry};
use ferroplane_pipeline::fib::{Fib4, Fib6, FibError, FibOp, NextHopId};
use ferroplane_pipeline::flow::ip_from_addr;
use ferroplane_pipeline::mirror::Mirrored;
use ferroplane_pipeline::tables::{NextHop, NextHopGroup, NextHopSpec, PortInfo, TablesBuilder};

use crate::config::{mask, NextHopConfig, Prefix, RouteConfig};

/// A prefix as a map key: ordered IPv4 before IPv6, then by address and length.
pub type Key = (IpAddr, u8);

/// How long a commit waits for workers to let go of the old table copy. Workers drop their
/// snapshot after every burst, so this is only reached when a worker is stuck.
const PATIENCE: Duration = Duration::from_secs(2);

/// The FIBs and groups a snapshot needs.
pub struct Live {
    pub fib4: Arc<Fib4>,
    pub fib6: Arc<Fib6>,
    pub groups: Arc<Vec<NextHopGroup>>,
}

pub struct Routes {
    ports: Vec<PortInfo>,
    configured: BTreeMap<Key, (RouteConfig, NextHopId)>,
    connected: BTreeMap<Key, NextHopId>,
    groups: Vec<NextHopGroup>,
    refs: Vec<u32>,
    index: HashMap<NextHopGroup, NextHopId>,
    free: Vec<NextHopId>,
    published_groups: Arc<Vec<NextHopGroup>>,
    groups_changed: bool,
    fib4: Mirrored<Fib4>,
    fib6: Mirrored<Fib6>,
    ops4: Vec<(Key, FibOp<Ipv4Addr>)>,
    ops6: Vec<(Key, FibOp<Ipv6Addr>)>,
}

fn key(p: &Prefix) -> Key {
    (p.addr, p.len)
}

fn prefix_str(k: &Key) -> String {
    format!("{}/{}", k.0, k.1)
}

impl Routes {
    /// The state for `ports` and the configured `routes`, with both FIBs built in one pass.
    pub fn new(ports: Vec<PortInfo>, routes: &[RouteConfig]) -> Result<Routes, String> {
        // Empty FIBs until the real ones are built in one pass below.
        let mut r = Routes {
            ports,
            configured: BTreeMap::new(),
            connected: BTreeMap::new(),
            groups: Vec::new(),
            refs: Vec::new(),
            index: HashMap::new(),
            free: Vec::new(),
            published_groups: Arc::new(Vec::new()),
            groups_changed: true,
            fib4: Mirrored::new(Fib4::new()),
            fib6: Mirrored::new(Fib6::new()),
            ops4: Vec::new(),
            ops6: Vec::new(),
        };
        for i in 0..r.ports.len() {
            let addrs = r.ports[i].addresses.clone();
            for (a, len) in addrs {
                let g = r.intern(NextHopGroup::new(&[(NextHop::Direct { port: i as u16 }, 1)]));
                let k = (mask(a, len), len);
                if let Some(old) = r.connected.insert(k, g) {
                    r.unref(old);
                }
            }
        }
        for route in routes {
            let g = r.group_for(route).map_err(|e| format!("route {}: {e}", route.prefix))?;
            if let Some((_, old)) = r.configured.insert(key(&route.prefix), (route.clone(), g)) {
                r.unref(old);
            }
        }
        // Bulk build: one pass over the effective set, instead of one update per route.
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (k, g) in r.effective() {
            match k.0 {
                IpAddr::V4(a) => v4.push((a, k.1, g)),
                IpAddr::V6(a) => v6.push((a, k.1, g)),
            }
        }
        r.fib4 = Mirrored::new(Fib4::from_routes(v4).map_err(|e| e.to_string())?);
        r.fib6 = Mirrored::new(Fib6::from_routes(v6).map_err(|e| e.to_string())?);
        Ok(r)
    }

    /// Every prefix with the group the FIB holds for it.
    fn effective(&self) -> impl Iterator<Item = (Key, NextHopId)> + '_ {
        let connected = self
            .connected
            .iter()
            .filter(|(k, _)| !self.configured.contains_key(k))
            .map(|(k, g)| (*k, *g));
        connected.chain(self.configured.iter().map(|(k, (_, g))| (*k, *g)))
    }

    fn intern(&mut self, g: NextHopGroup) -> NextHopId {
        if let Some(&id) = self.index.get(&g) {
            self.refs[id as usize] += 1;
            return id;
        }
        self.groups_changed = true;
        let id = match self.free.pop() {
            Some(id) => {
                self.groups[id as usize] = g.clone();
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.groups.push(g.clone());
                self.refs.push(1);
                (self.groups.len() - 1) as NextHopId
            }
        };
        self.index.insert(g, id);
        id
    }

    fn unref(&mut self, id: NextHopId) {
        let r = &mut self.refs[id as usize];
        *r -= 1;
        if *r == 0 {
            // The slot is reused by a later group; snapshots that still route to it hold the
            // old group vector, so they never see the new member list.
            self.index.remove(&self.groups[id as usize]);
            self.free.push(id);
        }
    }

    /// Resolves a route's next hops (ports exist, `via` on a connected subnet, one family) and
    /// interns its group.
    fn group_for(&mut self, r: &RouteConfig) -> Result<NextHopId, String> {
        let g = if r.blackhole {
            NextHopGroup::new(&[(NextHop::Blackhole, 1)])
        } else {
            if r.nexthops.is_empty() {
                return Err("a route needs a next hop (`via` and/or `dev`) or blackhole".into());
            }
            let mut members = Vec::with_capacity(r.nexthops.len());
            for n in &r.nexthops {
                if n.via.is_some_and(|v| v.is_ipv4() != r.prefix.addr.is_ipv4()) {
                    return Err(format!(
                        "next hop {} is not of the prefix's family",
                        n.via.map(|v| v.to_string()).unwrap_or_default()
                    ));
                }
                if n.weight == 0 {
                    return Err("weight must be at least 1".into());
                }
                let spec = NextHopSpec { via: n.via, dev: n.dev.clone(), weight: n.weight };
                let hop = TablesBuilder::resolve(&self.ports, &spec).map_err(|e| e.to_string())?;
                members.push((hop, n.weight));
            }
            NextHopGroup::new(&members)
        };
        if self.free.is_empty()
            && self.groups.len() as u64 > ferroplane_pipeline::fib::MAX_NEXT_HOP as u64
        {
            return Err(FibError::NextHopOutOfRange.to_string());
        }
        Ok(self.intern(g))
    }

    fn stage(&mut self, k: Key, group: Option<NextHopId>) {
        match (k.0, group) {
            (IpAddr::V4(a), Some(g)) => self.ops4.push((k, FibOp::Insert(a, k.1, g))),
            (IpAddr::V4(a), None) => self.ops4.push((k, FibOp::Remove(a, k.1))),
            (IpAddr::V6(a), Some(g)) => self.ops6.push((k, FibOp::Insert(a, k.1, g))),
            (IpAddr::V6(a), None) => self.ops6.push((k, FibOp::Remove(a, k.1))),
        }
    }

    /// Adds or replaces a configured route (live after [`Routes::commit`]).
    pub fn add(&mut self, r: RouteConfig) -> Result<(), String> {
        let g = self.group_for(&r)?;
        let k = key(&r.prefix);
        if let Some((_, old)) = self.configured.insert(k, (r, g)) {
            self.unref(old);
        }
        self.stage(k, Some(g));
        Ok(())
    }

    /// Removes a configured route (live after [`Routes::commit`]).
    pub fn del(&mut self, p: &Prefix) -> Result<(), String> {
        let k = key(p);
        let Some((_, old)) = self.configured.remove(&k) else {
            return Err(match self.connected.contains_key(&k) {
                true => format!(
                    "{p} is a connected route (from a port's address): change the port's addresses to remove it"
                ),
                false => format!("no route {p}"),
            });
        };
        self.unref(old);
        let under = self.connected.get(&k).copied();
        self.stage(k, under);
        Ok(())
    }

    /// True when something is staged.
    pub fn dirty(&self) -> bool {
        !self.ops4.is_empty() || !self.ops6.is_empty() || self.groups_changed
    }

    /// Makes the staged changes live in the FIB copies and returns what the next snapshot
    /// needs. A staged insert the FIB refuses (no second-level group left) is undone in the
    /// configured state and reported; the rest go in.
    pub fn commit(&mut self) -> Result<(Live, Vec<String>), String> {
        let mut refused = Vec::new();
        // On failure the staged operations stay staged: the next commit retries them.
        if !self.ops4.is_empty() {
            let ops: Vec<_> = self.ops4.iter().map(|(_, op)| *op).collect();
            let out = self.fib4.update(&ops, PATIENCE).map_err(|e| e.to_string())?;
            let keys = std::mem::take(&mut self.ops4).into_iter().map(|(k, _)| k);
            refused.extend(keys.zip(out).filter_map(|(k, o)| o.err().map(|e| (k, e))));
        }
        if !self.ops6.is_empty() {
            let ops: Vec<_> = self.ops6.iter().map(|(_, op)| *op).collect();
            let out = self.fib6.update(&ops, PATIENCE).map_err(|e| e.to_string())?;
            let keys = std::mem::take(&mut self.ops6).into_iter().map(|(k, _)| k);
            refused.extend(keys.zip(out).filter_map(|(k, o)| o.err().map(|e| (k, e))));
        }
        let mut messages = Vec::new();
        for (k, e) in refused {
            if let Some((_, g)) = self.configured.remove(&k) {
                self.unref(g);
            }
            messages.push(format!("route {} refused: {e}", prefix_str(&k)));
        }
        if self.groups_changed {
            self.published_groups = Arc::new(self.groups.clone());
            self.groups_changed = false;
        }
        Ok((self.live(), messages))
    }

    /// The current live tables (for the first snapshot, and after a commit).
    pub fn live(&self) -> Live {
        Live {
            fib4: self.fib4.live().clone(),
            fib6: self.fib6.live().clone(),
            groups: if self.groups_changed {
                Arc::new(self.groups.clone())
            } else {
                self.published_groups.clone()
            },
        }
    }

    /// The configured routes in prefix order (for `config show`).
    pub fn configured(&self) -> impl Iterator<Item = &RouteConfig> + '_ {
        self.configured.values().map(|(r, _)| r)
    }

    pub fn configured_len(&self) -> usize {
        self.configured.len()
    }

    fn entry(&self, k: &Key) -> Option<RouteEntry> {
        if let Some((r, _)) = self.configured.get(k) {
            return Some(RouteEntry {
                prefix: prefix_str(k),
                nexthops: r.nexthops.iter().map(wire_hop).collect(),
                blackhole: r.blackhole,
                origin: "static".into(),
            });
        }
        let g = self.connected.get(k)?;
        let dev = self.groups[*g as usize].members().find_map(|(h, _)| match h {
            NextHop::Direct { port } => self.ports.get(port as usize).map(|p| p.name.clone()),
            _ => None,
        });
        Some(RouteEntry {
            prefix: prefix_str(k),
            nexthops: vec![WireNextHop { via: None, dev, weight: 1 }],
            blackhole: false,
            origin: "connected".into(),
        })
    }

    /// Every route the FIB holds, in prefix order.
    pub fn show(&self) -> Vec<RouteEntry> {
        let mut keys: Vec<Key> = self.effective().map(|(k, _)| k).collect();
        keys.sort_unstable();
        keys.iter().filter_map(|k| self.entry(k)).collect()
    }

    /// The route `addr` takes: the live FIB's answer, with the prefix that gave it.
    pub fn get(&self, addr: IpAddr) -> Option<RouteEntry> {
        let nh = match addr {
            IpAddr::V4(a) => self.fib4.live().lookup(u32::from(a))?,
            IpAddr::V6(a) => self.fib6.live().lookup(u128::from(a))?,
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (0..=max).rev().map(|l| (mask(addr, l), l)).find_map(|k| {
            let g = match self.configured.get(&k) {
                Some((_, g)) => *g,
                None => *self.connected.get(&k)?,
            };
            (g == nh).then(|| self.entry(&k)).flatten()
        })
    }

    /// Next-hop groups in use.
    pub fn group_len(&self) -> usize {
        self.groups.len() - self.free.len()
    }
}

fn wire_hop(n: &NextHopConfig) -> WireNextHop {
    WireNextHop { via: n.via.map(|v| v.to_string()), dev: n.dev.clone(), weight: n.weight }
}

/// An IPv4-mapped or IPv6 fast-path address as text.
pub fn addr_text(a: &ferroplane_pipeline::meta::Addr) -> String {
    ip_from_addr(a).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Vec<PortInfo> {
        vec![
            PortInfo {
                name: "a".into(),
                mac: [2, 0, 0, 0, 0, 1],
                mtu: 1500,
                addresses: vec![("10.1.0.1".parse().unwrap(), 24)],
            },
            PortInfo {
                name: "b".into(),
                mac: [2, 0, 0, 0, 0, 2],
                mtu: 1500,
                addresses: vec![
                    ("10.2.0.1".parse().unwrap(), 24),
                    ("2001:db8:2::1".parse().unwrap(), 64),
                ],
            },
        ]
    }

    fn route(prefix: &str, via: &[&str]) -> RouteConfig {
        RouteConfig {
            prefix: prefix.parse().unwrap(),
            nexthops: via
                .iter()
                .map(|v| NextHopConfig { via: Some(v.parse().unwrap()), dev: None, weight: 1 })
                .collect(),
            blackhole: false,
        }
    }

    fn lookup(r: &Routes, a: &str) -> Option<String> {
        r.get(a.parse().unwrap()).map(|e| e.prefix)
    }

    #[test]
    fn add_del_and_connected_underneath() {
        let mut r = Routes::new(ports(), &[route("0.0.0.0/0", &["10.2.0.9"])]).unwrap();
        assert_eq!(lookup(&r, "10.1.0.7").as_deref(), Some("10.1.0.0/24"));
        assert_eq!(lookup(&r, "8.8.8.8").as_deref(), Some("0.0.0.0/0"));
        r.add(route("8.8.0.0/16", &["10.1.0.2", "10.2.0.2"])).unwrap();
        // Staged, not live.
        assert_eq!(lookup(&r, "8.8.8.8").as_deref(), Some("0.0.0.0/0"));
        r.commit().unwrap();
        assert_eq!(lookup(&r, "8.8.8.8").as_deref(), Some("8.8.0.0/16"));
        // A configured route over a connected one wins; deleting it restores the connected.
        r.add(route("10.1.0.0/24", &["10.2.0.3"])).unwrap();
        r.commit().unwrap();
        assert_eq!(r.get("10.1.0.7".parse().unwrap()).unwrap().origin, "static");
        r.del(&"10.1.0.0/24".parse().unwrap()).unwrap();
        r.commit().unwrap();
        assert_eq!(r.get("10.1.0.7".parse().unwrap()).unwrap().origin, "connected");
        assert!(r.del(&"10.1.0.0/24".parse().unwrap()).unwrap_err().contains("connected"));
        assert!(r.del(&"9.0.0.0/8".parse().unwrap()).unwrap_err().contains("no route"));
        r.del(&"0.0.0.0/0".parse().unwrap()).unwrap();
        r.commit().unwrap();
        assert_eq!(lookup(&r, "9.9.9.9"), None);
    }

    #[test]
    fn both_copies_agree_after_many_commits() {
        let mut r = Routes::new(ports(), &[]).unwrap();
        for i in 0..200u32 {
            let p = format!("172.{}.{}.0/24", 16 + i / 256, i % 256);
            r.add(route(&p, &["10.2.0.2"])).unwrap();
            if i % 3 == 0 {
                r.commit().unwrap();
            }
        }
        for i in (0..200u32).step_by(2) {
            r.del(&format!("172.{}.{}.0/24", 16 + i / 256, i % 256).parse().unwrap()).unwrap();
        }
        r.commit().unwrap();
        // One empty commit per family brings the spare up to date and makes it live.
        r.add(route("192.0.2.0/24", &["10.2.0.2"])).unwrap();
        r.commit().unwrap();
        for i in 0..200u32 {
            let a = format!("172.{}.{}.9", 16 + i / 256, i % 256);
            assert_eq!(lookup(&r, &a).is_some(), i % 2 == 1, "{a}");
        }
        assert_eq!(r.configured_len(), 101);
    }

    #[test]
    fn groups_are_shared_and_freed() {
        let mut r = Routes::new(ports(), &[]).unwrap();
        let base = r.group_len();
        r.add(route("8.0.0.0/8", &["10.2.0.2"])).unwrap();
        r.add(route("9.0.0.0/8", &["10.2.0.2"])).unwrap();
        assert_eq!(r.group_len(), base + 1);
        r.del(&"8.0.0.0/8".parse().unwrap()).unwrap();
        r.del(&"9.0.0.0/8".parse().unwrap()).unwrap();
        assert_eq!(r.group_len(), base);
        r.commit().unwrap();
    }

    #[test]
    fn bad_next_hops_are_refused() {
        let mut r = Routes::new(ports(), &[]).unwrap();
        assert!(r.add(route("8.0.0.0/8", &["192.0.2.1"])).unwrap_err().contains("not inside"));
        assert!(r.add(route("8.0.0.0/8", &["2001:db8:2::5"])).unwrap_err().contains("family"));
        let mut dev = route("8.0.0.0/8", &[]);
        dev.nexthops.push(NextHopConfig { via: None, dev: Some("nope".into()), weight: 1 });
        assert!(r.add(dev).unwrap_err().contains("nope"));
        assert!(!r.dirty() || r.ops4.is_empty());
        r.add(route("2001:db8:9::/48", &["2001:db8:2::5"])).unwrap();
        r.commit().unwrap();
        assert_eq!(lookup(&r, "2001:db8:9::1").as_deref(), Some("2001:db8:9::/48"));
    }
}
