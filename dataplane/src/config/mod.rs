//! Configuration: TOML in, a fully checked [`Config`] out, or every error with its place.
//!
//! Parsing keeps each value's byte span (`toml::Spanned`), so a semantic error (an unknown port,
//! a next hop off every subnet) points at the offending value: `FILE:LINE:COL: KEY: MESSAGE`.
//! Syntax and type errors come from the TOML parser (it stops at the first); semantic checks run
//! over the whole file and report everything they find at once.

pub mod tunnel;

use crate::port::af_xdp::{AttachMode, BindMode};
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
pub use tunnel::{FdbConfig, GeneveOption, TunnelConfig};

use serde::Deserialize;
use toml::Spanned;

/// Where the control socket lives unless the file says otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/ferroplane/ctl.sock";
/// ECMP hash seed unless the file says otherwise.
pub const DEFAULT_HASH_SEED: u64 = 0x6665_7272_6f70_6c61;

/// A checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub dataplane: DataplaneConfig,
    pub ports: Vec<PortConfig>,
    pub routes: Vec<RouteConfig>,
    pub neighbors: Vec<NeighborConfig>,
    pub tunnels: Vec<TunnelConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    pub workers: Vec<usize>,
    pub control_socket: PathBuf,
    pub poll: Poll,
    pub hash_seed: u64,
    pub metrics: Option<SocketAddr>,
    /// DPDK: EAL arguments (`eal_args = ["--no-pci", "--in-memory"]`); `None`: the defaults of
    /// the `dpdk` build (see the README). ferroplane adds the ports' devices itself.
    pub eal_args: Option<Vec<String>>,
}

/// How workers wait for frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Spin forever (production: a dedicated core).
    Busy,
    /// Sleep in poll() after a run of empty polls (shared cores).
    Adaptive,
}

impl fmt::Display for Poll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Poll::Busy => "busy",
            Poll::Adaptive => "adaptive",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    AfXdp,
    Dpdk,
    Memory,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::AfXdp => "af_xdp",
            Driver::Dpdk => "dpdk",
            Driver::Memory => "memory",
        })
    }
}

/// A 48-bit Ethernet address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("`{s}` is not a MAC address (six hex bytes separated by `:`)"));
        }
        let mut m = [0u8; 6];
        for (b, p) in m.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(format!("`{s}` is not a MAC address (six hex bytes separated by `:`)"));
            }
            *b = u8::from_str_radix(p, 16)
                .map_err(|_| format!("`{s}` is not a MAC address (`{p}` is not hex)"))?;
        }
        Ok(Mac(m))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// An interface address with its prefix length: `192.0.2.1/24` (host bits are the address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub len: u8,
}

/// A route prefix: `10.0.0.0/8` (host bits must be zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` needs a prefix length, as in 10.0.0.0/8"))?;
    let addr: IpAddr = a.parse().map_err(|_| format!("`{a}` is not an IP address"))?;
    let len: u8 = l.parse().map_err(|_| format!("`{l}` is not a prefix length"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("prefix length {len} is longer than {max}"));
    }
    Ok((addr, len))
}

/// `addr` with the bits beyond `len` cleared.
pub fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl IfAddr {
    /// The connected subnet.
    pub fn network(&self) -> Prefix {
        Prefix { addr: mask(self.addr, self.len), len: self.len }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.network().contains(ip)
    }
}

impl Prefix {
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

impl FromStr for IfAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = parse_cidr(s)?;
        let bad = match addr {
            IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
        };
        if bad {
            return Err(format!(
                "{addr} cannot be an interface address (unspecified, multicast or broadcast)"
            ));
        }
        Ok(IfAddr { addr, len })
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = parse_cidr(s)?;
        if mask(addr, len) != addr {
            return Err(format!("host bits set in {s}: did you mean {}/{len}?", mask(addr, len)));
        }
        Ok(Prefix { addr, len })
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub name: String,
    pub driver: Driver,
    pub interface: Option<String>,
    pub queues: u16,
    pub addresses: Vec<IfAddr>,
    pub mac: Option<Mac>,
    pub mtu: u16,
    /// AF_XDP: `xdp_bind = "auto" | "zerocopy" | "copy"` (auto tries zero-copy first).
    pub xdp_bind: BindMode,
    /// AF_XDP: `xdp_attach = "auto" | "native" | "generic"` (auto tries native first).
    pub xdp_attach: AttachMode,
    /// DPDK: receive descriptors per queue (`dpdk_rx_desc`, 64..=4096).
    pub dpdk_rx_desc: u16,
    /// DPDK: transmit descriptors per queue (`dpdk_tx_desc`, 64..=4096).
    pub dpdk_tx_desc: u16,
}

/// DPDK descriptors per queue unless the file says otherwise.
pub const DEFAULT_DPDK_DESC: u16 = 1024;

