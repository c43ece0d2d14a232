//! The control plane: what the control thread does with control-socket requests.
//!
//! It owns the running configuration (the file plus every run-time change). Requests that
//! change tables are *staged* one after another, then made live together by one [`commit`]
//! (one snapshot publish for a whole coalesced batch), and only then answered: a reply means
//! the change is live. Reads are answered after the commit, so they see the batch's changes.
//!
//! [`commit`]: ControlPlane::commit

pub mod routes;
pub mod tunnels;

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ferroplane_ctl::{ErrorCode, NeighEntry, Reply, Request, RouteSpec};
use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::slowpath::SlowPath;
use ferroplane_pipeline::tables::{local_addresses, PortInfo, TableHandle, Tables};
use ferroplane_tunnels::counters::TunnelTotals;
use ferroplane_tunnels::FdbLearn;

use crate::config::{self, Config, Mac, NeighborConfig, NextHopConfig, Prefix, RouteConfig};
use routes::Routes;
use tunnels::Tunnels;

/// What staging a request gave: a reply to send once the batch is live, or a read to answer
/// after the commit.
pub enum Staged {
    Reply(Reply),
    Read(Request),
}

pub struct ControlPlane {
    /// `[dataplane]` and the ports as running (these change only with a restart).
    base: Config,
    /// Static neighbours as configured, in order.
    neighbors: Vec<NeighborConfig>,
    routes: Routes,
    /// Every interface: the ports, then the tunnels' slots.
    ports: Vec<PortInfo>,
    /// The ports alone (with their MACs resolved).
    phys: Vec<PortInfo>,
    tunnels: Tunnels,
    /// The set of interfaces changed (a tunnel came or went): the next commit publishes the
    /// interfaces, local addresses, tunnel table and rebuilt FIBs.
    rebuilt: bool,
    /// The workers' tunnel counters, once running: a slot given to a new tunnel is restarted
    /// when the tunnel goes live, so it does not inherit the counts of the slot's last tunnel.
    counters: Option<Arc<TunnelTotals>>,
}

