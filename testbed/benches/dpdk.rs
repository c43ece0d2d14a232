//! ferroplane's L3 pipeline on DPDK ports against `dpdk-testpmd` (io and macswap forwarding) on the
//! same devices in one run (on demand: `cargo build --release -p ferroplane-dataplane --features
//! dpdk --bins && cargo bench -p ferroplane-testbed --features dpdk --bench dpdk`; needs root,
//! huge pages and dpdk-testpmd). The forwarder under test runs on core 1, everything else on
//! core 0. Two set-ups, RUNS runs of RUN_SECS each per forwarder, Mpps forwarded as the
//! forwarder itself counts it:
//!
//! - `pcap`: port 0 is `net_pcap` with `infinite_rx=1` over a capture of 64 valid, routable
//!   64-byte frames (UDP, 64 flows), port 1 is `net_null` with `no-rx=1` (transmit drops). Both
//!   forwarders pay the pcap PMD's copy per received frame.
//! - `memif`: ports 0 and 1 are `net_memif` servers; a second process (testpmd, io forwarding
//!   on core 0) feeds port 0 from the same pcap and drains port 1 into a `net_null`. The
//!   generator's single core bounds what either forwarder can be offered.
//!
//! Prints min/median/max per forwarder, both as Mpps and as CPU time of the forwarding thread per
//! packet (on a machine shared with other work, the scheduler's share of core 1 moves the Mpps of
//! each run; CPU per packet is what the forwarder costs), the ratios of medians, and whether
//! ferroplane's L3 forward reaches the floor of 20% of testpmd's io forward.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferroplane_ctl::{call, Reply, Request};
use ferroplane_dataplane::demo::RouterProcess;
use ferroplane_dataplane::netns::run;
use ferroplane_testbed::{
    min_median_max, require_tool, scratch_dir, stop_gracefully, workspace_bin,
};

/// Runs per forwarder (DPDK_BENCH_RUNS overrides).
const RUNS: usize = 3;
const RUN_SECS: u64 = 4;
/// Seconds of traffic before measuring (start-up, memif connection, caches).
const WARMUP_SECS: u64 = 2;
/// ferroplane's L3 forward must reach this share of testpmd's io forward.
const FLOOR: f64 = 0.20;
const NS: &str = "fpdpdkbench";
const LEFT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// One 60-byte frame (64 on the wire): Ethernet to ferroplane's left port, IPv4 10.1.0.2 ->
/// 198.18.0.N (routed via 10.2.0.2 on the right port), UDP 1024+N -> 9.
fn frame(n: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&LEFT_MAC);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x0a]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[4..6].copy_from_slice(&(n as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 1, 0, 2]);
    ip[16..20].copy_from_slice(&[198, 18, 0, n]);
    let sum: u32 = ip.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as u32).sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let csum = !(((folded & 0xffff) + (folded >> 16)) as u16);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&(1024 + n as u16).to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn write_pcap(path: &Path) {
    let mut w = ferroplane_dataplane::pcap::CaptureWriter::create(path).expect("pcap");
    for n in 0..64u8 {
        w.write(n as u64 * 1000, &frame(n + 1)).expect("pcap write");
    }
    w.finish().expect("pcap finish");
}

fn ferroplane_config(dir: &Path, left: &str, right: &str) -> String {
    format!(
        r#"[dataplane]
workers = [1]
poll = "busy"
control_socket = "{socket}"

[[port]]
name = "left"
driver = "dpdk"
interface = "{left}"
mac = "02:00:00:00:00:01"
addresses = ["10.1.0.1/24"]

[[port]]
name = "right"
driver = "dpdk"
interface = "{right}"
mac = "02:00:00:00:00:02"
addresses = ["10.2.0.1/24"]

[[route]]
prefix = "198.18.0.0/15"
nexthops = [{{ via = "10.2.0.2" }}]

[[neighbor]]
address = "10.2.0.2"
mac = "02:00:00:00:00:0b"
port = "right"
"#,
        socket = dir.join("ctl.sock").display(),
    )
}