/// Whether a DPDK `interface` names a PCI device (`0000:3b:00.0` or `3b:00.0`, devargs after a
/// comma) rather than a virtual device (`net_ring0`, `net_af_packet0,iface=eth0`).
pub fn is_pci_address(interface: &str) -> bool {
    let addr = interface.split(',').next().unwrap_or("");
    let parts: Vec<&str> = addr.split(':').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    let bus_devfn = |bus: &str, df: &str| {
        hex(bus, 2) && df.split_once('.').is_some_and(|(d, f)| hex(d, 2) && hex(f, 1))
    };
    match parts.as_slice() {
        [bus, df] => bus_devfn(bus, df),
        [dom, bus, df] => hex(dom, 4) && bus_devfn(bus, df),
        _ => false,
    }
}

/// Whether `name` can be a DPDK virtual device's name (`net_` and a driver name with an index).
fn is_vdev_name(name: &str) -> bool {
    name.len() > 4 && name.starts_with("net_") && !name.contains(char::is_whitespace)
}

/// The name DPDK gives the device of a DPDK `interface` (what `rte_eth_dev_get_port_by_name`
/// finds): a vdev's name before its first comma, a PCI address with its domain.
pub fn dpdk_device_name(interface: &str) -> String {
    let name = interface.split(',').next().unwrap_or("").trim();
    if is_pci_address(name) && name.matches(':').count() == 1 {
        format!("0000:{name}")
    } else {
        name.to_string()
    }
}

impl PortConfig {
    /// The port's connected subnets.
    pub fn connected(&self) -> impl Iterator<Item = Prefix> + '_ {
        self.addresses.iter().map(IfAddr::network)
    }

    pub fn on_link(&self, ip: IpAddr) -> bool {
        self.addresses.iter().any(|a| a.contains(ip))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHopConfig {
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    pub prefix: Prefix,
    pub nexthops: Vec<NextHopConfig>,
    pub blackhole: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborConfig {
    pub address: IpAddr,
    pub mac: Mac,
    pub port: String,
}

impl Config {
    pub fn port(&self, name: &str) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The configuration as TOML that [`parse_str`] reads back to an equal `Config`.
    pub fn to_toml(&self) -> String {
        use std::fmt::Write;
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut o = String::new();
        let d = &self.dataplane;
        let workers: Vec<String> = d.workers.iter().map(|w| w.to_string()).collect();
        let _ = writeln!(o, "[dataplane]\nworkers = [{}]", workers.join(", "));
        let _ = writeln!(o, "control_socket = {}", q(&d.control_socket.display().to_string()));
        let _ = writeln!(o, "poll = \"{}\"", d.poll);
        let _ = writeln!(o, "hash_seed = {}", d.hash_seed as i64);
        if let Some(a) = &d.eal_args {
            let args: Vec<String> = a.iter().map(|s| q(s)).collect();
            let _ = writeln!(o, "eal_args = [{}]", args.join(", "));
        }
        if let Some(m) = d.metrics {
            let _ = writeln!(o, "metrics = \"{m}\"");
        }
        for p in &self.ports {
            let _ = writeln!(o, "\n[[port]]\nname = {}\ndriver = \"{}\"", q(&p.name), p.driver);
            if let Some(i) = &p.interface {
                let _ = writeln!(o, "interface = {}", q(i));
            }
            let addrs: Vec<String> = p.addresses.iter().map(|a| format!("\"{a}\"")).collect();
            let _ = writeln!(o, "queues = {}\naddresses = [{}]", p.queues, addrs.join(", "));
            if let Some(m) = p.mac {
                let _ = writeln!(o, "mac = \"{m}\"");
            }
            let _ = writeln!(o, "mtu = {}", p.mtu);
            if p.xdp_bind != BindMode::Auto {
                let _ = writeln!(o, "xdp_bind = \"{}\"", p.xdp_bind.as_str());
            }
            if p.xdp_attach != AttachMode::Auto {
                let _ = writeln!(o, "xdp_attach = \"{}\"", p.xdp_attach.as_str());
            }
            if p.dpdk_rx_desc != DEFAULT_DPDK_DESC {
                let _ = writeln!(o, "dpdk_rx_desc = {}", p.dpdk_rx_desc);
            }
            if p.dpdk_tx_desc != DEFAULT_DPDK_DESC {
                let _ = writeln!(o, "dpdk_tx_desc = {}", p.dpdk_tx_desc);
            }
        }
        for t in &self.tunnels {
            t.to_toml(&mut o);
        }
        for r in &self.routes {
            let _ = writeln!(o, "\n[[route]]\nprefix = \"{}\"", r.prefix);
            if r.blackhole {
                let _ = writeln!(o, "blackhole = true");
            } else {
                let hops: Vec<String> = r
                    .nexthops
                    .iter()
                    .map(|n| {
                        let mut f = Vec::new();
                        if let Some(v) = n.via {
                            f.push(format!("via = \"{v}\""));
                        }
                        if let Some(d) = &n.dev {
                            f.push(format!("dev = {}", q(d)));
                        }
                        f.push(format!("weight = {}", n.weight));
                        format!("{{ {} }}", f.join(", "))
                    })
                    .collect();
                let _ = writeln!(o, "nexthops = [{}]", hops.join(", "));
            }
        }
        for n in &self.neighbors {
            let _ = writeln!(
                o,
                "\n[[neighbor]]\naddress = \"{}\"\nmac = \"{}\"\nport = {}",
                n.address,
                n.mac,
                q(&n.port)
            );
        }
        o
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending key, e.g. `route[2].nexthops[0].via`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.column, self.key, self.message)
    }
}

/// Every problem found in a file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---- the raw shape, as serde reads it ----

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    dataplane: Option<S<RawDataplane>>,
    #[serde(default)]
    port: Vec<S<RawPort>>,
    #[serde(default)]
    route: Vec<S<RawRoute>>,
    #[serde(default)]
    neighbor: Vec<S<RawNeighbor>>,
    #[serde(default)]
    tunnel: Vec<S<tunnel::RawTunnel>>,
    wireguard: Option<S<toml::Value>>,
    service: Option<S<toml::Value>>,
    acl: Option<S<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    workers: Option<S<Vec<S<i64>>>>,
    control_socket: Option<S<String>>,
    poll: Option<S<String>>,
    hash_seed: Option<S<i64>>,
    metrics: Option<S<String>>,
    eal_args: Option<S<Vec<S<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: S<String>,
    driver: S<String>,
    interface: Option<S<String>>,
    queues: Option<S<i64>>,
    #[serde(default)]
    addresses: Vec<S<String>>,
    mac: Option<S<String>>,
    mtu: Option<S<i64>>,
    xdp_bind: Option<S<String>>,
    xdp_attach: Option<S<String>>,
    dpdk_rx_desc: Option<S<i64>>,
    dpdk_tx_desc: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: S<String>,
    #[serde(default)]
    nexthops: Vec<S<RawNextHop>>,
    blackhole: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNextHop {
    via: Option<S<String>>,
    dev: Option<S<String>>,
    weight: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: S<String>,
    mac: S<String>,
    port: S<String>,
}

/// Turns byte offsets into line/column and collects errors.
struct Report<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<(usize, ConfigError)>,
}

