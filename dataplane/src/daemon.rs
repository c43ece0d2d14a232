//! `ferroplane run`: checks the configuration against the machine, opens the ports, starts the
//! workers and the control thread, serves the control socket, and shuts down cleanly on
//! SIGINT/SIGTERM (workers stopped, XDP programs detached, socket removed). A worker that panics
//! stops the process with a non-zero status instead of leaving it half alive.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferroplane_ctl::{ErrorCode, PortStats, Reply, Request, Stats, WorkerStats};
use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::slowpath::SlowPathCounters;
use ferroplane_pipeline::tables::TableHandle;
use ferroplane_tunnels::counters::TunnelTotals;

use crate::assemble::build_tables;
use crate::capture::{CaptureSummary, Direction};
use crate::config::{Config, Driver, PortConfig};
use crate::control::ControlPlane;
use crate::port::Port;
use crate::runtime::{self, Command, Running, WorkerPorts};
use crate::worker::WorkerCounters;

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
            #[cfg(not(feature = "dpdk"))]
            Driver::Dpdk => errors.push(format!(
                "port `{}`: driver \"dpdk\" needs a build with `--features dpdk`",
                p.name
            )),
            #[cfg(feature = "dpdk")]
            Driver::Dpdk => {
                if p.queues as usize != nworkers {
                    errors.push(format!(
                        "port `{}`: {} queue(s) but {nworkers} worker(s); each worker serves one queue of every port, so set `queues = {nworkers}`",
                        p.name, p.queues
                    ));
                }
            }
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

