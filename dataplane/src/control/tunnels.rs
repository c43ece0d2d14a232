//! The control thread's tunnel state: which tunnel holds which interface slot, and the FDB of
//! multipoint tunnels (static entries from the config, learned ones from the workers).
//!
//! A tunnel's interface id is `ports + slot`. Slots are stable: deleting a tunnel frees its slot
//! (the next tunnel added takes it) and never renumbers the others, so the neighbour entries and
//! in-flight packets of the other tunnels keep meaning what they meant.

use std::collections::HashMap;

use ferroplane_ctl::{FdbEntry, TunnelEntry};
use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::meta::{Addr, PortId};
use ferroplane_pipeline::tables::{MacAddr, PortInfo};
use ferroplane_pipeline::tunnel::{Fdb, TunnelKind, TunnelTable};
use ferroplane_tunnels::FdbLearn;

use crate::assemble::tunnel_parts;
use crate::config::{Mac, PortConfig, TunnelConfig};

#[derive(Clone)]
pub struct Tunnels {
    /// Number of ports: the first tunnel interface id.
    ports: usize,
    slots: Vec<Option<TunnelConfig>>,
    learned: HashMap<(PortId, MacAddr), Addr>,
    /// The FDB changed since the last publish.
    pub fdb_dirty: bool,
    /// Slots given to a new tunnel since the last publish: their counters start afresh.
    fresh: Vec<usize>,
}

impl Tunnels {
    /// The tunnels of a checked config, in file order (the order the first snapshot gave them).
    pub fn new(ports: usize, tunnels: &[TunnelConfig]) -> Tunnels {
        Tunnels {
            ports,
            slots: tunnels.iter().cloned().map(Some).collect(),
            learned: HashMap::new(),
            fdb_dirty: false,
            fresh: Vec::new(),
        }
    }