impl Report<'_> {
    fn at(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col =
            before.rfind('\n').map_or(before.chars().count(), |i| before[i + 1..].chars().count())
                + 1;
        (line, col)
    }

    fn err(
        &mut self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = self.at(span.start);
        let e = ConfigError {
            file: self.file.to_string(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        };
        self.errors.push((span.start, e));
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&text, &file),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file,
            line: 0,
            column: 0,
            key: "-".into(),
            message: format!("cannot read: {e}"),
        }])),
    }
}

/// Parses and checks a `ferroplane gen` rig file: the dataplane's `[[port]]` schema, with
/// `[dataplane]` optional (its `workers` then default to core 0).
pub fn parse_rig(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    let has_dataplane =
        toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("dataplane"));
    if has_dataplane {
        return parse_str(text, file);
    }
    // A default section first; error lines of the rest are shifted back below.
    let shifted = format!("[dataplane]\nworkers = [0]\n{text}");
    parse_str(&shifted, file).map_err(|mut e| {
        for err in &mut e.0 {
            err.line = err.line.saturating_sub(2);
        }
        e
    })
}

/// Parses and checks configuration text; `file` names it in errors.
pub fn parse_str(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    let mut r = Report { file, text, errors: Vec::new() };
    let raw: Raw = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().replace('\n', " ");
            let key = key_at(text, span.start);
            r.err(span, key, msg);
            return Err(ConfigErrors(r.errors.into_iter().map(|(_, e)| e).collect()));
        }
    };
    let cfg = check(&mut r, raw);
    if r.errors.is_empty() {
        Ok(cfg)
    } else {
        r.errors.sort_by_key(|(o, _)| *o);
        Err(ConfigErrors(r.errors.into_iter().map(|(_, e)| e).collect()))
    }
}

/// The table header above `offset`, for errors from the TOML parser itself.
fn key_at(text: &str, offset: usize) -> String {
    // Up to the end of the error's line: an error at a table header names that table.
    let end = text[offset.min(text.len())..].find('\n').map_or(text.len(), |i| offset + i);
    let before = &text[..end];
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or_else(|| "(top level)".into())
}

