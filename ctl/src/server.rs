//! The daemon side of the control socket: a listener thread, a thread per client, bounded lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{decode, ErrorCode, Reply, Request, MAX_REQUEST};

/// Most clients served at once; more get an error reply and are closed.
pub const MAX_CLIENTS: usize = 256;

/// Answers requests. Called from client threads.
pub type Handler = Arc<dyn Fn(Request) -> Reply + Send + Sync>;

/// Binds `path` (creating its directory, mode 0600). A socket file left by a dead daemon is
/// replaced; one that still answers is not.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use by a running daemon; stop it or choose another control_socket",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves `listener` until `stop` is set; removes the socket file then.
pub fn serve(
    listener: UnixListener,
    path: PathBuf,
    handler: Handler,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("fp-ctl".into())
        .spawn(move || {
            let _ = listener.set_nonblocking(true);
            let clients = Arc::new(AtomicUsize::new(0));
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        if clients.load(Ordering::Relaxed) >= MAX_CLIENTS {
                            let _ = reply(
                                &s,
                                &Reply::Error {
                                    code: ErrorCode::Busy,
                                    message: format!(
                                        "too many clients (at most {MAX_CLIENTS}); try again"
                                    ),
                                },
                            );
                            continue;
                        }
                        clients.fetch_add(1, Ordering::Relaxed);
                        let (h, c, st) = (handler.clone(), clients.clone(), stop.clone());
                        let spawned = std::thread::Builder::new()
                            .name("fp-ctl-client".into())
                            .spawn(move || {
                                client(s, h, st);
                                c.fetch_sub(1, Ordering::Relaxed);
                            });
                        if spawned.is_err() {
                            clients.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            let _ = std::fs::remove_file(&path);
        })
        .expect("spawn control socket thread")
}

fn reply(mut s: &UnixStream, r: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(r).unwrap_or_else(|e| {
        format!("{{\"reply\":\"error\",\"code\":\"failed\",\"message\":\"{e}\"}}")
    });
    line.push('\n');
    s.write_all(line.as_bytes())
}

fn client(s: UnixStream, handler: Handler, stop: Arc<AtomicBool>) {
    // A client that never reads or never sends cannot hold a thread forever.
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(rs) = s.try_clone() else { return };
    let mut r = BufReader::new(rs);
    let mut line = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        // Read at most MAX_REQUEST + 1 bytes of one line.
        let n = match (&mut r).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if line.last() != Some(&b'\n') && n > MAX_REQUEST {
            let _ = reply(
                &s,
                &Reply::Error {
                    code: ErrorCode::RequestTooLarge,
                    message: format!("request longer than {MAX_REQUEST} bytes"),
                },
            );
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let out = match decode(text) {
            Ok(req) => handler(req),
            Err(e) => e,
        };
        if reply(&s, &out).is_err() {
            return;
        }
    }
}
