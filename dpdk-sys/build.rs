//! Finds the system's DPDK with pkg-config, compiles the C shim against it, and generates the
//! bindings with bindgen. Built only when `ferroplane-dataplane`'s `dpdk` feature asks for this
//! crate: it is not a workspace member, so a default `cargo build` never needs DPDK.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    let dpdk =
        pkg_config::Config::new().atleast_version("22.11").probe("libdpdk").unwrap_or_else(|e| {
            panic!(
            "\n\nferroplane's `dpdk` feature needs DPDK (>= 22.11) development files, found with \
             pkg-config as `libdpdk`:\n    apt-get install libdpdk-dev libclang-dev\n\
             (or run scripts/install-deps.sh --dpdk)\npkg-config said: {e}\n"
        )
        });

    // libdpdk's cflags carry `-include rte_config.h` and `-march=...`: the shim and bindgen need
    // both (the inline functions and struct layouts depend on them).
    let mut cc = cc::Build::new();
    cc.file("shim.c").include(".").warnings(true).opt_level(3);
    for p in &dpdk.include_paths {
        cc.include(p);
    }
    let mut clang_args: Vec<String> =
        dpdk.include_paths.iter().map(|p| format!("-I{}", p.display())).collect();
    let flags = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut words = flags.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-include" {
            if let Some(h) = words.next() {
                cc.flag("-include").flag(h);
                clang_args.push("-include".into());
                clang_args.push(h.into());
            }
        } else if w.starts_with("-march=") || w.starts_with("-m") && !w.starts_with("-mno") {
            cc.flag(w);
            clang_args.push(w.into());
        } else if w.starts_with("-D") {
            cc.flag(w);
            clang_args.push(w.into());
        }
    }
    cc.compile("ferroplane_dpdk_shim");

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&clang_args)
        .clang_arg("-I.")
        .allowlist_function("rte_eal_(init|cleanup|iova_mode|process_type|has_hugepages)")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_thread_(register|unregister)|rte_lcore_id")
        .allowlist_function("rte_eth_(dev_.*|rx_queue_setup|tx_queue_setup|stats_get|stats_reset|link_get_nowait|macaddr_get|promiscuous_enable|allmulticast_enable|link_to_str|find_next_owned_by|iterator_.*)")
        .allowlist_function("rte_mempool_(free|avail_count|in_use_count|lookup)")
        .allowlist_function("rte_pktmbuf_(pool_create_extbuf|free_bulk)")
        .allowlist_function("rte_extmem_(register|unregister)")
        .allowlist_function("rte_dev_dma_(map|unmap)")
        .allowlist_function("rte_dev_(name|bus|bus_info|driver)")
        .allowlist_function("rte_driver_name|rte_bus_name")
        .allowlist_function("rte_mem_virt2phy")
        .allowlist_function("fp_.*")
        .allowlist_type("fp_.*")
        .allowlist_var("RTE_ETH_LINK_.*|RTE_ETH_NAME_MAX_LEN|RTE_MAX_ETHPORTS|RTE_PKTMBUF_HEADROOM|RTE_BAD_IOVA|RTE_ETHDEV_QUEUE_STAT_CNTRS")
        .allowlist_type("rte_iova_mode")
        .opaque_type("rte_mbuf")
        .opaque_type("rte_mempool")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen could not read DPDK's headers (is libclang-dev installed?)");
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings");
}
