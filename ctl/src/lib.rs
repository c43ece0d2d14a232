//! ferroplane's control protocol: one JSON request per line, one JSON reply per line, over a Unix
//! socket (default [`DEFAULT_SOCKET`], mode 0600).
//!
//! Requests carry the protocol version; every failure is a reply with a stable `code` and a
//! message a person can act on, never a dropped connection. The server side ([`server`]) bounds
//! each request line, so a client cannot make the daemon buffer without limit.

pub mod server;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Where the daemon listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/ferroplane/ctl.sock";
/// Longest request line the server reads (bytes, newline excluded).
pub const MAX_REQUEST: usize = 1 << 20;

/// A request as sent on the wire: `{"version":1,"cmd":"stats"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// What a client can ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The daemon's version and protocol.
    Version,
    /// Every counter: per port, per worker (drops and punts by reason), the slow path.
    Stats,
    /// Ports with their addresses and the AF_XDP modes chosen.
    PortShow,
    /// Adds a route or replaces the route for the same prefix.
    RouteAdd { route: RouteSpec },
    /// Removes a configured route (connected routes follow the ports' addresses).
    RouteDel { prefix: String },
    /// Every route: connected and configured.
    RouteShow,
    /// The route a destination takes (longest-prefix match in the live FIB).
    RouteGet { address: String },
    /// Many changes in one request (`fpctl route load`): each is checked, all are applied in
    /// one update, and the reply counts them. Deletions first, then additions.
    RouteBatch {
        #[serde(default)]
        add: Vec<RouteSpec>,
        #[serde(default)]
        del: Vec<String>,
    },
    /// Adds or replaces a static neighbour.
    NeighAdd { port: String, address: String, mac: String },
    /// Removes a neighbour (static or learned). `port` narrows it when the address is on
    /// several ports.
    NeighDel {
        #[serde(default)]
        port: Option<String>,
        address: String,
    },
    /// Static and learned neighbours.
    NeighShow,
    /// Traces the next `count` packets received (every stage's verdict).
    TraceAdd { count: u32 },
    /// The packets traced so far; `clear` forgets them after replying.
    TraceShow {
        #[serde(default)]
        clear: bool,
    },
    /// Writes the frames of a port to a pcap file (the daemon writes `file`).
    CaptureStart {
        port: String,
        file: String,
        #[serde(default)]
        count: Option<u64>,
        #[serde(default = "both")]
        direction: String,
    },
    /// Stops the running capture and finishes its file.
    CaptureStop,
    /// The running configuration as TOML (the file plus every run-time change).
    ConfigShow,
    /// Replaces the running configuration by `toml`: checked fully, then applied as a
    /// difference; a file with any error changes nothing.
    ConfigApply {
        toml: String,
        /// Where the text came from, for error messages.
        #[serde(default)]
        source: Option<String>,
    },
    /// Adds a tunnel: `toml` is one `[[tunnel]]` section of the config file (with its
    /// `[[tunnel.fdb]]` entries), checked like the file.
    TunnelAdd { toml: String },
    /// Removes a tunnel (refused while routes or neighbours still use it).
    TunnelDel { name: String },
    /// Every tunnel with its interface state.
    TunnelShow,
    /// The forwarding database of multipoint tunnels, static and learned entries.
    FdbShow {
        #[serde(default)]
        tunnel: Option<String>,
    },
}

fn both() -> String {
    "both".into()
}

fn one() -> u32 {
    1
}

/// A route as the protocol states it. Addresses are strings so that the daemon, not the JSON
/// decoder, explains what is wrong with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub prefix: String,
    #[serde(default)]
    pub nexthops: Vec<NextHop>,
    #[serde(default)]
    pub blackhole: bool,
}

/// One member of a route's next-hop group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHop {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default = "one")]
    pub weight: u32,
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Version {
        daemon: String,
        protocol: u32,
    },
    Stats(Stats),
    Ports {
        ports: Vec<PortInfo>,
    },
    /// A change is live (the message says what it did).
    Ok {
        message: String,
    },
    Routes {
        routes: Vec<RouteEntry>,
    },
    RouteLookup {
        address: String,
        route: Option<RouteEntry>,
    },
    Neighbours {
        neighbours: Vec<NeighEntry>,
    },
    Trace {
        pending: u32,
        packets: Vec<TracedPacket>,
    },
    Capture(CaptureStatus),
    Config {
        toml: String,
    },
    Tunnels {
        tunnels: Vec<TunnelEntry>,
    },
    Fdb {
        entries: Vec<FdbEntry>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Stable error codes, for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a request of this protocol.
    BadRequest,
    /// A request newer or older than this daemon speaks.
    UnsupportedVersion,
    /// The line was longer than [`MAX_REQUEST`]; the connection is closed after this reply.
    RequestTooLarge,
    /// A well-formed request with a value the daemon refuses (bad prefix, unknown port, ...).
    InvalidArgument,
    /// The thing to change or show does not exist.
    NotFound,
    /// Too many clients or requests at once: try again.
    Busy,
    /// The daemon could not do it (the message says why).
    Failed,
}

