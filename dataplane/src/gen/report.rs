//! What `ferroplane gen` measured: the receive-side accounting ([`Receiver`]), the JSON report
//! ([`Report`]), its human summary ([`Report::human`]) and the PNG plot ([`plot`]).
//!
//! Every generated frame carries a sequence number and the TX timestamp; both ends of the rig
//! run on one clock, so the receiver gets loss, duplicates, reordering and one-way latency from
//! those two numbers alone.
//!
//! The plot draws its text with a small built-in bitmap font instead of plotters' `ttf` (which
//! needs fontconfig, FreeType and installed fonts, none of which a minimal Debian has) or
//! `ab_glyph` (which needs a font file that nothing here ships): the PNG must come out on any
//! machine that can build the project.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// Bytes each frame takes on the wire beyond its own (FCS included) bytes: preamble and SFD (8)
/// and the minimum inter-frame gap (12). L1 rates count them because that is what fills a link:
/// 64-byte frames at 10 Gbit/s line rate are 14.88 Mpps, not 19.5.
pub const L1_OVERHEAD: u64 = 20;

/// Largest one-way latency the histogram tracks, in ns (10 s). Larger samples are clamped to it:
/// a frame that took longer than this is a bug or a stall, and an auto-resizing histogram would
/// allocate in the RX loop.
pub const LATENCY_MAX_NS: u64 = 10_000_000_000;

/// Significant digits the latency histogram keeps (0.1 % resolution at every magnitude).
const LATENCY_SIGFIG: u8 = 3;

/// Largest duplicate-detection window, in sequence numbers (1 Mi numbers, a 128 KiB bitmap).
pub const SEQ_WINDOW_MAX: u64 = 1 << 20;

/// Smallest window, so that a wrong, tiny hint still catches the duplicates of a short burst.
const SEQ_WINDOW_MIN: u64 = 1 << 12;

/// Receive-side accounting, fed one received frame at a time by the RX loop.
///
/// Everything is sized in [`Receiver::new`]: [`Receiver::record`] runs once per frame at line
/// rate and neither allocates nor takes a lock.
///
/// Duplicates are found with a sliding bitmap of the `window` sequence numbers up to the highest
/// one seen. A frame older than that window cannot be checked any more; it is counted as
/// reordered (it arrived after a higher number), never as a duplicate, so the duplicate count
/// has no false positives.
pub struct Receiver {
    rx_packets: u64,
    /// Received bytes, FCS included (as `record` is given them).
    rx_bytes: u64,
    duplicates: u64,
    reordered: u64,
    /// Highest sequence number seen; meaningless until `seen_any`.
    highest: u64,
    seen_any: bool,
    /// Bit `seq & window_mask` tells whether `seq` arrived, for `seq` in
    /// `(highest - window, highest]`.
    window: Vec<u64>,
    window_mask: u64,
    latency: Histogram<u64>,
    /// Exact extremes and sum: the histogram only keeps 3 significant digits.
    lat_min: u64,
    lat_max: u64,
    lat_sum: u128,
    /// Frames whose latency was above [`LATENCY_MAX_NS`] and went in as that.
    lat_clamped: u64,
}

impl Receiver {
    /// `expected_max_seq_hint`: how many sequence numbers the run will use (the packet count
    /// when known). The duplicate window is that, rounded up to a power of two, between
    /// 4096 and [`SEQ_WINDOW_MAX`]: a short run then needs no 128 KiB bitmap, and a run that
    /// fits in the window gets exact duplicate detection over all of it.
    pub fn new(expected_max_seq_hint: u64) -> Receiver {
        let window = expected_max_seq_hint
            .saturating_add(1)
            .clamp(SEQ_WINDOW_MIN, SEQ_WINDOW_MAX)
            .next_power_of_two();
        let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGFIG)
            .expect("constant histogram bounds are valid");
        // Explicit: a resize would allocate in the RX loop; out-of-range values are clamped.
        latency.auto(false);
        Receiver {
            rx_packets: 0,
            rx_bytes: 0,
            duplicates: 0,
            reordered: 0,
            highest: 0,
            seen_any: false,
            window: vec![0; (window / 64) as usize],
            window_mask: window - 1,
            latency,
            lat_min: u64::MAX,
            lat_max: 0,
            lat_sum: 0,
            lat_clamped: 0,
        }
    }

    /// One frame carrying `(seq, tx_ts_ns)`, received at `rx_ts_ns` (same clock as the TX
    /// stamp). `frame_len` is the frame's size on the wire with the FCS, as the generator's size
    /// list counts it.
    ///
    /// A sequence number seen before (within the window) is a duplicate; one below the highest
    /// seen so far and not a duplicate is reordered. Every frame, duplicates too, goes into the
    /// latency histogram: each one was a real delivery. An RX stamp before the TX stamp (which
    /// one clock should never give) counts as 0 ns.
    pub fn record(&mut self, seq: u64, tx_ts_ns: u64, rx_ts_ns: u64, frame_len: usize) {
        self.rx_packets += 1;
        self.rx_bytes += frame_len as u64;

        let latency = rx_ts_ns.saturating_sub(tx_ts_ns);
        self.lat_min = self.lat_min.min(latency);
        self.lat_max = self.lat_max.max(latency);
        self.lat_sum += u128::from(latency);
        if latency > LATENCY_MAX_NS {
            self.lat_clamped += 1;
        }
        // Cannot fail: the value is within the histogram's bounds.
        let _ = self.latency.record(latency.min(LATENCY_MAX_NS));

        if !self.seen_any {
            self.seen_any = true;
            self.highest = seq;
            self.set_seen(seq);
            return;
        }
        if seq > self.highest {
            // The slots of highest+1..=seq held numbers that now leave the window.
            self.forget(self.highest + 1, seq - self.highest);
            self.highest = seq;
            self.set_seen(seq);
            return;
        }
        if self.highest - seq > self.window_mask {
            // Older than the window: can't tell, so not a duplicate; certainly late.
            self.reordered += 1;
            return;
        }
        if self.is_seen(seq) {
            self.duplicates += 1;
        } else {
            self.set_seen(seq);
            self.reordered += 1;
        }
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let i = seq & self.window_mask;
        ((i >> 6) as usize, 1u64 << (i & 63))
    }

    fn is_seen(&self, seq: u64) -> bool {
        let (w, bit) = self.slot(seq);
        self.window[w] & bit != 0
    }

    fn set_seen(&mut self, seq: u64) {
        let (w, bit) = self.slot(seq);
        self.window[w] |= bit;
    }

    /// Clears the slots of `count` sequence numbers from `first` on, a word at a time: after a
    /// long loss burst the jump can be the whole window, and this runs in the RX loop.
    fn forget(&mut self, first: u64, count: u64) {
        let window = self.window_mask + 1;
        if count >= window {
            self.window.fill(0);
            return;
        }
        let (mut seq, mut left) = (first, count);
        while left > 0 {
            let i = seq & self.window_mask;
            let off = i & 63;
            let take = (64 - off).min(left);
            let mask = if take == 64 { !0 } else { ((1u64 << take) - 1) << off };
            self.window[(i >> 6) as usize] &= !mask;
            seq += take;
            left -= take;
        }
    }

    /// Frames received, duplicates included (what the wire delivered).
    pub fn rx_packets(&self) -> u64 {
        self.rx_packets
    }

    /// Bytes received, FCS included.
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes
    }

    /// Frames whose sequence number had already arrived.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Frames that arrived after a higher sequence number (duplicates excluded).
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Distinct sequence numbers received: what loss is counted against.
    pub fn unique_packets(&self) -> u64 {
        self.rx_packets - self.duplicates
    }

    /// Samples above [`LATENCY_MAX_NS`] (recorded as that in the histogram; `max` stays exact).
    pub fn latency_clamped(&self) -> u64 {
        self.lat_clamped
    }

    /// The one-way latency histogram (ns), e.g. to merge several receivers.
    pub fn latency_histogram(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// Latency summary, `None` when nothing was received. Min, max and mean are exact;
    /// percentiles come from the histogram (within 0.1 %) and are kept within [min, max].
    pub fn latency(&self) -> Option<LatencyNs> {
        if self.rx_packets == 0 {
            return None;
        }
        let (min, max) = (self.lat_min, self.lat_max);
        let at = |q: f64| self.latency.value_at_quantile(q).clamp(min, max);
        Some(LatencyNs {
            min,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max,
            mean: self.lat_sum as f64 / self.rx_packets as f64,
        })
    }
}

