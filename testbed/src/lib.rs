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

/// A fresh scratch directory under the target dir, removed and recreated.
pub fn scratch_dir(name: &str) -> PathBuf {
    let mut p = std::env::temp_dir();
    p.push(format!("ferroplane-test-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("create scratch dir");
    p
}
