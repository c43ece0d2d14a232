//! `ferroplane run`: checks the configuration against the machine, opens the ports, starts the
//! workers and the control thread, serves the control socket, and shuts down cleanly on
//! SIGINT/SIGTERM (workers stopped, XDP programs detached, socket removed). A worker that panics
//! stops the process with a non-zero status instead of leaving it half alive.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferroplane_ctl::{PortStats, Reply, Request, Stats, WorkerStats};
use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::tables::TableHandle;

use crate::assemble::build_tables;
use crate::config::{Config, Driver, PortConfig};
use crate::port::Port;
use crate::runtime::{self, Running, WorkerPorts};

/// Reads an interface's MAC from sysfs.
pub fn interface_mac(ifname: &str) -> Option<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(mac)
}

/// Checks what the file asks of this machine, before any interface is touched.
pub fn preflight(cfg: &Config) -> Result<(), String> {
    let mut errors = Vec::new();
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    for &c in &cfg.dataplane.workers {
        if c >= ncpu {
            errors.push(format!(
                "[dataplane] workers: core {c} does not exist (this machine has cores 0-{})",
                ncpu - 1
            ));
        }
    }
    let nworkers = cfg.dataplane.workers.len();
    for p in &cfg.ports {
        match p.driver {
            Driver::AfXdp => {
                let ifname = p.interface.as_deref().unwrap_or("");
                if !Path::new(&format!("/sys/class/net/{ifname}")).exists() {
                    errors.push(format!("port `{}`: no interface `{ifname}` (check `ip link`; run ferroplane in the interface's network namespace)", p.name));
                    continue;
                }
                if p.queues as usize != nworkers {
                    errors.push(format!(
                        "port `{}`: {} queue(s) but {nworkers} worker(s); each worker serves one queue of every port, so set `queues = {nworkers}`",
                        p.name, p.queues
                    ));
                }
                let avail = std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                            .count()
                    })
                    .unwrap_or(0);
                if (p.queues as usize) > avail {
                    errors.push(format!("port `{}`: interface `{ifname}` has {avail} rx queue(s), fewer than queues = {}", p.name, p.queues));
                }
            }
            Driver::Dpdk => errors.push(format!(
                "port `{}`: driver \"dpdk\" needs a build with `--features dpdk`",
                p.name
            )),
            Driver::Memory => errors.push(format!(
                "port `{}`: driver \"memory\" has no wire; it is for `ferroplane replay` and tests",
                p.name
            )),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if !cfg.ports.is_empty() && unsafe { libc::geteuid() } != 0 {
        errors
            .push("AF_XDP needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN): run as root".into());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

fn open_port(p: &PortConfig, queue: u16) -> Result<Box<dyn Port>, String> {
    match p.driver {
        Driver::AfXdp => {
            let ifname = p.interface.clone().unwrap_or_default();
            let mut xc = crate::port::af_xdp::AfXdpConfig::new(&ifname, queue);
            xc.bind = p.xdp_bind;
            xc.attach = p.xdp_attach;
            let port = crate::port::af_xdp::AfXdpPort::open(&p.name, &xc)
                .map_err(|e| format!("port `{}` queue {queue}: {e}", p.name))?;
            Ok(Box::new(port))
        }
        _ => Err(format!("port `{}`: driver not available in `run`", p.name)),
    }
}

/// Runs the daemon until a signal; returns the process exit status.
pub fn run(cfg: Config) -> Result<(), String> {
    preflight(&cfg)?;
    let tables = build_tables(&cfg, &|p| p.interface.as_deref().and_then(interface_mac))?;
    let nworkers = cfg.dataplane.workers.len();
    let mut workers = Vec::with_capacity(nworkers);
    let mut modes: Vec<Option<String>> = vec![None; cfg.ports.len()];
    for (w, &core) in cfg.dataplane.workers.iter().enumerate() {
        let mut ports = Vec::new();
        for (i, p) in cfg.ports.iter().enumerate() {
            let port = open_port(p, w as u16)?;
            if w == 0 {
                modes[i] = port.mode_name();
            }
            ports.push(port);
        }
        let rx_ports = (0..cfg.ports.len() as PortId).collect();
        workers.push(WorkerPorts { core: Some(core), ports, rx_ports });
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let control_core = (0..ncpu).find(|c| !cfg.dataplane.workers.contains(c));
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    let running =
        runtime::start(TableHandle::new(tables), workers, cfg.dataplane.poll, control_core)?;
    let socket_path = cfg.dataplane.control_socket.clone();
    let listener = ferroplane_ctl::server::bind(&socket_path)
        .map_err(|e| format!("control socket {}: {e}", socket_path.display()))?;
    let handler = handler(&cfg, &running, modes);
    let ctl_stop = Arc::new(AtomicBool::new(false));
    let ctl =
        ferroplane_ctl::server::serve(listener, socket_path.clone(), handler, ctl_stop.clone());
    tracing::info!(
        "ferroplane running: {} port(s), {} worker(s), control socket {}",
        cfg.ports.len(),
        nworkers,
        socket_path.display()
    );
    let mut failure = None;
    while !stop.load(Ordering::Relaxed) {
        if !running.healthy() {
            failure = Some("a worker or the control thread stopped unexpectedly".to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("stopping");
    ctl_stop.store(true, Ordering::SeqCst);
    let _ = ctl.join();
    let joined = running.shutdown();
    match (joined, failure) {
        (Err(e), _) => Err(e.to_string()),
        (Ok(()), Some(f)) => Err(f),
        (Ok(()), None) => {
            tracing::info!("stopped cleanly; XDP programs detached");
            Ok(())
        }
    }
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn handler(
    cfg: &Config,
    running: &Running,
    modes: Vec<Option<String>>,
) -> ferroplane_ctl::server::Handler {
    let workers = running.workers.clone();
    let slow = running.slow.clone();
    let tables = running.tables.clone();
    let port_cfg: Vec<PortConfig> = cfg.ports.clone();
    Arc::new(move |req| match req {
        Request::Version => Reply::Version {
            daemon: env!("CARGO_PKG_VERSION").into(),
            protocol: ferroplane_ctl::PROTOCOL_VERSION,
        },
        Request::Stats => {
            let t = tables.load();
            let mut s = Stats::default();
            for (i, p) in t.ports.iter().enumerate() {
                let mut ps = PortStats { name: p.name.clone(), ..Default::default() };
                for w in &workers {
                    if let Some(c) = w.ports.get(i) {
                        ps.rx_packets += c.rx_packets.get();
                        ps.rx_bytes += c.rx_bytes.get();
                        ps.tx_packets += c.tx_packets.get();
                        ps.tx_bytes += c.tx_bytes.get();
                    }
                }
                s.ports.push(ps);
            }
            for (id, w) in workers.iter().enumerate() {
                s.workers.push(WorkerStats {
                    id,
                    bursts: w.bursts.get(),
                    empty_polls: w.empty_polls.get(),
                    busy_ns: w.busy_ns.get(),
                    drops: w.drops.iter().map(|(r, v)| (r.name().to_string(), v)).collect(),
                    punts: w.punts.iter().map(|(r, v)| (r.name().to_string(), v)).collect(),
                });
            }
            s.slow_path = slow.iter().map(|(k, v)| (k.to_string(), v)).collect();
            s.slow_path_drops = slow.drops.iter().map(|(r, v)| (r.name().to_string(), v)).collect();
            Reply::Stats(s)
        }
        Request::PortShow => {
            let t = tables.load();
            let ports = t
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let c = port_cfg.get(i);
                    ferroplane_ctl::PortInfo {
                        name: p.name.clone(),
                        driver: c.map_or("?".into(), |c| c.driver.to_string()),
                        interface: c.and_then(|c| c.interface.clone()),
                        mac: fmt_mac(p.mac),
                        mtu: p.mtu,
                        addresses: p.addresses.iter().map(|(a, l)| format!("{a}/{l}")).collect(),
                        queues: c.map_or(1, |c| c.queues),
                        mode: modes.get(i).cloned().flatten(),
                    }
                })
                .collect();
            Reply::Ports { ports }
        }
    })
}