/// CPU time (user + system, in clock ticks of 10 ms) of the thread of `pid` whose name contains
/// `name`: the forwarding thread. On a shared machine its CPU time per packet says what the
/// forwarder costs, whatever share of the core the scheduler gave it.
fn thread_ticks(pid: u32, name: &str) -> Option<u64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.contains(name) {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // Fields after the parenthesised name: utime and stime are the 12th and 13th.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            return Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?);
        }
    }
    None
}

/// The pid of the `ferroplane run` reading `config`.
fn ferroplane_pid(config: &Path) -> Option<u32> {
    let want = config.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read_to_string(e.path().join("cmdline")).ok()?;
        (cmd.contains("ferroplane\0run") && cmd.contains(&want)).then_some(pid)
    })
}

/// One measurement: Mpps forwarded (wall clock) and ns of forwarding-thread CPU per packet.
#[derive(Clone, Copy)]
struct Sample {
    mpps: f64,
    cpu_ns: f64,
}

fn tx_packets(socket: &Path) -> u64 {
    match call(socket, Request::Stats) {
        Ok(Reply::Stats(s)) => s.ports.iter().find(|p| p.name == "right").unwrap().tx_packets,
        other => panic!("stats: {other:?}"),
    }
}

/// ferroplane forwarding left -> right: what it transmitted on `right`.
fn ferroplane_run(
    dir: &Path,
    left: &str,
    right: &str,
    start_peer: &dyn Fn() -> Option<Child>,
) -> Sample {
    let socket = dir.join("ctl.sock");
    let cfg = ferroplane_config(dir, left, right);
    let rdir = dir.join("ferroplane");
    let mut r = RouterProcess::start(
        &workspace_bin("ferroplane"),
        NS,
        &rdir,
        &cfg,
        &socket,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("ferroplane: {e}"));
    let pid = ferroplane_pid(&rdir.join("router.toml")).expect("ferroplane's pid");
    let mut peer = start_peer();
    std::thread::sleep(Duration::from_secs(WARMUP_SECS));
    let (c0, k0, t0) = (tx_packets(&socket), thread_ticks(pid, "fp-worker"), Instant::now());
    std::thread::sleep(Duration::from_secs(RUN_SECS));
    let (c1, k1, t1) = (tx_packets(&socket), thread_ticks(pid, "fp-worker"), Instant::now());
    let packets = (c1 - c0) as f64;
    let mpps = packets / (t1 - t0).as_secs_f64() / 1e6;
    let cpu_ns = match (k0, k1) {
        (Some(a), Some(b)) if packets > 0.0 => (b - a) as f64 * 1e7 / packets,
        _ => f64::NAN,
    };
    if mpps < 0.01 || std::env::var_os("DPDK_BENCH_VERBOSE").is_some() {
        if let Ok(s) = call(&socket, Request::Stats) {
            println!("ferroplane stats: {s:?}");
        }
        println!("{}", r.log_text());
    }
    if let Some(p) = peer.as_mut() {
        stop_gracefully(p);
    }
    r.stop();
    Sample { mpps, cpu_ns }
}

/// Starts dpdk-testpmd: `lcores` maps its lcores to CPUs, `devices` become its ports in order,
/// `mode` is its forwarding mode; stdout (its periodic stats) goes to `log`.
fn testpmd(prefix: &str, lcores: &str, devices: &[String], mode: &str, log: &Path) -> Child {
    let mut c = Command::new("dpdk-testpmd");
    c.args(["--lcores", lcores, "--no-pci", "--in-memory", "--file-prefix", prefix]);
    for d in devices {
        c.arg("--vdev").arg(d);
    }
    c.args([
        "--",
        "--forward-mode",
        mode,
        "--auto-start",
        "--stats-period",
        "1",
        "--nb-cores",
        "1",
        "--burst",
        "64",
        "--no-mlockall",
        // testpmd's default pool for four ports takes most of 256 huge pages: two testpmds (or
        // one beside ferroplane) must fit.
        "--total-num-mbufs",
        "32768",
    ]);
    let out = std::fs::File::create(log).expect("testpmd log");
    c.stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .stdin(Stdio::null())
        .spawn()
        .expect("start dpdk-testpmd")
}