fn invalid(message: impl Into<String>) -> Reply {
    Reply::error(ErrorCode::InvalidArgument, message)
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr, Reply> {
    IpAddr::from_str(s.trim()).map_err(|_| invalid(format!("{what} `{s}` is not an IP address")))
}

fn parse_prefix(s: &str) -> Result<Prefix, Reply> {
    Prefix::from_str(s.trim()).map_err(|e| invalid(format!("prefix: {e}")))
}

/// A protocol route to a configuration route; the checks of next hops against ports happen in
/// [`Routes::add`].
pub fn route_from_spec(r: &RouteSpec) -> Result<RouteConfig, Reply> {
    let prefix = parse_prefix(&r.prefix)?;
    let mut nexthops = Vec::with_capacity(r.nexthops.len());
    for n in &r.nexthops {
        let via = match &n.via {
            Some(v) => Some(parse_ip(v, "via")?),
            None => None,
        };
        if via.is_none() && n.dev.is_none() {
            return Err(invalid("a next hop needs `via` and/or `dev`"));
        }
        if n.weight == 0 {
            return Err(invalid("weight must be at least 1"));
        }
        nexthops.push(NextHopConfig { via, dev: n.dev.clone(), weight: n.weight });
    }
    if r.blackhole && !nexthops.is_empty() {
        return Err(invalid("a blackhole route has no next hops"));
    }
    if !r.blackhole && nexthops.is_empty() {
        return Err(invalid("a route needs a next hop (`via` and/or `dev`) or `blackhole`"));
    }
    Ok(RouteConfig { prefix, nexthops, blackhole: r.blackhole })
}

impl ControlPlane {
    /// The control plane for a checked configuration and the ports as the first snapshot has
    /// them (with their MACs resolved).
    pub fn new(cfg: &Config, ports: Vec<PortInfo>) -> Result<ControlPlane, String> {
        let routes = Routes::new(ports.clone(), &cfg.routes)?;
        let base = Config {
            routes: Vec::new(),
            neighbors: Vec::new(),
            tunnels: Vec::new(),
            ..cfg.clone()
        };
        let phys = ports.iter().take(cfg.ports.len()).cloned().collect();
        let tunnels = Tunnels::new(cfg.ports.len(), &cfg.tunnels);
        Ok(ControlPlane {
            base,
            neighbors: cfg.neighbors.clone(),
            routes,
            ports,
            phys,
            tunnels,
            rebuilt: false,
            counters: None,
        })
    }

    /// The workers' tunnel counters, which `stats` reads (see [`TunnelTotals`]).
    pub fn count_tunnels(&mut self, counters: Arc<TunnelTotals>) {
        self.counters = Some(counters);
    }

    /// A MAC a worker learned on a multipoint tunnel (published by the next commit).
    pub fn fdb_learn(&mut self, e: FdbLearn) {
        self.tunnels.learn(e);
    }

    /// Rebuilds the interface list and the routing state after a tunnel came or went. Refused
    /// (and nothing changed) when a configured route no longer resolves.
    fn rebuild_interfaces(&mut self, next: Tunnels, slow: &mut SlowPath) -> Result<(), String> {
        let configured: Vec<RouteConfig> = self.routes.configured().cloned().collect();
        self.rebuild_with(next, &configured, slow)
    }

    /// [`ControlPlane::rebuild_interfaces`] with a new set of configured routes.
    fn rebuild_with(
        &mut self,
        next: Tunnels,
        configured: &[RouteConfig],
        slow: &mut SlowPath,
    ) -> Result<(), String> {
        let ports = next.interfaces(&self.base.ports, &self.phys);
        next.table(&self.base.ports)?;
        let routes = Routes::new(ports.clone(), configured)?;
        // Neighbours learned on a slot whose tunnel changed are stale.
        let stale: Vec<_> = slow
            .neighbours()
            .filter(|(id, ..)| {
                let i = *id as usize;
                i >= self.phys.len()
                    && self.ports.get(i).map(|p| &p.name) != ports.get(i).map(|p| &p.name)
            })
            .map(|(id, addr, ..)| (id, addr))
            .collect();
        for (id, addr) in stale {
            slow.remove_neighbour(id, &addr);
        }
        self.routes = routes;
        self.ports = ports;
        self.tunnels = next;
        self.tunnels.fdb_dirty = true;
        self.rebuilt = true;
        Ok(())
    }

    fn tunnel_add(&mut self, toml: &str, slow: &mut SlowPath) -> Result<Reply, Reply> {
        const REQUEST: &str = "<tunnel add>";
        // The request alone first: one [[tunnel]] and nothing else. Other sections would pass
        // the check below (a [[port]] could even make the tunnel's `local` valid) and then be
        // dropped, since only the new tunnel is taken.
        let sections = match toml::from_str::<toml::Table>(toml) {
            Ok(t) => t,
            // A syntax error: the file check reports it at its place in the request.
            Err(_) => {
                let e = config::parse_str(toml, REQUEST).err().map_or_else(
                    || "the request is not valid TOML".to_string(),
                    |e| e.to_string().trim_end().to_string(),
                );
                return Err(invalid(e));
            }
        };
        let others: Vec<String> = sections
            .iter()
            .filter(|(k, _)| k.as_str() != "tunnel")
            .map(|(k, v)| match v {
                toml::Value::Array(_) => format!("[[{k}]]"),
                toml::Value::Table(_) => format!("[{k}]"),
                _ => format!("`{k}`"),
            })
            .collect();
        if !others.is_empty() {
            return Err(invalid(format!(
                "{REQUEST}: a tunnel add takes one [[tunnel]] section (with its [[tunnel.fdb]] \
                 entries) and nothing else; the request also has {} (use route add, neigh add \
                 or config apply for those)",
                others.join(", ")
            )));
        }
        let count = match sections.get("tunnel") {
            Some(toml::Value::Array(a)) => a.len(),
            _ => 0,
        };
        if count != 1 {
            return Err(invalid(format!(
                "{REQUEST}: expected exactly one [[tunnel]] section, the request has {count}"
            )));
        }
        // The new section is checked with the whole running configuration around it, so
        // names, addresses and keys are checked against everything else. Errors in the
        // request are reported at its own lines; errors the new section causes in the running
        // configuration at the lines of `fpctl config show`.
        let mut text = self.running().to_toml();
        text.push('\n');
        let shift = text.matches('\n').count();
        text.push_str(toml);
        // The request's section is the file's tunnel[n]: in the request it is tunnel[0].
        let key = format!("tunnel[{}]", self.tunnels.configs().len());
        let cfg = config::parse_str(&text, REQUEST).map_err(|mut errors| {
            for e in &mut errors.0 {
                if e.line > shift {
                    e.line -= shift;
                    if let Some(rest) = e.key.strip_prefix(&key) {
                        e.key = format!("tunnel[0]{rest}");
                    }
                } else {
                    e.file = "<running config>".into();
                }
            }
            invalid(errors.to_string().trim_end().to_string())
        })?;
        let old = self.tunnels.configs();
        let added: Vec<_> =
            cfg.tunnels.iter().filter(|t| !old.iter().any(|o| o.name == t.name)).collect();
        let [t] = added.as_slice() else {
            return Err(invalid("expected exactly one new [[tunnel]] section"));
        };
        let mut next = self.tunnels.clone();
        let id = next.add((*t).clone());
        self.rebuild_interfaces(next, slow).map_err(invalid)?;
        Ok(Reply::ok(format!("tunnel {} added (interface {id})", t.name)))
    }

    fn tunnel_del(&mut self, name: &str, slow: &mut SlowPath) -> Result<Reply, Reply> {
        if self.tunnels.iface(name).is_none() {
            return Err(Reply::error(ErrorCode::NotFound, format!("no tunnel `{name}`")));
        }
        if let Some(n) = self.neighbors.iter().find(|n| n.port == name) {
            return Err(invalid(format!(
                "static neighbour {} is on tunnel `{name}`: delete it first",
                n.address
            )));
        }
        let users: Vec<String> = self
            .routes
            .configured()
            .filter(|r| r.nexthops.iter().any(|h| h.dev.as_deref() == Some(name)))
            .map(|r| r.prefix.to_string())
            .take(5)
            .collect();
        if !users.is_empty() {
            return Err(invalid(format!(
                "routes use tunnel `{name}` ({}): delete them first",
                users.join(", ")
            )));
        }
        let mut next = self.tunnels.clone();
        next.del(name);
        self.rebuild_interfaces(next, slow)
            .map_err(|e| invalid(format!("{e}: routes still lead into tunnel `{name}`")))?;
        Ok(Reply::ok(format!("tunnel {name} deleted")))
    }

    /// Puts the control plane's FIBs and groups into the first snapshot.
    pub fn install(&self, t: &mut Tables) {
        let live = self.routes.live();
        t.fib4 = live.fib4;
        t.fib6 = live.fib6;
        t.groups = live.groups;
    }

    /// A port or tunnel interface by name (free slots have no name).
    fn port_id(&self, name: &str) -> Result<PortId, Reply> {
        let found = self.ports.iter().position(|p| !p.name.is_empty() && p.name == name);
        found.map(|i| i as PortId).ok_or_else(|| {
            let names: Vec<&str> =
                self.ports.iter().map(|p| p.name.as_str()).filter(|n| !n.is_empty()).collect();
            invalid(format!("no port or tunnel `{name}` (have: {})", names.join(", ")))
        })
    }

    /// Stages one request (changes are live after [`ControlPlane::commit`]).
    pub fn stage(&mut self, req: Request, slow: &mut SlowPath) -> Staged {
        let r = match req {
            Request::RouteAdd { route } => self.route_add(&route),
            Request::RouteDel { prefix } => self.route_del(&prefix),
            Request::RouteBatch { add, del } => self.route_batch(&add, &del),
            Request::NeighAdd { port, address, mac } => self.neigh_add(&port, &address, &mac, slow),
            Request::NeighDel { port, address } => self.neigh_del(port.as_deref(), &address, slow),
            Request::TunnelAdd { toml } => self.tunnel_add(&toml, slow),
            Request::TunnelDel { name } => self.tunnel_del(&name, slow),
            Request::ConfigApply { toml, source } => {
                self.config_apply(&toml, source.as_deref().unwrap_or("<request>"), slow)
            }
            other => return Staged::Read(other),
        };
        Staged::Reply(r.unwrap_or_else(|e| e))
    }

    fn route_add(&mut self, spec: &RouteSpec) -> Result<Reply, Reply> {
        let r = route_from_spec(spec)?;
        let p = r.prefix;
        self.routes.add(r).map_err(invalid)?;
        Ok(Reply::ok(format!("route {p} added")))
    }

    fn route_del(&mut self, prefix: &str) -> Result<Reply, Reply> {
        let p = parse_prefix(prefix)?;
        self.routes.del(&p).map_err(|e| Reply::error(ErrorCode::NotFound, e))?;
        Ok(Reply::ok(format!("route {p} deleted")))
    }

    /// All-or-nothing for checking: every entry is checked before any is staged.
    fn route_batch(&mut self, add: &[RouteSpec], del: &[String]) -> Result<Reply, Reply> {
        let dels: Vec<Prefix> = del
            .iter()
            .enumerate()
            .map(|(i, p)| parse_prefix(p).map_err(|e| at(e, "del", i)))
            .collect::<Result<_, _>>()?;
        let adds: Vec<RouteConfig> = add
            .iter()
            .enumerate()
            .map(|(i, r)| route_from_spec(r).map_err(|e| at(e, "add", i)))
            .collect::<Result<_, _>>()?;
        let mut errors = Vec::new();
        for p in &dels {
            if let Err(e) = self.routes.del(p) {
                errors.push(e);
            }
        }
        let mut added = 0;
        for r in adds {
            let p = r.prefix;
            match self.routes.add(r) {
                Ok(()) => added += 1,
                Err(e) => errors.push(format!("{p}: {e}")),
            }
        }
        let deleted = dels.len() - errors.len().min(dels.len());
        if errors.is_empty() {
            Ok(Reply::ok(format!("{added} route(s) added, {deleted} deleted")))
        } else {
            let n = errors.len();
            errors.truncate(10);
            Err(invalid(format!(
                "{n} of {} change(s) refused (the others are live): {}",
                add.len() + del.len(),
                errors.join("; ")
            )))
        }
    }

    fn neigh_add(
        &mut self,
        port: &str,
        address: &str,
        mac: &str,
        slow: &mut SlowPath,
    ) -> Result<Reply, Reply> {
        let id = self.port_id(port)?;
        let ip = parse_ip(address, "address")?;
        let mac = Mac::from_str(mac.trim()).map_err(|e| invalid(format!("mac: {e}")))?;
        let p = &self.ports[id as usize];
        let link_local = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        if !p.on_link(ip) && !link_local {
            return Err(invalid(format!("{ip} is not inside port `{port}`'s subnets")));
        }
        slow.add_static_neighbour(id, addr_from_ip(ip), mac.0);
        let n = NeighborConfig { address: ip, mac, port: port.to_string() };
        match self.neighbors.iter_mut().find(|x| x.port == port && x.address == ip) {
            Some(x) => *x = n,
            None => self.neighbors.push(n),
        }
        Ok(Reply::ok(format!("neighbour {ip} on {port} is {mac}")))
    }

    fn neigh_del(
        &mut self,
        port: Option<&str>,
        address: &str,
        slow: &mut SlowPath,
    ) -> Result<Reply, Reply> {
        let ip = parse_ip(address, "address")?;
        let ports: Vec<PortId> = match port {
            Some(name) => vec![self.port_id(name)?],
            None => (0..self.ports.len() as PortId).collect(),
        };
        let mut removed = 0;
        for id in ports {
            if slow.remove_neighbour(id, &addr_from_ip(ip)) {
                removed += 1;
            }
            let name = &self.ports[id as usize].name;
            self.neighbors.retain(|n| !(n.address == ip && &n.port == name));
        }
        if removed == 0 {
            return Err(Reply::error(ErrorCode::NotFound, format!("no neighbour {ip}")));
        }
        Ok(Reply::ok(format!("neighbour {ip} deleted")))
    }

    /// Checks the whole file, refuses changes that need a restart, then stages the difference.
    fn config_apply(
        &mut self,
        text: &str,
        source: &str,
        slow: &mut SlowPath,
    ) -> Result<Reply, Reply> {
        let new = config::parse_str(text, source)
            .map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        let mut restart = Vec::new();
        if new.dataplane != self.base.dataplane {
            restart.push("[dataplane]".to_string());
        }
        if new.ports.len() != self.base.ports.len() {
            restart.push("the list of ports".to_string());
        } else {
            for (a, b) in new.ports.iter().zip(&self.base.ports) {
                if a != b {
                    restart.push(format!("port `{}`", b.name));
                }
            }
        }
        if !restart.is_empty() {
            return Err(invalid(format!(
                "{} changed: ports and [dataplane] need a restart of ferroplane; nothing was applied",
                restart.join(", ")
            )));
        }
        // Tunnels changed: the interface set changes, so the routes are rebuilt from the new
        // file in one go (the file check proved they resolve against its interfaces); the
        // unchanged tunnels keep their interface ids.
        let old: Vec<RouteConfig> = self.routes.configured().cloned().collect();
        let old_tunnels = self.tunnels.configs();
        let mut tunnel_changes = 0;
        let rebuilt = new.tunnels != old_tunnels;
        if rebuilt {
            let mut next = self.tunnels.clone();
            for t in old_tunnels.iter().filter(|t| !new.tunnels.contains(t)) {
                next.del(&t.name);
                tunnel_changes += 1;
            }
            for t in new.tunnels.iter().filter(|t| !old_tunnels.contains(t)) {
                next.add(t.clone());
                tunnel_changes += 1;
            }
            self.rebuild_with(next, &new.routes, slow).map_err(invalid)?;
        }
        // Every route and neighbour of the new file is valid against these ports (the file
        // check above did that), so what follows cannot fail half-way.
        let new_keys: std::collections::HashSet<Prefix> =
            new.routes.iter().map(|r| r.prefix).collect();
        let old_map: std::collections::HashMap<Prefix, &RouteConfig> =
            old.iter().map(|r| (r.prefix, r)).collect();
        let (mut added, mut replaced, mut removed) = (0, 0, 0);
        for r in &old {
            if !new_keys.contains(&r.prefix) {
                if !rebuilt {
                    self.routes.del(&r.prefix).map_err(invalid)?;
                }
                removed += 1;
            }
        }
        for r in &new.routes {
            match old_map.get(&r.prefix) {
                Some(o) if *o == r => continue,
                Some(_) => replaced += 1,
                None => added += 1,
            }
            if !rebuilt {
                self.routes.add(r.clone()).map_err(invalid)?;
            }
        }
        // After a rebuild the interface ids may have moved: every static neighbour is set
        // again (removing first what the old file had).
        let mut neigh = 0;
        for n in &self.neighbors.clone() {
            if rebuilt || !new.neighbors.contains(n) {
                if let Ok(id) = self.port_id(&n.port) {
                    slow.remove_neighbour(id, &addr_from_ip(n.address));
                }
                if !new.neighbors.contains(n) {
                    neigh += 1;
                }
            }
        }
        for n in &new.neighbors {
            if rebuilt || !self.neighbors.contains(n) {
                let id = self.port_id(&n.port)?;
                slow.add_static_neighbour(id, addr_from_ip(n.address), n.mac.0);
                if !self.neighbors.contains(n) {
                    neigh += 1;
                }
            }
        }
        self.neighbors = new.neighbors;
        Ok(Reply::ok(format!(
            "applied: {added} route(s) added, {replaced} replaced, {removed} removed, {neigh} neighbour change(s), {tunnel_changes} tunnel change(s)"
        )))
    }

    /// Makes everything staged live in one snapshot (routes and neighbours together).
    /// Returns messages about staged routes the FIB refused.
    pub fn commit(
        &mut self,
        slow: &mut SlowPath,
        handle: &TableHandle,
    ) -> Result<Vec<String>, String> {
        let rebuilt = std::mem::take(&mut self.rebuilt);
        let routes =
            if self.routes.dirty() || rebuilt { Some(self.routes.commit()?) } else { None };
        let neighbours = slow.neighbour_update();
        let fdb = std::mem::take(&mut self.tunnels.fdb_dirty);
        if routes.is_none() && neighbours.is_none() && !fdb {
            return Ok(Vec::new());
        }
        let mut next = Tables::clone(&handle.load());
        let mut messages = Vec::new();
        if rebuilt {
            next.ports = self.ports.clone();
            (next.local4, next.local6) = local_addresses(&self.ports);
            next.tunnels = Arc::new(self.tunnels.table(&self.base.ports)?);
            // Restarted before the publish: whoever reads the snapshot with the new tunnel
            // reads its baseline too.
            for slot in self.tunnels.take_fresh() {
                if let Some(c) = &self.counters {
                    c.restart(slot);
                }
            }
        }
        if fdb {
            next.fdb = Arc::new(self.tunnels.fdb());
        }
        if let Some((live, m)) = routes {
            next.fib4 = live.fib4;
            next.fib6 = live.fib6;
            next.groups = live.groups;
            messages = m;
        }
        if let Some(n) = neighbours {
            next.neighbours = Arc::new(n);
        }
        handle.publish(next);
        Ok(messages)
    }

    /// Answers a read (after the batch's commit).
    pub fn read(&self, req: Request, slow: &SlowPath) -> Reply {
        match req {
            Request::RouteShow => Reply::Routes { routes: self.routes.show() },
            Request::RouteGet { address } => match parse_ip(&address, "address") {
                Ok(ip) => {
                    Reply::RouteLookup { address: ip.to_string(), route: self.routes.get(ip) }
                }
                Err(e) => e,
            },
            Request::NeighShow => {
                let mut v: Vec<NeighEntry> = slow
                    .neighbours()
                    .map(|(port, addr, mac, is_static)| NeighEntry {
                        port: self.ports.get(port as usize).map_or("?".into(), |p| p.name.clone()),
                        address: routes::addr_text(&addr),
                        mac: Mac(mac).to_string(),
                        state: if is_static { "static" } else { "reachable" }.into(),
                    })
                    .collect();
                v.sort_by(|a, b| (&a.port, &a.address).cmp(&(&b.port, &b.address)));
                Reply::Neighbours { neighbours: v }
            }
            Request::ConfigShow => Reply::Config { toml: self.running().to_toml() },
            Request::TunnelShow => Reply::Tunnels {
                tunnels: self.tunnels.show(|id| self.ports.get(id as usize).map_or(0, |p| p.mtu)),
            },
            Request::FdbShow { tunnel } => match self.tunnels.fdb_entries(tunnel.as_deref()) {
                Ok(entries) => Reply::Fdb { entries },
                Err(e) => Reply::error(ErrorCode::NotFound, e),
            },
            other => Reply::error(
                ErrorCode::Failed,
                format!("internal: {other:?} is not a control-thread request"),
            ),
        }
    }

    /// The running configuration: the file plus every run-time change, not learned state.
    pub fn running(&self) -> Config {
        Config {
            routes: self.routes.configured().cloned().collect(),
            neighbors: self.neighbors.clone(),
            tunnels: self.tunnels.configs(),
            ..self.base.clone()
        }
    }
}

fn at(e: Reply, list: &str, i: usize) -> Reply {
    match e {
        Reply::Error { code, message } => {
            Reply::Error { code, message: format!("{list}[{i}]: {message}; nothing was applied") }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroplane_pipeline::flow::v4_mapped;
    use ferroplane_pipeline::slowpath::SlowPathConfig;
    use ferroplane_tunnels::TunnelCounters;

    const FILE: &str = r#"
[dataplane]
workers = [1]
[[port]]
name = "a"
driver = "memory"
mac = "02:00:00:00:00:01"
addresses = ["10.1.0.1/24"]
[[port]]
name = "b"
driver = "memory"
mac = "02:00:00:00:00:02"
addresses = ["10.2.0.1/24"]
[[tunnel]]
name = "vx0"
kind = "vxlan"
local = "10.2.0.1"
remote = "10.2.0.2"
vni = 100
addresses = ["10.100.0.1/24"]
[[route]]
prefix = "10.200.0.0/24"
nexthops = [{ via = "10.100.0.2" }]
"#;

    const GENEVE: &str = "[[tunnel]]\nname = \"gn\"\nkind = \"geneve\"\nlocal = \"10.2.0.1\"\nvni = 7\naddresses = [\"10.107.0.1/24\"]\n[[tunnel.fdb]]\nmac = \"00:00:00:00:00:00\"\nremote = \"10.2.0.9\"\n";

    fn setup() -> (ControlPlane, TableHandle, SlowPath) {
        let cfg = config::parse_str(FILE, "t.toml").unwrap();
        let mut t = crate::assemble::build_tables(&cfg, &|_| None).unwrap();
        let cp = ControlPlane::new(&cfg, t.ports.clone()).unwrap();
        cp.install(&mut t);
        let slow = SlowPath::new(&t, SlowPathConfig::default());
        (cp, TableHandle::new(t), slow)
    }

    fn ok(cp: &mut ControlPlane, slow: &mut SlowPath, h: &TableHandle, req: Request) -> String {
        let r = match cp.stage(req, slow) {
            Staged::Reply(r) => r,
            Staged::Read(_) => panic!("not a change"),
        };
        cp.commit(slow, h).unwrap();
        match r {
            Reply::Ok { message } => message,
            other => panic!("{other:?}"),
        }
    }

    /// Routed into `iface` as the rewrite stage leaves it, through the encap stage that counts
    /// into `counters`: `n` frames of `len` bytes.
    fn send_into(h: &TableHandle, counters: &Arc<TunnelCounters>, iface: PortId, n: usize) {
        use ferroplane_pipeline::buf::{PacketBuf, FRAME_SIZE};
        use ferroplane_pipeline::stage::{Context, Stage};
        use ferroplane_pipeline::verdict::Verdict;
        let t = h.load_full();
        let mut burst: Vec<PacketBuf> = (0..n)
            .map(|_| {
                let mut f = vec![0u8; 14 + 86];
                f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                f[14] = 0x45;
                f[16..18].copy_from_slice(&86u16.to_be_bytes());
                f[22] = 64;
                f[23] = 17;
                let mut b = PacketBuf::new(Box::leak(vec![0u8; FRAME_SIZE].into_boxed_slice()), 0);
                b.fill_from(&f).unwrap();
                b.meta.verdict = Verdict::Continue;
                b.meta.out_port = iface;
                b
            })
            .collect();
        let mut encap = ferroplane_tunnels::EncapStage::with_counters(counters.clone());
        Stage::process(&mut encap, &Context { tables: &t, now_ns: 0 }, &mut burst);
        for b in &burst {
            assert!(matches!(b.meta.verdict, Verdict::Forward(1)), "{:?}", b.meta.verdict);
        }
    }

    #[test]
    fn a_tunnel_in_a_deleted_tunnels_slot_starts_its_counters_from_zero() {
        let (mut cp, h, mut slow) = setup();
        let worker = Arc::new(TunnelCounters::default());
        let totals = Arc::new(TunnelTotals::new(vec![worker.clone()]));
        cp.count_tunnels(totals.clone());
        let stats =
            |slow: &SlowPath| crate::daemon::stats(&h, &[], &totals, &slow.counters()).tunnels;
        // vx0 (slot 0) sends 5 frames to its remote.
        let neigh = Request::NeighAdd {
            port: "b".into(),
            address: "10.2.0.2".into(),
            mac: "02:00:00:00:00:99".into(),
        };
        ok(&mut cp, &mut slow, &h, neigh);
        send_into(&h, &worker, 2, 5);
        let s = stats(&slow);
        assert_eq!((s[0].name.as_str(), s[0].tx_packets, s[0].tx_bytes), ("vx0", 5, 500));
        // vx0 goes; vx1 takes its slot (interface 2) and has sent nothing.
        ok(&mut cp, &mut slow, &h, Request::RouteDel { prefix: "10.200.0.0/24".into() });
        ok(&mut cp, &mut slow, &h, Request::TunnelDel { name: "vx0".into() });
        let vx = "[[tunnel]]\nname = \"vx1\"\nkind = \"vxlan\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.2\"\nvni = 1\n";
        let m = ok(&mut cp, &mut slow, &h, Request::TunnelAdd { toml: vx.into() });
        assert!(m.contains("interface 2"), "{m}");
        let s = stats(&slow);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].name.as_str(), s[0].rx_packets, s[0].rx_bytes, s[0].tx_packets, s[0].tx_bytes),
            ("vx1", 0, 0, 0, 0),
            "vx1 inherited vx0's counters"
        );
        // It counts its own traffic from there; a rebuild that leaves its slot alone (another
        // tunnel added) does not restart it.
        send_into(&h, &worker, 2, 2);
        ok(&mut cp, &mut slow, &h, Request::TunnelAdd { toml: GENEVE.into() });
        let s = stats(&slow);
        assert_eq!((s[0].name.as_str(), s[0].tx_packets, s[0].tx_bytes), ("vx1", 2, 200));
        assert_eq!((s[1].name.as_str(), s[1].tx_packets), ("gn", 0));
        // A tunnel replaced by `config apply` (same name, new settings) starts afresh too.
        let Reply::Config { toml } = cp.read(Request::ConfigShow, &slow) else { panic!() };
        let toml = toml.replace("vni = 1\n", "vni = 2\n");
        assert!(toml.contains("vni = 2"), "{toml}");
        ok(&mut cp, &mut slow, &h, Request::ConfigApply { toml, source: None });
        let s = stats(&slow);
        assert_eq!((s[0].name.as_str(), s[0].tx_packets), ("vx1", 0), "{s:?}");
    }

    fn refused(cp: &mut ControlPlane, slow: &mut SlowPath, req: Request) -> String {
        match cp.stage(req, slow) {
            Staged::Reply(Reply::Error { message, .. }) => message,
            Staged::Reply(r) => panic!("accepted: {r:?}"),
            Staged::Read(_) => panic!("not a change"),
        }
    }

    #[test]
    fn tunnel_add_takes_one_tunnel_section_and_reports_lines_of_the_request() {
        let (mut cp, h, mut slow) = setup();
        let vx = "[[tunnel]]\nname = \"vx1\"\nkind = \"vxlan\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.3\"\nvni = 1\n";
        let before = cp.running();
        // Another section rides along: refused, not silently dropped.
        let extra = [
            (
                "[[route]]\nprefix = \"10.201.0.0/24\"\nnexthops = [{ via = \"10.2.0.3\" }]\n",
                "[[route]]",
            ),
            (
                "[[neighbor]]\naddress = \"10.2.0.3\"\nmac = \"02:00:00:00:00:33\"\nport = \"b\"\n",
                "[[neighbor]]",
            ),
            ("[dataplane]\nworkers = [1]\n", "[dataplane]"),
        ];
        for (section, name) in extra {
            let m =
                refused(&mut cp, &mut slow, Request::TunnelAdd { toml: format!("{vx}{section}") });
            assert!(m.contains("one [[tunnel]] section") && m.contains(name), "{m}");
        }
        // A [[port]] that would make an otherwise foreign `local` valid.
        let port = "[[port]]\nname = \"c\"\ndriver = \"memory\"\naddresses = [\"10.9.0.1/24\"]\n";
        let m = refused(
            &mut cp,
            &mut slow,
            Request::TunnelAdd { toml: format!("{port}{}", vx.replace("10.2.0.1", "10.9.0.1")) },
        );
        assert!(m.contains("[[port]]"), "{m}");
        // Two tunnels, or none.
        let two = format!("{vx}{}", vx.replace("vx1", "vx2").replace("vni = 1", "vni = 2"));
        let m = refused(&mut cp, &mut slow, Request::TunnelAdd { toml: two });
        assert!(m.contains("exactly one [[tunnel]]") && m.contains("has 2"), "{m}");
        let m = refused(&mut cp, &mut slow, Request::TunnelAdd { toml: String::new() });
        assert!(m.contains("exactly one [[tunnel]]") && m.contains("has 0"), "{m}");
        // Errors are at the request's lines: vni on line 6, a syntax error on line 3.
        let m = refused(
            &mut cp,
            &mut slow,
            Request::TunnelAdd { toml: vx.replace("vni = 1", "vni = 99999999") },
        );
        assert!(m.starts_with("<tunnel add>:6:7: tunnel[0].vni:"), "{m}");
        let m = refused(
            &mut cp,
            &mut slow,
            Request::TunnelAdd { toml: vx.replace("kind = \"vxlan\"", "kind = vxlan") },
        );
        assert!(m.starts_with("<tunnel add>:3:"), "{m}");
        // A clash with the running configuration: the request's line.
        let m = refused(&mut cp, &mut slow, Request::TunnelAdd { toml: vx.replace("vx1", "vx0") });
        assert!(m.starts_with("<tunnel add>:2:"), "{m}");
        cp.commit(&mut slow, &h).unwrap();
        assert_eq!(cp.running(), before, "a refused request changes nothing");
        let m = ok(&mut cp, &mut slow, &h, Request::TunnelAdd { toml: vx.into() });
        assert!(m.contains("tunnel vx1 added"), "{m}");
    }

    #[test]
    fn tunnels_come_and_go_at_run_time_without_renumbering_the_others() {
        let (mut cp, h, mut slow) = setup();
        let t = h.load_full();
        assert_eq!(t.tunnels.by_name("vx0").map(|t| t.iface), Some(2));
        assert!(t.is_local(&v4_mapped([10, 100, 0, 1])));
        // Add a multipoint Geneve tunnel: interface 3, its address is ours, its flood entry live.
        let m = ok(&mut cp, &mut slow, &h, Request::TunnelAdd { toml: GENEVE.into() });
        assert!(m.contains("interface 3"), "{m}");
        let t = h.load_full();
        assert_eq!(t.ports.len(), 4);
        assert!(t.is_local(&v4_mapped([10, 107, 0, 1])));
        assert_eq!(t.fdb_remote(3, &[0xff; 6]), Some(v4_mapped([10, 2, 0, 9])));
        assert!(t.route(&v4_mapped([10, 107, 0, 5])).is_some());
        // A learned MAC shows up in the next snapshot; a static entry is not overridden.
        cp.fdb_learn(FdbLearn {
            iface: 3,
            mac: [2, 0, 0, 0, 7, 2],
            remote: v4_mapped([10, 2, 0, 7]),
        });
        cp.fdb_learn(FdbLearn { iface: 3, mac: [0; 6], remote: v4_mapped([10, 2, 0, 8]) });
        cp.fdb_learn(FdbLearn {
            iface: 2,
            mac: [2, 0, 0, 0, 0, 9],
            remote: v4_mapped([10, 2, 0, 8]),
        });
        cp.commit(&mut slow, &h).unwrap();
        let t = h.load_full();
        assert_eq!(t.fdb_remote(3, &[2, 0, 0, 0, 7, 2]), Some(v4_mapped([10, 2, 0, 7])));
        assert_eq!(t.fdb_remote(3, &[0; 6]), Some(v4_mapped([10, 2, 0, 9])));
        assert_eq!(t.fdb.len(), 2, "a point-to-point tunnel learns nothing");
        let Reply::Fdb { entries } = cp.read(Request::FdbShow { tunnel: Some("gn".into()) }, &slow)
        else {
            panic!()
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].state, "learned");
        // vx0 still carries a route (via its subnet): refused, nothing changes.
        match cp.stage(Request::TunnelDel { name: "vx0".into() }, &mut slow) {
            Staged::Reply(Reply::Error { message, .. }) => {
                assert!(message.contains("routes still lead into tunnel `vx0`"), "{message}")
            }
            _ => panic!("deleting a routed tunnel must fail"),
        }
        cp.commit(&mut slow, &h).unwrap();
        assert!(h.load().tunnels.by_name("vx0").is_some());
        // A file without vx0 and its route: both go in one apply; gn keeps interface 3.
        let mut text = FILE.replace(
            "[[tunnel]]\nname = \"vx0\"\nkind = \"vxlan\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.2\"\nvni = 100\naddresses = [\"10.100.0.1/24\"]\n[[route]]\nprefix = \"10.200.0.0/24\"\nnexthops = [{ via = \"10.100.0.2\" }]\n",
            "",
        );
        text.push_str(GENEVE);
        let m = ok(&mut cp, &mut slow, &h, Request::ConfigApply { toml: text, source: None });
        assert!(m.contains("1 removed") && m.contains("1 tunnel change(s)"), "{m}");
        let t = h.load_full();
        assert!(t.tunnels.by_name("vx0").is_none());
        assert_eq!(t.tunnels.by_name("gn").map(|t| t.iface), Some(3));
        assert!(!t.is_local(&v4_mapped([10, 100, 0, 1])));
        assert!(t.route(&v4_mapped([10, 200, 0, 1])).is_none());
        assert_eq!(t.fdb_remote(3, &[2, 0, 0, 0, 7, 2]), Some(v4_mapped([10, 2, 0, 7])));
        // The freed slot is reused by the next tunnel; config show round-trips.
        let vx = "[[tunnel]]\nname = \"vx1\"\nkind = \"vxlan\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.3\"\nvni = 1\n";
        let m = ok(&mut cp, &mut slow, &h, Request::TunnelAdd { toml: vx.into() });
        assert!(m.contains("interface 2"), "{m}");
        let Reply::Config { toml } = cp.read(Request::ConfigShow, &slow) else { panic!() };
        let back = config::parse_str(&toml, "show").unwrap();
        assert_eq!(back.tunnels.len(), 2);
        let names: Vec<_> = back.tunnels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["vx1", "gn"], "slot order");
        // A bad section changes nothing.
        match cp.stage(Request::TunnelAdd { toml: vx.replace("vx1", "vx2") }, &mut slow) {
            Staged::Reply(Reply::Error { message, .. }) => {
                assert!(message.contains("same local, vni and remote"), "{message}")
            }
            _ => panic!("a duplicate tunnel must be refused"),
        }
    }
}