/// One-way latency summary in nanoseconds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LatencyNs {
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// One frame size's RFC 2544 throughput: the highest rate with loss within tolerance.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SearchPoint {
    /// Frame size with FCS (the average for an IMIX list).
    pub frame_size: usize,
    pub throughput_pps: f64,
    pub throughput_bps_l1: f64,
    /// Trials the binary search ran.
    pub trials: u32,
}

/// The result of a `ferroplane gen` run, printed as JSON with `--json`. The field names are
/// the documented schema: rename nothing.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    pub tx_packets: u64,
    /// Frames received, duplicates included.
    pub rx_packets: u64,
    /// Sequence numbers sent but never received.
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    /// Bits per second on the wire with preamble, SFD and inter-frame gap ([`L1_OVERHEAD`]).
    pub tx_bps_l1: f64,
    pub rx_bps_l1: f64,
    pub duration_s: f64,
    /// Frame sizes asked for, with FCS.
    pub sizes: Vec<usize>,
    /// The rate as given on the command line (e.g. `1Mpps`, `100%`, `max`).
    pub asked_rate: String,
    /// `None` when nothing was received.
    pub latency_ns: Option<LatencyNs>,
    /// RFC 2544 results when `--search` ran.
    pub search: Option<Vec<SearchPoint>>,
    /// With `--encap`: the tunnel, e.g. `vxlan over IPv4 (+50 bytes of outer headers)`;
    /// `sizes` are then inner frame sizes and the bit rates count the outer headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encap: Option<String>,
}

impl Report {
    /// Builds the report of one run; `search` is left `None` for the caller to fill.
    ///
    /// `lost` is `tx_packets` minus the distinct sequence numbers received (saturating), so that
    /// duplicates cannot hide loss; without duplicates it is `tx_packets - rx_packets`. Without
    /// a receiver nothing counts as received. Rates are over `duration` (0 when it is zero);
    /// L1 bit rates are pps * (average size with FCS + 20) * 8.
    pub fn build(
        tx_packets: u64,
        tx_bytes_with_fcs: u64,
        rx: Option<&Receiver>,
        duration: Duration,
        sizes: &[usize],
        asked_rate: &str,
    ) -> Report {
        let secs = duration.as_secs_f64();
        let per_sec = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
        let l1_bits =
            |packets: u64, bytes: u64| (bytes as f64 + packets as f64 * L1_OVERHEAD as f64) * 8.0;
        let (rx_packets, rx_bytes, unique, duplicates, reordered) = match rx {
            Some(r) => (r.rx_packets, r.rx_bytes, r.unique_packets(), r.duplicates, r.reordered),
            None => (0, 0, 0, 0, 0),
        };
        Report {
            tx_packets,
            rx_packets,
            lost: tx_packets.saturating_sub(unique),
            duplicates,
            reordered,
            tx_pps: per_sec(tx_packets as f64),
            rx_pps: per_sec(rx_packets as f64),
            tx_bps_l1: per_sec(l1_bits(tx_packets, tx_bytes_with_fcs)),
            rx_bps_l1: per_sec(l1_bits(rx_packets, rx_bytes)),
            duration_s: secs,
            sizes: sizes.to_vec(),
            asked_rate: asked_rate.to_string(),
            latency_ns: rx.and_then(Receiver::latency),
            search: None,
            encap: None,
        }
    }

