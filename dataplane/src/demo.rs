//! `ferroplane demo`: builds two hosts and a router namespace, runs `ferroplane run` on AF_XDP in
//! the router, sends pings and a TCP transfer through it, prints what happened, cleans up.
//! [`RouterProcess`] is also how the testbed starts a live daemon.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{addr, ns_run, Topology};

/// The configuration the demo and the testbed give the router.
pub fn router_config(topo: &Topology, socket: &Path, workers: &[usize], queues: u16) -> String {
    router_config_on(&topo.left, &topo.right, socket, workers, queues)
}

/// [`router_config`] for any two interfaces (the `left` and `right` ports).
pub fn router_config_on(
    left: &str,
    right: &str,
    socket: &Path,
    workers: &[usize],
    queues: u16,
) -> String {
    let workers: Vec<String> = workers.iter().map(|w| w.to_string()).collect();
    format!(
        r#"# written by ferroplane's demo/testbed
[dataplane]
workers = [{workers}]
poll = "adaptive"
control_socket = "{socket}"

[[port]]
name = "left"
driver = "af_xdp"
interface = "{left}"
queues = {queues}
addresses = ["{l4}/24", "{l6}/64"]

[[port]]
name = "right"
driver = "af_xdp"
interface = "{right}"
queues = {queues}
addresses = ["{r4}/24", "{r6}/64"]
"#,
        workers = workers.join(", "),
        socket = socket.display(),
        left = left,
        right = right,
        l4 = addr::R_LEFT_V4,
        l6 = addr::R_LEFT_V6,
        r4 = addr::R_RIGHT_V4,
        r6 = addr::R_RIGHT_V6,
    )
}

