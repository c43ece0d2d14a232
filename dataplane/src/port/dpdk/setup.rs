//! The daemon's side of DPDK: start EAL for the file's dpdk ports, probe them (their MACs go into
//! the first table snapshot), then start them over the workers' pools.

use super::{eal, probe, DeviceStatus, DpdkConfig, DpdkDevice, DpdkPort};
use crate::config::{Config, Driver, PortConfig};

fn dpdk_config(p: &PortConfig) -> DpdkConfig {
    DpdkConfig {
        name: p.name.clone(),
        interface: p.interface.clone().unwrap_or_default(),
        queues: p.queues,
        rx_desc: p.dpdk_rx_desc,
        tx_desc: p.dpdk_tx_desc,
        mtu: p.mtu,
        mac: p.mac.map(|m| m.0),
    }
}

/// Frames each worker's pool must hold for its queues of every dpdk port.
pub fn frames_per_worker(cfg: &Config) -> usize {
    cfg.ports
        .iter()
        .filter(|p| p.driver == Driver::Dpdk)
        .map(|p| dpdk_config(p).frames_per_queue())
        .sum()
}

/// Starts EAL (once) with `[dataplane] eal_args` and a device per dpdk port, and probes each:
/// entry `i` is port `i`'s device, `None` for ports of other drivers.
pub fn probe_all(cfg: &Config) -> Result<Vec<Option<DpdkDevice>>, String> {
    let interfaces: Vec<String> = cfg
        .ports
        .iter()
        .filter(|p| p.driver == Driver::Dpdk)
        .filter_map(|p| p.interface.clone())
        .collect();
    if interfaces.is_empty() {
        return Ok(cfg.ports.iter().map(|_| None).collect());
    }
    let (argv, warning) = eal::argv(cfg.dataplane.eal_args.as_deref(), &interfaces);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    eal::init(&argv)?;
    cfg.ports
        .iter()
        .map(|p| match p.driver {
            Driver::Dpdk => probe(&dpdk_config(p)).map(Some),
            _ => Ok(None),
        })
        .collect()
}

/// Starts every probed device over `pools` (one per worker, queue `w` for worker `w`). Returns,
/// per port, its queues in worker order and its status handle.
#[allow(clippy::type_complexity)]
pub fn start_all(
    devices: Vec<Option<DpdkDevice>>,
    pools: &mut [ferroplane_pipeline::pool::Pool],
) -> Result<(Vec<Option<std::vec::IntoIter<DpdkPort>>>, Vec<Option<(String, DeviceStatus)>>), String>
{
    let mut queues = Vec::new();
    let mut statuses = Vec::new();
    for d in devices {
        match d {
            Some(d) => {
                let name = d.cfg.name.clone();
                let (ports, status) = d.start(pools)?;
                queues.push(Some(ports.into_iter()));
                statuses.push(Some((name, status)));
            }
            None => {
                queues.push(None);
                statuses.push(None);
            }
        }
    }
    Ok((queues, statuses))
}
