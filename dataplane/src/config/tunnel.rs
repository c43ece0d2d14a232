//! `[[tunnel]]` sections: VXLAN, Geneve and IP-in-IP tunnels, each an L3 interface of ferroplane.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use ferroplane_pipeline::tunnel::TunnelKind;
use serde::Deserialize;

use super::{IfAddr, Mac, PortConfig, Report, S};

/// Outer header room in the packet buffer: Geneve options beyond this do not fit the headroom
/// together with Ethernet, IPv6, UDP and the Geneve base header.
pub const MAX_GENEVE_OPTIONS: usize = 124;

/// One Geneve option to send: class, type (its high bit is the critical bit) and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneveOption {
    pub class: u16,
    pub kind: u8,
    pub data: Vec<u8>,
}

/// A static FDB entry of a multipoint tunnel: where frames for `mac` go (`00:00:00:00:00:00`:
/// broadcast, multicast and unknown unicast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbConfig {
    pub mac: Mac,
    pub remote: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    pub name: String,
    pub kind: TunnelKind,
    pub local: IpAddr,
    pub remote: Option<IpAddr>,
    pub vni: u32,
    pub dst_port: u16,
    pub ttl: u8,
    /// Configured MTU, or `None`: the underlay port's MTU minus the tunnel's overhead.
    pub mtu: Option<u16>,
    pub addresses: Vec<IfAddr>,
    pub options: Vec<GeneveOption>,
    pub mac: Option<Mac>,
    /// IPv6 outer UDP checksum (true) or zero (RFC 6935).
    pub udp_checksum: bool,
    pub fdb: Vec<FdbConfig>,
}

