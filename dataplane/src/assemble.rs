//! From a checked configuration to the tables workers read.

use ferroplane_pipeline::tables::{BuildError, NextHopSpec, PortInfo, Tables, TablesBuilder};

use crate::config::Config;

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
    let ports: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
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
            .ok_or_else(|| format!("neighbor {}: no port `{}`", n.address, n.port))?;
        b.neighbour(port as u16, n.address, n.mac.0);
    }
    b.build().map_err(|e| e.to_string())
}
