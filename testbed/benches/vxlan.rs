//! End-to-end VXLAN benchmark (run on demand: `cargo bench -p ferroplane-testbed --bench vxlan`;
//! needs root, iperf3, ethtool, and a release build of ferroplane).
//!
//! ```text
//!   [h1] 10.1.0.2 --- left [router] right --- 10.2.0.2 [h2]
//!                       10.1.0.1  10.2.0.1      vxlan100 (kernel, VNI 100, dstport 4789)
//!                       vx0: 10.100.0.1/24 <==== VXLAN ====> 10.100.0.2/24
//! ```
//! h1 sends TCP (iperf3) to h2's overlay address 10.100.0.2: the router routes it into its
//! VXLAN tunnel vx0 (encap), h2's kernel vxlan device decapsulates it, and h2's replies come
//! back through the tunnel (router decap) to h1. Alternately on the very same namespaces and
//! veths, the router is
//! - ferroplane on AF_XDP with a `[[tunnel]]` vxlan (worker on core 1), and
//! - the Linux kernel: its own `vxlan` device plus ip_forward.
//!
//! Each run is one iperf3 transfer of RUN_SECS; prints min/median/max of the received
//! throughput per mode and the ratio of medians, and writes target/vxlan-report.json (and the
//! daemon's `fpctl stats` after its last run to target/vxlan-ferroplane-stats.txt). h1's MTU is
//! the tunnel's (1450), so neither mode depends on path-MTU discovery state left by the other.
//! `VXLAN_BENCH_POLL=busy` runs ferroplane's worker in busy polling instead of the adaptive mode
//! the demo uses.

use std::process::{Command, Stdio};
use std::time::Duration;

use ferroplane_dataplane::demo::{router_config, RouterProcess};
use ferroplane_dataplane::netns::{addr, ns_run, Topology};
use ferroplane_testbed::live::kernel_vxlan;
use ferroplane_testbed::{min_median_max, require_tool, target_file, workspace_bin};

const RUNS: usize = 5;
const RUN_SECS: u64 = 5;
const VNI: &str = "100";
const R_OVERLAY: &str = "10.100.0.1";
const H2_OVERLAY: &str = "10.100.0.2";
/// The router's overlay MAC in both modes, so h2's ARP entry stays right across mode switches.
const R_OVERLAY_MAC: &str = "02:00:00:00:01:00";
const TUNNEL_MTU: &str = "1450";

fn sh(ns: &str, args: &[&str]) {
    if let Err(e) = ns_run(ns, args) {
        panic!("{ns}: {e}");
    }
}

/// h2's kernel VXLAN endpoint, and h1's MTU set to the tunnel's.
fn setup_hosts(topo: &Topology) {
    let h2 = &topo.h2;
    let overlay = format!("{H2_OVERLAY}/24");
    kernel_vxlan(h2, "vxlan100", VNI, (addr::H2_V4, addr::R_RIGHT_V4), &topo.h2_if, &overlay);
    sh(h2, &["ethtool", "-K", "vxlan100", "tx", "off", "rx", "off"]);
    // Replies to h1 go back through the tunnel (the default route would bypass it).
    sh(h2, &["ip", "route", "add", "10.1.0.0/24", "via", R_OVERLAY, "dev", "vxlan100"]);
    sh(&topo.h1, &["ip", "link", "set", &topo.h1_if, "mtu", TUNNEL_MTU]);
}

/// The router as the kernel: addresses, its own vxlan device, ip_forward; or all of it undone.
fn kernel_mode(topo: &Topology, on: bool) {
    let r = &topo.router;
    if on {
        sh(r, &["ip", "addr", "add", &format!("{}/24", addr::R_LEFT_V4), "dev", &topo.left]);
        sh(r, &["ip", "addr", "add", &format!("{}/24", addr::R_RIGHT_V4), "dev", &topo.right]);
        let overlay = format!("{R_OVERLAY}/24");
        kernel_vxlan(r, "vx0", VNI, (addr::R_RIGHT_V4, addr::H2_V4), &topo.right, &overlay);
        sh(r, &["ip", "link", "set", "vx0", "address", R_OVERLAY_MAC]);
        sh(r, &["ethtool", "-K", "vx0", "tx", "off", "rx", "off"]);
        sh(r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    } else {
        let _ = ns_run(r, &["ip", "link", "del", "vx0"]);
        let _ = ns_run(r, &["ip", "addr", "flush", "dev", &topo.left]);
        let _ = ns_run(r, &["ip", "addr", "flush", "dev", &topo.right]);
        let _ = ns_run(r, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        let _ = ns_run(r, &["ip", "neigh", "flush", "all"]);
    }
}

/// ferroplane's configuration: the demo router plus the tunnel to h2.
fn ferroplane_config(topo: &Topology, socket: &std::path::Path) -> String {
    let mut cfg = router_config(topo, socket, &[1], 1);
    if let Ok(mode) = std::env::var("VXLAN_BENCH_POLL") {
        cfg = cfg.replace("poll = \"adaptive\"", &format!("poll = \"{mode}\""));
    }
    cfg.push_str(&format!(
        r#"
[[tunnel]]
name = "vx0"
kind = "vxlan"
local = "{local}"
remote = "{remote}"
vni = {VNI}
dst_port = 4789
mac = "{R_OVERLAY_MAC}"
addresses = ["{R_OVERLAY}/24"]
"#,
        local = addr::R_RIGHT_V4,
        remote = addr::H2_V4,
    ));
    cfg
}

/// Pings h2's overlay address from h1 until it answers (ARP on both sides of the overlay).
fn warm_up(topo: &Topology, mode: &str) {
    for _ in 0..10 {
        let ok = Command::new("ip")
            .args(["netns", "exec", &topo.h1, "ping", "-c", "1", "-W", "1", H2_OVERLAY])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
    }
    panic!("{mode}: h1 cannot reach {H2_OVERLAY} through the tunnel");
}

/// One iperf3 TCP transfer h1 -> h2 through the tunnel: Gbit/s received, and the sender's
/// retransmitted segments.
fn iperf(topo: &Topology, mode: &str) -> (f64, u64) {
    let secs = RUN_SECS.to_string();
    let limit = (RUN_SECS + 15).to_string();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &topo.h2, "timeout", &limit, "taskset", "-c", "0"])
        .args(["iperf3", "-s", "-1", "-B", H2_OVERLAY])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 server");
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new("ip")
        .args(["netns", "exec", &topo.h1, "timeout", &limit, "taskset", "-c", "0"])
        .args(["iperf3", "-c", H2_OVERLAY, "-t", &secs, "-O", "1", "-J"])
        .output()
        .expect("run iperf3 client");
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{mode}: iperf3 output is not JSON ({e}):\n{text}"));
    if let Some(err) = v.get("error") {
        panic!("{mode}: iperf3: {err}");
    }
    let gbps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("{mode}: no received throughput in iperf3's report"))
        / 1e9;
    (gbps, v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0))
}