/// The Tx-pps testpmd reported for `port`, one value per stats period.
fn tx_pps(log: &str, port: u16) -> Vec<f64> {
    let header = format!("NIC statistics for port {port} ");
    let mut out = Vec::new();
    let mut in_port = false;
    for line in log.lines() {
        if line.contains("NIC statistics for port") {
            in_port = line.contains(&header);
        } else if in_port && line.trim_start().starts_with("Tx-pps:") {
            if let Some(v) = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
                out.push(v);
            }
        }
    }
    out
}

/// testpmd as the forwarder on core 1: what it transmitted on port 1 (median of its periods).
fn testpmd_run(
    dir: &Path,
    mode: &str,
    devices: &[String],
    start_peer: &dyn Fn() -> Option<Child>,
) -> Sample {
    let log = dir.join(format!("testpmd-{mode}.log"));
    let mut t = testpmd("fpbench-dut", "0@0,1@1", devices, mode, &log);
    let mut peer = start_peer();
    std::thread::sleep(Duration::from_secs(WARMUP_SECS));
    // Its forwarding lcore is the EAL thread of lcore 1 ("...-worker-1").
    let k0 = thread_ticks(t.id(), "worker-1");
    std::thread::sleep(Duration::from_secs(RUN_SECS));
    let k1 = thread_ticks(t.id(), "worker-1");
    std::thread::sleep(Duration::from_secs(1));
    stop_gracefully(&mut t);
    if let Some(p) = peer.as_mut() {
        stop_gracefully(p);
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut pps = tx_pps(&text, 1);
    // Skip the warm-up periods and the last (partial) one.
    let skip = WARMUP_SECS as usize;
    if pps.len() < skip + 2 {
        panic!("testpmd {mode}: too few stats periods ({}):\n{text}", pps.len());
    }
    let mut v = pps.drain(skip..pps.len() - 1).collect::<Vec<_>>();
    let mpps = min_median_max(&mut v).1 / 1e6;
    let cpu_ns = match (k0, k1) {
        (Some(a), Some(b)) if mpps > 0.0 => (b - a) as f64 * 1e7 / (mpps * 1e6 * RUN_SECS as f64),
        _ => f64::NAN,
    };
    Sample { mpps, cpu_ns }
}

fn report(setup: &str, results: &mut [(&str, Vec<Sample>)]) {
    println!("== {setup}");
    let mut med = Vec::new();
    let mut med_ns = Vec::new();
    for (name, v) in results.iter_mut() {
        let mut mpps: Vec<f64> = v.iter().map(|s| s.mpps).collect();
        let mut ns: Vec<f64> = v.iter().map(|s| s.cpu_ns).collect();
        let (a, b, c) = min_median_max(&mut mpps);
        let (x, y, z) = min_median_max(&mut ns);
        println!(
            "{setup:<6} {name:<16} min {a:7.3}  median {b:7.3}  max {c:7.3} Mpps   CPU per packet min {x:6.1}  median {y:6.1}  max {z:6.1} ns"
        );
        med.push(b);
        med_ns.push(y);
    }
    println!(
        "{setup:<6} ferroplane L3 / testpmd io = {:.2} (Mpps), {:.2} (CPU per packet); / testpmd macswap = {:.2}, {:.2}; floor {:.0}% of io: {}",
        med[0] / med[1],
        med_ns[1] / med_ns[0],
        med[0] / med[2],
        med_ns[2] / med_ns[0],
        FLOOR * 100.0,
        if med[0] >= FLOOR * med[1] { "met" } else { "MISSED" }
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("dpdk: run with `cargo bench -p ferroplane-testbed --features dpdk --bench dpdk` (root, huge pages, dpdk-testpmd)");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the DPDK bench needs root");
    require_tool("dpdk-testpmd", "apt-get install dpdk-dev");
    let exe = workspace_bin("ferroplane");
    assert!(
        exe.exists(),
        "{} missing: cargo build --release -p ferroplane-dataplane --features dpdk --bins",
        exe.display()
    );
    let dir: PathBuf = scratch_dir("dpdk-bench");
    let pcap = dir.join("frames.pcap");
    write_pcap(&pcap);
    let _ = run("ip", &["netns", "del", NS]);
    run("ip", &["netns", "add", NS]).expect("netns");
    let runs = std::env::var("DPDK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(RUNS);

    // pcap -> null, in one process.
    let source = format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display());
    let sink = "net_null0,no-rx=1".to_string();
    let devices = [source.clone(), sink.clone()];
    let mut pcap_results: Vec<(&str, Vec<Sample>)> =
        vec![("ferroplane L3", vec![]), ("testpmd io", vec![]), ("testpmd macswap", vec![])];
    for run in 0..runs {
        let f = ferroplane_run(&dir, &source, &sink, &|| None);
        let io = testpmd_run(&dir, "io", &devices, &|| None);
        let ms = testpmd_run(&dir, "macswap", &devices, &|| None);
        println!(
            "pcap run {run}: ferroplane {:.3}  testpmd io {:.3}  macswap {:.3} Mpps",
            f.mpps, io.mpps, ms.mpps
        );
        pcap_results[0].1.push(f);
        pcap_results[1].1.push(io);
        pcap_results[2].1.push(ms);
    }

    // memif: the forwarder's two memif servers, fed and drained by a testpmd on core 0.
    let sock = |n: &str| dir.join(format!("{n}.sock"));
    let server = |i: u8, n: &str| {
        format!("net_memif{i},role=server,id=0,socket={},socket-abstract=no", sock(n).display())
    };
    let client = |i: u8, n: &str| {
        format!("net_memif{i},role=client,id=0,socket={},socket-abstract=no", sock(n).display())
    };
    let (left, right) = (server(0, "l"), server(1, "r"));
    // Ports of the generator, paired 0<->1 and 2<->3: pcap -> memif into the forwarder's left,
    // memif from its right -> null.
    let gen_devices = [source.clone(), client(0, "l"), client(1, "r"), sink.clone()];
    let gen_log = dir.join("generator.log");
    let generator = || {
        std::thread::sleep(Duration::from_millis(300));
        Some(testpmd("fpbench-gen", "0@0,1@0", &gen_devices, "io", &gen_log))
    };
    let devices = [left.clone(), right.clone()];
    let mut memif_results: Vec<(&str, Vec<Sample>)> =
        vec![("ferroplane L3", vec![]), ("testpmd io", vec![]), ("testpmd macswap", vec![])];
    // A memif server refuses a socket path that exists: a forwarder stopped by a signal can
    // leave its socket files behind, so each run starts without them.
    let fresh = || {
        let _ = std::fs::remove_file(sock("l"));
        let _ = std::fs::remove_file(sock("r"));
    };
    for run in 0..runs {
        fresh();
        let f = ferroplane_run(&dir, &left, &right, &generator);
        fresh();
        let io = testpmd_run(&dir, "io", &devices, &generator);
        fresh();
        let ms = testpmd_run(&dir, "macswap", &devices, &generator);
        println!(
            "memif run {run}: ferroplane {:.3}  testpmd io {:.3}  macswap {:.3} Mpps",
            f.mpps, io.mpps, ms.mpps
        );
        memif_results[0].1.push(f);
        memif_results[1].1.push(io);
        memif_results[2].1.push(ms);
    }
    let gen_text = std::fs::read_to_string(&gen_log).unwrap_or_default();
    let offered = tx_pps(&gen_text, 1);
    if let Some(m) = offered.iter().copied().reduce(f64::max) {
        println!("memif generator offered up to {:.3} Mpps (last run)", m / 1e6);
    }
    report("pcap", &mut pcap_results);
    report("memif", &mut memif_results);
    println!(
        "load average during the run: {}",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let _ = run("ip", &["netns", "del", NS]);
    let _ = std::fs::remove_dir_all(&dir);
}