    /// Lost packets as a percentage of those sent (0 when nothing was sent).
    pub fn loss_percent(&self) -> f64 {
        if self.tx_packets == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.tx_packets as f64
        }
    }

    /// A readable multi-line summary: counts, loss, rates in pps and Mbit/s (L1), latency
    /// percentiles in microseconds, and the RFC 2544 results when there are any.
    pub fn human(&self) -> String {
        let mut s = format!(
            "ferroplane gen: {:.3} s, sizes {} B, rate asked {}\n",
            self.duration_s,
            describe_sizes(&self.sizes),
            self.asked_rate
        );
        if let Some(e) = &self.encap {
            s += &format!("  encap      {e}: sizes are inner frames, bit rates count the wire\n");
        }
        s += &format!(
            "  sent       {:>14} packets  {:>14.0} pps  {:>10.1} Mbit/s (L1)\n",
            self.tx_packets,
            self.tx_pps,
            self.tx_bps_l1 / 1e6
        );
        s += &format!(
            "  received   {:>14} packets  {:>14.0} pps  {:>10.1} Mbit/s (L1)\n",
            self.rx_packets,
            self.rx_pps,
            self.rx_bps_l1 / 1e6
        );
        s += &format!("  lost       {:>14} packets  ({:.4} %)\n", self.lost, self.loss_percent());
        s += &format!("  duplicates {:>14}\n", self.duplicates);
        s += &format!("  reordered  {:>14}\n", self.reordered);
        match &self.latency_ns {
            Some(l) => {
                let us = |ns: u64| ns as f64 / 1e3;
                s += &format!(
                    "  latency (us): min {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  \
                     max {:.2}  mean {:.2}\n",
                    us(l.min),
                    us(l.p50),
                    us(l.p90),
                    us(l.p99),
                    us(l.p999),
                    us(l.max),
                    l.mean / 1e3
                );
            }
            None => s += "  latency: nothing received\n",
        }
        if let Some(points) = &self.search {
            s += "  RFC 2544 throughput:\n";
            for p in points {
                s += &format!(
                    "    {:>6} B  {:>14.0} pps  {:>10.1} Mbit/s (L1)  {} trials\n",
                    p.frame_size,
                    p.throughput_pps,
                    p.throughput_bps_l1 / 1e6,
                    p.trials
                );
            }
        }
        s
    }
}

/// `64`, `64,594,1518`, or the first eight of a long list and how many there are.
fn describe_sizes(sizes: &[usize]) -> String {
    const SHOWN: usize = 8;
    let list: Vec<String> = sizes.iter().take(SHOWN).map(|s| s.to_string()).collect();
    let mut s = list.join(",");
    if sizes.len() > SHOWN {
        s += &format!(",... ({} sizes)", sizes.len());
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The plot
// ---------------------------------------------------------------------------------------------

const PLOT_SIZE: (u32, u32) = (1024, 768);
const HEADER_H: u32 = 56;
const INK: RGBColor = RGBColor(30, 30, 30);
const GRID: RGBColor = RGBColor(225, 225, 225);
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const RED: RGBColor = RGBColor(214, 39, 40);
/// Scale of the built-in 5x7 font: 2 makes 10x14-pixel capitals, readable at 1024x768.
const TEXT: i32 = 2;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Writes a 1024x768 PNG to `path`: a header with the run's numbers, throughput per frame size
/// (the RFC 2544 points when `search` is present, else the measured sent and received rates)
/// in the upper panel, and the one-way latency by percentile in the lower one.
///
/// The latency panel follows HdrHistogram's percentile plots: x is log10(1 / (1 - q)), so 90 %,
/// 99 %, 99.9 % ... are evenly spaced and the tail gets as much room as the median. It is drawn
/// from `latency`'s histogram when given, else from the report's percentiles (a step curve), so
/// that a report read back from JSON can still be plotted.
///
/// The image is written to a sibling temporary file ending in `.png` (the encoder is chosen by
/// extension, so any `path` works) and renamed over `path`: a reader never sees half a file.
pub fn plot(report: &Report, latency: Option<&Receiver>, path: &Path) -> Result<(), String> {
    let name = path.file_name().ok_or_else(|| format!("{}: not a file path", path.display()))?;
    let tmp =
        path.with_file_name(format!(".{}.{}.tmp.png", name.to_string_lossy(), std::process::id()));
    let result = draw(report, latency, &tmp)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display())));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("plot: {e}")
}

