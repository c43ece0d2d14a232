#!/usr/bin/env bash
# Installs what ferroplane's demo and tests need and a fresh machine lacks (Debian packages and
# scapy from PyPI). Idempotent: installs only what is missing, and runs apt-get update only then.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have tshark  || need_apt+=(tshark)
have clang   || need_apt+=(clang)
have m4      || need_apt+=(m4)
have ip      || need_apt+=(iproute2)
have ethtool || need_apt+=(ethtool)
have iperf3  || need_apt+=(iperf3)
have ping    || need_apt+=(iputils-ping)
have trafgen || need_apt+=(netsniff-ng)
have tcpdump || need_apt+=(tcpdump)
dpkg -s libelf-dev >/dev/null 2>&1 || need_apt+=(libelf-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# libxdp (built from source by xsk-rs) checks for libpcap headers.
dpkg -s libpcap-dev >/dev/null 2>&1 || need_apt+=(libpcap-dev)
# The `dpdk` feature: DPDK 22.11 headers and PMDs (libdpdk-dev), libclang for bindgen, and
# dpdk-testpmd (Debian's dpdk-dev) for the DPDK benchmark's baseline.
dpkg -s libdpdk-dev >/dev/null 2>&1 || need_apt+=(libdpdk-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
have dpdk-testpmd || need_apt+=(dpdk-dev)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import scapy.all' >/dev/null 2>&1; then
  echo "installing scapy (PyPI)" >&2
  python3 -m pip install -q --root-user-action=ignore 'scapy>=2.5' 2>/dev/null \
    || python3 -m pip install -q 'scapy>=2.5'
fi
