//! Reading pcap and pcapng captures, writing pcap, with nanosecond timestamps.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    pub timestamp_ns: u64,
    pub data: Vec<u8>,
}

/// Why a capture could not be read or written.
#[derive(Debug)]
pub struct CaptureError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for CaptureError {}

fn err(path: &Path, message: impl std::fmt::Display) -> CaptureError {
    CaptureError { path: path.display().to_string(), message: message.to_string() }
}

/// Reads every frame of a pcap or pcapng file (told apart by their magic numbers). Only Ethernet
/// link types are accepted: ferroplane's ports carry Ethernet frames.
pub fn read_capture(path: &Path) -> Result<Vec<CapturedFrame>, CaptureError> {
    let mut f = File::open(path).map_err(|e| err(path, e))?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).map_err(|e| err(path, format!("not a capture file: {e}")))?;
    let f = File::open(path).map_err(|e| err(path, e))?;
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        read_pcapng(path, BufReader::new(f))
    } else {
        read_pcap(path, BufReader::new(f))
    }
}

fn read_pcap(path: &Path, r: impl Read) -> Result<Vec<CapturedFrame>, CaptureError> {
    let mut reader = PcapReader::new(r).map_err(|e| err(path, format!("not a pcap file: {e}")))?;
    if reader.header().datalink != DataLink::ETHERNET {
        return Err(err(path, format!("link type {:?} is not Ethernet", reader.header().datalink)));
    }
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.map_err(|e| err(path, format!("frame {}: {e}", out.len() + 1)))?;
        out.push(CapturedFrame {
            timestamp_ns: p.timestamp.as_nanos() as u64,
            data: p.data.into_owned(),
        });
    }
    Ok(out)
}

fn read_pcapng(path: &Path, r: impl Read) -> Result<Vec<CapturedFrame>, CaptureError> {
    let mut reader =
        PcapNgReader::new(r).map_err(|e| err(path, format!("not a pcapng file: {e}")))?;
    let mut out = Vec::new();
    // (link type, if_tsresol) of each interface, in the order their descriptions appear.
    let mut ifaces: Vec<(DataLink, u8)> = Vec::new();
    while let Some(b) = reader.next_block() {
        let b = b.map_err(|e| err(path, format!("block after frame {}: {e}", out.len())))?;
        match b {
            Block::SectionHeader(_) => ifaces.clear(),
            Block::InterfaceDescription(idb) => {
                let resol = idb
                    .options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                        _ => None,
                    })
                    .unwrap_or(6);
                ifaces.push((idb.linktype, resol));
            }
            Block::EnhancedPacket(epb) => {
                let &(linktype, resol) =
                    ifaces.get(epb.interface_id as usize).ok_or_else(|| {
                        err(
                            path,
                            format!(
                                "frame {} names unknown interface {}",
                                out.len() + 1,
                                epb.interface_id
                            ),
                        )
                    })?;
                if linktype != DataLink::ETHERNET {
                    return Err(err(
                        path,
                        format!(
                            "interface {} link type {linktype:?} is not Ethernet",
                            epb.interface_id
                        ),
                    ));
                }
                // pcap-file hands back the raw timestamp count; its unit is the interface's
                // if_tsresol (pcapng spec 4.2: default 10^-6 s).
                let raw = epb.timestamp.as_nanos();
                let ns = if resol & 0x80 != 0 {
                    raw.saturating_mul(1_000_000_000) >> (resol & 0x7f).min(64)
                } else {
                    let digits = (resol as u32).min(18);
                    raw.saturating_mul(1_000_000_000) / 10u128.pow(digits)
                };
                out.push(CapturedFrame { timestamp_ns: ns as u64, data: epb.data.into_owned() });
            }
            Block::SimplePacket(spb) => {
                // No timestamp: keep file order at the previous frame's time.
                let ts = out.last().map_or(0, |f: &CapturedFrame| f.timestamp_ns);
                out.push(CapturedFrame { timestamp_ns: ts, data: spb.data.into_owned() });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Writes frames as a nanosecond-resolution Ethernet pcap.
pub struct CaptureWriter {
    w: PcapWriter<BufWriter<File>>,
    path: String,
}

impl CaptureWriter {
    pub fn create(path: &Path) -> Result<CaptureWriter, CaptureError> {
        let f = File::create(path).map_err(|e| err(path, e))?;
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            snaplen: 65535,
            ..Default::default()
        };
        let w = PcapWriter::with_header(BufWriter::new(f), header).map_err(|e| err(path, e))?;
        Ok(CaptureWriter { w, path: path.display().to_string() })
    }

    pub fn write(&mut self, timestamp_ns: u64, data: &[u8]) -> Result<(), CaptureError> {
        let p = PcapPacket::new(Duration::from_nanos(timestamp_ns), data.len() as u32, data);
        self.w
            .write_packet(&p)
            .map(|_| ())
            .map_err(|e| CaptureError { path: self.path.clone(), message: e.to_string() })
    }

    /// Writes the first bytes of a frame that was `orig_len` bytes long on the wire (cut at a
    /// snapshot length): the record's captured length is `data.len()`, its original length
    /// `orig_len`, so Wireshark shows the frame as truncated. `orig_len` must be at least
    /// `data.len()`.
    pub fn write_truncated(
        &mut self,
        timestamp_ns: u64,
        data: &[u8],
        orig_len: u32,
    ) -> Result<(), CaptureError> {
        let p = PcapPacket::new(Duration::from_nanos(timestamp_ns), orig_len, data);
        self.w
            .write_packet(&p)
            .map(|_| ())
            .map_err(|e| CaptureError { path: self.path.clone(), message: e.to_string() })
    }

    pub fn finish(self) -> Result<(), CaptureError> {
        let path = self.path.clone();
        let mut inner = self.w.into_writer();
        std::io::Write::flush(&mut inner).map_err(|e| CaptureError { path, message: e.to_string() })
    }
}