impl Reply {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error { code, message: message.into() }
    }

    pub fn ok(message: impl Into<String>) -> Reply {
        Reply::Ok { message: message.into() }
    }
}

/// One route of `route show` / `route get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub prefix: String,
    pub nexthops: Vec<NextHop>,
    pub blackhole: bool,
    /// "connected" (from a port's address) or "static" (file or control socket).
    pub origin: String,
}

/// One neighbour of `neigh show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighEntry {
    pub port: String,
    pub address: String,
    pub mac: String,
    /// "static" or "reachable" (learned).
    pub state: String,
}

/// One tunnel of `tunnel show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelEntry {
    pub name: String,
    /// vxlan, geneve or ipip.
    pub kind: String,
    pub local: String,
    /// None: multipoint (the FDB picks the remote per inner MAC).
    pub remote: Option<String>,
    pub vni: Option<u32>,
    pub dst_port: Option<u16>,
    pub ttl: u8,
    pub mtu: u16,
    /// The overlay interface's MAC (vxlan, geneve).
    pub mac: Option<String>,
    pub addresses: Vec<String>,
    /// Geneve options sent, as `class:type:hexdata`.
    #[serde(default)]
    pub options: Vec<String>,
}

/// One entry of `fdb show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    pub tunnel: String,
    pub mac: String,
    pub remote: String,
    /// "static" or "learned".
    pub state: String,
}

/// One stage's verdict on a traced packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    pub stage: String,
    pub verdict: String,
}

/// A traced packet: where it came in, what it was, what every stage said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedPacket {
    pub worker: usize,
    pub port: String,
    pub timestamp_ns: u64,
    pub len: usize,
    /// One-line decode, e.g. `10.0.0.1:1234 > 10.1.0.2:80 udp ttl 64`.
    pub summary: String,
    pub steps: Vec<TraceStep>,
}

/// A capture's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStatus {
    pub port: String,
    pub file: String,
    pub direction: String,
    pub written: u64,
    pub dropped: u64,
    pub running: bool,
}

/// Counters of one port (summed over the workers that serve it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Counters of one worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub id: usize,
    pub bursts: u64,
    pub empty_polls: u64,
    pub busy_ns: u64,
    /// Every drop reason, zeroes included.
    pub drops: BTreeMap<String, u64>,
    pub punts: BTreeMap<String, u64>,
}

/// Everything `fpctl stats` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub ports: Vec<PortStats>,
    /// Tunnel interfaces: packets and bytes decapsulated (rx) and encapsulated (tx), inner frames.
    #[serde(default)]
    pub tunnels: Vec<PortStats>,
    pub workers: Vec<WorkerStats>,
    pub slow_path: BTreeMap<String, u64>,
    pub slow_path_drops: BTreeMap<String, u64>,
}

/// A port as `fpctl port show` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    pub driver: String,
    pub interface: Option<String>,
    pub mac: String,
    pub mtu: u16,
    pub addresses: Vec<String>,
    pub queues: u16,
    /// AF_XDP: the bind and attach modes chosen, e.g. "copy/native"; DPDK: the PMD and queues.
    pub mode: Option<String>,
    /// DPDK: the link as the device reports it now ("up 10 Gbps full-duplex", "down").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// DPDK: the device's counters (rte_eth_stats) and the port's own (mempool exhaustion,
    /// refused transmits, link changes), read when asked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device_counters: BTreeMap<String, u64>,
}

/// Why a client call failed.
#[derive(Debug)]
pub enum ClientError {
    Connect(std::io::Error),
    Io(std::io::Error),
    Decode(String),
    Closed,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(e) => write!(
                f,
                "cannot reach the daemon: {e} (is `ferroplane run` up, and is this its --socket?)"
            ),
            ClientError::Io(e) => write!(f, "control socket: {e}"),
            ClientError::Decode(e) => write!(f, "cannot read the daemon's reply: {e}"),
            ClientError::Closed => write!(f, "the daemon closed the connection without replying"),
        }
    }
}

impl std::error::Error for ClientError {}

