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
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Version { daemon: String, protocol: u32 },
    Stats(Stats),
    Ports { ports: Vec<PortInfo> },
    Error { code: ErrorCode, message: String },
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
    /// The daemon could not do it (the message says why).
    Failed,
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
    /// AF_XDP: the bind and attach modes chosen, e.g. "copy/native".
    pub mode: Option<String>,
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

/// Sends one request and reads its reply.
pub fn call(socket: &Path, request: Request) -> Result<Reply, ClientError> {
    let mut s = UnixStream::connect(socket).map_err(ClientError::Connect)?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(ClientError::Io)?;
    let mut line = serde_json::to_string(&Envelope { version: PROTOCOL_VERSION, request })
        .map_err(|e| ClientError::Decode(e.to_string()))?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(ClientError::Io)?;
    let mut r = BufReader::new(s);
    let mut reply = String::new();
    if r.read_line(&mut reply).map_err(ClientError::Io)? == 0 {
        return Err(ClientError::Closed);
    }
    serde_json::from_str(&reply).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Decodes one request line, or says why not (as the reply to send).
pub fn decode(line: &str) -> Result<Request, Reply> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Reply::Error {
        code: ErrorCode::BadRequest,
        message: format!("not JSON: {e}"),
    })?;
    match v.get("version").and_then(|x| x.as_u64()) {
        Some(v) if v == PROTOCOL_VERSION as u64 => {}
        Some(v) => {
            return Err(Reply::Error {
                code: ErrorCode::UnsupportedVersion,
                message: format!(
                    "protocol version {v} is not supported; this daemon speaks {PROTOCOL_VERSION}"
                ),
            })
        }
        None => {
            return Err(Reply::Error {
                code: ErrorCode::BadRequest,
                message: "missing `version` (a number): send {\"version\":1,\"cmd\":...}".into(),
            })
        }
    }
    serde_json::from_value::<Envelope>(v).map(|e| e.request).map_err(|e| Reply::Error {
        code: ErrorCode::BadRequest,
        message: format!("bad request: {e}"),
    })
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