fn check(r: &mut Report<'_>, raw: Raw) -> Config {
    for (name, v) in [("wireguard", &raw.wireguard), ("service", &raw.service), ("acl", &raw.acl)] {
        if let Some(v) = v {
            r.err(
                v.span(),
                name,
                format!("[[{name}]] is not supported by this version of ferroplane"),
            );
        }
    }
    let dataplane = check_dataplane(r, raw.dataplane);
    let mut ports = Vec::new();
    let mut names = HashSet::new();
    let mut seen_addrs = HashSet::new();
    for (i, p) in raw.port.into_iter().enumerate() {
        let span = p.span();
        let p = p.into_inner();
        let key = |k: &str| format!("port[{i}].{k}");
        let name = p.name.get_ref().clone();
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            r.err(p.name.span(), key("name"), "a port name is letters, digits, `-` and `_`");
        }
        if !names.insert(name.clone()) {
            r.err(p.name.span(), key("name"), format!("port name `{name}` is used twice"));
        }
        let driver = match p.driver.get_ref().as_str() {
            "af_xdp" => Driver::AfXdp,
            "dpdk" => Driver::Dpdk,
            "memory" => Driver::Memory,
            other => {
                r.err(
                    p.driver.span(),
                    key("driver"),
                    format!("unknown driver `{other}`; expected af_xdp, dpdk or memory"),
                );
                Driver::Memory
            }
        };
        let interface = p.interface.as_ref().map(|s| s.get_ref().clone());
        match (driver, &p.interface) {
            (Driver::AfXdp | Driver::Dpdk, None) => {
                r.err(span.clone(), key("interface"), format!("driver {driver} needs `interface`"))
            }
            (Driver::Memory, Some(i)) => {
                r.err(i.span(), key("interface"), "memory ports have no interface")
            }
            _ => {}
        }
        let queues = match &p.queues {
            Some(q) if !(1..=64).contains(q.get_ref()) => {
                r.err(q.span(), key("queues"), "queues must be 1..=64");
                1
            }
            Some(q) => *q.get_ref() as u16,
            None => 1,
        };
        let mtu = match &p.mtu {
            Some(m) if !(68..=1778).contains(m.get_ref()) => {
                r.err(
                    m.span(),
                    key("mtu"),
                    "mtu must be 68..=1778 (packet buffers are 2048 bytes with 256 of headroom)",
                );
                1500
            }
            Some(m) => *m.get_ref() as u16,
            None => 1500,
        };
        let mut addresses = Vec::new();
        for (j, a) in p.addresses.iter().enumerate() {
            match a.get_ref().parse::<IfAddr>() {
                Ok(ia) => {
                    if ia.addr.is_ipv6() && mtu < 1280 {
                        r.err(
                            a.span(),
                            format!("port[{i}].addresses[{j}]"),
                            "IPv6 needs mtu >= 1280 (RFC 8200)",
                        );
                    }
                    if !seen_addrs.insert(ia.addr) {
                        r.err(
                            a.span(),
                            format!("port[{i}].addresses[{j}]"),
                            format!("{} is configured twice", ia.addr),
                        );
                    }
                    addresses.push(ia);
                }
                Err(e) => r.err(a.span(), format!("port[{i}].addresses[{j}]"), e),
            }
        }
        let mac = match &p.mac {
            Some(m) => match m.get_ref().parse::<Mac>() {
                Ok(mac) if mac.0[0] & 1 == 1 => {
                    r.err(
                        m.span(),
                        key("mac"),
                        format!("{mac} is a multicast address; a port needs a unicast MAC"),
                    );
                    None
                }
                Ok(mac) => Some(mac),
                Err(e) => {
                    r.err(m.span(), key("mac"), e);
                    None
                }
            },
            None => {
                if driver == Driver::Memory {
                    r.err(span.clone(), key("mac"), "memory ports need a `mac`");
                }
                None
            }
        };
        let xdp_bind = match &p.xdp_bind {
            Some(b) => BindMode::parse(b.get_ref()).unwrap_or_else(|| {
                r.err(b.span(), key("xdp_bind"), "xdp_bind is \"auto\", \"zerocopy\" or \"copy\"");
                BindMode::Auto
            }),
            None => BindMode::Auto,
        };
        let xdp_attach = match &p.xdp_attach {
            Some(a) => AttachMode::parse(a.get_ref()).unwrap_or_else(|| {
                r.err(
                    a.span(),
                    key("xdp_attach"),
                    "xdp_attach is \"auto\", \"native\" or \"generic\"",
                );
                AttachMode::Auto
            }),
            None => AttachMode::Auto,
        };
        if driver != Driver::AfXdp {
            for (k, v) in [("xdp_bind", &p.xdp_bind), ("xdp_attach", &p.xdp_attach)] {
                if let Some(v) = v {
                    r.err(v.span(), key(k), format!("{k} applies to af_xdp ports only"));
                }
            }
        }
        let mut desc = |k: &str, v: &Option<S<i64>>| match v {
            Some(d) if driver != Driver::Dpdk => {
                r.err(d.span(), key(k), format!("{k} applies to dpdk ports only"));
                DEFAULT_DPDK_DESC
            }
            Some(d) if !(64..=4096).contains(d.get_ref()) => {
                r.err(d.span(), key(k), format!("{k} must be 64..=4096 descriptors"));
                DEFAULT_DPDK_DESC
            }
            Some(d) => *d.get_ref() as u16,
            None => DEFAULT_DPDK_DESC,
        };
        let dpdk_rx_desc = desc("dpdk_rx_desc", &p.dpdk_rx_desc);
        let dpdk_tx_desc = desc("dpdk_tx_desc", &p.dpdk_tx_desc);
        if let (Driver::Dpdk, Some(i)) = (driver, &p.interface) {
            let dev = dpdk_device_name(i.get_ref());
            if dev.starts_with("net_af_xdp") {
                r.err(
                    i.span(),
                    key("interface"),
                    "net_af_xdp cannot run under ferroplane's dpdk driver (its UMEM must be the \
                     mempool's own memory, and ferroplane's mbufs carry pool frames); use \
                     driver = \"af_xdp\"",
                );
            } else if is_pci_address(&dev)
                && dataplane.eal_args.as_ref().is_some_and(|a| a.iter().any(|x| x == "--no-pci"))
            {
                r.err(
                    i.span(),
                    key("interface"),
                    format!(
                        "{dev} is a PCI device but [dataplane] eal_args has `--no-pci`: drop it \
                         (ferroplane allows only the ports' PCI devices, with `-a`)"
                    ),
                );
            } else if !(is_pci_address(&dev) || is_vdev_name(&dev)) {
                r.err(
                    i.span(),
                    key("interface"),
                    format!(
                        "`{}` is neither a PCI address (0000:3b:00.0) nor a DPDK virtual device \
                         (net_af_packet0,iface=eth0; net_memif0,role=server; net_ring0; ...)",
                        i.get_ref()
                    ),
                );
            }
        }
        ports.push(PortConfig {
            name,
            driver,
            interface,
            queues,
            addresses,
            mac,
            mtu,
            xdp_bind,
            xdp_attach,
            dpdk_rx_desc,
            dpdk_tx_desc,
        });
    }
    let tunnels = tunnel::check_tunnels(r, raw.tunnel, &ports, &mut names, &mut seen_addrs);
    // Routes and neighbours may name a port or a tunnel: (name, addresses, has a link layer).
    let ifaces: Vec<(&str, &[IfAddr], bool)> = ports
        .iter()
        .map(|p| (p.name.as_str(), p.addresses.as_slice(), true))
        .chain(tunnels.iter().map(|t| (t.name.as_str(), t.addresses.as_slice(), t.kind.l2())))
        .collect();
    let on_link = |addrs: &[IfAddr], a: IpAddr| addrs.iter().any(|x| x.contains(a));
    let mut routes = Vec::new();
    let mut prefixes = HashSet::new();
    for (i, rt) in raw.route.into_iter().enumerate() {
        let span = rt.span();
        let rt = rt.into_inner();
        let prefix = match rt.prefix.get_ref().parse::<Prefix>() {
            Ok(p) => {
                if !prefixes.insert(p) {
                    r.err(
                        rt.prefix.span(),
                        format!("route[{i}].prefix"),
                        format!("{p} is routed twice"),
                    );
                }
                Some(p)
            }
            Err(e) => {
                r.err(rt.prefix.span(), format!("route[{i}].prefix"), e);
                None
            }
        };
        let blackhole = rt.blackhole.as_ref().is_some_and(|b| *b.get_ref());
        if blackhole && !rt.nexthops.is_empty() {
            r.err(
                span.clone(),
                format!("route[{i}].nexthops"),
                "a blackhole route has no next hops",
            );
        }
        if !blackhole && rt.nexthops.is_empty() {
            r.err(
                span.clone(),
                format!("route[{i}].nexthops"),
                "a route needs next hops (or `blackhole = true`)",
            );
        }
        let mut nexthops = Vec::new();
        for (j, nh) in rt.nexthops.into_iter().enumerate() {
            let nspan = nh.span();
            let nh = nh.into_inner();
            let key = |k: &str| format!("route[{i}].nexthops[{j}].{k}");
            let weight = match &nh.weight {
                Some(w) if !(1..=1000).contains(w.get_ref()) => {
                    r.err(w.span(), key("weight"), "weight must be 1..=1000");
                    1
                }
                Some(w) => *w.get_ref() as u32,
                None => 1,
            };
            let dev_port = match &nh.dev {
                Some(d) => match ifaces.iter().find(|p| p.0 == *d.get_ref()) {
                    Some(p) => Some(p),
                    None => {
                        r.err(
                            d.span(),
                            key("dev"),
                            format!("no port or tunnel named `{}`", d.get_ref()),
                        );
                        None
                    }
                },
                None => None,
            };
            let via = match &nh.via {
                Some(v) => match v.get_ref().parse::<IpAddr>() {
                    Ok(a) => {
                        if let Some(p) = prefix {
                            if a.is_ipv4() != p.addr.is_ipv4() {
                                r.err(
                                    v.span(),
                                    key("via"),
                                    format!("{a} and {p} are of different address families"),
                                );
                            }
                        }
                        let on_link = match (&nh.dev, dev_port) {
                            (Some(_), Some(p)) => on_link(p.1, a),
                            (Some(_), None) => true, // already reported
                            (None, _) => ifaces.iter().any(|p| on_link(p.1, a)),
                        };
                        if !on_link {
                            let scope = nh.dev.as_ref().map_or("any port's".to_string(), |d| {
                                format!("port `{}`'s", d.get_ref())
                            });
                            r.err(
                                v.span(),
                                key("via"),
                                format!("{a} is not inside {scope} connected subnets"),
                            );
                        }
                        Some(a)
                    }
                    Err(_) => {
                        r.err(
                            v.span(),
                            key("via"),
                            format!("`{}` is not an IP address", v.get_ref()),
                        );
                        None
                    }
                },
                None => None,
            };
            if nh.via.is_none() && nh.dev.is_none() {
                r.err(
                    nspan,
                    format!("route[{i}].nexthops[{j}]"),
                    "a next hop needs `via`, `dev`, or both",
                );
            }
            nexthops.push(NextHopConfig { via, dev: nh.dev.map(|d| d.into_inner()), weight });
        }
        if let Some(prefix) = prefix {
            routes.push(RouteConfig { prefix, nexthops, blackhole });
        }
    }
    let mut neighbors = Vec::new();
    for (i, n) in raw.neighbor.into_iter().enumerate() {
        let n = n.into_inner();
        let key = |k: &str| format!("neighbor[{i}].{k}");
        let port = ifaces.iter().find(|p| p.0 == *n.port.get_ref());
        match port {
            None => r.err(
                n.port.span(),
                key("port"),
                format!("no port or tunnel named `{}`", n.port.get_ref()),
            ),
            Some(p) if !p.2 => r.err(
                n.port.span(),
                key("port"),
                format!("`{}` is an ipip tunnel: it has no link layer, so no neighbours", p.0),
            ),
            Some(_) => {}
        }
        let address = match n.address.get_ref().parse::<IpAddr>() {
            Ok(a) => {
                if let Some(p) = port {
                    if !on_link(p.1, a) {
                        r.err(
                            n.address.span(),
                            key("address"),
                            format!("{a} is not inside `{}`'s subnets", p.0),
                        );
                    }
                }
                Some(a)
            }
            Err(_) => {
                r.err(
                    n.address.span(),
                    key("address"),
                    format!("`{}` is not an IP address", n.address.get_ref()),
                );
                None
            }
        };
        let mac = match n.mac.get_ref().parse::<Mac>() {
            Ok(m) if m.0[0] & 1 == 1 => {
                r.err(n.mac.span(), key("mac"), format!("{m} is a multicast address"));
                None
            }
            Ok(m) => Some(m),
            Err(e) => {
                r.err(n.mac.span(), key("mac"), e);
                None
            }
        };
        if let (Some(address), Some(mac)) = (address, mac) {
            neighbors.push(NeighborConfig { address, mac, port: n.port.into_inner() });
        }
    }
    Config { dataplane, ports, routes, neighbors, tunnels }
}