/// How long a client waits for a reply (a full-table `config apply` takes seconds).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to the daemon for many requests (`route load` sends thousands).
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(socket).map_err(ClientError::Connect)?;
        s.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(ClientError::Io)?;
        let reader = BufReader::new(s.try_clone().map_err(ClientError::Io)?);
        Ok(Client { writer: s, reader })
    }

    /// Sends one request and reads its reply.
    pub fn request(&mut self, request: Request) -> Result<Reply, ClientError> {
        let mut line = serde_json::to_string(&Envelope { version: PROTOCOL_VERSION, request })
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(ClientError::Io)?;
        let mut reply = String::new();
        if self.reader.read_line(&mut reply).map_err(ClientError::Io)? == 0 {
            return Err(ClientError::Closed);
        }
        serde_json::from_str(&reply).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// Sends one request on a new connection and reads its reply.
pub fn call(socket: &Path, request: Request) -> Result<Reply, ClientError> {
    Client::connect(socket)?.request(request)
}

/// Only the version of a request line, read first so that a request from another protocol
/// version gets `unsupported_version` rather than whatever its fields would cause.
#[derive(Deserialize)]
struct VersionProbe<'a> {
    version: Option<serde_json::Value>,
    #[serde(borrow)]
    cmd: Option<std::borrow::Cow<'a, str>>,
}

/// The body of a `route_batch` request, decoded without the enum's tag buffering.
#[derive(Deserialize)]
struct RouteBatchBody {
    #[serde(default)]
    add: Vec<RouteSpec>,
    #[serde(default)]
    del: Vec<String>,
}

/// Decodes one request line, or says why not (as the reply to send).
///
/// Two passes over the text, neither building a `serde_json::Value` tree: the version probe
/// skips everything else, then the request is decoded straight into [`Request`]. Going through
/// a `Value` (and `#[serde(flatten)]`) made a 10,000-route `route_batch` line cost ~75 ms of
/// allocations; this way it is a few ms.
pub fn decode(line: &str) -> Result<Request, Reply> {
    let probe: VersionProbe = serde_json::from_str(line).map_err(|e| Reply::Error {
        code: ErrorCode::BadRequest,
        message: format!("not a JSON request object: {e}"),
    })?;
    match probe.version.as_ref().map(|v| v.as_u64()) {
        Some(Some(v)) if v == PROTOCOL_VERSION as u64 => {}
        Some(Some(v)) => {
            return Err(Reply::Error {
                code: ErrorCode::UnsupportedVersion,
                message: format!(
                    "protocol version {v} is not supported; this daemon speaks {PROTOCOL_VERSION}"
                ),
            })
        }
        _ => {
            return Err(Reply::Error {
                code: ErrorCode::BadRequest,
                message: "missing `version` (a number): send {\"version\":1,\"cmd\":...}".into(),
            })
        }
    }
    let bad = |e: serde_json::Error| Reply::Error {
        code: ErrorCode::BadRequest,
        message: format!("bad request: {e}"),
    };
    // The bulk request skips the internally tagged enum, which buffers every field before it
    // can pick the variant (a second copy of a 10,000-route batch).
    if probe.cmd.as_deref() == Some("route_batch") {
        let b: RouteBatchBody = serde_json::from_str(line).map_err(bad)?;
        return Ok(Request::RouteBatch { add: b.add, del: b.del });
    }
    serde_json::from_str::<Request>(line).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let s =
            serde_json::to_string(&Envelope { version: 1, request: Request::PortShow }).unwrap();
        assert_eq!(s, r#"{"version":1,"cmd":"port_show"}"#);
        assert_eq!(decode(&s), Ok(Request::PortShow));
    }

    #[test]
    fn route_batch_fast_path_decodes_like_the_enum() {
        let req = Request::RouteBatch {
            add: vec![RouteSpec {
                prefix: "10.0.0.0/8".into(),
                nexthops: vec![NextHop { via: Some("10.2.0.2".into()), dev: None, weight: 3 }],
                blackhole: false,
            }],
            del: vec!["192.0.2.0/24".into()],
        };
        let line = serde_json::to_string(&Envelope { version: 1, request: req.clone() }).unwrap();
        assert_eq!(decode(&line), Ok(req.clone()));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), req);
        let code = |l: &str| match decode(l) {
            Err(Reply::Error { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(r#"{"version":1,"cmd":"route_batch","add":7}"#), ErrorCode::BadRequest);
    }

    #[test]
    fn bad_requests_get_coded_errors() {
        let code = |l: &str| match decode(l) {
            Err(Reply::Error { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code("{"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"cmd":"stats"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"version":9,"cmd":"stats"}"#), ErrorCode::UnsupportedVersion);
        assert_eq!(code(r#"{"version":1,"cmd":"reboot"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"version":"1","cmd":"stats"}"#), ErrorCode::BadRequest);
    }
}