pub(crate) fn open_port(p: &PortConfig, queue: u16) -> Result<Box<dyn Port>, String> {
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

/// A device port's live view (DPDK): its link and counters for `fpctl port show`, and the link
/// watch of the daemon's main loop.
#[derive(Clone)]
pub(crate) struct DeviceView {
    report: Arc<dyn Fn() -> (String, std::collections::BTreeMap<String, u64>) + Send + Sync>,
    poll_link: Arc<dyn Fn() + Send + Sync>,
}

/// How often the main loop checks device links (in 100 ms turns).
const LINK_POLL_TURNS: u32 = 10;

/// How long a client waits for the control thread before getting `failed`.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the daemon until SIGINT/SIGTERM. SIGHUP re-reads `config_path` and applies the
/// difference like `fpctl config apply`.
pub fn run(cfg: Config, config_path: Option<PathBuf>) -> Result<(), String> {
    preflight(&cfg)?;
    // DPDK devices are probed before the tables are built: their MACs come from DPDK.
    #[cfg(feature = "dpdk")]
    let dpdk = crate::port::dpdk::setup::probe_all(&cfg)?;
    let mac_of = |p: &PortConfig| -> Option<[u8; 6]> {
        #[cfg(feature = "dpdk")]
        if p.driver == Driver::Dpdk {
            let i = cfg.ports.iter().position(|q| q.name == p.name)?;
            return dpdk.get(i)?.as_ref().map(|d| d.mac());
        }
        p.interface.as_deref().and_then(interface_mac)
    };
    let mut tables = build_tables(&cfg, &mac_of)?;
    let control = ControlPlane::new(&cfg, tables.ports.clone())?;
    control.install(&mut tables);
    let nworkers = cfg.dataplane.workers.len();
    let mut workers = Vec::with_capacity(nworkers);
    let mut modes: Vec<Option<String>> = vec![None; cfg.ports.len()];
    // The workers' pools exist before the ports: DPDK queues build their mempools over them.
    #[cfg(feature = "dpdk")]
    let pool_frames = runtime::POOL_FRAMES + crate::port::dpdk::setup::frames_per_worker(&cfg);
    #[cfg(not(feature = "dpdk"))]
    let pool_frames = runtime::POOL_FRAMES;
    #[allow(unused_mut)]
    let mut pools = (0..nworkers)
        .map(|w| {
            ferroplane_pipeline::pool::Pool::new(
                pool_frames,
                ferroplane_hugepages::Policy::PreferHuge,
            )
            .map_err(|e| format!("worker {w}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    #[allow(unused_mut)]
    let mut devices: Vec<Option<DeviceView>> = vec![None; cfg.ports.len()];
    #[cfg(feature = "dpdk")]
    let mut dpdk_queues = {
        let (queues, statuses) = crate::port::dpdk::setup::start_all(dpdk, &mut pools)?;
        for (i, st) in statuses.into_iter().enumerate() {
            if let Some((name, st)) = st {
                let (a, b) = (st.clone(), st);
                devices[i] = Some(DeviceView {
                    report: Arc::new(move || {
                        let r = a.report();
                        (r.link, r.counters.into_iter().collect())
                    }),
                    poll_link: Arc::new(move || b.poll_link(&name)),
                });
            }
        }
        queues
    };
    for (w, (&core, pool)) in cfg.dataplane.workers.iter().zip(pools).enumerate() {
        let mut ports = Vec::new();
        for (i, p) in cfg.ports.iter().enumerate() {
            let port: Box<dyn Port> = match p.driver {
                #[cfg(feature = "dpdk")]
                Driver::Dpdk => match dpdk_queues.get_mut(i).and_then(|q| q.as_mut()?.next()) {
                    Some(q) => Box::new(q),
                    None => return Err(format!("port `{}`: no DPDK queue {w}", p.name)),
                },
                _ => open_port(p, w as u16)?,
            };
            if w == 0 {
                modes[i] = port.mode_name();
            }
            ports.push(port);
        }
        let rx_ports = (0..cfg.ports.len() as PortId).collect();
        workers.push(WorkerPorts { core: Some(core), ports, rx_ports, pool: Some(pool) });
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let control_core = (0..ncpu).find(|c| !cfg.dataplane.workers.contains(c));
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let running = runtime::start(
        TableHandle::new(tables),
        workers,
        cfg.dataplane.poll,
        control_core,
        control,
    )?;
    let socket_path = cfg.dataplane.control_socket.clone();
    let listener = ferroplane_ctl::server::bind(&socket_path)
        .map_err(|e| format!("control socket {}: {e}", socket_path.display()))?;
    let handler = handler(&cfg, &running, modes, devices.clone());
    let ctl_stop = Arc::new(AtomicBool::new(false));
    let ctl = ferroplane_ctl::server::serve(
        listener,
        socket_path.clone(),
        handler.clone(),
        ctl_stop.clone(),
    );
    let metrics = match cfg.dataplane.metrics {
        Some(addr) => {
            let source = stats_source(&running);
            let (bound, h) = crate::metrics::serve(addr, source, ctl_stop.clone())
                .map_err(|e| format!("[dataplane] metrics = \"{addr}\": {e}"))?;
            tracing::info!("metrics on http://{bound}/metrics");
            Some(h)
        }
        None => None,
    };
    tracing::info!(
        "ferroplane running: {} port(s), {} worker(s), control socket {}",
        cfg.ports.len(),
        nworkers,
        socket_path.display()
    );
    let mut failure = None;
    let mut turn = 0u32;
    while !stop.load(Ordering::Relaxed) {
        turn = turn.wrapping_add(1);
        if turn.is_multiple_of(LINK_POLL_TURNS) {
            for d in devices.iter().flatten() {
                (d.poll_link)();
            }
        }
        if !running.healthy() {
            failure = Some("a worker or the control thread stopped unexpectedly".to_string());
            break;
        }
        if hup.swap(false, Ordering::Relaxed) {
            reload(config_path.as_deref(), &handler);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("stopping");
    if let Some(s) = running.capture.status().filter(|s| s.running) {
        match running.capture.stop() {
            Ok(_) => tracing::info!("capture to {} finished", s.file.display()),
            Err(e) => tracing::warn!("capture: {e}"),
        }
    }
    ctl_stop.store(true, Ordering::SeqCst);
    let _ = ctl.join();
    if let Some(h) = metrics {
        let _ = h.join();
    }
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

/// SIGHUP: re-reads the daemon's own file and applies it like `fpctl config apply`.
fn reload(path: Option<&Path>, handler: &ferroplane_ctl::server::Handler) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no configuration file to re-read");
        return;
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("SIGHUP: cannot read {}: {e}; nothing changed", path.display());
            return;
        }
    };
    let source = Some(path.display().to_string());
    match handler(Request::ConfigApply { toml: text, source }) {
        Reply::Ok { message } => tracing::info!("SIGHUP: {}: {message}", path.display()),
        Reply::Error { message, .. } => {
            tracing::error!("SIGHUP: {} refused, nothing changed:\n{message}", path.display())
        }
        other => tracing::warn!("SIGHUP: unexpected reply {other:?}"),
    }
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Every counter of the running process, as `fpctl stats` and the metrics endpoint show them.
pub fn stats(
    running_tables: &TableHandle,
    workers: &[Arc<WorkerCounters>],
    tunnels: &TunnelTotals,
    slow: &SlowPathCounters,
) -> Stats {
    let t = running_tables.load();
    let mut s = Stats::default();
    // The ports only: tunnel interfaces (after them) have no rings of their own.
    let nports = t.tunnels.first_iface() as usize;
    for (i, p) in t.ports.iter().take(nports).enumerate() {
        let mut ps = PortStats { name: p.name.clone(), ..Default::default() };
        for w in workers {
            if let Some(c) = w.ports.get(i) {
                ps.rx_packets += c.rx_packets.get();
                ps.rx_bytes += c.rx_bytes.get();
                ps.tx_packets += c.tx_packets.get();
                ps.tx_bytes += c.tx_bytes.get();
            }
        }
        s.ports.push(ps);
    }
    for tun in t.tunnels.iter() {
        // Since the tunnel took its slot, not since the slot's first tunnel.
        let c = tunnels.of(&t, tun.iface);
        s.tunnels.push(PortStats {
            name: tun.name.clone(),
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
        });
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
    s
}

fn stats_source(running: &Running) -> Arc<dyn Fn() -> Stats + Send + Sync> {
    let (tables, workers, slow) =
        (running.tables.clone(), running.workers.clone(), running.slow.clone());
    let tunnels = running.tunnels.clone();
    Arc::new(move || stats(&tables, &workers, &tunnels, &slow))
}

/// Most packets one `trace add` arms.
const MAX_TRACE: u32 = 10_000;

fn handler(
    cfg: &Config,
    running: &Running,
    modes: Vec<Option<String>>,
    devices: Vec<Option<DeviceView>>,
) -> ferroplane_ctl::server::Handler {
    let stats = stats_source(running);
    let tables = running.tables.clone();
    let commands = running.commands.clone();
    let trace = running.trace.clone();
    let capture = running.capture.clone();
    let port_cfg: Vec<PortConfig> = cfg.ports.clone();
    let port_names: Vec<String> = port_cfg.iter().map(|p| p.name.clone()).collect();
    let name_of =
        move |id: u16| port_names.get(id as usize).cloned().unwrap_or_else(|| format!("#{id}"));
    Arc::new(move |req| match req {
        Request::Version => Reply::Version {
            daemon: env!("CARGO_PKG_VERSION").into(),
            protocol: ferroplane_ctl::PROTOCOL_VERSION,
        },
        Request::Stats => Reply::Stats(stats()),
        Request::PortShow => {
            let t = tables.load();
            let ports = t
                .ports
                .iter()
                .take(t.tunnels.first_iface() as usize)
                .enumerate()
                .map(|(i, p)| {
                    let c = port_cfg.get(i);
                    let (link, device_counters) = match devices.get(i).and_then(|d| d.as_ref()) {
                        Some(d) => {
                            let (link, counters) = (d.report)();
                            (Some(link), counters)
                        }
                        None => (None, Default::default()),
                    };
                    ferroplane_ctl::PortInfo {
                        name: p.name.clone(),
                        driver: c.map_or("?".into(), |c| c.driver.to_string()),
                        interface: c.and_then(|c| c.interface.clone()),
                        mac: fmt_mac(p.mac),
                        mtu: p.mtu,
                        addresses: p.addresses.iter().map(|(a, l)| format!("{a}/{l}")).collect(),
                        queues: c.map_or(1, |c| c.queues),
                        mode: modes.get(i).cloned().flatten(),
                        link,
                        device_counters,
                    }
                })
                .collect();
            Reply::Ports { ports }
        }
        Request::TraceAdd { count } => {
            if count == 0 || count > MAX_TRACE {
                return Reply::error(
                    ErrorCode::InvalidArgument,
                    format!("trace count must be 1-{MAX_TRACE}"),
                );
            }
            trace.add(count);
            Reply::ok(format!("tracing the next {} packet(s)", trace.pending()))
        }
        Request::TraceShow { clear } => {
            Reply::Trace { pending: trace.pending(), packets: trace.show(&name_of, clear) }
        }
        Request::CaptureStart { port, file, count, direction } => {
            let Some(id) = port_cfg.iter().position(|p| p.name == port) else {
                return Reply::error(ErrorCode::InvalidArgument, format!("no port `{port}`"));
            };
            let dir = match direction.parse::<Direction>() {
                Ok(d) => d,
                Err(e) => return Reply::error(ErrorCode::InvalidArgument, e.to_string()),
            };
            if count == Some(0) {
                return Reply::error(ErrorCode::InvalidArgument, "--count must be at least 1");
            }
            match capture.start(id as u16, &port, Path::new(&file), count, dir) {
                Ok(()) => match capture.status() {
                    Some(s) => Reply::Capture(capture_status(&s)),
                    None => Reply::ok("capture started"),
                },
                Err(e) => Reply::error(ErrorCode::Failed, e),
            }
        }
        Request::CaptureStop => match capture.stop() {
            Ok(s) => Reply::Capture(capture_status(&s)),
            Err(e) => Reply::error(ErrorCode::NotFound, e),
        },
        other => {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            match commands.try_send(Command { request: other, reply: tx }) {
                Ok(()) => {}
                Err(std::sync::mpsc::TrySendError::Full(_)) => {
                    return Reply::error(
                        ErrorCode::Busy,
                        "the control thread has too many requests queued; try again",
                    )
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    return Reply::error(ErrorCode::Failed, "the control thread has stopped")
                }
            }
            rx.recv_timeout(CONTROL_TIMEOUT).unwrap_or_else(|_| {
                Reply::error(ErrorCode::Failed, "the control thread did not answer in time")
            })
        }
    })
}

fn capture_status(s: &CaptureSummary) -> ferroplane_ctl::CaptureStatus {
    ferroplane_ctl::CaptureStatus {
        port: s.port.clone(),
        file: s.file.display().to_string(),
        direction: s.direction.to_string(),
        written: s.written,
        dropped: s.dropped,
        running: s.running,
    }
}