    pub fn iface(&self, name: &str) -> Option<PortId> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|t| t.name == name))
            .map(|i| (self.ports + i) as PortId)
    }

    fn config(&self, iface: PortId) -> Option<&TunnelConfig> {
        self.slots.get((iface as usize).checked_sub(self.ports)?)?.as_ref()
    }

    /// The tunnels as configured, in slot order.
    pub fn configs(&self) -> Vec<TunnelConfig> {
        self.slots.iter().flatten().cloned().collect()
    }

    /// Adds a tunnel in the first free slot; returns its interface id.
    pub fn add(&mut self, t: TunnelConfig) -> PortId {
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(t);
                i
            }
            None => {
                self.slots.push(Some(t));
                self.slots.len() - 1
            }
        };
        self.fdb_dirty = true;
        self.fresh.push(slot);
        (self.ports + slot) as PortId
    }

    /// The slots given to a new tunnel since the last call.
    pub fn take_fresh(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.fresh)
    }

    /// Removes a tunnel and what it learned; returns its interface id.
    pub fn del(&mut self, name: &str) -> Option<PortId> {
        let id = self.iface(name)?;
        self.slots[id as usize - self.ports] = None;
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        self.learned.retain(|(i, _), _| *i != id);
        self.fdb_dirty = true;
        Some(id)
    }

    /// Every interface: the ports' (`phys`), then one per tunnel slot (free slots unnamed).
    pub fn interfaces(&self, ports: &[PortConfig], phys: &[PortInfo]) -> Vec<PortInfo> {
        let mut out = phys.to_vec();
        for s in &self.slots {
            out.push(match s {
                Some(t) => tunnel_parts(t, ports).0,
                None => {
                    PortInfo { name: String::new(), mac: [0; 6], mtu: 0, addresses: Vec::new() }
                }
            });
        }
        out
    }

    /// The tunnel table for a snapshot.
    pub fn table(&self, ports: &[PortConfig]) -> Result<TunnelTable, String> {
        let mut table = TunnelTable::new(self.ports);
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(t) = s {
                let (_, mut tunnel) = tunnel_parts(t, ports);
                tunnel.iface = (self.ports + i) as PortId;
                table.insert(tunnel).map_err(|e| format!("tunnel `{}`: {e}", t.name))?;
            }
        }
        Ok(table)
    }

    /// Static entries, then learned ones for MACs without a static entry.
    pub fn fdb(&self) -> Fdb {
        let mut fdb = Fdb::default();
        for (&k, &v) in &self.learned {
            fdb.insert(k, v);
        }
        for (i, s) in self.slots.iter().enumerate() {
            for f in s.iter().flat_map(|t| &t.fdb) {
                fdb.insert(((self.ports + i) as PortId, f.mac.0), addr_from_ip(f.remote));
            }
        }
        fdb
    }

    /// A MAC a worker saw behind `remote`. Static entries win; only multipoint L2 tunnels learn.
    pub fn learn(&mut self, e: FdbLearn) {
        let Some(t) = self.config(e.iface) else { return };
        if t.remote.is_some() || !t.kind.l2() || t.fdb.iter().any(|f| f.mac.0 == e.mac) {
            return;
        }
        if self.learned.insert((e.iface, e.mac), e.remote) != Some(e.remote) {
            self.fdb_dirty = true;
        }
    }

    pub fn show(&self, mtu_of: impl Fn(PortId) -> u16) -> Vec<TunnelEntry> {
        let mut out = Vec::new();
        for (i, t) in self.slots.iter().enumerate() {
            let Some(t) = t else { continue };
            let l2 = t.kind.l2();
            out.push(TunnelEntry {
                name: t.name.clone(),
                kind: t.kind.name().into(),
                local: t.local.to_string(),
                remote: t.remote.map(|r| r.to_string()),
                vni: l2.then_some(t.vni),
                dst_port: l2.then_some(t.dst_port),
                ttl: t.ttl,
                mtu: mtu_of((self.ports + i) as PortId),
                mac: l2.then(|| Mac(t.mac_or_derived()).to_string()),
                addresses: t.addresses.iter().map(|a| a.to_string()).collect(),
                options: t
                    .options
                    .iter()
                    .map(|o| {
                        let hex: String = o.data.iter().map(|b| format!("{b:02x}")).collect();
                        format!("{:#06x}:{:#04x}:{hex}", o.class, o.kind)
                    })
                    .collect(),
            });
        }
        out
    }

    /// FDB entries, of one tunnel or all, sorted by tunnel and MAC.
    pub fn fdb_entries(&self, tunnel: Option<&str>) -> Result<Vec<FdbEntry>, String> {
        let only = match tunnel {
            Some(n) => Some(self.iface(n).ok_or_else(|| format!("no tunnel `{n}`"))?),
            None => None,
        };
        let name = |id: PortId| self.config(id).map_or("?".to_string(), |t| t.name.clone());
        let mut out = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            let id = (self.ports + i) as PortId;
            if only.is_some_and(|o| o != id) {
                continue;
            }
            for f in s.iter().flat_map(|t| &t.fdb) {
                out.push(FdbEntry {
                    tunnel: name(id),
                    mac: f.mac.to_string(),
                    remote: f.remote.to_string(),
                    state: "static".into(),
                });
            }
        }
        for (&(id, mac), remote) in &self.learned {
            if only.is_some_and(|o| o != id) {
                continue;
            }
            out.push(FdbEntry {
                tunnel: name(id),
                mac: Mac(mac).to_string(),
                remote: super::routes::addr_text(remote),
                state: "learned".into(),
            });
        }
        out.sort_by(|a, b| (&a.tunnel, &a.mac).cmp(&(&b.tunnel, &b.mac)));
        Ok(out)
    }

    /// Whether `iface` is a tunnel without a link layer.
    pub fn is_ipip(&self, iface: PortId) -> bool {
        self.config(iface).is_some_and(|t| t.kind == TunnelKind::Ipip)
    }
}
