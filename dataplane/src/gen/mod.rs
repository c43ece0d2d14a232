//! `ferroplane gen`: the benchmark rig. It sends template traffic at an exact rate from one port
//! of a rig file, receives it on another, and measures loss, duplicates, reordering and one-way
//! latency from the sequence number and TX timestamp every frame carries; `--search` runs the
//! RFC 2544 throughput search. Both ends run in one process on one clock, as TRex and
//! MoonGen do, so one-way latency needs no clock sync.
//!
//! - [`template`]: frames per flow and size, stamped per packet with checksums fixed up.
//! - [`rate`]: rates, sizes, durations, the token bucket that paces TX.
//! - [`search`]: the RFC 2544 binary search, sans-IO.
//! - [`report`]: receive-side accounting, the JSON report, the summary, the plot.
//! - [`encap`]: VXLAN, Geneve or IP-in-IP outer headers around the templates (`--encap`), to
//!   load a tunnel endpoint; the receiver finds its frames inside tunnels too.
//!
//! Each port's loop also answers ARP and neighbour discovery for the port's addresses (the
//! device under test must resolve the receiver) with the dataplane's own slow path, and the TX
//! side resolves `--gateway` the same way before it starts.

pub mod encap;
pub mod rate;
pub mod report;
pub mod search;
pub mod template;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroplane_hugepages::Policy;
use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::meta::{PortId, L3};
use ferroplane_pipeline::pool::Pool;
use ferroplane_pipeline::slowpath::{Output, SlowPath, SlowPathConfig};
use ferroplane_pipeline::stage::BURST;
use ferroplane_pipeline::tables::Tables;
use ferroplane_pipeline::verdict::PuntReason;

use crate::config::{Config, Driver, Mac};
use crate::port::Port;
use crate::runtime::Clock;
use encap::{Encap, Unwrap};
use rate::{Rate, TokenBucket};
use report::{Receiver, Report, SearchPoint};
use template::{Frames, Proto, Range, TemplateSpec, FCS};

/// Buffers per port loop.
const POOL_FRAMES: usize = 4096;
/// Credit the token bucket may save up: at least one burst, and 20 ms of the rate, so that a
/// sender descheduled for several ms (seen: up to ~12 ms in CI on 2 cores, debug build)
/// catches up instead of falling short of the asked rate; the catch-up still leaves in bursts
/// of at most 64, and a longer stall never turns into a long line-rate spike.
const BUCKET_BURST: usize = BURST;
const BUCKET_CATCH_UP: f64 = 0.02;
/// Frames a paced sender sends back to back after a sleep (see [`send`]).
const PACE_BATCH: usize = 16;
/// How long the receiver keeps listening after the last frame was sent.
const DRAIN: Duration = Duration::from_millis(300);
/// Sequence numbers from here up mark warm-up frames, which the receiver does not count.
const WARMUP_SEQ: u64 = 1 << 47;
/// Each trial numbers its frames from its own base (trial number << TRIAL_SHIFT), so frames of
/// an earlier trial still queued in the device under test or in our rings are told apart and
/// ignored rather than counted as received (or as duplicates) by the next one. 2^40 frames per
/// trial, 127 trials before the bases wrap.
const TRIAL_SHIFT: u32 = 40;
const TRIAL_SPAN: u64 = 1 << TRIAL_SHIFT;
/// Warm-up frames sent before the first trial, and the pause after them: the device under
/// test resolves the receiver's address on the first of them (a router queues only a few
/// packets per unresolved neighbour; the measured stream must not be what primes it).
const WARMUP_FRAMES: u64 = 4;
const WARMUP_PAUSE: Duration = Duration::from_millis(200);
/// How long a port may refuse every frame before the run stops.
const STALL: Duration = Duration::from_secs(2);
/// How long `--gateway` resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything `ferroplane gen` was asked, checked.
#[derive(Debug, Clone)]
pub struct GenArgs {
    pub config: PathBuf,
    pub tx: String,
    pub rx: Option<String>,
    pub rate: String,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub sizes: String,
    pub flows: u32,
    pub proto: String,
    pub src: String,
    pub dst: String,
    pub sport: String,
    pub dport: String,
    pub dst_mac: Option<String>,
    pub gateway: Option<String>,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub search: bool,
    pub trial: Duration,
    pub precision: f64,
    pub loss: f64,
    pub quiet: bool,
    /// Tunnel outer headers: vxlan, geneve or ipip (None: plain templates).
    pub encap: Option<String>,
    /// Outer source; default the TX port's first address of `encap_remote`'s family.
    pub encap_local: Option<String>,
    /// Outer destination: the tunnel endpoint under test.
    pub encap_remote: Option<String>,
    pub vni: Option<u32>,
    /// VXLAN / Geneve UDP destination port (default 4789 / 6081).
    pub encap_dst_port: Option<u16>,
    /// `CLASS:TYPE:HEX` Geneve options, in order.
    pub geneve_options: Vec<String>,
    /// Inner Ethernet destination (VXLAN / Geneve): the endpoint's tunnel interface MAC.
    pub inner_dst_mac: Option<String>,
    /// Inner Ethernet source; default the TX port's MAC.
    pub inner_src_mac: Option<String>,
}