/// A workspace binary next to this bench, else the release build's.
fn workspace_bin_or_release(name: &str) -> std::path::PathBuf {
    let exe = workspace_bin(name);
    if exe.exists() {
        exe
    } else {
        std::path::PathBuf::from("target/release").join(name)
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: only run for real.
    if !std::env::args().any(|a| a == "--bench") {
        println!("vxlan: run with `cargo bench -p ferroplane-testbed --bench vxlan` (needs root and iperf3)");
        return;
    }
    require_tool("iperf3", "apt-get install iperf3");
    require_tool("ethtool", "apt-get install ethtool");
    require_tool("taskset", "apt-get install util-linux");
    let exe = workspace_bin_or_release("ferroplane");
    assert!(exe.exists(), "build ferroplane first: cargo build --release -p ferroplane-dataplane");
    let tag = format!("v{}", std::process::id() % 100_000);
    let topo = Topology::new(&tag, 1).expect("topology");
    setup_hosts(&topo);
    let dir = std::env::temp_dir().join(format!("ferroplane-vxlan-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("ctl.sock");
    let cfg = ferroplane_config(&topo, &socket);
    let (mut kernel, mut ferro) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        kernel_mode(&topo, true);
        warm_up(&topo, "kernel");
        let (k, kre) = iperf(&topo, "kernel");
        kernel_mode(&topo, false);
        let mut r =
            RouterProcess::start(&exe, &topo.router, &dir, &cfg, &socket, Duration::from_secs(20))
                .expect("ferroplane");
        warm_up(&topo, "ferroplane");
        let (f, fre) = iperf(&topo, "ferroplane");
        // The daemon's own counters of the last run (drops by reason, punts), for the record.
        let stats = Command::new(workspace_bin_or_release("fpctl"))
            .args(["--socket"])
            .arg(&socket)
            .arg("stats")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let _ = std::fs::write(target_file("vxlan-ferroplane-stats.txt"), stats);
        r.stop();
        println!(
            "run {}: kernel vxlan {k:.3} Gbit/s ({kre} retransmits), ferroplane vxlan {f:.3} Gbit/s ({fre} retransmits)",
            run + 1
        );
        kernel.push(k);
        ferro.push(f);
        // AF_XDP: re-binding right after the process exits can answer EBUSY for about a second.
        std::thread::sleep(Duration::from_secs(1));
    }
    let (kmin, kmed, kmax) = min_median_max(&mut kernel);
    let (fmin, fmed, fmax) = min_median_max(&mut ferro);
    println!(
        "\nTCP h1 -> h2 through a VXLAN tunnel (router <-> h2's kernel vxlan), iperf3, {RUNS} runs of {RUN_SECS} s (Gbit/s received)"
    );
    println!("{:<26} {:>8} {:>8} {:>8}", "", "min", "median", "max");
    println!("{:<26} {kmin:>8.3} {kmed:>8.3} {kmax:>8.3}", "linux vxlan + ip_forward");
    println!("{:<26} {fmin:>8.3} {fmed:>8.3} {fmax:>8.3}", "ferroplane af_xdp vxlan");
    println!("ratio of medians (ferroplane / kernel): {:.3}", fmed / kmed);
    let json = format!(
        "{{\"runs\":{RUNS},\"run_secs\":{RUN_SECS},\"kernel_gbps\":{{\"min\":{kmin},\"median\":{kmed},\"max\":{kmax}}},\"ferroplane_gbps\":{{\"min\":{fmin},\"median\":{fmed},\"max\":{fmax}}},\"ratio_of_medians\":{}}}\n",
        fmed / kmed
    );
    let _ = std::fs::write(target_file("vxlan-report.json"), json);
    drop(topo);
    let _ = std::fs::remove_dir_all(dir);
}
