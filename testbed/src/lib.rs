//! Helpers for ferroplane's end-to-end tests: locating the built binaries and the real tools the
//! tests compare against (tshark, scapy), failing loudly when one is missing.

use std::path::PathBuf;
use std::process::Command;

/// Path of a binary of this workspace, built by cargo for the current profile.
pub fn workspace_bin(name: &str) -> PathBuf {
    // Integration tests run from target/<profile>/deps; binaries sit one level up.
    let mut p = std::env::current_exe().expect("test executable path");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join(name)
}

/// A file in the target directory (`target/NAME`), wherever cargo runs the bench or test from
/// (`cargo bench` runs it in the crate's directory, where a relative `target/` does not exist).
pub fn target_file(name: &str) -> PathBuf {
    let mut p = workspace_bin(name);
    p.pop();
    p.pop();
    p.join(name)
}

/// Panics with an install hint when `tool` is not on PATH: a test that needs a real peer must
/// never pass by skipping.
pub fn require_tool(tool: &str, install_hint: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is required by this test and was not found; install it: {install_hint}"
    );
}

/// Panics when python3 cannot import scapy.
pub fn require_scapy() {
    let ok = Command::new("python3")
        .args(["-c", "import scapy.all"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "python3 with scapy is required by this test; install it: pip install scapy");
}

/// Stops a tool with SIGINT and waits for it (SIGKILL after 3 s). For trafgen, start it under
/// `timeout -s INT` as well: it forks a worker per CPU, `ip netns exec` may fork too, and a
/// worker whose parent was SIGKILLed goes on flooding after the run (seen here: it made every
/// later measurement on the rig lossy). `timeout` delivers SIGINT to trafgen itself.
pub fn stop_gracefully(child: &mut std::process::Child) {
    // SAFETY: kill(2) on a pid we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(3) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Min, median and max of a benchmark's runs (sorts `v`).
pub fn min_median_max(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Starts trafgen in namespace `ns` sending the packets of `cfg` (a trafgen configuration) out
/// of `ifname` for at most `secs` seconds, on one CPU. It runs under `timeout -s INT`: see
/// [`stop_gracefully`] for why.
pub fn trafgen(ns: &str, ifname: &str, cfg: &std::path::Path, secs: u64) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "-s", "INT", &secs.to_string(), "trafgen", "--cpp"])
        .args(["-o", ifname, "-c"])
        .arg(cfg)
        .args(["-P", "1", "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start trafgen")
}

/// A fresh scratch directory under the target dir, removed and recreated.
pub fn scratch_dir(name: &str) -> PathBuf {
    let mut p = std::env::temp_dir();
    p.push(format!("ferroplane-test-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("create scratch dir");
    p
}

/// A live `ferroplane run` on AF_XDP between two host namespaces, torn down on drop.
pub mod live {
    use std::process::Command;
    use std::sync::Mutex;
    use std::time::Duration;

    use ferroplane_ctl::{call, Reply, Request, Stats};
    use ferroplane_dataplane::demo::{router_config, RouterProcess};
    use ferroplane_dataplane::netns::Topology;

    use super::{require_tool, workspace_bin};

    /// Namespace tests never overlap, even if someone forgets `--test-threads=1`.
    pub static SERIAL: Mutex<()> = Mutex::new(());

    pub struct Bed {
        // Field order: the router stops before the namespaces go.
        pub router: RouterProcess,
        pub topo: Topology,
        pub dir: std::path::PathBuf,
    }

    impl Drop for Bed {
        fn drop(&mut self) {
            self.router.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Builds the topology and starts the router with a configuration `edit` changed.
    pub fn bed_with(
        tag: &str,
        workers: &[usize],
        queues: u16,
        edit: &dyn Fn(String) -> String,
    ) -> Bed {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "these tests need root (network namespaces, XDP)"
        );
        for (t, hint) in [
            ("ip", "apt-get install iproute2"),
            ("ping", "apt-get install iputils-ping"),
            ("ethtool", "apt-get install ethtool"),
        ] {
            require_tool(t, hint);
        }
        let exe = workspace_bin("ferroplane");
        assert!(
            exe.exists(),
            "{} missing: run `cargo build --workspace --bins` first (test.sh does)",
            exe.display()
        );
        let tag = format!("{tag}{}", std::process::id() % 100_000);
        let topo = Topology::new(&tag, queues).unwrap_or_else(|e| panic!("topology: {e}"));
        let dir = std::env::temp_dir().join(format!("ferroplane-testbed-{tag}"));
        let socket = dir.join("ctl.sock");
        let cfg = edit(router_config(&topo, &socket, workers, queues));
        let router =
            RouterProcess::start(&exe, &topo.router, &dir, &cfg, &socket, Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("router: {e}"));
        Bed { router, topo, dir }
    }

    pub fn bed(tag: &str, workers: &[usize], queues: u16) -> Bed {
        bed_with(tag, workers, queues, &|c| c)
    }

    /// Runs a command in a namespace; stdout and stderr together.
    pub fn sh(ns: &str, args: &[&str]) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .expect("ip netns exec");
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    }

    /// Runs a command in a namespace; it must succeed.
    pub fn must(ns: &str, args: &[&str]) {
        let o = ferroplane_dataplane::netns::ns_run(ns, args)
            .unwrap_or_else(|e| panic!("{args:?} in {ns}: {e}"));
        assert!(o.status.success(), "{args:?} in {ns}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// The Linux kernel's own `vxlan` device `name` in namespace `ns`, a real peer for
    /// ferroplane's VXLAN tunnels: VNI `vni` from `local` to `remote` over `dev`, on the IANA
    /// port 4789 (iproute2's default is 8472, the pre-IANA Linux one), with `overlay`
    /// (address/len) on it, up.
    pub fn kernel_vxlan(
        ns: &str,
        name: &str,
        vni: &str,
        (local, remote): (&str, &str),
        dev: &str,
        overlay: &str,
    ) {
        must(
            ns,
            &[
                "ip", "link", "add", name, "type", "vxlan", "id", vni, "local", local, "remote",
                remote, "dstport", "4789", "dev", dev,
            ],
        );
        must(ns, &["ip", "addr", "add", overlay, "dev", name]);
        must(ns, &["ip", "link", "set", name, "up"]);
    }

    /// Three pings from namespace `ns` to `dst` must all come back, with `ttl` in the replies
    /// (64 from the router itself, 63 one router hop away); `log` (the router's) goes into the
    /// failure message.
    pub fn ping_ok(ns: &str, dst: &str, v6: bool, ttl: &str, log: &dyn Fn() -> String) {
        let mut args = vec!["ping", "-c", "3", "-i", "0.2", "-W", "2"];
        if v6 {
            args.push("-6");
        }
        args.push(dst);
        let out = sh(ns, &args);
        assert!(
            out.contains(" 0% packet loss"),
            "ping {dst} from {ns}:\n{out}\nrouter log:\n{}",
            log()
        );
        assert!(out.contains(&format!("ttl={ttl}")), "ttl={ttl} expected:\n{out}");
    }

    pub fn stats(b: &Bed) -> Stats {
        match call(&b.router.socket, Request::Stats) {
            Ok(Reply::Stats(s)) => s,
            other => panic!("stats: {other:?}"),
        }
    }

    /// Receives one TCP connection on `argv[1]`:5201, prints bytes and SHA-256.
    pub const TCP_RECEIVER: &str = r#"
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5201)); s.listen(1); s.settimeout(60)
c, _ = s.accept(); c.settimeout(60)
h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 16)
    if not d: break
    h.update(d); n += len(d)
print(n, h.hexdigest())
"#;

    /// Sends `argv[2]` bytes of a fixed pattern to `argv[1]`:5201, prints bytes and SHA-256.
    pub const TCP_SENDER: &str = r#"
import hashlib, socket, sys, time
total = int(sys.argv[2]); block = hashlib.sha256(b"ferroplane").digest() * 2048  # 64 KiB pattern
h = hashlib.sha256(); sent = 0
for i in range(50):
    try:
        c = socket.create_connection((sys.argv[1], 5201), timeout=5); break
    except OSError:
        time.sleep(0.1)
c.settimeout(60)
while sent < total:
    chunk = block[: min(len(block), total - sent)]
    chunk = bytes([sent // len(block) % 256]) + chunk[1:]
    c.sendall(chunk); h.update(chunk); sent += len(chunk)
c.close()
print(sent, h.hexdigest())
"#;

    /// A TCP transfer of `bytes` from namespace `from` to `to_addr` in namespace `to`, with
    /// python sockets on both ends, each bounded to 90 s: `(sender's "N sha256", receiver's "N sha256")`.
    pub fn tcp_transfer(from: &str, to: &str, to_addr: &str, bytes: u64) -> (String, String) {
        require_tool("python3", "apt-get install python3");
        let (to_ns, addr) = (to.to_string(), to_addr.to_string());
        let receiver = std::thread::spawn(move || {
            Command::new("ip")
                .args(["netns", "exec", &to_ns, "timeout", "90", "python3", "-c", TCP_RECEIVER])
                .arg(&addr)
                .output()
                .expect("ip netns exec")
        });
        std::thread::sleep(Duration::from_millis(500));
        let sent = Command::new("ip")
            .args(["netns", "exec", from, "timeout", "90", "python3", "-c", TCP_SENDER, to_addr])
            .arg(bytes.to_string())
            .output()
            .expect("ip netns exec");
        let got = receiver.join().expect("receiver thread");
        // Stdout, then stderr when the script failed (so an assertion shows the traceback).
        let text = |o: &std::process::Output| {
            let mut t = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if !o.status.success() {
                t.push_str(&format!(" [{}] {}", o.status, String::from_utf8_lossy(&o.stderr)));
            }
            t
        };
        (text(&sent), text(&got))
    }

    pub fn port<'a>(s: &'a Stats, name: &str) -> &'a ferroplane_ctl::PortStats {
        s.ports.iter().find(|p| p.name == name).expect("port in stats")
    }
}

/// `ferroplane gen`'s rig: both gen ports in one namespace, cabled to a router namespace that
/// runs ferroplane (or, for baselines, the kernel).
pub mod rig {
    use std::process::Command;
    use std::time::Duration;

    use ferroplane_dataplane::demo::{router_config_on, RouterProcess};
    use ferroplane_dataplane::netns::{ns_run, run};

    use super::workspace_bin;

    /// The gen namespace with `ga`/`gb`, cabled to the router's `left`/`right`; removed on drop.
    pub struct Rig {
        pub router: Option<RouterProcess>,
        pub gen_ns: String,
        pub router_ns: String,
        pub dir: std::path::PathBuf,
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            if let Some(mut r) = self.router.take() {
                r.stop();
            }
            let _ = run("ip", &["netns", "del", &self.gen_ns]);
            let _ = run("ip", &["netns", "del", &self.router_ns]);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The rig with gen's TX loop on core 0 and its RX loop on core 1: the rate and loss tests
    /// (the two loops on one core starve each other in debug builds on a loaded machine).
    pub fn rig(tag: &str) -> Rig {
        rig_with(tag, "[0, 1]")
    }

    /// The rig with gen's loops on `workers` (TOML list). Benchmarks use `[0]`: both loops on
    /// core 0 and core 1 left to the device under test. Sharing core 1 with gen's RX loop made
    /// ferroplane's worker wait behind it and drop at its ring (measured: every loss was
    /// before the router's rx counter).
    pub fn rig_with(tag: &str, workers: &str) -> Rig {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "these tests need root (network namespaces, XDP)"
        );
        let tag = format!("{tag}{}", std::process::id() % 100_000);
        let (g, r) = (format!("fp{tag}g"), format!("fp{tag}r"));
        let dir = std::env::temp_dir().join(format!("ferroplane-gen-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rig = Rig { router: None, gen_ns: g.clone(), router_ns: r.clone(), dir };
        for ns in [&g, &r] {
            let _ = run("ip", &["netns", "del", ns]);
            run("ip", &["netns", "add", ns]).unwrap();
        }
        for (gi, ri) in [("ga", "left"), ("gb", "right")] {
            run(
                "ip",
                &["link", "add", ri, "netns", &r, "type", "veth", "peer", "name", gi, "netns", &g],
            )
            .unwrap();
            for (ns, i) in [(&g, gi), (&r, ri)] {
                ns_run(ns, &["sysctl", "-qw", &format!("net.ipv6.conf.{i}.disable_ipv6=1")])
                    .unwrap();
                ns_run(ns, &["ethtool", "-K", i, "tx", "off", "rx", "off"]).unwrap();
                ns_run(ns, &["ip", "link", "set", i, "up"]).unwrap();
            }
        }
        // The router: ferroplane's usual two-port configuration on left/right.
        let socket = rig.dir.join("ctl.sock");
        let cfg = router_config_on("left", "right", &socket, &[1], 1);
        rig.router = Some(
            RouterProcess::start(
                &workspace_bin("ferroplane"),
                &r,
                &rig.dir,
                &cfg,
                &socket,
                Duration::from_secs(20),
            )
            .unwrap_or_else(|e| panic!("router: {e}")),
        );
        std::fs::write(
            rig.dir.join("rig.toml"),
            format!(
                r#"
    [dataplane]
    workers = {workers}

    [[port]]
    name = "a"
    driver = "af_xdp"
    interface = "ga"
    addresses = ["10.1.0.2/24"]

    [[port]]
    name = "b"
    driver = "af_xdp"
    interface = "gb"
    addresses = ["10.2.0.2/24"]
    "#
            ),
        )
        .unwrap();
        rig
    }

    /// Addressing through the router: from port `a` to port `b`, the router resolved by ARP.
    pub const THROUGH_ROUTER: [&str; 11] = [
        "--tx",
        "a",
        "--rx",
        "b",
        "--src",
        "10.1.0.2",
        "--dst",
        "10.2.0.2",
        "--gateway",
        "10.1.0.1",
        "--quiet",
    ];

    /// `gen` with [`THROUGH_ROUTER`] and `args`.
    pub fn gen_routed(rig: &Rig, args: &[&str]) -> std::process::Output {
        let all: Vec<&str> = THROUGH_ROUTER.iter().chain(args).copied().collect();
        gen(rig, &all)
    }

    pub fn gen(rig: &Rig, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &rig.gen_ns])
            .arg(workspace_bin("ferroplane"))
            .arg("gen")
            .arg("-c")
            .arg(rig.dir.join("rig.toml"))
            .args(args)
            .output()
            .expect("run ferroplane gen")
    }
}
