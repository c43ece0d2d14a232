//! Faults of the DPDK driver: each case is a `ferroplane` process of its own (EAL starts once per
//! process), which must end with a clear message and a failure status, never a crash or a hang.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A scratch directory, removed when the guard goes (also when the test fails).
struct Scratch(std::path::PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let d =
        std::env::temp_dir().join(format!("ferroplane-dpdk-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// A one-port router on `interface` with `eal_args` (a TOML list, or "" for the default).
fn config(dir: &std::path::Path, interface: &str, eal_args: &str) -> std::path::PathBuf {
    let eal = if eal_args.is_empty() { String::new() } else { format!("eal_args = {eal_args}\n") };
    let text = format!(
        "[dataplane]\nworkers = [0]\ncontrol_socket = \"{}\"\n{eal}\n[[port]]\nname = \"p0\"\ndriver = \"dpdk\"\ninterface = \"{interface}\"\naddresses = [\"192.0.2.1/24\"]\n",
        dir.join("ctl.sock").display()
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `ferroplane ARGS`, killing it after 60 s (a hang fails the test).
fn ferroplane(args: &[&str], cfg: &std::path::Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferroplane"))
        .args(args)
        .arg("-c")
        .arg(cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ferroplane");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    panic!("ferroplane did not exit in 60 s:\n{}", String::from_utf8_lossy(&o.stderr));
}

fn failed_with(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "exit status {:?}, expected failure:\n{err}", o.status);
    // A crash would be a signal (no code) or Rust's panic status 101; `run` fails with 1,
    // `check` with 2 (a configuration error).
    assert!(matches!(o.status.code(), Some(1 | 2)), "not a clean error exit:\n{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from:\n{err}");
    }
}

#[test]
fn eal_refusing_bad_arguments_is_a_clear_error() {
    let d = scratch("badargs");
    let cfg =
        config(&d, "net_ring0", r#"["--no-pci", "--no-huge", "--no-shconf", "--bogus-flag"]"#);
    let o = ferroplane(&["run"], &cfg);
    failed_with(
        &o,
        &["DPDK's EAL refused to start with `--no-pci --no-huge --no-shconf --bogus-flag"],
    );
}

#[test]
fn eal_without_the_memory_it_asks_for_is_a_clear_error() {
    // 64 GiB of huge pages on a machine that has at most a few hundred: EAL cannot start.
    let d = scratch("nomem");
    let cfg = config(&d, "net_ring0", r#"["--no-pci", "--in-memory", "-m", "65536"]"#);
    let o = ferroplane(&["run"], &cfg);
    failed_with(&o, &["DPDK's EAL refused to start"]);
}

#[test]
fn a_vdev_that_fails_to_probe_is_detected_after_eal_starts() {
    let d = scratch("probe");
    let cfg = config(&d, "net_af_packet0,iface=fp-nonexistent0", "");
    let o = ferroplane(&["run"], &cfg);
    failed_with(
        &o,
        &[
            "port `p0`: DPDK has no device `net_af_packet0`",
            "EAL is up with 0 port(s)",
            "did not probe",
        ],
    );
}

#[test]
fn an_unknown_vdev_driver_is_a_clear_error() {
    let d = scratch("nodriver");
    let cfg = config(&d, "net_nosuchdriver0", "");
    let o = ferroplane(&["run"], &cfg);
    // EAL itself refuses a --vdev no driver claims.
    failed_with(&o, &["DPDK's EAL refused to start", "net_nosuchdriver0", "No such device"]);
}

#[test]
fn check_refuses_dpdk_mistakes_with_their_place() {
    let d = scratch("check");
    let cfg = config(&d, "net_af_xdp0,iface=eth0", r#"["--no-pci", "--vdev", "net_ring0"]"#);
    let o = ferroplane(&["check"], &cfg);
    failed_with(
        &o,
        &[
            "c.toml:4:25: dataplane.eal_args[1]: ferroplane adds `--vdev`",
            "c.toml:9:13: port[0].interface: net_af_xdp cannot run under ferroplane's dpdk driver",
        ],
    );
    let cfg = config(&d, "0000:3b:00.0", r#"["--no-pci", "--in-memory"]"#);
    failed_with(
        &ferroplane(&["check"], &cfg),
        &["is a PCI device but [dataplane] eal_args has `--no-pci`"],
    );
    let cfg = config(&d, "net_ring0", r#"["--in-memory", "--no-huge"]"#);
    failed_with(&ferroplane(&["check"], &cfg), &["EAL refuses `--in-memory` with `--no-huge`"]);
    let cfg = config(&d, "net_ring0", "");
    let o = ferroplane(&["check"], &cfg);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