fn draw(report: &Report, latency: Option<&Receiver>, path: &Path) -> Result<(), String> {
    let root = BitMapBackend::new(path, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (header, body) = root.split_vertically(HEADER_H);
    let (top, bottom) = body.split_vertically((PLOT_SIZE.1 - HEADER_H) / 2);

    let title = format!(
        "ferroplane gen: {:.2} s, rate {}, sizes {} B",
        report.duration_s,
        report.asked_rate,
        describe_sizes(&report.sizes)
    );
    let counts = format!(
        "sent {}  received {}  lost {} ({:.3}%)  dup {}  reord {}",
        report.tx_packets,
        report.rx_packets,
        report.lost,
        report.loss_percent(),
        report.duplicates,
        report.reordered
    );
    let max_chars = (PLOT_SIZE.0 as i32 - 24) / (6 * TEXT);
    text(&header, (12, 8), &fit(&title, max_chars), TEXT, &INK)?;
    text(&header, (12, 32), &fit(&counts, max_chars), TEXT, &INK)?;

    throughput_panel(&top, report)?;
    latency_panel(&bottom, report, latency)?;
    root.present().map_err(err)
}

/// A bar per point: label, pps, L1 bit/s, colour.
struct Bar {
    label: String,
    pps: f64,
    bps: f64,
    color: RGBColor,
}

fn throughput_panel(area: &Area, report: &Report) -> Result<(), String> {
    let mut bars: Vec<Bar> = match &report.search {
        Some(points) if !points.is_empty() => points
            .iter()
            .map(|p| Bar {
                label: format!("{} B", p.frame_size),
                pps: p.throughput_pps,
                bps: p.throughput_bps_l1,
                color: BLUE,
            })
            .collect(),
        _ => {
            let size = match report.sizes.as_slice() {
                [one] => format!("{one} B"),
                [] => "-".to_string(),
                many => {
                    format!("avg {:.0} B", many.iter().sum::<usize>() as f64 / many.len() as f64)
                }
            };
            vec![
                Bar {
                    label: format!("{size} sent"),
                    pps: report.tx_pps,
                    bps: report.tx_bps_l1,
                    color: ORANGE,
                },
                Bar {
                    label: format!("{size} received"),
                    pps: report.rx_pps,
                    bps: report.rx_bps_l1,
                    color: BLUE,
                },
            ]
        }
    };
    if report.search.is_some() {
        bars.sort_by(|a, b| a.label.len().cmp(&b.label.len()).then(a.label.cmp(&b.label)));
    }
    let max_pps = bars.iter().map(|b| b.pps).fold(0.0, f64::max);
    let (div, unit) = if max_pps >= 1e6 {
        (1e6, "Mpps")
    } else if max_pps >= 1e3 {
        (1e3, "kpps")
    } else {
        (1.0, "pps")
    };
    let title = match report.search {
        Some(_) => format!("RFC 2544 throughput per frame size ({unit}; below: L1 rate)"),
        None => format!("Throughput ({unit}; below: L1 rate)"),
    };
    let (y_ticks, y_max) = nice_ticks(max_pps / div * 1.15);
    let n = bars.len().max(1) as f64;
    let chart = panel(area, &title, -0.5..n - 0.5, y_max, &y_ticks)?;
    let plot = chart.plotting_area();
    let slot = (plot.get_pixel_range().0.len() as f64 / n) as i32;
    for (i, bar) in bars.iter().enumerate() {
        let x = i as f64;
        let v = bar.pps / div;
        plot.draw(&Rectangle::new([(x - 0.3, 0.0), (x + 0.3, v)], bar.color.filled()))
            .map_err(err)?;
        let value = format!("{:.3}", v);
        let (cx, top) = chart.backend_coord(&(x, v));
        // Labels shrink to the small size when a bar's slot is too narrow for them.
        let fits = |s: &str| if text_width(s, TEXT) <= slot - 6 { TEXT } else { 1 };
        text_centered(area, (cx, top - 8 * fits(&value) - 4), &value, fits(&value), &INK)?;
        let (_, bottom) = chart.backend_coord(&(x, 0.0));
        let l1 = bits(bar.bps);
        text_centered(area, (cx, bottom + 6), &bar.label, fits(&bar.label), &INK)?;
        text_centered(area, (cx, bottom + 6 + 11 * TEXT), &l1, fits(&l1), &INK)?;
    }
    Ok(())
}

/// `672.0 Mb/s`, `9.52 Gb/s`: short, so that seven RFC 2544 sizes fit side by side.
fn bits(bps: f64) -> String {
    if bps >= 1e10 {
        format!("{:.1} Gb/s", bps / 1e9)
    } else if bps >= 1e9 {
        format!("{:.2} Gb/s", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.1} Mb/s", bps / 1e6)
    } else {
        format!("{:.1} kb/s", bps / 1e3)
    }
}

fn latency_panel(area: &Area, report: &Report, rx: Option<&Receiver>) -> Result<(), String> {
    // (x, latency in us) along the percentile axis, and how many nines the x axis shows.
    let (curve, nines): (Vec<(f64, f64)>, u32) =
        match (rx.filter(|r| r.rx_packets > 0), &report.latency_ns) {
            (Some(r), _) => {
                // Past 1 - 1/count the percentiles are all the max: show one more decade at most.
                let nines = ((r.rx_packets as f64).log10().ceil() as u32).clamp(2, 6);
                let (min, max) = (r.lat_min, r.lat_max);
                let steps = 400;
                let curve = (0..=steps)
                    .map(|i| {
                        let x = nines as f64 * i as f64 / steps as f64;
                        let q = 1.0 - 10f64.powf(-x);
                        let v = if i == steps { max } else { r.latency.value_at_quantile(q) };
                        (x, v.clamp(min, max) as f64 / 1e3)
                    })
                    .collect();
                (curve, nines)
            }
            (None, Some(l)) => {
                let us = |ns: u64| ns as f64 / 1e3;
                let x = |q: f64| -(1.0 - q).log10();
                let steps = [
                    (0.0, l.min),
                    (x(0.5), l.p50),
                    (x(0.9), l.p90),
                    (x(0.99), l.p99),
                    (x(0.999), l.p999),
                    (4.0, l.max),
                ];
                // A step curve: each percentile holds until the next one is reached.
                let mut curve = Vec::new();
                for w in steps.windows(2) {
                    curve.push((w[0].0, us(w[1].1)));
                    curve.push((w[1].0, us(w[1].1)));
                }
                (curve, 4)
            }
            (None, None) => (Vec::new(), 3),
        };
    let max_us = curve.iter().map(|p| p.1).fold(0.0, f64::max);
    let title = match &report.latency_ns {
        Some(l) => format!(
            "One-way latency (us) by percentile: p50 {:.2}, p99 {:.2}, max {:.2}",
            l.p50 as f64 / 1e3,
            l.p99 as f64 / 1e3,
            l.max as f64 / 1e3
        ),
        None => "One-way latency (us) by percentile".to_string(),
    };
    let (y_ticks, y_max) = nice_ticks(max_us * 1.1);
    let chart = panel(area, &title, 0.0..nines as f64, y_max, &y_ticks)?;
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let (x0, y0) = area.get_base_pixel();
    for k in 0..=nines {
        let (px, bottom) = chart.backend_coord(&(k as f64, 0.0));
        if k > 0 && k < nines {
            let top = ys.start;
            area.draw(&PathElement::new(vec![(px - x0, top - y0), (px - x0, bottom - y0)], GRID))
                .map_err(err)?;
        }
        // The end labels sit inside the plot's width, clear of the y labels and the edge.
        let label = percentile_label(k);
        let lx = match k {
            0 => px + text_width(&label, TEXT) / 2,
            _ if k == nines => px - text_width(&label, TEXT) / 2,
            _ => px,
        };
        text_centered(area, (lx, bottom + 6), &label, TEXT, &INK)?;
    }
    if curve.is_empty() {
        let c = ((xs.start + xs.end) / 2, (ys.start + ys.end) / 2);
        return text_centered(area, c, "no frames received: no latency", TEXT, &INK);
    }
    chart.plotting_area().draw(&PathElement::new(curve, RED.stroke_width(2))).map_err(err)?;
    Ok(())
}

/// `0%`, `90%`, `99%`, `99.9%`, ... for k nines.
fn percentile_label(k: u32) -> String {
    match k {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        _ => format!("99.{}%", "9".repeat(k as usize - 2)).replace(".%", "%"),
    }
}

/// Round tick values covering 0..=`max` (about five of them) and the axis top, the last tick.
fn nice_ticks(max: f64) -> (Vec<f64>, f64) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let count = (max / step).ceil() as usize;
    let ticks: Vec<f64> = (0..=count).map(|i| i as f64 * step).collect();
    let top = ticks.last().copied().unwrap_or(1.0);
    (ticks, top)
}