impl TunnelConfig {
    /// The overlay MAC: configured, or derived from the name (FNV-1a), so it stays the same
    /// across restarts; locally administered, unicast.
    pub fn mac_or_derived(&self) -> [u8; 6] {
        if let Some(m) = self.mac {
            return m.0;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.name.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        let b = h.to_be_bytes();
        [0x02, b[1], b[2], b[3], b[4], b[5]]
    }

    /// The Geneve options as TLV bytes.
    pub fn encoded_options(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for o in &self.options {
            out.extend_from_slice(&o.class.to_be_bytes());
            out.push(o.kind);
            out.push((o.data.len() / 4) as u8);
            out.extend_from_slice(&o.data);
        }
        out
    }

    /// Outer header bytes in front of the inner IP packet.
    pub fn overhead(&self) -> usize {
        let ip = if self.local.is_ipv6() { 40 } else { 20 };
        let opts: usize = self.options.iter().map(|o| 4 + o.data.len()).sum();
        match self.kind {
            TunnelKind::Vxlan => ip + 8 + 8 + 14,
            TunnelKind::Geneve => ip + 8 + 8 + opts + 14,
            TunnelKind::Ipip => ip,
        }
    }

    /// The tunnel's MTU given its underlay port's.
    pub fn effective_mtu(&self, underlay_mtu: u16) -> u16 {
        self.mtu.unwrap_or_else(|| underlay_mtu.saturating_sub(self.overhead() as u16))
    }

    pub fn on_link(&self, ip: IpAddr) -> bool {
        self.addresses.iter().any(|a| a.contains(ip))
    }

    /// The `[[tunnel]]` section that reads back to this tunnel.
    pub fn to_toml(&self, o: &mut String) {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let _ =
            writeln!(o, "\n[[tunnel]]\nname = {}\nkind = \"{}\"", q(&self.name), self.kind.name());
        let _ = writeln!(o, "local = \"{}\"", self.local);
        if let Some(r) = self.remote {
            let _ = writeln!(o, "remote = \"{r}\"");
        }
        if self.kind != TunnelKind::Ipip {
            let _ = writeln!(o, "vni = {}\ndst_port = {}", self.vni, self.dst_port);
        }
        let _ = writeln!(o, "ttl = {}", self.ttl);
        if let Some(m) = self.mtu {
            let _ = writeln!(o, "mtu = {m}");
        }
        let addrs: Vec<String> = self.addresses.iter().map(|a| format!("\"{a}\"")).collect();
        let _ = writeln!(o, "addresses = [{}]", addrs.join(", "));
        if let Some(m) = self.mac {
            let _ = writeln!(o, "mac = \"{m}\"");
        }
        if !self.udp_checksum {
            let _ = writeln!(o, "udp_checksum = false");
        }
        if !self.options.is_empty() {
            let opts: Vec<String> = self
                .options
                .iter()
                .map(|op| {
                    let hex: String = op.data.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{{ class = {}, type = {}, data = \"{hex}\" }}", op.class, op.kind)
                })
                .collect();
            let _ = writeln!(o, "options = [{}]", opts.join(", "));
        }
        for f in &self.fdb {
            let _ = writeln!(o, "\n[[tunnel.fdb]]\nmac = \"{}\"\nremote = \"{}\"", f.mac, f.remote);
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    name: S<String>,
    kind: S<String>,
    local: Option<S<String>>,
    remote: Option<S<String>>,
    vni: Option<S<i64>>,
    dst_port: Option<S<i64>>,
    ttl: Option<S<i64>>,
    mtu: Option<S<i64>>,
    #[serde(default)]
    addresses: Vec<S<String>>,
    #[serde(default)]
    options: Vec<S<RawOption>>,
    mac: Option<S<String>>,
    udp_checksum: Option<S<bool>>,
    #[serde(default)]
    fdb: Vec<S<RawFdb>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOption {
    class: S<i64>,
    #[serde(rename = "type")]
    kind: S<i64>,
    #[serde(default)]
    data: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFdb {
    mac: S<String>,
    remote: S<String>,
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_start_matches("0x");
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Checks the `[[tunnel]]` sections against the ports. `names` holds the port names (tunnel
/// names must differ from them and from each other); `seen_addrs` every address configured so
/// far.
pub(super) fn check_tunnels(
    r: &mut Report<'_>,
    raw: Vec<S<RawTunnel>>,
    ports: &[PortConfig],
    names: &mut HashSet<String>,
    seen_addrs: &mut HashSet<IpAddr>,
) -> Vec<TunnelConfig> {
    let mut out = Vec::new();
    // (listener, local, vni, remote) of each tunnel, and the kind on each UDP port.
    let mut keys = HashSet::new();
    let mut udp_kinds: Vec<(u16, TunnelKind)> = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let span = t.span();
        let t = t.into_inner();
        let key = |k: &str| format!("tunnel[{i}].{k}");
        let name = t.name.get_ref().clone();
        if name.is_empty()
            || name.len() > 15
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            r.err(t.name.span(), key("name"), "a tunnel name is 1-15 letters, digits, `-` and `_`");
        }
        if !names.insert(name.clone()) {
            r.err(t.name.span(), key("name"), format!("name `{name}` is already a port or tunnel"));
        }
        let kind = match t.kind.get_ref().as_str() {
            "vxlan" => TunnelKind::Vxlan,
            "geneve" => TunnelKind::Geneve,
            "ipip" => TunnelKind::Ipip,
            "wireguard" => {
                r.err(
                    t.kind.span(),
                    key("kind"),
                    "wireguard tunnels are not supported by this version of ferroplane",
                );
                continue;
            }
            other => {
                r.err(
                    t.kind.span(),
                    key("kind"),
                    format!("unknown kind `{other}`; expected vxlan, geneve or ipip"),
                );
                continue;
            }
        };
        let l2 = kind.l2();
        let ip = |r: &mut Report<'_>, v: &S<String>, k: &str| match v.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                r.err(v.span(), key(k), format!("`{}` is not an IP address", v.get_ref()));
                None
            }
        };
        let local = match &t.local {
            None => {
                r.err(
                    span.clone(),
                    key("local"),
                    "a tunnel needs `local`, one of the ports' addresses",
                );
                None
            }
            Some(v) => ip(r, v, "local"),
        };
        let underlay =
            local.and_then(|a| ports.iter().find(|p| p.addresses.iter().any(|x| x.addr == a)));
        if let (Some(a), None, Some(v)) = (local, underlay, &t.local) {
            r.err(v.span(), key("local"), format!("{a} is not an address of any port"));
        }
        let remote = t.remote.as_ref().and_then(|v| {
            let a = ip(r, v, "remote")?;
            if local.is_some_and(|l| l.is_ipv4() != a.is_ipv4()) {
                r.err(
                    v.span(),
                    key("remote"),
                    "remote and local are of different address families",
                );
            }
            if ports.iter().any(|p| p.addresses.iter().any(|x| x.addr == a)) {
                r.err(
                    v.span(),
                    key("remote"),
                    format!("{a} is our own address: a tunnel to itself loops"),
                );
            }
            Some(a)
        });
        if kind == TunnelKind::Ipip && t.remote.is_none() {
            r.err(
                span.clone(),
                key("remote"),
                "an ipip tunnel is point-to-point: it needs `remote`",
            );
        }
        let vni = match (&t.vni, l2) {
            (Some(v), true) if !(0..1 << 24).contains(v.get_ref()) => {
                r.err(v.span(), key("vni"), "vni must be 0..=16777215 (24 bits)");
                0
            }
            (Some(v), true) => *v.get_ref() as u32,
            (None, true) => {
                r.err(span.clone(), key("vni"), format!("a {} tunnel needs `vni`", kind.name()));
                0
            }
            (Some(v), false) => {
                r.err(v.span(), key("vni"), "ipip tunnels have no VNI");
                0
            }
            (None, false) => 0,
        };
        let default_port = match kind {
            TunnelKind::Vxlan => 4789,
            TunnelKind::Geneve => 6081,
            TunnelKind::Ipip => 0,
        };
        let dst_port = match (&t.dst_port, l2) {
            (Some(p), true) if !(1..=65535).contains(p.get_ref()) => {
                r.err(p.span(), key("dst_port"), "dst_port must be 1..=65535");
                default_port
            }
            (Some(p), true) => *p.get_ref() as u16,
            (Some(p), false) => {
                r.err(p.span(), key("dst_port"), "ipip tunnels have no UDP port");
                0
            }
            (None, _) => default_port,
        };
        let ttl = match &t.ttl {
            Some(v) if !(1..=255).contains(v.get_ref()) => {
                r.err(v.span(), key("ttl"), "ttl must be 1..=255");
                64
            }
            Some(v) => *v.get_ref() as u8,
            None => 64,
        };
        let mut options = Vec::new();
        for (j, o) in t.options.iter().enumerate() {
            let o = o.get_ref();
            let okey = |k: &str| format!("tunnel[{i}].options[{j}].{k}");
            if kind != TunnelKind::Geneve {
                r.err(
                    o.class.span(),
                    format!("tunnel[{i}].options"),
                    "only geneve tunnels carry options",
                );
                break;
            }
            let class = *o.class.get_ref();
            if !(0..=0xffff).contains(&class) {
                r.err(o.class.span(), okey("class"), "class must be 0..=65535");
            }
            let k = *o.kind.get_ref();
            if !(0..=255).contains(&k) {
                r.err(o.kind.span(), okey("type"), "type must be 0..=255 (128 and up: critical)");
            }
            let data = match &o.data {
                None => Vec::new(),
                Some(d) => match parse_hex(d.get_ref()) {
                    Some(b) if b.len().is_multiple_of(4) && b.len() <= 124 => b,
                    _ => {
                        r.err(
                            d.span(),
                            okey("data"),
                            "data is hex, a multiple of 4 bytes, at most 124 bytes",
                        );
                        Vec::new()
                    }
                },
            };
            options.push(GeneveOption { class: class as u16, kind: k as u8, data });
        }
        let opts_len: usize = options.iter().map(|o| 4 + o.data.len()).sum();
        if opts_len > MAX_GENEVE_OPTIONS {
            r.err(span.clone(), key("options"), format!("options take {opts_len} bytes; at most {MAX_GENEVE_OPTIONS} fit the packet headroom"));
        }
        let mut addresses = Vec::new();
        for (j, a) in t.addresses.iter().enumerate() {
            match a.get_ref().parse::<IfAddr>() {
                Ok(ia) => {
                    if !seen_addrs.insert(ia.addr) {
                        r.err(
                            a.span(),
                            format!("tunnel[{i}].addresses[{j}]"),
                            format!("{} is configured twice", ia.addr),
                        );
                    }
                    addresses.push(ia);
                }
                Err(e) => r.err(a.span(), format!("tunnel[{i}].addresses[{j}]"), e),
            }
        }
        let mac = match (&t.mac, l2) {
            (Some(m), false) => {
                r.err(m.span(), key("mac"), "ipip tunnels have no link layer");
                None
            }
            (Some(m), true) => match m.get_ref().parse::<Mac>() {
                Ok(mac) if mac.0[0] & 1 == 1 => {
                    r.err(m.span(), key("mac"), format!("{mac} is a multicast address"));
                    None
                }
                Ok(mac) => Some(mac),
                Err(e) => {
                    r.err(m.span(), key("mac"), e);
                    None
                }
            },
            (None, _) => None,
        };
        let udp_checksum = match &t.udp_checksum {
            Some(c) if !l2 || local.is_some_and(|a| a.is_ipv4()) => {
                r.err(c.span(), key("udp_checksum"), "udp_checksum applies to vxlan/geneve tunnels over IPv6 (IPv4 outer headers always carry a zero checksum)");
                true
            }
            Some(c) => *c.get_ref(),
            None => true,
        };
        let mut fdb = Vec::new();
        for (j, f) in t.fdb.iter().enumerate() {
            let f = f.get_ref();
            let fkey = |k: &str| format!("tunnel[{i}].fdb[{j}].{k}");
            if !l2 || t.remote.is_some() {
                r.err(
                    f.mac.span(),
                    format!("tunnel[{i}].fdb"),
                    "fdb entries belong to multipoint vxlan/geneve tunnels (no `remote`)",
                );
                break;
            }
            let mac = match f.mac.get_ref().parse::<Mac>() {
                Ok(m) => Some(m),
                Err(e) => {
                    r.err(f.mac.span(), fkey("mac"), e);
                    None
                }
            };
            let remote = match f.remote.get_ref().parse::<IpAddr>() {
                Ok(a) if local.is_some_and(|l| l.is_ipv4() != a.is_ipv4()) => {
                    r.err(
                        f.remote.span(),
                        fkey("remote"),
                        "remote and local are of different address families",
                    );
                    None
                }
                Ok(a) => Some(a),
                Err(_) => {
                    r.err(
                        f.remote.span(),
                        fkey("remote"),
                        format!("`{}` is not an IP address", f.remote.get_ref()),
                    );
                    None
                }
            };
            if let (Some(mac), Some(remote)) = (mac, remote) {
                fdb.push(FdbConfig { mac, remote });
            }
        }
        let Some(local) = local else { continue };
        let cfg = TunnelConfig {
            name,
            kind,
            local,
            remote,
            vni,
            dst_port,
            ttl,
            mtu: None,
            addresses,
            options,
            mac,
            udp_checksum,
            fdb,
        };
        let underlay_mtu = underlay.map_or(1500, |p| p.mtu);
        let max = underlay_mtu.saturating_sub(cfg.overhead() as u16);
        let mtu = match &t.mtu {
            Some(m) if !(68..=max as i64).contains(m.get_ref()) => {
                r.err(m.span(), key("mtu"), format!("mtu must be 68..={max}: the underlay port's {underlay_mtu} minus {} bytes of tunnel overhead", cfg.overhead()));
                None
            }
            Some(m) => Some(*m.get_ref() as u16),
            None => None,
        };
        if mtu.unwrap_or(max) < 1280 && cfg.addresses.iter().any(|a| a.addr.is_ipv6()) {
            r.err(
                span.clone(),
                key("mtu"),
                format!(
                    "IPv6 needs mtu >= 1280 (RFC 8200); this tunnel's is {}",
                    mtu.unwrap_or(max)
                ),
            );
        }
        if mtu.is_none() && max < 68 {
            r.err(
                span.clone(),
                key("mtu"),
                "the underlay MTU leaves no room for the tunnel's overhead",
            );
        }
        let listener = if l2 { dst_port as u32 } else { 1 << 16 };
        if !keys.insert((listener, local, cfg.vni, remote)) {
            r.err(
                span.clone(),
                key("vni"),
                "another tunnel already receives the same local, vni and remote",
            );
        }
        if l2 {
            match udp_kinds.iter().find(|(p, _)| *p == dst_port) {
                Some((_, k)) if *k != kind => r.err(
                    // At `dst_port` when the file sets it, else at the tunnel (the default).
                    t.dst_port.as_ref().map_or(span.clone(), |p| p.span()),
                    key("dst_port"),
                    format!(
                        "UDP port {dst_port} is used by a {} tunnel: one port, one header format",
                        k.name()
                    ),
                ),
                Some(_) => {}
                None => udp_kinds.push((dst_port, kind)),
            }
        }
        out.push(TunnelConfig { mtu, ..cfg });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse_str;

    const BASE: &str = "[dataplane]\nworkers = [1]\n[[port]]\nname = \"p\"\ndriver = \"memory\"\nmac = \"02:00:00:00:00:01\"\naddresses = [\"10.2.0.1/24\", \"2001:db8::1/64\"]\n";

    fn errors(extra: &str) -> Vec<String> {
        let text = format!("{BASE}{extra}");
        parse_str(&text, "t.toml").unwrap_err().0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn defaults_are_derived_and_the_file_round_trips() {
        let text = format!(
            "{BASE}[[tunnel]]\nname = \"vx0\"\nkind = \"vxlan\"\nlocal = \"10.2.0.1\"\nvni = 5\naddresses = [\"10.9.0.1/24\"]\n[[tunnel.fdb]]\nmac = \"00:00:00:00:00:00\"\nremote = \"10.2.0.7\"\n[[tunnel]]\nname = \"g6\"\nkind = \"geneve\"\nlocal = \"2001:db8::1\"\nremote = \"2001:db8::2\"\nvni = 6\nudp_checksum = false\noptions = [{{ class = 258, type = 129, data = \"01020304\" }}]\n[[tunnel]]\nname = \"ip\"\nkind = \"ipip\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.3\"\n[[route]]\nprefix = \"10.8.0.0/16\"\nnexthops = [{{ via = \"10.9.0.2\" }}]\n[[route]]\nprefix = \"10.7.0.0/16\"\nnexthops = [{{ dev = \"ip\" }}]\n[[neighbor]]\naddress = \"10.9.0.2\"\nmac = \"02:00:00:00:09:02\"\nport = \"vx0\"\n"
        );
        let cfg = parse_str(&text, "t.toml").unwrap();
        let [vx, g6, ip] = cfg.tunnels.as_slice() else { panic!("{:?}", cfg.tunnels) };
        assert_eq!((vx.dst_port, vx.ttl, vx.effective_mtu(1500)), (4789, 64, 1450));
        assert_eq!((g6.dst_port, g6.effective_mtu(1500)), (6081, 1500 - 40 - 8 - 8 - 8 - 14));
        assert_eq!(ip.effective_mtu(1500), 1480);
        assert!(!g6.udp_checksum);
        assert_eq!(g6.encoded_options(), [1, 2, 129, 1, 1, 2, 3, 4]);
        // The derived MAC is a stable, unicast, locally administered function of the name.
        let m = vx.mac_or_derived();
        assert_eq!(m[0], 0x02);
        assert_eq!(m, parse_str(&text, "t.toml").unwrap().tunnels[0].mac_or_derived());
        assert_ne!(m, g6.mac_or_derived());
        let back = parse_str(&cfg.to_toml(), "back.toml").unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn every_tunnel_error_is_reported_with_its_place() {
        let e = errors(
            "[[tunnel]]\nname = \"p\"\nkind = \"vxlan\"\nlocal = \"10.2.0.9\"\nremote = \"2001:db8::5\"\nvni = 16777216\nttl = 0\n\
             [[tunnel]]\nname = \"ip\"\nkind = \"ipip\"\nlocal = \"10.2.0.1\"\nvni = 3\nmac = \"02:00:00:00:00:09\"\n\
             [[tunnel]]\nname = \"g\"\nkind = \"geneve\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.1\"\nvni = 1\ndst_port = 4789\noptions = [{ class = 1, type = 2, data = \"010203\" }]\nmtu = 1490\n\
             [[tunnel]]\nname = \"v\"\nkind = \"vxlan\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.4\"\nvni = 9\n\
             [[tunnel]]\nname = \"w\"\nkind = \"wireguard\"\n\
             [[tunnel]]\nname = \"x\"\nkind = \"vxlan\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.4\"\nvni = 9\n[[tunnel.fdb]]\nmac = \"00:00:00:00:00:00\"\nremote = \"10.2.0.5\"\n\
             [[neighbor]]\naddress = \"10.2.0.3\"\nmac = \"02:00:00:00:00:03\"\nport = \"ip\"\n",
        );
        let want = [
            "t.toml:9:8: tunnel[0].name: name `p` is already a port or tunnel",
            "t.toml:11:9: tunnel[0].local: 10.2.0.9 is not an address of any port",
            "t.toml:12:10: tunnel[0].remote: remote and local are of different address families",
            "t.toml:13:7: tunnel[0].vni: vni must be 0..=16777215 (24 bits)",
            "t.toml:14:7: tunnel[0].ttl: ttl must be 1..=255",
            "t.toml:15:1: tunnel[1].remote: an ipip tunnel is point-to-point: it needs `remote`",
            "t.toml:19:7: tunnel[1].vni: ipip tunnels have no VNI",
            "t.toml:20:7: tunnel[1].mac: ipip tunnels have no link layer",
            "t.toml:25:10: tunnel[2].remote: 10.2.0.1 is our own address: a tunnel to itself loops",
            "t.toml:27:12: tunnel[2].dst_port: UDP port 4789 is used by a vxlan tunnel: one port, one header format",
            "t.toml:28:42: tunnel[2].options[0].data: data is hex, a multiple of 4 bytes, at most 124 bytes",
            "t.toml:29:7: tunnel[2].mtu: mtu must be 68..=1446: the underlay port's 1500 minus 54 bytes of tunnel overhead",
            "t.toml:38:8: tunnel[4].kind: wireguard tunnels are not supported by this version of ferroplane",
            "t.toml:39:1: tunnel[5].vni: another tunnel already receives the same local, vni and remote",
            "t.toml:46:7: tunnel[5].fdb: fdb entries belong to multipoint vxlan/geneve tunnels (no `remote`)",
            "t.toml:49:11: neighbor[0].address: 10.2.0.3 is not inside `ip`'s subnets",
            "t.toml:51:8: neighbor[0].port: `ip` is an ipip tunnel: it has no link layer, so no neighbours",
        ];
        assert_eq!(e, want, "\n{}", e.join("\n"));
    }
}