fn check_dataplane(r: &mut Report<'_>, d: Option<S<RawDataplane>>) -> DataplaneConfig {
    let mut out = DataplaneConfig {
        workers: vec![0],
        control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        poll: Poll::Adaptive,
        hash_seed: DEFAULT_HASH_SEED,
        metrics: None,
        eal_args: None,
    };
    let Some(d) = d else {
        r.err(0..0, "dataplane", "missing [dataplane] section (at least `workers = [CORE]`)");
        return out;
    };
    let span = d.span();
    let d = d.into_inner();
    match d.workers {
        None => r.err(
            span,
            "dataplane.workers",
            "`workers` is required: the cores of the poll-mode workers, e.g. [1]",
        ),
        Some(w) => {
            let mut cores = Vec::new();
            if w.get_ref().is_empty() {
                r.err(w.span(), "dataplane.workers", "at least one worker core");
            }
            for (i, c) in w.get_ref().iter().enumerate() {
                if !(0..=1023).contains(c.get_ref()) {
                    r.err(c.span(), format!("dataplane.workers[{i}]"), "a core number is 0..=1023");
                } else if cores.contains(&(*c.get_ref() as usize)) {
                    r.err(
                        c.span(),
                        format!("dataplane.workers[{i}]"),
                        format!("core {} is listed twice", c.get_ref()),
                    );
                } else {
                    cores.push(*c.get_ref() as usize);
                }
            }
            if !cores.is_empty() {
                out.workers = cores;
            }
        }
    }
    if let Some(s) = d.control_socket {
        if s.get_ref().is_empty() {
            r.err(s.span(), "dataplane.control_socket", "an empty path");
        } else {
            out.control_socket = PathBuf::from(s.into_inner());
        }
    }
    if let Some(p) = d.poll {
        match p.get_ref().as_str() {
            "busy" => out.poll = Poll::Busy,
            "adaptive" => out.poll = Poll::Adaptive,
            other => r.err(
                p.span(),
                "dataplane.poll",
                format!("unknown poll mode `{other}`; expected busy or adaptive"),
            ),
        }
    }
    if let Some(h) = d.hash_seed {
        out.hash_seed = *h.get_ref() as u64;
    }
    if let Some(m) = d.metrics {
        match m.get_ref().parse::<SocketAddr>() {
            Ok(a) => out.metrics = Some(a),
            Err(_) => r.err(
                m.span(),
                "dataplane.metrics",
                format!("`{}` is not ADDRESS:PORT", m.get_ref()),
            ),
        }
    }
    if let Some(a) = d.eal_args {
        let mut args = Vec::new();
        for (i, s) in a.get_ref().iter().enumerate() {
            let k = format!("dataplane.eal_args[{i}]");
            let v = s.get_ref();
            if v.is_empty() || v.contains('\0') {
                r.err(s.span(), k, "an EAL argument is a non-empty string");
            } else if v == "--vdev" || v.starts_with("--vdev=") {
                r.err(
                    s.span(),
                    k,
                    "ferroplane adds `--vdev` for each dpdk port's `interface` itself; name the \
                     device there",
                );
            } else {
                args.push(v.clone());
            }
        }
        if args.iter().any(|a| a == "--no-huge") && args.iter().any(|a| a == "--in-memory") {
            r.err(
                a.span(),
                "dataplane.eal_args",
                "EAL refuses `--in-memory` with `--no-huge`; without huge pages use \
                 [\"--no-pci\", \"--no-huge\", \"--no-shconf\"]",
            );
        }
        out.eal_args = Some(args);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"
[dataplane]
workers = [1]

[[port]]
name = "left"
driver = "memory"
mac = "02:00:00:00:00:01"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]

[[route]]
prefix = "198.51.100.0/24"
nexthops = [{ via = "10.1.0.2", weight = 3 }, { dev = "left" }]

[[neighbor]]
address = "10.1.0.2"
mac = "02:00:00:00:01:02"
port = "left"
"#;

    fn errors(text: &str) -> Vec<String> {
        parse_str(text, "t.toml").unwrap_err().0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn examples_parse_and_round_trip_through_to_toml() {
        for (name, text) in [
            ("good", GOOD.to_string()),
            (
                "router.toml",
                std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../examples/router.toml"
                ))
                .unwrap(),
            ),
            (
                "router-afxdp.toml",
                std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../examples/router-afxdp.toml"
                ))
                .unwrap(),
            ),
            (
                "router-dpdk.toml",
                std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../examples/router-dpdk.toml"
                ))
                .unwrap(),
            ),
        ] {
            let c = parse_str(&text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let again = parse_str(&c.to_toml(), "printed")
                .unwrap_or_else(|e| panic!("{name} printed back: {e}\n{}", c.to_toml()));
            assert_eq!(c, again, "{name}");
        }
        let c = parse_str(GOOD, "t").unwrap();
        assert_eq!(
            c.routes[0].nexthops[0],
            NextHopConfig { via: Some("10.1.0.2".parse().unwrap()), dev: None, weight: 3 }
        );
        assert_eq!(c.ports[0].mtu, 1500);
        assert_eq!(c.dataplane.poll, Poll::Adaptive);
    }

    #[test]
    fn xdp_modes_parse_check_and_print_back() {
        let text = r#"[dataplane]
workers = [1]

[[port]]
name = "up"
driver = "af_xdp"
interface = "eth0"
xdp_bind = "copy"
xdp_attach = "generic"
"#;
        let c = parse_str(text, "t").unwrap();
        assert_eq!(
            (c.ports[0].xdp_bind, c.ports[0].xdp_attach),
            (BindMode::Copy, AttachMode::Generic)
        );
        assert_eq!(parse_str(&c.to_toml(), "printed").unwrap(), c);
        let bad = text.replace("\"copy\"", "\"fast\"").replace("\"generic\"", "\"hw\"");
        let e = errors(&bad);
        assert!(e.iter().any(|l| l.contains("port[0].xdp_bind: xdp_bind is")), "{e:?}");
        assert!(e.iter().any(|l| l.contains("port[0].xdp_attach: xdp_attach is")), "{e:?}");
        let mem = "[[port]]\nname = \"m\"\ndriver = \"memory\"\nmac = \"02:00:00:00:00:01\"\nxdp_bind = \"copy\"\n";
        assert!(
            errors(mem).iter().any(|l| l.contains("applies to af_xdp ports only")),
            "{:?}",
            errors(mem)
        );
    }

    #[test]
    fn dpdk_keys_parse_check_and_print_back() {
        let text = r#"[dataplane]
workers = [1]
eal_args = ["--no-pci", "--in-memory", "--log-level=pmd.net.*:info"]

[[port]]
name = "up"
driver = "dpdk"
interface = "net_af_packet0,iface=eth0"
dpdk_rx_desc = 512
dpdk_tx_desc = 2048
"#;
        let c = parse_str(text, "t").unwrap();
        assert_eq!(c.dataplane.eal_args.as_ref().unwrap()[2], "--log-level=pmd.net.*:info");
        assert_eq!((c.ports[0].dpdk_rx_desc, c.ports[0].dpdk_tx_desc), (512, 2048));
        assert_eq!(parse_str(&c.to_toml(), "printed").unwrap(), c);
        let bad = text
            .replace("512", "16")
            .replace("net_af_packet0,iface=eth0", "eth0")
            .replace("\"--in-memory\"", "\"--vdev=net_ring0\"");
        assert_eq!(
            errors(&bad),
            vec![
                "t.toml:3:25: dataplane.eal_args[1]: ferroplane adds `--vdev` for each dpdk port's `interface` itself; name the device there",
                "t.toml:8:13: port[0].interface: `eth0` is neither a PCI address (0000:3b:00.0) nor a DPDK virtual device (net_af_packet0,iface=eth0; net_memif0,role=server; net_ring0; ...)",
                "t.toml:9:16: port[0].dpdk_rx_desc: dpdk_rx_desc must be 64..=4096 descriptors",
            ]
        );
        let afxdp = "[dataplane]\nworkers = [1]\n[[port]]\nname = \"a\"\ndriver = \"af_xdp\"\ninterface = \"eth0\"\ndpdk_tx_desc = 512\n";
        assert_eq!(
            errors(afxdp),
            vec!["t.toml:7:16: port[0].dpdk_tx_desc: dpdk_tx_desc applies to dpdk ports only"]
        );
        assert!(is_pci_address("3b:00.0") && is_pci_address("0000:3b:00.0,txq_inline=0"));
        assert!(!is_pci_address("net_ring0") && !is_pci_address("3b:00"));
        assert_eq!(dpdk_device_name("3b:00.1"), "0000:3b:00.1");
        assert_eq!(dpdk_device_name("net_memif0,role=server"), "net_memif0");
    }

    #[test]
    fn every_semantic_error_is_reported_with_its_place() {
        let text = r#"[dataplane]
workers = [1, 1]
poll = "sometimes"

[[port]]
name = "left"
driver = "memory"
addresses = ["10.1.0.1/24", "224.0.0.1/4"]

[[port]]
name = "left"
driver = "af_xdp"
mac = "01:00:5e:00:00:01"

[[route]]
prefix = "10.0.0.1/8"
nexthops = [{ via = "192.0.2.1" }, { dev = "nope", weight = 0 }, { via = "2001:db8::1" }]

[[neighbor]]
address = "10.9.0.1"
mac = "zz:00:00:00:00:01"
port = "left"
"#;
        assert_eq!(
            errors(text),
            vec![
                "t.toml:2:15: dataplane.workers[1]: core 1 is listed twice",
                "t.toml:3:8: dataplane.poll: unknown poll mode `sometimes`; expected busy or adaptive",
                "t.toml:5:1: port[0].mac: memory ports need a `mac`",
                "t.toml:8:29: port[0].addresses[1]: 224.0.0.1 cannot be an interface address (unspecified, multicast or broadcast)",
                "t.toml:10:1: port[1].interface: driver af_xdp needs `interface`",
                "t.toml:11:8: port[1].name: port name `left` is used twice",
                "t.toml:13:7: port[1].mac: 01:00:5e:00:00:01 is a multicast address; a port needs a unicast MAC",
                "t.toml:16:10: route[0].prefix: host bits set in 10.0.0.1/8: did you mean 10.0.0.0/8?",
                "t.toml:17:21: route[0].nexthops[0].via: 192.0.2.1 is not inside any port's connected subnets",
                "t.toml:17:44: route[0].nexthops[1].dev: no port or tunnel named `nope`",
                "t.toml:17:61: route[0].nexthops[1].weight: weight must be 1..=1000",
                "t.toml:17:74: route[0].nexthops[2].via: 2001:db8::1 is not inside any port's connected subnets",
                "t.toml:20:11: neighbor[0].address: 10.9.0.1 is not inside `left`'s subnets",
                "t.toml:21:7: neighbor[0].mac: `zz:00:00:00:00:01` is not a MAC address (`zz` is not hex)",
            ]
        );
    }

    #[test]
    fn syntax_type_and_unknown_key_errors_name_the_place() {
        assert_eq!(
            errors("[dataplane]\nworkers = [1\n"),
            vec!["t.toml:3:1: dataplane: invalid array expected `]`"]
        );
        let e = errors("[dataplane]\nworkers = \"one\"\n");
        assert!(
            e[0].starts_with(
                "t.toml:2:11: dataplane: invalid type: string \"one\", expected a sequence"
            ),
            "{e:?}"
        );
        let e = errors("[dataplane]\nworkers = [1]\nturbo = true\n");
        assert!(
            e[0].starts_with("t.toml:3:1: dataplane: unknown field `turbo`, expected one of"),
            "{e:?}"
        );
        let e = errors("[dataplane]\nworkers = [1]\n[[wireguard]]\nname = \"wg\"\n");
        assert_eq!(
            e,
            vec![
                "t.toml:3:1: wireguard: [[wireguard]] is not supported by this version of ferroplane"
            ]
        );
        let e = errors("[dataplane]\nworkers = [1]\n[[tunnel]]\nname = \"vx\"\n");
        assert_eq!(e, vec!["t.toml:3:1: tunnel: missing field `kind`"]);
        let e = errors("");
        assert_eq!(
            e,
            vec![
                "t.toml:1:1: dataplane: missing [dataplane] section (at least `workers = [CORE]`)"
            ]
        );
    }

    #[test]
    fn family_mismatch_and_blackhole_rules() {
        let base = "[dataplane]\nworkers = [0]\n[[port]]\nname = \"p\"\ndriver = \"memory\"\nmac = \"02:00:00:00:00:01\"\naddresses = [\"10.0.0.1/24\", \"2001:db8::1/64\"]\n";
        let e = errors(&format!("{base}[[route]]\nprefix = \"2001:db8:5::/48\"\nnexthops = [{{ via = \"10.0.0.2\" }}]\n"));
        assert_eq!(e, vec!["t.toml:10:21: route[0].nexthops[0].via: 10.0.0.2 and 2001:db8:5::/48 are of different address families"]);
        let e = errors(&format!("{base}[[route]]\nprefix = \"192.0.2.0/24\"\n"));
        assert_eq!(
            e,
            vec!["t.toml:8:1: route[0].nexthops: a route needs next hops (or `blackhole = true`)"]
        );
        assert!(parse_str(
            &format!("{base}[[route]]\nprefix = \"192.0.2.0/24\"\nblackhole = true\n"),
            "t"
        )
        .is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,300}") {
            let _ = parse_str(&s, "fuzz.toml");
        }

        #[test]
        fn mutated_good_file_never_panics(cut in 0usize..400, byte in any::<u8>()) {
            let mut b = GOOD.as_bytes().to_vec();
            let i = cut % b.len();
            b[i] = byte;
            let _ = parse_str(&String::from_utf8_lossy(&b), "fuzz.toml");
        }
    }
}