/// Tick label with as many decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step > 0.0 { (-step.log10().floor()).max(0.0) as usize } else { 0 };
    let decimals = if (step * 10f64.powi(decimals as i32)).fract().abs() > 1e-9 {
        decimals + 1
    } else {
        decimals
    };
    format!("{v:.decimals$}")
}

/// The frame of a panel: title, plotting area with horizontal grid lines and labelled y ticks.
/// Plotters' own labels need a font backend, so the chart has no label areas and the labels are
/// drawn here with the built-in font.
fn panel<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    x: std::ops::Range<f64>,
    y_max: f64,
    y_ticks: &[f64],
) -> Result<Chart<'a, 'b>, String> {
    let (w, _) = area.dim_in_pixel();
    let max_chars = (w as i32 - 24) / (6 * TEXT);
    text(
        area,
        (area.get_base_pixel().0 + 12, area.get_base_pixel().1 + 8),
        &fit(title, max_chars),
        TEXT,
        &INK,
    )?;
    let chart = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(60)
        .margin_left(100)
        .margin_right(24)
        .build_cartesian_2d(x.clone(), 0.0..y_max)
        .map_err(err)?;
    let (x0, y0) = area.get_base_pixel();
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let step = if y_ticks.len() > 1 { y_ticks[1] - y_ticks[0] } else { y_max };
    for &t in y_ticks {
        let (_, py) = chart.backend_coord(&(x.start, t));
        area.draw(&PathElement::new(vec![(xs.start - x0, py - y0), (xs.end - x0, py - y0)], GRID))
            .map_err(err)?;
        let label = tick_label(t, step);
        let lw = text_width(&label, TEXT);
        text(area, (xs.start - 8 - lw, py - 7 * TEXT / 2), &label, TEXT, &INK)?;
    }
    area.draw(&Rectangle::new(
        [(xs.start - x0, ys.start - y0), (xs.end - x0, ys.end - y0)],
        INK.stroke_width(1),
    ))
    .map_err(err)?;
    Ok(chart)
}

/// Cuts `s` to `max` characters, marking the cut.
fn fit(s: &str, max: i32) -> String {
    let max = max.max(4) as usize;
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 3).collect();
        t += "...";
        t
    }
}

// ---------------------------------------------------------------------------------------------
// Built-in 5x7 bitmap font
// ---------------------------------------------------------------------------------------------

