//! Network-namespace topologies for `ferroplane demo` and the testbed: two hosts and a router
//! namespace joined by veth pairs, built with `ip`, torn down on drop (even after a panic).
//!
//! ```text
//!   [h1] h1 ---- left [r] right ---- h2 [h2]
//!   10.1.0.2/24        ferroplane        10.2.0.2/24
//!   2001:db8:1::2/64  (AF_XDP on left,   2001:db8:2::2/64
//!                      right)
//! ```
//! The router namespace's veths carry no kernel addresses and have IPv6 disabled, so the only
//! thing answering there is ferroplane. Checksum offload is off on every veth (MACHINE-NOTES:
//! veth hands partial checksums to AF_XDP otherwise).

use std::process::{Command, Output};

/// Runs a command, returning its output or a message naming it.
pub fn run(cmd: &str, args: &[&str]) -> Result<Output, String> {
    let out =
        Command::new(cmd).args(args).output().map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

/// Runs a command inside namespace `ns`.
pub fn ns_run(ns: &str, args: &[&str]) -> Result<Output, String> {
    let mut a = vec!["netns", "exec", ns];
    a.extend_from_slice(args);
    run("ip", &a)
}

/// The addresses of the two-host topology.
pub mod addr {
    pub const H1_V4: &str = "10.1.0.2";
    pub const H2_V4: &str = "10.2.0.2";
    pub const R_LEFT_V4: &str = "10.1.0.1";
    pub const R_RIGHT_V4: &str = "10.2.0.1";
    pub const H1_V6: &str = "2001:db8:1::2";
    pub const H2_V6: &str = "2001:db8:2::2";
    pub const R_LEFT_V6: &str = "2001:db8:1::1";
    pub const R_RIGHT_V6: &str = "2001:db8:2::1";
}

/// Two hosts and a router namespace. Dropping it deletes the namespaces (and with them the
/// veths).
pub struct Topology {
    pub h1: String,
    pub h2: String,
    pub router: String,
    /// Router-side interface names (inside `router`).
    pub left: String,
    pub right: String,
    /// Host-side interface names.
    pub h1_if: String,
    pub h2_if: String,
}

impl Topology {
    /// Builds the topology; `tag` makes the namespace names unique (e.g. the PID).
    /// `router_queues` sets the number of rx/tx queues of the router's veths.
    pub fn new(tag: &str, router_queues: u16) -> Result<Topology, String> {
        let t = Topology {
            h1: format!("fp{tag}h1"),
            h2: format!("fp{tag}h2"),
            router: format!("fp{tag}r"),
            left: "left".into(),
            right: "right".into(),
            h1_if: "eth0".into(),
            h2_if: "eth0".into(),
        };
        // Anything left by an earlier run with the same tag goes first.
        t.remove();
        for ns in [&t.h1, &t.h2, &t.router] {
            run("ip", &["netns", "add", ns])?;
        }
        let q = router_queues.to_string();
        for (host, host_if, rif) in [(&t.h1, &t.h1_if, &t.left), (&t.h2, &t.h2_if, &t.right)] {
            run(
                "ip",
                &[
                    "link",
                    "add",
                    rif,
                    "netns",
                    &t.router,
                    "numtxqueues",
                    &q,
                    "numrxqueues",
                    &q,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    host_if,
                    "netns",
                    host,
                    "numtxqueues",
                    &q,
                    "numrxqueues",
                    &q,
                ],
            )?;
        }
        let r = &t.router;
        for rif in [&t.left, &t.right] {
            ns_run(r, &["sysctl", "-qw", &format!("net.ipv6.conf.{rif}.disable_ipv6=1")])?;
            ns_run(r, &["ethtool", "-K", rif, "tx", "off", "rx", "off"])?;
            ns_run(r, &["ip", "link", "set", rif, "up"])?;
        }
        ns_run(r, &["ip", "link", "set", "lo", "up"])?;
        let hosts = [
            (&t.h1, &t.h1_if, addr::H1_V4, addr::R_LEFT_V4, addr::H1_V6, addr::R_LEFT_V6),
            (&t.h2, &t.h2_if, addr::H2_V4, addr::R_RIGHT_V4, addr::H2_V6, addr::R_RIGHT_V6),
        ];
        for (ns, ifn, v4, gw4, v6, gw6) in hosts {
            ns_run(ns, &["ip", "link", "set", "lo", "up"])?;
            ns_run(ns, &["ethtool", "-K", ifn, "tx", "off", "rx", "off"])?;
            ns_run(ns, &["ip", "addr", "add", &format!("{v4}/24"), "dev", ifn])?;
            ns_run(ns, &["ip", "-6", "addr", "add", &format!("{v6}/64"), "dev", ifn, "nodad"])?;
            ns_run(ns, &["ip", "link", "set", ifn, "up"])?;
            ns_run(ns, &["ip", "route", "add", "default", "via", gw4])?;
            ns_run(ns, &["ip", "-6", "route", "add", "default", "via", gw6])?;
        }
        Ok(t)
    }

    /// The router's MAC on one of its interfaces (as the kernel assigned it).
    pub fn router_mac(&self, ifname: &str) -> Result<String, String> {
        let out = ns_run(&self.router, &["cat", &format!("/sys/class/net/{ifname}/address")])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn remove(&self) {
        for ns in [&self.h1, &self.h2, &self.router] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.remove();
    }
}