/// A generator ready to run: ports open, templates built, every argument checked.
pub struct Gen {
    args: GenArgs,
    tables: Tables,
    tx: PortEnd,
    rx: Option<PortEnd>,
    spec: TemplateSpec,
    sizes: Vec<usize>,
    rate: Rate,
    mtu: u16,
    clock: Clock,
    core_tx: Option<usize>,
    core_rx: Option<usize>,
    /// The device under test has seen warm-up frames (see [`WARMUP_FRAMES`]).
    warmed: bool,
    /// Trials run so far (see [`TRIAL_SHIFT`]).
    trials: u64,
}

/// One port with the state its loop owns.
struct PortEnd {
    id: PortId,
    port: Box<dyn Port>,
    pool: Pool,
    slow: SlowPath,
    /// Scratch vectors kept between polls, so that polling never allocates.
    burst: Vec<PacketBuf>,
    out: Vec<PacketBuf>,
    /// Where the trailer is looked for inside tunnels.
    unwrap: Unwrap,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    s.parse::<Mac>().map(|m| m.0).map_err(|e| format!("--dst-mac: {e}"))
}

/// The `--encap*` flags, checked: None without `--encap` (the other flags are then errors).
fn encap_spec(
    args: &GenArgs,
    txp: &crate::config::PortConfig,
    port_mac: [u8; 6],
) -> Result<Option<Encap>, String> {
    let Some(kind) = args.encap.as_deref() else {
        let given = [
            ("--encap-local", args.encap_local.is_some()),
            ("--encap-remote", args.encap_remote.is_some()),
            ("--vni", args.vni.is_some()),
            ("--encap-dst-port", args.encap_dst_port.is_some()),
            ("--geneve-option", !args.geneve_options.is_empty()),
            ("--inner-dst-mac", args.inner_dst_mac.is_some()),
            ("--inner-src-mac", args.inner_src_mac.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|g| g.1) {
            return Err(format!("{flag} needs --encap vxlan|geneve|ipip"));
        }
        return Ok(None);
    };
    let kind = encap::parse_kind(kind)?;
    let ip = |flag: &str, v: &str| {
        v.parse::<IpAddr>().map_err(|_| format!("{flag} `{v}` is not an IP address"))
    };
    let remote = match &args.encap_remote {
        Some(r) => ip("--encap-remote", r)?,
        None => {
            return Err("--encap needs --encap-remote ADDR: the tunnel endpoint under test".into())
        }
    };
    let local = match &args.encap_local {
        Some(l) => ip("--encap-local", l)?,
        None => txp
            .addresses
            .iter()
            .map(|a| a.addr)
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .ok_or_else(|| {
                format!(
                    "port `{}` has no address of --encap-remote {remote}'s family: give --encap-local",
                    txp.name
                )
            })?,
    };
    let l2 = kind.l2();
    let vni = match (args.vni, l2) {
        (Some(v), true) => v,
        (None, true) => return Err(format!("--encap {} needs --vni N", kind.name())),
        (Some(_), false) => return Err("--vni is for vxlan and geneve, not ipip".into()),
        (None, false) => 0,
    };
    if !l2 && args.encap_dst_port.is_some() {
        return Err("--encap-dst-port is for vxlan and geneve, not ipip".into());
    }
    let mac =
        |flag: &str, m: &str| m.parse::<Mac>().map(|m| m.0).map_err(|e| format!("{flag}: {e}"));
    let inner_dst_mac = match (&args.inner_dst_mac, l2) {
        (Some(m), true) => mac("--inner-dst-mac", m)?,
        (None, true) => {
            return Err(format!(
                "--encap {} needs --inner-dst-mac MAC: the tunnel interface's MAC at the endpoint \
                 (`fpctl tunnel show`, `ip link show` for a kernel vxlan device)",
                kind.name()
            ))
        }
        (Some(_), false) => {
            return Err(
                "--inner-dst-mac is for vxlan and geneve: ipip carries no Ethernet header".into()
            )
        }
        (None, false) => [0; 6],
    };
    let inner_src_mac = match &args.inner_src_mac {
        Some(_) if !l2 => {
            return Err(
                "--inner-src-mac is for vxlan and geneve: ipip carries no Ethernet header".into()
            )
        }
        Some(m) => mac("--inner-src-mac", m)?,
        None => port_mac,
    };
    let mut options = Vec::new();
    for o in &args.geneve_options {
        encap::parse_geneve_option(o, &mut options)?;
    }
    let e = Encap {
        kind,
        local,
        remote,
        vni,
        dst_port: args.encap_dst_port.unwrap_or(Encap::default_port(kind)),
        options,
        inner_src_mac,
        inner_dst_mac,
        ttl: 64,
    };
    e.validate()?;
    Ok(Some(e))
}

impl Gen {
    /// Checks the arguments against the rig file and opens the ports. Nothing is sent.
    pub fn prepare(args: GenArgs) -> Result<Gen, String> {
        let text = std::fs::read_to_string(&args.config)
            .map_err(|e| format!("{}: {e}", args.config.display()))?;
        let cfg: Config = crate::config::parse_rig(&text, &args.config.display().to_string())
            .map_err(|e| e.to_string().trim_end().to_string())?;
        let find = |name: &str| {
            cfg.ports.iter().position(|p| p.name == name).ok_or_else(|| {
                let names: Vec<&str> = cfg.ports.iter().map(|p| p.name.as_str()).collect();
                format!(
                    "no port `{name}` in {} (ports: {})",
                    args.config.display(),
                    names.join(", ")
                )
            })
        };
        let tx_id = find(&args.tx)?;
        let rx_id = args.rx.as_deref().map(find).transpose()?;
        if rx_id == Some(tx_id) {
            return Err("--tx and --rx must be different ports".into());
        }
        let rate: Rate = args.rate.parse()?;
        let sizes = rate::parse_sizes(&args.sizes)?;
        if args.duration.is_none() && args.count.is_none() && !args.search {
            return Err("say how long: --duration D or --count N".into());
        }
        if args.count == Some(0) {
            return Err("--count must be at least 1".into());
        }
        if args.flows == 0 {
            return Err("--flows must be at least 1".into());
        }
        if !(0.0..1.0).contains(&args.loss) {
            return Err("--loss is a fraction in [0, 1), e.g. 0.001".into());
        }
        if !(args.precision > 0.0 && args.precision < 1.0) {
            return Err("--precision is a fraction in (0, 1), e.g. 0.01".into());
        }
        for p in &cfg.ports {
            if p.driver == Driver::Dpdk {
                return Err(format!(
                    "port `{}`: DPDK ports need a build with DPDK support",
                    p.name
                ));
            }
        }
        let tables = crate::assemble::build_tables(&cfg, &|p| {
            p.interface.as_deref().and_then(crate::daemon::interface_mac)
        })?;
        let txp = &cfg.ports[tx_id];
        let mtu = txp.mtu;
        let src: Range<IpAddr> = args.src.parse().map_err(|e| format!("--src: {e}"))?;
        let dst: Range<IpAddr> = args.dst.parse().map_err(|e| format!("--dst: {e}"))?;
        let proto: Proto = args.proto.parse().map_err(|e| format!("--proto: {e}"))?;
        let src_port: Range<u16> = args.sport.parse().map_err(|e| format!("--sport: {e}"))?;
        let dst_port: Range<u16> = args.dport.parse().map_err(|e| format!("--dport: {e}"))?;
        let dst_mac = match (&args.dst_mac, &args.gateway) {
            (Some(m), None) => Some(parse_mac(m)?),
            (None, Some(_)) => None,
            (Some(_), Some(_)) => return Err("give --dst-mac or --gateway, not both".into()),
            (None, None) => return Err("say where frames go: --dst-mac MAC or --gateway IP".into()),
        };
        let gateway: Option<IpAddr> = match &args.gateway {
            Some(g) => {
                Some(g.parse().map_err(|_| format!("--gateway `{g}` is not an IP address"))?)
            }
            None => None,
        };
        if let Some(g) = gateway {
            if !txp.on_link(g) {
                return Err(format!("--gateway {g} is not on port `{}`'s subnets", txp.name));
            }
        }
        let encap = encap_spec(&args, txp, tables.ports[tx_id].mac)?;
        let unwrap = Unwrap::for_encap(encap.as_ref());
        let spec = TemplateSpec {
            proto,
            src,
            dst,
            src_port,
            dst_port,
            flows: args.flows,
            src_mac: tables.ports[tx_id].mac,
            dst_mac: dst_mac.unwrap_or([0; 6]),
            ttl: 64,
            encap,
        };
        // Build once now so that every template error shows before any port is opened.
        Frames::build(&spec, &sizes, mtu)?;
        let core = |i: usize| cfg.dataplane.workers.get(i).copied();
        let open = |id: usize| -> Result<PortEnd, String> {
            let p = &cfg.ports[id];
            let port: Box<dyn Port> = match p.driver {
                Driver::Memory => Box::new(crate::port::memory::MemoryPort::new(&p.name, 4096)),
                _ => crate::daemon::open_port(p, 0)?,
            };
            Ok(PortEnd {
                id: id as PortId,
                port,
                pool: Pool::new(POOL_FRAMES, Policy::PreferHuge).map_err(|e| e.to_string())?,
                slow: SlowPath::new(&tables, SlowPathConfig::default()),
                burst: Vec::with_capacity(BURST),
                out: Vec::with_capacity(BURST),
                unwrap,
            })
        };
        let tx = open(tx_id)?;
        let rx = rx_id.map(open).transpose()?;
        let mut g = Gen {
            core_tx: core(0),
            core_rx: core(1).or(core(0)),
            args,
            tables,
            tx,
            rx,
            spec,
            sizes,
            rate,
            mtu,
            clock: Clock::new(),
            warmed: false,
            trials: 0,
        };
        if let Some(gw) = gateway {
            g.spec.dst_mac = g.resolve(gw)?;
        }
        Ok(g)
    }

    /// Resolves the gateway's MAC with ARP / neighbour solicitation from the TX port, while
    /// the RX port answers for its own addresses (the gateway may ask).
    fn resolve(&mut self, gw: IpAddr) -> Result<[u8; 6], String> {
        let addr = addr_from_ip(gw);
        let start = Instant::now();
        let t = &self.tables;
        let mut asked = None::<Instant>;
        loop {
            // A probe every second until it answers (a neighbour that failed three probes is
            // forgotten and asked afresh).
            if asked.is_none_or(|a| a.elapsed() >= Duration::from_secs(1)) {
                self.tx.slow.remove_neighbour(self.tx.id, &addr);
                self.tx.slow.probe(self.clock.now_ns(), t, self.tx.id, addr);
                asked = Some(Instant::now());
            }
            let now = self.clock.now_ns();
            service(&mut self.tx, t, now, &mut |_, _, _| {});
            if let Some(rx) = self.rx.as_mut() {
                service(rx, t, now, &mut |_, _, _| {});
            }
            if let Some(mac) = self.tx.slow.neighbour(self.tx.id, &addr) {
                return Ok(mac);
            }
            if start.elapsed() > RESOLVE_TIMEOUT {
                return Err(format!(
                    "--gateway {gw} did not answer ARP/ND within {RESOLVE_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs what the arguments ask: one measured run, or the throughput search.
    pub fn run(&mut self) -> Result<Report, String> {
        if self.args.search {
            return self.search();
        }
        let frames = Frames::build(&self.spec, &self.sizes, self.mtu)?;
        // bps rates count what is on the wire: with --encap, the outer headers too.
        let avg = avg_size(&self.sizes) + frames.overhead() as f64;
        let pps = self.rate.pps(avg);
        let duration = self.args.duration;
        let count = self.args.count;
        let out = self.trial(&frames, pps, duration, count, !self.args.quiet)?;
        let mut report = Report::build(
            out.tx_packets,
            out.tx_bytes,
            out.receiver.as_ref(),
            out.elapsed,
            &self.sizes,
            &self.args.rate,
        );
        report.search = None;
        report.encap = self.spec.encap.as_ref().map(Encap::describe);
        if let Some(path) = &self.args.plot {
            report::plot(&report, out.receiver.as_ref(), path)?;
        }
        Ok(report)
    }

    /// RFC 2544 26.1 per frame size (an IMIX list is one point): binary search on the offered
    /// rate between the asked rate and zero, trials of `--trial`.
    fn search(&mut self) -> Result<Report, String> {
        let mut points = Vec::new();
        let mut last = None;
        let groups: Vec<Vec<usize>> = if self.args.sizes.trim().eq_ignore_ascii_case("imix") {
            vec![self.sizes.clone()]
        } else {
            self.sizes.iter().map(|&s| vec![s]).collect()
        };
        for sizes in groups {
            let frames = Frames::build(&self.spec, &sizes, self.mtu)?;
            let avg = avg_size(&sizes);
            // On the wire (bps rates, L1 throughput): the outer headers count too.
            let wire_avg = avg + frames.overhead() as f64;
            let max_pps = match self.rate.pps(wire_avg) {
                Some(p) => p,
                // "max": what the sender reaches on its own is the search's ceiling.
                None => {
                    let t = self.trial(&frames, None, Some(self.args.trial), None, false)?;
                    t.tx_packets as f64 / t.elapsed.as_secs_f64()
                }
            };
            let cfg = search::SearchConfig {
                max_pps,
                min_pps: 0.0,
                precision: self.args.precision,
                loss_tolerance: self.args.loss,
                max_trials: 30,
            };
            let trial = self.args.trial;
            let quiet = self.args.quiet;
            let result = search::search(&cfg, |pps| {
                let t = self.trial(&frames, Some(pps), Some(trial), None, false)?;
                if !quiet {
                    eprintln!(
                        "  size {}: {:.0} pps offered, {} sent, {} received",
                        describe_sizes(&sizes),
                        pps,
                        t.tx_packets,
                        t.receiver.as_ref().map_or(0, |r| r.rx_packets())
                    );
                }
                let (tx, rx) =
                    (t.tx_packets, t.receiver.as_ref().map_or(0, |r| r.unique_packets()));
                // What was really offered: a sender that cannot reach the asked rate must not
                // credit the device under test with it.
                let achieved = tx as f64 / t.elapsed.as_secs_f64().max(1e-9);
                last = Some(t);
                Ok(search::Trial { offered_pps: achieved.min(pps), tx, rx })
            })?;
            // The highest rate really offered by a passing trial (RFC 2544 26.1 reports the
            // offered rate; ours is what the sender achieved, never more than asked).
            let tput = result
                .trials
                .iter()
                .filter(|t| t.passes(self.args.loss))
                .map(|t| t.offered_pps)
                .fold(0.0, f64::max);
            points.push(SearchPoint {
                frame_size: avg.round() as usize,
                throughput_pps: tput,
                throughput_bps_l1: tput * (wire_avg + rate::L1_OVERHEAD as f64) * 8.0,
                trials: result.trials.len() as u32,
            });
        }
        let last = last.ok_or("no trial ran")?;
        let mut report = Report::build(
            last.tx_packets,
            last.tx_bytes,
            last.receiver.as_ref(),
            last.elapsed,
            &self.sizes,
            &self.args.rate,
        );
        report.search = Some(points);
        report.encap = self.spec.encap.as_ref().map(Encap::describe);
        if let Some(path) = &self.args.plot {
            report::plot(&report, last.receiver.as_ref(), path)?;
        }
        Ok(report)
    }

    /// One trial: TX paced at `pps` (None: as fast as the port takes them) for `duration` or
    /// `count` packets, RX counting until [`DRAIN`] after the last send.
    fn trial(
        &mut self,
        frames: &Frames,
        pps: Option<f64>,
        duration: Option<Duration>,
        count: Option<u64>,
        progress: bool,
    ) -> Result<TrialOut, String> {
        if rx_needed(self.rx.is_some(), self.args.search) {
            return Err("--search needs --rx: it measures loss".into());
        }
        let stop_rx = AtomicBool::new(false);
        let sent = AtomicU64::new(0);
        let received = AtomicU64::new(0);
        let tables = &self.tables;
        let clock = self.clock;
        let (core_tx, core_rx) = (self.core_tx, self.core_rx);
        let tx = &mut self.tx;
        let rx = self.rx.as_mut();
        let hint = count.unwrap_or(1 << 20);
        let warm_up = !std::mem::replace(&mut self.warmed, true);
        self.trials += 1;
        let base = (self.trials % (WARMUP_SEQ >> TRIAL_SHIFT)) << TRIAL_SHIFT;
        std::thread::scope(|s| -> Result<TrialOut, String> {
            let rx_thread = rx.map(|rx| {
                let (stop, received) = (&stop_rx, &received);
                s.spawn(move || {
                    pin(core_rx);
                    let mut r = Receiver::new(hint);
                    let mut empty = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let now = clock.now_ns();
                        let n = service(rx, tables, now, &mut |seq, ts, len| {
                            // Frames of other trials (and warm-up frames) are not this trial's.
                            if seq >= base && seq - base < TRIAL_SPAN {
                                r.record(seq - base, ts, clock.now_ns(), len);
                            }
                        });
                        received.store(r.rx_packets(), Ordering::Relaxed);
                        // Adaptive, as the dataplane's workers: after a run of empty polls,
                        // nap briefly so that a 2-core rig leaves the device under test a core.
                        // The rings hold thousands of frames: 50 us of them is no loss.
                        empty = if n == 0 { empty + 1 } else { 0 };
                        if empty > 256 {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                    }
                    r
                })
            });
            let tx_thread = {
                let sent = &sent;
                s.spawn(move || {
                    pin(core_tx);
                    if warm_up {
                        prime(tx, tables, frames, clock);
                    }
                    send(tx, tables, frames, clock, pps, duration, count, base, sent)
                })
            };
            if progress {
                watch(&tx_thread, &sent, &received, duration, count);
            }
            let (tx_packets, tx_bytes, elapsed) =
                tx_thread.join().map_err(|_| "the TX loop panicked".to_string())?;
            std::thread::sleep(DRAIN);
            stop_rx.store(true, Ordering::Relaxed);
            let receiver = match rx_thread {
                Some(h) => Some(h.join().map_err(|_| "the RX loop panicked".to_string())?),
                None => None,
            };
            Ok(TrialOut { tx_packets, tx_bytes, elapsed, receiver })
        })
    }
}

fn rx_needed(have_rx: bool, search: bool) -> bool {
    search && !have_rx
}

struct TrialOut {
    tx_packets: u64,
    /// Bytes on the wire with the FCS.
    tx_bytes: u64,
    elapsed: Duration,
    receiver: Option<Receiver>,
}

fn avg_size(sizes: &[usize]) -> f64 {
    sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64
}

fn describe_sizes(sizes: &[usize]) -> String {
    if sizes.len() == 1 {
        sizes[0].to_string()
    } else {
        format!("mix (mean {:.0})", avg_size(sizes))
    }
}

fn pin(core: Option<usize>) {
    if let Some(id) = core {
        let _ = core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

/// A live progress line (indicatif) while TX runs: elapsed, rate, received, loss so far.
fn watch<T>(
    tx: &std::thread::ScopedJoinHandle<'_, T>,
    sent: &AtomicU64,
    received: &AtomicU64,
    duration: Option<Duration>,
    count: Option<u64>,
) {
    let bar = match (duration, count) {
        (Some(d), _) => indicatif::ProgressBar::new(d.as_millis() as u64),
        (None, Some(c)) => indicatif::ProgressBar::new(c),
        _ => indicatif::ProgressBar::no_length(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let (mut last_n, mut last_t) = (0u64, start);
    while !tx.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
        let (n, r, now) =
            (sent.load(Ordering::Relaxed), received.load(Ordering::Relaxed), Instant::now());
        let pps = (n - last_n) as f64 / (now - last_t).as_secs_f64().max(1e-9);
        (last_n, last_t) = (n, now);
        bar.set_position(match duration {
            Some(_) => start.elapsed().as_millis() as u64,
            None => n,
        });
        bar.set_message(format!(
            "{pps:>10.0} pps  sent {n}  received {r}  in flight or lost {}",
            n.saturating_sub(r)
        ));
    }
    bar.finish_and_clear();
}

/// Sends the warm-up frames and waits, answering ARP/ND meanwhile.
fn prime(end: &mut PortEnd, tables: &Tables, frames: &Frames, clock: Clock) {
    let mut scratch = Vec::with_capacity(16 * 1024);
    let mut batch = Vec::with_capacity(WARMUP_FRAMES as usize);
    for i in 0..WARMUP_FRAMES {
        let Some(mut b) = end.pool.alloc() else { break };
        frames.write(i, WARMUP_SEQ | i, clock.now_ns(), &mut scratch);
        if b.fill_from(&scratch).is_ok() {
            batch.push(b);
        } else {
            end.pool.free(b);
        }
    }
    end.port.tx_burst(&mut end.pool, &mut batch);
    for b in batch.drain(..) {
        end.pool.free(b);
    }
    let until = Instant::now() + WARMUP_PAUSE;
    while Instant::now() < until {
        end.port.reclaim(&mut end.pool);
        service(end, tables, clock.now_ns(), &mut |_, _, _| {});
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The TX loop: paces with the token bucket, stamps each frame with its sequence number and
/// the send time, keeps what the port did not take for the next turn (never a sequence gap),
/// and answers ARP/ND on its port. Returns (packets, bytes with FCS, elapsed).
#[allow(clippy::too_many_arguments)]
fn send(
    end: &mut PortEnd,
    tables: &Tables,
    frames: &Frames,
    clock: Clock,
    pps: Option<f64>,
    duration: Option<Duration>,
    count: Option<u64>,
    base: u64,
    sent: &AtomicU64,
) -> (u64, u64, Duration) {
    let start = clock.now_ns();
    let deadline = duration.map(|d| start + d.as_nanos() as u64);
    let limit = count.unwrap_or(u64::MAX);
    let mut bucket =
        pps.map(|p| TokenBucket::new(p, ((p * BUCKET_CATCH_UP) as usize).max(BUCKET_BURST)));
    let mut scratch = Vec::with_capacity(16 * 1024);
    let mut batch: Vec<PacketBuf> = Vec::with_capacity(BURST);
    let (mut seq, mut bytes, mut turns) = (0u64, 0u64, 0u32);
    let mut last_progress = start;
    loop {
        let now = clock.now_ns();
        // A port that takes nothing for STALL (link down, ring never drained) ends the run
        // instead of looping forever; what was stamped and not sent is not counted.
        if !batch.is_empty() && now - last_progress > STALL.as_nanos() as u64 {
            tracing::warn!("port `{}` took no frame for {STALL:?}: stopping", end.port.name());
            break;
        }
        let stamped = seq + batch.len() as u64;
        let time_up = deadline.is_some_and(|d| now >= d);
        if (time_up || stamped >= limit) && batch.is_empty() {
            break;
        }
        if !time_up && stamped < limit {
            let room = (BURST - batch.len()).min((limit - stamped) as usize);
            let n = match bucket.as_mut() {
                Some(b) => b.take(now, room),
                None => room,
            };
            for i in 0..n as u64 {
                let Some(mut b) = end.pool.alloc() else { break };
                let k = stamped + i;
                frames.write(k, base + k, clock.now_ns(), &mut scratch);
                if b.fill_from(&scratch).is_err() {
                    end.pool.free(b);
                    break;
                }
                batch.push(b);
            }
        }
        let before: u64 = batch.iter().map(|b| b.len() as u64).sum();
        let n = end.port.tx_burst(&mut end.pool, &mut batch);
        let after: u64 = batch.iter().map(|b| b.len() as u64).sum();
        seq += n as u64;
        if n > 0 || batch.is_empty() {
            last_progress = now;
        }
        bytes += before - after + (n * FCS) as u64;
        sent.store(seq, Ordering::Relaxed);
        end.port.reclaim(&mut end.pool);
        turns = turns.wrapping_add(1);
        if turns % 64 == 0 {
            service(end, tables, now, &mut |_, _, _| {});
        }
        if n == 0 && batch.is_empty() {
            if let (Some(b), Some(p)) = (bucket.as_ref(), pps) {
                // Below ~1 Mpps, tokens come more than a microsecond apart: rather than spin
                // for each, sleep until a small batch is due and send it back to back (burst
                // control: at most PACE_BATCH frames at once), so a paced sender leaves the
                // core to others. Sleeping is only worth it above ~60 us (timer slack).
                let now = clock.now_ns();
                let first = b.next_ready_ns(now).saturating_sub(now);
                let wait = first + ((PACE_BATCH - 1) as f64 * 1e9 / p) as u64;
                let left = deadline.map_or(u64::MAX, |d| d.saturating_sub(now));
                let wait = wait.min(left);
                if wait > 60_000 {
                    std::thread::sleep(Duration::from_nanos(wait - 20_000));
                }
            }
        }
    }
    // Anything still unsent at the end was never stamped as sent: free it.
    for b in batch.drain(..) {
        end.pool.free(b);
    }
    let elapsed = Duration::from_nanos(clock.now_ns() - start);
    // Frames handed to the port may still sit in its ring: keep reclaiming (which kicks the
    // kernel) for a moment so that the tail of the run leaves too.
    for _ in 0..20 {
        end.port.reclaim(&mut end.pool);
        std::thread::sleep(Duration::from_millis(1));
    }
    (seq, bytes, elapsed)
}

/// Receives one burst on a port: our frames go to `measured(seq, tx_ts, len)`; ARP, ND and
/// pings for the port's addresses go through the slow path and its answers out of the port.
/// Returns how many frames came in.
fn service(
    end: &mut PortEnd,
    tables: &Tables,
    now: u64,
    measured: &mut dyn FnMut(u64, u64, usize),
) -> usize {
    // Taken out and put back: the vectors keep their capacity, nothing is allocated.
    let mut burst = std::mem::take(&mut end.burst);
    let mut out = std::mem::take(&mut end.out);
    let n = end.port.rx_burst(&mut end.pool, &mut burst, BURST, now);
    for mut b in burst.drain(..) {
        if let Some((seq, ts)) = end.unwrap.read(b.data()) {
            measured(seq, ts, b.len() + FCS);
            end.pool.free(b);
            continue;
        }
        b.meta.in_port = end.id;
        let (data, meta) = b.data_and_meta();
        if ferroplane_pipeline::parse::parse(data, meta, tables.hash_seed).is_err() {
            end.pool.free(b);
            continue;
        }
        let reason = match b.meta.l3 {
            L3::Arp => Some(PuntReason::Arp),
            L3::Ipv6 if b.meta.l4_proto == 58 => {
                let t = b.data().get(b.meta.l4_offset as usize).copied().unwrap_or(0);
                if (133..=137).contains(&t) {
                    Some(PuntReason::NeighbourDiscovery)
                } else if tables.is_local(&b.meta.flow.dst) {
                    Some(PuntReason::Local)
                } else {
                    None
                }
            }
            L3::Ipv4 | L3::Ipv6 if tables.is_local(&b.meta.flow.dst) => Some(PuntReason::Local),
            _ => None,
        };
        match reason {
            Some(r) => end.slow.handle_punt(now, tables, r, b),
            None => end.pool.free(b),
        }
    }
    if end.slow.poll_timeout().is_some_and(|t| t <= now) {
        end.slow.handle_timeout(now, tables);
    }
    while let Some(o) = end.slow.poll_output() {
        match o {
            Output::Transmit { buf, .. } => out.push(buf),
            Output::Emit { frame, .. } => {
                if let Some(mut b) = end.pool.alloc() {
                    if b.fill_from(frame.as_slice()).is_ok() {
                        out.push(b);
                    } else {
                        end.pool.free(b);
                    }
                }
            }
            Output::Free(b) => end.pool.free(b),
        }
    }
    if !out.is_empty() {
        end.port.tx_burst(&mut end.pool, &mut out);
        for b in out.drain(..) {
            end.pool.free(b);
        }
    }
    end.burst = burst;
    end.out = out;
    n
}

/// `ferroplane gen` from the command line: prepare, run, print the summary, write the
/// report.
pub fn run_cli(args: GenArgs) -> Result<(), String> {
    let json = args.json.clone();
    let mut g = Gen::prepare(args)?;
    let report = g.run()?;
    print!("{}", report.human());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
