//! Full-table load through the control socket (run on demand: `cargo bench -p
//! ferroplane-testbed --bench route_load`; needs root). `fpctl route load` of 1,000,000 BGP-like
//! IPv4 routes into a live `ferroplane run` while h1 pings h2 through it at 100 pps, beside the
//! same routes loaded into the Linux kernel's FIB of the same router namespace with `ip -batch`.
//! Each mode runs RUNS times on a fresh daemon / an emptied kernel table; prints min/median/max,
//! the ratio of medians, and the pings lost during ferroplane's loads.

use std::process::Command;
use std::time::{Duration, Instant};

use ferroplane_dataplane::demo::{router_config, RouterProcess};
use ferroplane_dataplane::netns::{addr, ns_run, Topology};
use ferroplane_testbed::{min_median_max, workspace_bin};

const RUNS: usize = 3;
const ROUTES: usize = 1_000_000;

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: only run for real.
    if !std::env::args().any(|a| a == "--bench") {
        println!("route_load: run with `cargo bench -p ferroplane-testbed --bench route_load` (needs root)");
        return;
    }
    let (exe, fpctl) = (workspace_bin("ferroplane"), workspace_bin("fpctl"));
    assert!(
        exe.exists() && fpctl.exists(),
        "build the release binaries first: cargo build --release --bins"
    );
    let tag = format!("rl{}", std::process::id() % 100_000);
    let topo = Topology::new(&tag, 1).expect("topology");
    let dir = std::env::temp_dir().join(format!("ferroplane-route-load-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let table = ferroplane_benches::routes::ipv4_table(ROUTES, 42);
    let ours = dir.join("table.txt");
    let kernel = dir.join("kernel.batch");
    let mut a = String::with_capacity(ROUTES * 32);
    let mut k = String::with_capacity(ROUTES * 48);
    for (p, l) in &table {
        a.push_str(&format!("{p}/{l} via {}\n", addr::H2_V4));
        k.push_str(&format!("route replace {p}/{l} via {}\n", addr::H2_V4));
    }
    std::fs::write(&ours, a).unwrap();
    std::fs::write(&kernel, k).unwrap();
    let socket = dir.join("ctl.sock");
    let cfg = router_config(&topo, &socket, &[1], 1);
    let (mut fp, mut kern, mut lost) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        // ferroplane: a fresh daemon, pings through it while the table loads.
        let mut router =
            RouterProcess::start(&exe, &topo.router, &dir, &cfg, &socket, Duration::from_secs(20))
                .expect("router");
        let _ = ns_run(&topo.h1, &["ping", "-c", "1", "-W", "2", addr::H2_V4]);
        let pinger = Command::new("ip")
            .args([
                "netns",
                "exec",
                &topo.h1,
                "ping",
                "-i",
                "0.01",
                "-w",
                "30",
                "-W",
                "1",
                "-q",
                addr::H2_V4,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let o = Command::new(&fpctl)
            .arg("--socket")
            .arg(&socket)
            .args(["route", "load"])
            .arg(&ours)
            .output()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // SAFETY: SIGINT to the ping we spawned makes it print its summary.
        unsafe { libc::kill(pinger.id() as i32, libc::SIGINT) };
        let summary =
            String::from_utf8_lossy(&pinger.wait_with_output().unwrap().stdout).to_string();
        let line =
            summary.lines().find(|l| l.contains("packets transmitted")).unwrap_or("").to_string();
        println!(
            "run {run}: ferroplane {ROUTES} routes in {secs:.2} s; pings during the load: {line}"
        );
        lost.push(line);
        fp.push(secs);
        router.stop();
        // The kernel: the same routes into the router namespace's own FIB.
        let r = &topo.router;
        let _ = ns_run(
            r,
            &["ip", "addr", "add", &format!("{}/24", addr::R_RIGHT_V4), "dev", &topo.right],
        );
        let t = Instant::now();
        let o = ns_run(r, &["ip", "-batch", kernel.to_str().unwrap()]).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(o.status.success(), "ip -batch: {}", String::from_utf8_lossy(&o.stderr));
        println!("run {run}: kernel ip -batch {ROUTES} routes in {secs:.2} s");
        kern.push(secs);
        let _ = ns_run(
            r,
            &["ip", "addr", "del", &format!("{}/24", addr::R_RIGHT_V4), "dev", &topo.right],
        );
        let _ = ns_run(r, &["ip", "route", "flush", "table", "main"]);
    }
    let (f0, f1, f2) = min_median_max(&mut fp);
    let (k0, k1, k2) = min_median_max(&mut kern);
    println!("ferroplane route load: min {f0:.2} s, median {f1:.2} s, max {f2:.2} s");
    println!("kernel ip -batch:      min {k0:.2} s, median {k1:.2} s, max {k2:.2} s");
    println!("ratio of medians (kernel / ferroplane): {:.2}", k1 / f1);
    let _ = std::fs::remove_dir_all(&dir);
}