/// A `ferroplane run` process inside a namespace; stopped with SIGTERM on drop.
pub struct RouterProcess {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl RouterProcess {
    /// Writes `config` into `dir`, starts `exe run -c` in namespace `ns`, and waits (up to
    /// `timeout`) until its control socket answers.
    pub fn start(
        exe: &Path,
        ns: &str,
        dir: &Path,
        config: &str,
        socket: &Path,
        timeout: Duration,
    ) -> Result<RouterProcess, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cfg_path = dir.join("router.toml");
        std::fs::write(&cfg_path, config).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
        let log = dir.join("router.log");
        let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(["run", "-c"])
            .arg(&cfg_path)
            .stdout(Stdio::from(logf.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(logf))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let mut p = RouterProcess {
            child: Some(child),
            socket: socket.to_path_buf(),
            log,
            config: cfg_path,
        };
        let start = Instant::now();
        loop {
            if ferroplane_ctl::call(socket, ferroplane_ctl::Request::Version).is_ok() {
                return Ok(p);
            }
            if let Some(c) = p.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    p.child = None;
                    return Err(format!(
                        "ferroplane exited ({st}) before it was ready:\n{}",
                        p.log_text()
                    ));
                }
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "ferroplane did not answer on {} within {timeout:?}:\n{}",
                    socket.display(),
                    p.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `sig` (e.g. SIGHUP: re-read the configuration) to the running daemon.
    pub fn signal(&self, sig: i32) -> bool {
        match &self.child {
            // SAFETY: plain kill(2) on a pid we spawned and have not reaped.
            Some(c) => unsafe { libc::kill(c.id() as i32, sig) == 0 },
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to 10 s; returns the exit status (SIGKILL after that).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // `ip netns exec` execs the program: the child pid is ferroplane itself.
        // SAFETY: plain kill(2) on a pid we spawned.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or("")
}

/// Runs the demo; returns a summary or what went wrong.
pub fn run_demo(exe: &Path) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("ferroplane demo needs root: it creates network namespaces and attaches XDP programs (try `sudo ferroplane demo`)".into());
    }
    for tool in ["ip", "ping", "ethtool", "iperf3"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Err(format!(
                "ferroplane demo needs `{tool}`; run ./demo.sh, which installs it"
            ));
        }
    }
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("ferroplane-demo-{pid}"));
    println!("== building the topology: h1 -- [ferroplane on AF_XDP] -- h2 (namespaces fp{pid}h1, fp{pid}r, fp{pid}h2)");
    let topo = Topology::new(&pid.to_string(), 1)?;
    let socket = dir.join("ctl.sock");
    let ncores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let worker_core = if ncores > 1 { 1 } else { 0 };
    let cfg = router_config(&topo, &socket, &[worker_core], 1);
    println!("== starting ferroplane (worker on core {worker_core}, adaptive polling)");
    let mut router =
        RouterProcess::start(exe, &topo.router, &dir, &cfg, &socket, Duration::from_secs(15))?;
    if let Ok(ferroplane_ctl::Reply::Ports { ports }) =
        ferroplane_ctl::call(&socket, ferroplane_ctl::Request::PortShow)
    {
        for p in ports {
            println!(
                "   port {:<6} {} mac {} mode {}",
                p.name,
                p.interface.unwrap_or_default(),
                p.mac,
                p.mode.unwrap_or_default()
            );
        }
    }
    let mut ok = true;
    let mut step = |what: &str, ns: &str, args: &[&str], check: &dyn Fn(&str) -> Option<String>| {
        let out = Command::new("ip").args(["netns", "exec", ns]).args(args).output();
        let text = match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => e.to_string(),
        };
        match check(&text) {
            Some(summary) => println!("== {what}: ok\n   {summary}"),
            None => {
                ok = false;
                println!("== {what}: FAILED\n{text}");
            }
        }
    };
    let ping_ok = |t: &str| {
        (t.contains(" 0% packet loss") && t.contains("ttl=63")).then(|| {
            format!(
                "{} | {}",
                line_with(t, "packets transmitted").trim(),
                line_with(t, "rtt").trim()
            )
        })
    };
    let ping6_ok = |t: &str| {
        (t.contains(" 0% packet loss") && t.contains("ttl=63")).then(|| {
            format!(
                "{} | {}",
                line_with(t, "packets transmitted").trim(),
                line_with(t, "rtt").trim()
            )
        })
    };
    step(
        "ping h1 -> h2 (IPv4)",
        &topo.h1,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", addr::H2_V4],
        &ping_ok,
    );
    step(
        "ping h2 -> h1 (IPv4)",
        &topo.h2,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", addr::H1_V4],
        &ping_ok,
    );
    step(
        "ping h1 -> h2 (IPv6)",
        &topo.h1,
        &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", addr::H2_V6],
        &ping6_ok,
    );
    step(
        "ping the router itself",
        &topo.h1,
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", addr::R_LEFT_V4],
        &|t: &str| t.contains(" 0% packet loss").then(|| line_with(t, "rtt").trim().to_string()),
    );
    step(
        "TTL=1 probe (traceroute's first hop)",
        &topo.h1,
        &["ping", "-c", "1", "-t", "1", "-W", "2", addr::H2_V4],
        &|t: &str| {
            t.contains("Time to live exceeded")
                .then(|| line_with(t, "Time to live exceeded").trim().to_string())
        },
    );
    // A TCP transfer through the router.
    let _ = ns_run(&topo.h2, &["iperf3", "-s", "-1", "-D", "-B", addr::H2_V4]);
    std::thread::sleep(Duration::from_millis(300));
    step(
        "TCP transfer h1 -> h2 (iperf3, 50 MB)",
        &topo.h1,
        &["iperf3", "-c", addr::H2_V4, "-n", "50M", "-f", "m"],
        &|t: &str| {
            let recv = line_with(t, "receiver");
            (!recv.is_empty())
                .then(|| recv.split_whitespace().skip(4).collect::<Vec<_>>().join(" "))
        },
    );
    println!("== counters (fpctl stats):");
    match ferroplane_ctl::call(&socket, ferroplane_ctl::Request::Stats) {
        Ok(ferroplane_ctl::Reply::Stats(s)) => {
            for p in &s.ports {
                println!(
                    "   {:<6} rx {:>8} pkts {:>12} bytes   tx {:>8} pkts {:>12} bytes",
                    p.name, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
                );
            }
            for w in &s.workers {
                let punts: Vec<String> = w
                    .punts
                    .iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let drops: Vec<String> = w
                    .drops
                    .iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                println!(
                    "   worker {}: punts [{}] drops [{}]",
                    w.id,
                    punts.join(" "),
                    drops.join(" ")
                );
            }
            let slow: Vec<String> = s
                .slow_path
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!("   slow path: {}", slow.join(" "));
        }
        other => println!("   cannot read stats: {other:?}"),
    }
    let status = router.stop();
    println!("== ferroplane stopped ({})", status.map_or("unknown".into(), |s| s.to_string()));
    let xdp_left = ns_run(&topo.router, &["ip", "link", "show", &topo.left])
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("xdp"))
        .unwrap_or(true);
    println!(
        "== XDP program detached from the router's interfaces: {}",
        if xdp_left { "NO" } else { "yes" }
    );
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
    println!("== namespaces removed");
    if ok && !xdp_left {
        Ok(())
    } else {
        Err("the demo found problems (see above)".into())
    }
}
