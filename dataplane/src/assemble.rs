//! From a checked configuration to the tables workers read, and the stage list they run.

use std::sync::Arc;

use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::l3::{InputStage, ParseStage, RewriteStage, RouteStage};
use ferroplane_pipeline::stage::Stage;
use ferroplane_pipeline::tables::{BuildError, NextHopSpec, PortInfo, Tables, TablesBuilder};
use ferroplane_pipeline::tunnel::Tunnel;
use ferroplane_tunnels::{DecapStage, EncapStage, LearnQueue, TunnelCounters};

use crate::config::{Config, PortConfig, TunnelConfig};

/// The worker's stage list: the L3 router with tunnel decapsulation after parse and
/// encapsulation at the end (both cost one branch per burst while no tunnel exists).
/// `learn` receives the MACs multipoint tunnels learn.
pub fn stages(learn: Option<Arc<LearnQueue>>) -> Vec<Box<dyn Stage>> {
    list(DecapStage::new(learn), EncapStage::default())
}

/// [`stages`] with per-tunnel counters (the live worker's list).
pub fn stages_counted(
    learn: Option<Arc<LearnQueue>>,
    counters: Arc<TunnelCounters>,
) -> Vec<Box<dyn Stage>> {
    list(
        DecapStage::new(learn).with_counters(counters.clone()),
        EncapStage::with_counters(counters),
    )
}

fn list(decap: DecapStage, encap: EncapStage) -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(ParseStage),
        Box::new(decap),
        Box::new(InputStage),
        Box::new(RouteStage),
        Box::new(RewriteStage::default()),
        Box::new(encap),
    ]
}

/// A tunnel's interface and table entry (its `iface` is set by the builder or the caller).
pub fn tunnel_parts(t: &TunnelConfig, ports: &[PortConfig]) -> (PortInfo, Tunnel) {
    let underlay_mtu = ports
        .iter()
        .find(|p| p.addresses.iter().any(|a| a.addr == t.local))
        .map_or(1500, |p| p.mtu);
    let info = PortInfo {
        name: t.name.clone(),
        mac: t.mac_or_derived(),
        mtu: t.effective_mtu(underlay_mtu),
        addresses: t.addresses.iter().map(|a| (a.addr, a.len)).collect(),
    };
    let tunnel = Tunnel {
        name: t.name.clone(),
        kind: t.kind,
        iface: 0,
        local: addr_from_ip(t.local),
        remote: t.remote.map(addr_from_ip),
        vni: t.vni,
        dst_port: t.dst_port,
        ttl: t.ttl,
        udp_checksum6: t.udp_checksum,
        options: t.encoded_options(),
    };
    (info, tunnel)
}

/// The MAC of each port: configured, or (for kernel-backed ports) read from the interface.
pub type MacResolver<'a> = &'a dyn Fn(&crate::config::PortConfig) -> Option<[u8; 6]>;

/// Builds the first table snapshot. `mac_of` supplies MACs the file leaves out (AF_XDP ports
/// default to their interface's address); a port with no MAC either way is an error.
pub fn build_tables(cfg: &Config, mac_of: MacResolver<'_>) -> Result<Tables, String> {
    let mut b = TablesBuilder::new(cfg.dataplane.hash_seed);
    for p in &cfg.ports {
        let mac = match p.mac {
            Some(m) => m.0,
            None => mac_of(p).ok_or_else(|| {
                format!("port `{}`: no MAC configured and none found on its interface", p.name)
            })?,
        };
        b.port(PortInfo {
            name: p.name.clone(),
            mac,
            mtu: p.mtu,
            addresses: p.addresses.iter().map(|a| (a.addr, a.len)).collect(),
        });
    }
    let mut ports: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    for t in &cfg.tunnels {
        let (info, tunnel) = tunnel_parts(t, &cfg.ports);
        let id = b.tunnel(info, tunnel);
        for f in &t.fdb {
            b.fdb(id, f.mac.0, f.remote);
        }
        ports.push(t.name.clone());
    }
    for (i, r) in cfg.routes.iter().enumerate() {
        let specs: Vec<NextHopSpec> = r
            .nexthops
            .iter()
            .map(|n| NextHopSpec { via: n.via, dev: n.dev.clone(), weight: n.weight })
            .collect();
        b.route(r.prefix.addr, r.prefix.len, &specs, r.blackhole)
            .map_err(|e: BuildError| format!("route[{i}] {}: {e}", r.prefix))?;
    }
    for n in &cfg.neighbors {
        let port = ports
            .iter()
            .position(|p| *p == n.port)
            .ok_or_else(|| format!("neighbor {}: no port or tunnel `{}`", n.address, n.port))?;
        b.neighbour(port as u16, n.address, n.mac.0);
    }
    b.build().map_err(|e| e.to_string())
}
