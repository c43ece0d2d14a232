//! The `ferroplane` command line: `check` reports every error with its place and exits 2; `run`
//! refuses a bad file before touching any interface.

use std::process::Command;

use ferroplane_testbed::{scratch_dir, workspace_bin};

#[test]
fn check_accepts_the_examples() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for ex in
        ["examples/router.toml", "examples/router-afxdp.toml", "examples/gateway-tunnels.toml"]
    {
        let o = Command::new(workspace_bin("ferroplane"))
            .arg("check")
            .arg("-c")
            .arg(root.join(ex))
            .output()
            .unwrap();
        assert!(o.status.success(), "{ex}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains(": ok ("));
    }
}

#[test]
fn check_and_run_report_every_error_and_exit_2() {
    let dir = scratch_dir("cli-bad");
    let f = dir.join("bad.toml");
    std::fs::write(
        &f,
        "[dataplane]\nworkers = [1]\n[[port]]\nname = \"wan\"\ndriver = \"af_xdp\"\ninterface = \"fp-never-touched\"\naddresses = [\"192.0.2.1/33\"]\n[[route]]\nprefix = \"10.0.0.0/8\"\nnexthops = [{ via = \"10.9.9.9\" }]\n",
    )
    .unwrap();
    for cmd in ["check", "run"] {
        let o =
            Command::new(workspace_bin("ferroplane")).arg(cmd).arg("-c").arg(&f).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        let path = f.display().to_string();
        assert!(
            err.contains(&format!(
                "{path}:7:14: port[0].addresses[0]: prefix length 33 is longer than 32"
            )),
            "{cmd}: {err}"
        );
        assert!(err.contains(&format!("{path}:10:21: route[0].nexthops[0].via: 10.9.9.9 is not inside any port's connected subnets")), "{cmd}: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