/// Glyph rows top to bottom, `#` = ink: seven rows from the cap line to the baseline, two more
/// for descenders. Characters not here draw as `?`.
const GLYPHS: &[(char, &str)] = &[
    (' ', ""),
    ('0', ".###. #...# #..## #.#.# ##..# #...# .###."),
    ('1', "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('2', ".###. #...# ....# ...#. ..#.. .#... #####"),
    ('3', "##### ...#. ..#.. ...#. ....# #...# .###."),
    ('4', "...#. ..##. .#.#. #..#. ##### ...#. ...#."),
    ('5', "##### #.... ####. ....# ....# #...# .###."),
    ('6', "..##. .#... #.... ####. #...# #...# .###."),
    ('7', "##### ....# ...#. ..#.. .#... .#... .#..."),
    ('8', ".###. #...# #...# .###. #...# #...# .###."),
    ('9', ".###. #...# #...# .#### ....# ...#. .##.."),
    ('A', ".###. #...# #...# ##### #...# #...# #...#"),
    ('B', "####. #...# #...# ####. #...# #...# ####."),
    ('C', ".###. #...# #.... #.... #.... #...# .###."),
    ('D', "###.. #..#. #...# #...# #...# #..#. ###.."),
    ('E', "##### #.... #.... ####. #.... #.... #####"),
    ('F', "##### #.... #.... ####. #.... #.... #...."),
    ('G', ".###. #...# #.... #.### #...# #...# .####"),
    ('H', "#...# #...# #...# ##### #...# #...# #...#"),
    ('I', ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('J', "..### ...#. ...#. ...#. ...#. #..#. .##.."),
    ('K', "#...# #..#. #.#.. ##... #.#.. #..#. #...#"),
    ('L', "#.... #.... #.... #.... #.... #.... #####"),
    ('M', "#...# ##.## #.#.# #.#.# #...# #...# #...#"),
    ('N', "#...# #...# ##..# #.#.# #..## #...# #...#"),
    ('O', ".###. #...# #...# #...# #...# #...# .###."),
    ('P', "####. #...# #...# ####. #.... #.... #...."),
    ('Q', ".###. #...# #...# #...# #.#.# #..#. .##.#"),
    ('R', "####. #...# #...# ####. #.#.. #..#. #...#"),
    ('S', ".#### #.... #.... .###. ....# ....# ####."),
    ('T', "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    ('U', "#...# #...# #...# #...# #...# #...# .###."),
    ('V', "#...# #...# #...# #...# #...# .#.#. ..#.."),
    ('W', "#...# #...# #...# #.#.# #.#.# #.#.# .#.#."),
    ('X', "#...# #...# .#.#. ..#.. .#.#. #...# #...#"),
    ('Y', "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.."),
    ('Z', "##### ....# ...#. ..#.. .#... #.... #####"),
    ('a', "..... ..... .###. ....# .#### #...# .####"),
    ('b', "#.... #.... #.##. ##..# #...# #...# ####."),
    ('c', "..... ..... .###. #.... #.... #...# .###."),
    ('d', "....# ....# .##.# #..## #...# #...# .####"),
    ('e', "..... ..... .###. #...# ##### #.... .###."),
    ('f', "..##. .#..# .#... ###.. .#... .#... .#..."),
    ('g', "..... ..... .#### #...# #...# #...# .#### ....# .###."),
    ('h', "#.... #.... #.##. ##..# #...# #...# #...#"),
    ('i', "..#.. ..... .##.. ..#.. ..#.. ..#.. .###."),
    ('j', "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##.."),
    ('k', "#.... #.... #..#. #.#.. ##... #.#.. #..#."),
    ('l', ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('m', "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#"),
    ('n', "..... ..... #.##. ##..# #...# #...# #...#"),
    ('o', "..... ..... .###. #...# #...# #...# .###."),
    ('p', "..... ..... ####. #...# #...# #...# ####. #.... #...."),
    ('q', "..... ..... .#### #...# #...# #...# .#### ....# ....#"),
    ('r', "..... ..... #.##. ##..# #.... #.... #...."),
    ('s', "..... ..... .###. #.... .###. ....# ####."),
    ('t', ".#... .#... ###.. .#... .#... .#..# ..##."),
    ('u', "..... ..... #...# #...# #...# #..## .##.#"),
    ('v', "..... ..... #...# #...# #...# .#.#. ..#.."),
    ('w', "..... ..... #...# #...# #.#.# #.#.# .#.#."),
    ('x', "..... ..... #...# .#.#. ..#.. .#.#. #...#"),
    ('y', "..... ..... #...# #...# #...# #...# .#### ....# .###."),
    ('z', "..... ..... ##### ...#. ..#.. .#... #####"),
    ('.', "..... ..... ..... ..... ..... .##.. .##.."),
    (',', "..... ..... ..... ..... ..... .##.. ..#.. .#..."),
    (':', "..... .##.. .##.. ..... .##.. .##.. ....."),
    (';', "..... .##.. .##.. ..... .##.. ..#.. .#..."),
    ('%', "##... ##..# ...#. ..#.. .#... #..## ...##"),
    ('(', "...#. ..#.. .#... .#... .#... ..#.. ...#."),
    (')', ".#... ..#.. ...#. ...#. ...#. ..#.. .#..."),
    ('[', ".###. .#... .#... .#... .#... .#... .###."),
    (']', ".###. ...#. ...#. ...#. ...#. ...#. .###."),
    ('/', "..... ....# ...#. ..#.. .#... #.... ....."),
    ('-', "..... ..... ..... .###. ..... ..... ....."),
    ('+', "..... ..#.. ..#.. ##### ..#.. ..#.. ....."),
    ('=', "..... ..... ##### ..... ##### ..... ....."),
    ('_', "..... ..... ..... ..... ..... ..... #####"),
    ('<', "...#. ..#.. .#... #.... .#... ..#.. ...#."),
    ('>', ".#... ..#.. ...#. ....# ...#. ..#.. .#..."),
    ('\'', "..#.. ..#.. ..... ..... ..... ..... ....."),
    ('"', ".#.#. .#.#. ..... ..... ..... ..... ....."),
    ('*', "..... ..#.. #.#.# .###. #.#.# ..#.. ....."),
    ('#', ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#."),
    ('|', "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    ('!', "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.."),
    ('?', ".###. #...# ....# ...#. ..#.. ..... ..#.."),
];

fn glyph(c: char) -> &'static str {
    let find = |c| GLYPHS.iter().find(|g| g.0 == c).map(|g| g.1);
    find(c).or_else(|| find('?')).unwrap_or("")
}

/// Pixel width of `s` at `scale`: 5 columns and a 1-column gap per character.
fn text_width(s: &str, scale: i32) -> i32 {
    (s.chars().count() as i32 * 6 - 1).max(0) * scale
}

/// Draws `s` with its top-left corner at absolute pixel `pos` (cap line at `pos.1`).
fn text(area: &Area, pos: (i32, i32), s: &str, scale: i32, color: &RGBColor) -> Result<(), String> {
    let (bx, by) = area.get_base_pixel();
    let (w, h) = area.dim_in_pixel();
    for (i, c) in s.chars().enumerate() {
        let gx = pos.0 - bx + i as i32 * 6 * scale;
        for (row, bits) in glyph(c).split_whitespace().enumerate() {
            for (col, px) in bits.bytes().enumerate() {
                if px != b'#' {
                    continue;
                }
                let x = gx + col as i32 * scale;
                let y = pos.1 - by + row as i32 * scale;
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (x, y) = (x + dx, y + dy);
                        if x >= 0 && y >= 0 && x < w as i32 && y < h as i32 {
                            area.draw_pixel((x, y), color).map_err(err)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Draws `s` centred horizontally on absolute `pos.0`, top at `pos.1`.
fn text_centered(
    area: &Area,
    pos: (i32, i32),
    s: &str,
    scale: i32,
    color: &RGBColor,
) -> Result<(), String> {
    text(area, (pos.0 - text_width(s, scale) / 2, pos.1), s, scale, color)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records `seqs` with latency `seq` microseconds and 64-byte frames.
    fn receiver_with(seqs: &[u64]) -> Receiver {
        let mut r = Receiver::new(1000);
        for &s in seqs {
            r.record(s, 1_000_000, 1_000_000 + s * 1000, 64);
        }
        r
    }

    #[test]
    fn in_order_counts_everything_once() {
        let seqs: Vec<u64> = (0..1000).collect();
        let r = receiver_with(&seqs);
        assert_eq!(r.rx_packets(), 1000);
        assert_eq!(r.rx_bytes(), 64_000);
        assert_eq!((r.duplicates(), r.reordered()), (0, 0));
        let rep = Report::build(1000, 64_000, Some(&r), Duration::from_secs(2), &[64], "500pps");
        assert_eq!((rep.tx_packets, rep.rx_packets, rep.lost), (1000, 1000, 0));
        assert_eq!(rep.tx_pps, 500.0);
        assert_eq!(rep.rx_pps, 500.0);
        // 500 pps * (64 + 20) B * 8
        assert_eq!(rep.tx_bps_l1, 336_000.0);
        assert_eq!(rep.rx_bps_l1, 336_000.0);
        assert_eq!(rep.duration_s, 2.0);
    }

    #[test]
    fn a_gap_is_loss() {
        let seqs: Vec<u64> = (0..10).filter(|s| *s != 3 && *s != 7).collect();
        let r = receiver_with(&seqs);
        assert_eq!(r.rx_packets(), 8);
        assert_eq!((r.duplicates(), r.reordered()), (0, 0));
        let rep = Report::build(10, 640, Some(&r), Duration::from_secs(1), &[64], "10pps");
        assert_eq!(rep.lost, 2);
        assert!((rep.loss_percent() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn duplicates_are_counted_and_do_not_hide_loss() {
        let r = receiver_with(&[0, 1, 1, 2, 2, 2, 0]);
        assert_eq!(r.rx_packets(), 7);
        assert_eq!(r.duplicates(), 4);
        assert_eq!(r.reordered(), 0, "a duplicate is not also reordered");
        // Four sent, 0..=2 arrived (some twice): seq 3 is lost.
        let rep = Report::build(4, 256, Some(&r), Duration::from_secs(1), &[64], "max");
        assert_eq!((rep.rx_packets, rep.duplicates, rep.lost), (7, 4, 1));
    }

    #[test]
    fn reordering_is_counted() {
        let r = receiver_with(&[0, 2, 1, 3]);
        assert_eq!((r.reordered(), r.duplicates()), (1, 0));
        let r = receiver_with(&[0, 5, 1, 2, 3, 4, 6]);
        assert_eq!((r.reordered(), r.duplicates()), (4, 0));
        // A late frame that then comes again is reordered once and a duplicate once.
        let r = receiver_with(&[0, 2, 1, 1]);
        assert_eq!((r.reordered(), r.duplicates()), (1, 1));
        let rep = Report::build(3, 192, Some(&r), Duration::from_secs(1), &[64], "max");
        assert_eq!((rep.lost, rep.reordered), (0, 1));
    }

    #[test]
    fn window_slides_and_forgets() {
        let mut r = Receiver::new(0);
        let window = r.window_mask + 1;
        assert_eq!(window, SEQ_WINDOW_MIN);
        for s in 0..window {
            r.record(s, 0, 1, 64);
        }
        // Advancing by 11 reuses the slots of 0..=10: 1 is now unknown, not a duplicate...
        r.record(window + 10, 0, 1, 64);
        r.record(window + 1, 0, 1, 64);
        assert_eq!((r.duplicates(), r.reordered()), (0, 1));
        r.record(window + 1, 0, 1, 64);
        assert_eq!((r.duplicates(), r.reordered()), (1, 1));
        // ...11 is still in the window and was seen: a duplicate.
        r.record(11, 0, 1, 64);
        assert_eq!((r.duplicates(), r.reordered()), (2, 1));
        // 5 is older than the window: reordered, never a duplicate.
        r.record(5, 0, 1, 64);
        assert_eq!((r.duplicates(), r.reordered()), (2, 2));
        // A jump past the whole window clears it.
        let far = 10 * window;
        r.record(far, 0, 1, 64);
        r.record(far - 1, 0, 1, 64);
        r.record(far - 1, 0, 1, 64);
        assert_eq!((r.duplicates(), r.reordered()), (3, 3));
    }

    #[test]
    fn window_size_follows_the_hint() {
        assert_eq!(Receiver::new(0).window_mask + 1, SEQ_WINDOW_MIN);
        assert_eq!(Receiver::new(10_000).window_mask + 1, 16_384);
        assert_eq!(Receiver::new(1 << 20).window_mask + 1, SEQ_WINDOW_MAX);
        assert_eq!(Receiver::new(u64::MAX).window_mask + 1, SEQ_WINDOW_MAX);
        // In a window that covers the run, every repeat is a duplicate.
        let mut r = Receiver::new(100_000);
        for s in (0..100_000).chain([0, 50_000, 99_999]) {
            r.record(s, 0, 1, 64);
        }
        assert_eq!((r.duplicates(), r.reordered()), (3, 0));
    }

    #[test]
    fn latency_percentiles_from_known_inputs() {
        // Latencies 1..=1000 us, shuffled by a stride so that order doesn't matter.
        let mut r = Receiver::new(1000);
        for i in 0..1000u64 {
            let seq = (i * 7) % 1000;
            let lat = (seq + 1) * 1000;
            r.record(seq, 5_000, 5_000 + lat, 128);
        }
        let l = r.latency().unwrap();
        assert_eq!(l.min, 1_000);
        assert_eq!(l.max, 1_000_000);
        assert_eq!(l.mean, 500_500.0);
        let near = |got: u64, want: u64| {
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err <= 0.001, "got {got}, want {want}");
        };
        near(l.p50, 500_000);
        near(l.p90, 900_000);
        near(l.p99, 990_000);
        near(l.p999, 999_000);
        assert!(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99);
        assert!(l.p99 <= l.p999 && l.p999 <= l.max);
    }

    #[test]
    fn latency_edge_cases() {
        assert_eq!(Receiver::new(10).latency(), None);
        let mut r = Receiver::new(10);
        r.record(0, 100, 50, 64); // RX before TX: 0 ns
        r.record(1, 0, LATENCY_MAX_NS * 3, 64); // beyond the histogram: clamped there
        let l = r.latency().unwrap();
        assert_eq!((l.min, l.max), (0, LATENCY_MAX_NS * 3));
        assert_eq!(r.latency_clamped(), 1);
        assert_eq!(r.latency_histogram().len(), 2);
        assert!(l.p999 <= l.max);
    }

    #[test]
    fn record_does_not_allocate_more() {
        let mut r = Receiver::new(1 << 20);
        let (words, counts) = (r.window.capacity(), r.latency.distinct_values());
        for s in (0..3_000_000u64).step_by(7) {
            r.record(s, 0, s * 3, 1518);
        }
        assert_eq!(r.window.capacity(), words);
        assert_eq!(r.latency.distinct_values(), counts);
    }

    fn sample_report() -> (Report, Receiver) {
        let r = receiver_with(&(0..1000).filter(|s| s % 100 != 0).collect::<Vec<_>>());
        let mut rep =
            Report::build(1000, 64_000, Some(&r), Duration::from_secs(2), &[64], "500pps");
        rep.search = Some(vec![
            SearchPoint {
                frame_size: 64,
                throughput_pps: 14_880_952.0,
                throughput_bps_l1: 1e10,
                trials: 12,
            },
            SearchPoint {
                frame_size: 1518,
                throughput_pps: 812_743.5,
                throughput_bps_l1: 9.999e9,
                trials: 9,
            },
        ]);
        (rep, r)
    }

    #[test]
    fn json_round_trip_and_field_names() {
        let (rep, _) = sample_report();
        let text = serde_json::to_string_pretty(&rep).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rep);

        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = vec![
            "tx_packets",
            "rx_packets",
            "lost",
            "duplicates",
            "reordered",
            "tx_pps",
            "rx_pps",
            "tx_bps_l1",
            "rx_bps_l1",
            "duration_s",
            "sizes",
            "asked_rate",
            "latency_ns",
            "search",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        let lat = v["latency_ns"].as_object().unwrap();
        let mut lat_keys: Vec<&str> = lat.keys().map(String::as_str).collect();
        lat_keys.sort_unstable();
        assert_eq!(lat_keys, ["max", "mean", "min", "p50", "p90", "p99", "p999"]);
        assert_eq!(v["lost"], 10);
        assert_eq!(v["rx_packets"], 990);
        assert_eq!(v["latency_ns"]["max"], 999_000);
        let sp = v["search"][0].as_object().unwrap();
        let mut sp_keys: Vec<&str> = sp.keys().map(String::as_str).collect();
        sp_keys.sort_unstable();
        assert_eq!(sp_keys, ["frame_size", "throughput_bps_l1", "throughput_pps", "trials"]);

        // Nothing received: latency is null, and that round-trips too.
        let empty = Report::build(5, 320, None, Duration::ZERO, &[64], "max");
        let v = serde_json::to_value(&empty).unwrap();
        assert!(v["latency_ns"].is_null() && v["search"].is_null());
        assert_eq!((empty.lost, empty.tx_pps), (5, 0.0));
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, empty);
    }

    #[test]
    fn human_has_the_key_numbers() {
        let (rep, _) = sample_report();
        let h = rep.human();
        let l = rep.latency_ns.clone().unwrap();
        // 999 us is the largest latency; 1 in 100 sequence numbers never arrived.
        assert_eq!(l.max, 999_000);
        for needle in [
            "1000 packets".to_string(),
            "990 packets".to_string(),
            " 10 packets".to_string(),
            "(1.0000 %)".to_string(),
            format!("duplicates {:>14}", 0),
            format!("reordered  {:>14}", 0),
            " 500 pps".to_string(),
            " 495 pps".to_string(),
            "0.3 Mbit/s".to_string(),
            format!("p50 {:.2}", l.p50 as f64 / 1e3),
            format!("p90 {:.2}", l.p90 as f64 / 1e3),
            format!("p99 {:.2}", l.p99 as f64 / 1e3),
            format!("p99.9 {:.2}", l.p999 as f64 / 1e3),
            "max 999.00".to_string(),
            "14880952 pps".to_string(),
            "10000.0 Mbit/s".to_string(),
            "12 trials".to_string(),
            "rate asked 500pps".to_string(),
        ] {
            assert!(h.contains(&needle), "{needle:?} missing from:\n{h}");
        }
        assert!((l.p50 as f64 - 499_000.0).abs() <= 499.0, "{}", l.p50);
        let none = Report::build(5, 320, None, Duration::from_secs(1), &[64, 1518], "max");
        let h = none.human();
        assert!(h.contains("nothing received") && h.contains("64,1518"), "{h}");
    }

    fn tmp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferroplane-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn assert_png(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((w, h), PLOT_SIZE);
        assert!(bytes.len() > 8_000, "only {} bytes", bytes.len());
    }

    #[test]
    fn plot_writes_a_png() {
        let (rep, r) = sample_report();
        let path = tmp_path("search.png");
        plot(&rep, Some(&r), &path).unwrap();
        assert_png(&path);

        // A single run, no extension, percentiles from the report only.
        let mut single = rep.clone();
        single.search = None;
        let path = tmp_path("single.plot");
        plot(&single, None, &path).unwrap();
        assert_png(&path);

        // Nothing received at all.
        let none = Report::build(5, 320, None, Duration::from_secs(1), &[64], "max");
        let path = tmp_path("none.png");
        plot(&none, None, &path).unwrap();
        assert_png(&path);
        let leftovers = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp."))
            .count();
        assert_eq!(leftovers, 0, "temporary files left behind");

        let bad = tmp_path("no-such-dir").join("x.png");
        assert!(plot(&none, None, &bad).is_err());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn font_table_is_well_formed() {
        for (c, rows) in GLYPHS {
            let rows: Vec<&str> = rows.split_whitespace().collect();
            assert!(rows.len() <= 9, "{c:?}");
            assert!(*c == ' ' || rows.len() >= 7, "{c:?}");
            for row in rows {
                assert!(row.len() == 5 && row.bytes().all(|b| b == b'.' || b == b'#'), "{c:?}");
            }
        }
        assert_eq!(glyph('µ'), glyph('?'));
        assert_eq!(text_width("ab", 2), 22);
    }

    #[test]
    fn ticks_and_labels() {
        let (t, top) = nice_ticks(14.88 * 1.15);
        assert_eq!(t.first(), Some(&0.0));
        assert!(top >= 14.88 * 1.15 && t.len() <= 7, "{t:?}");
        assert_eq!(nice_ticks(0.0).1, 1.0);
        assert_eq!(tick_label(2.5, 2.5), "2.5");
        assert_eq!(tick_label(0.2, 0.2), "0.2");
        assert_eq!(tick_label(400.0, 200.0), "400");
        assert_eq!(percentile_label(0), "0%");
        assert_eq!(percentile_label(2), "99%");
        assert_eq!(percentile_label(4), "99.99%");
    }
}
