//! Learning curves: one metric against epoch for several runs on one chart (the paper's Fig. 2), as
//! PNG or SVG.
//!
//! A run is a folder written by `warpnet train`; its `metrics.jsonl` holds one JSON object per epoch
//! ([`crate::train::metrics::EpochRecord`]). The curve's label is the folder name. The chart is drawn
//! in memory and written atomically, so a failure never leaves a partial file under the output name.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::element::MultiLineText;
use plotters::prelude::*;
use plotters::style::FontStyle;

pub use super::curves::{read_curve, Curve, Metric};
use crate::base::atomic_file::write_atomic;
use crate::error::input_error;

/// DejaVu Sans (see `assets/fonts/LICENSE-DejaVu.txt`): every text of the chart, PNG and SVG alike
/// (the SVG names the family; the font's metrics lay the text out).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family name the chart's text styles ask for.
const FAMILY: &str = "sans-serif";

/// Chart size in pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 600;

/// Line colours, one per run in the order given (cycled past ten): the Tableau 10 palette, distinct
/// from each other and from the grid's greys.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (0x1f, 0x77, 0xb4),
    (0xff, 0x7f, 0x0e),
    (0x2c, 0xa0, 0x2c),
    (0xd6, 0x27, 0x28),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x7f, 0x7f, 0x7f),
    (0xbc, 0xbd, 0x22),
    (0x17, 0xbe, 0xcf),
];

/// The colour of the `index`-th run's curve.
pub fn run_colour(index: usize) -> (u8, u8, u8) {
    PALETTE[index % PALETTE.len()]
}

/// Output format, from the extension of the output path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    /// `.png` or `.svg` (any case); anything else is one input-error line naming `--out`.
    pub fn from_path(out: &Path) -> anyhow::Result<Format> {
        let ext = out.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            Some(other) => Err(input_error(format!(
                "--out {}: unknown extension '.{other}' (use .png or .svg)",
                out.display()
            ))),
            None => Err(input_error(format!("--out {}: no extension (use .png or .svg)", out.display()))),
        }
    }
}

/// Draws `metric` against epoch for every run folder in `runs`, one line each, and writes the chart to
/// `out` as PNG or SVG by its extension.
pub fn plot_runs(runs: &[PathBuf], out: &Path, metric: Metric) -> anyhow::Result<()> {
    plot_runs_titled(runs, out, metric, None)
}

/// [`plot_runs`] with a title above the chart.
pub fn plot_runs_titled(
    runs: &[PathBuf],
    out: &Path,
    metric: Metric,
    title: Option<&str>,
) -> anyhow::Result<()> {
    Format::from_path(out)?;
    if runs.is_empty() {
        crate::bail_input!("no run folders given (warpnet plot RUN_DIR... --out FILE)");
    }
    let mut curves = runs.iter().map(|dir| read_curve(dir, metric)).collect::<anyhow::Result<Vec<_>>>()?;
    // Two folders of the same name in different places: label them by their paths instead.
    let shared: Vec<bool> =
        curves.iter().map(|a| curves.iter().filter(|b| b.label == a.label).count() > 1).collect();
    for ((curve, dir), shared) in curves.iter_mut().zip(runs).zip(shared) {
        if shared {
            curve.label = dir.display().to_string();
        }
    }
    write_chart(&curves, out, &Axes::against_epoch(metric), title)
}

/// Draws `curves` and writes the chart to `out` as PNG or SVG by its extension.
pub fn write_chart(curves: &[Curve], out: &Path, axes: &Axes, title: Option<&str>) -> anyhow::Result<()> {
    let format = Format::from_path(out)?;
    if out.is_dir() {
        crate::bail_input!("--out {}: is a folder, not a file", out.display());
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            crate::bail_input!("--out {}: folder {} does not exist", out.display(), parent.display());
        }
    }
    write_atomic(out, &render(curves, axes, title, format)?)
}

/// The axis titles of a chart.
#[derive(Debug, Clone)]
pub struct Axes {
    pub x: String,
    pub y: String,
}

impl Axes {
    /// A learning curve: `metric` against epoch.
    pub fn against_epoch(metric: Metric) -> Self {
        Axes { x: "epoch".into(), y: metric.axis_label().into() }
    }
}

/// Draws the chart in memory: PNG bytes or SVG text. The x values are whole numbers (epochs, K, k).
pub fn render(curves: &[Curve], axes: &Axes, title: Option<&str>, format: Format) -> anyhow::Result<Vec<u8>> {
    register_font()?;
    match format {
        Format::Png => {
            let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
                draw(&root, curves, axes, title)?;
                root.present().map_err(|e| anyhow!("cannot draw the chart: {e}"))?;
            }
            let image = image::RgbImage::from_raw(WIDTH, HEIGHT, pixels)
                .context("chart buffer does not match its size")?;
            let mut png = Vec::new();
            image
                .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .context("cannot encode PNG")?;
            Ok(png)
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
                draw(&root, curves, axes, title)?;
                root.present().map_err(|e| anyhow!("cannot draw the chart: {e}"))?;
            }
            Ok(svg.into_bytes())
        }
    }
}

/// Registers the embedded font once per process.
fn register_font() -> anyhow::Result<()> {
    static ONCE: Once = Once::new();
    static LOADED: AtomicBool = AtomicBool::new(false);
    ONCE.call_once(|| {
        let loaded = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok();
        LOADED.store(loaded, Ordering::Release);
    });
    if LOADED.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(anyhow!("the embedded font DejaVuSans.ttf cannot be loaded"))
    }
}

/// Layout, in pixels.
const MARGIN: u32 = 20;
const X_LABEL_AREA: u32 = 60;
const Y_LABEL_AREA: u32 = 80;
const TITLE_SIZE: u32 = 26;
const AXIS_SIZE: u32 = 20;
const TICK_SIZE: u32 = 16;
const LEGEND_SIZE: u32 = 16;
const LEGEND_MARGIN: u32 = 10;
const LEGEND_SWATCH: u32 = 40;
/// Gap between the legend box and the plot's edges.
const LEGEND_INSET: i32 = 10;

/// A corner of the plotting area, where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corner {
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    axes: &Axes,
    title: Option<&str>,
) -> anyhow::Result<()> {
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("cannot draw the chart: {e}");
    root.fill(&WHITE).map_err(fail)?;
    let area = match title {
        Some(text) if !text.is_empty() => root.titled(text, (FAMILY, TITLE_SIZE)).map_err(fail)?,
        _ => root.clone(),
    };

    // At least two epochs wide, so that a one-epoch run's point is not on the edge.
    let max_epoch = curves.iter().flat_map(|c| c.points().map(|p| p.0)).max().unwrap_or(1).max(2);
    let max_value = curves.iter().flat_map(|c| c.points().map(|p| p.1)).fold(0.0f64, f64::max);
    let max_value = if max_value > 0.0 { max_value } else { 1.0 };

    // Where the legend fits without covering a curve: a corner of the plot, with more room above the
    // highest value if no corner is free at first.
    let legend_font = (FAMILY, LEGEND_SIZE).into_font();
    let legend_style: TextStyle = legend_font.clone().into();
    let mut legend_text = MultiLineText::<_, &str>::new((0, 0), &legend_style);
    for curve in curves {
        legend_text.push_line(curve.label.as_str());
    }
    let (text_w, text_h) =
        legend_text.estimate_dimension().map_err(|e| anyhow!("cannot lay out text: {e}"))?;
    let legend = (text_w + (LEGEND_SWATCH + 2 * LEGEND_MARGIN) as i32, text_h + 2 * LEGEND_MARGIN as i32);
    let (area_w, area_h) = area.dim_in_pixel();
    let plot = (
        area_w.saturating_sub(2 * MARGIN + Y_LABEL_AREA) as f64,
        area_h.saturating_sub(2 * MARGIN + X_LABEL_AREA) as f64,
    );
    let (y_top, corner) = place_legend(curves, max_epoch, max_value, plot, legend);

    let mut chart = ChartBuilder::on(&area)
        .margin(MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(0u32..max_epoch, 0.0..y_top)
        .map_err(fail)?;

    let decimals = if y_top >= 20.0 {
        0
    } else if y_top >= 2.0 {
        1
    } else {
        2
    };
    chart
        .configure_mesh()
        .x_desc(axes.x.as_str())
        .y_desc(axes.y.as_str())
        .axis_desc_style((FAMILY, AXIS_SIZE))
        .label_style((FAMILY, TICK_SIZE))
        .x_labels(12)
        .y_labels(10)
        .max_light_lines(4)
        .y_label_formatter(&|v: &f64| format!("{v:.decimals$}"))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .light_line_style(RGBColor(0xf2, 0xf2, 0xf2))
        .axis_style(RGBColor(0x44, 0x44, 0x44))
        .draw()
        .map_err(fail)?;

    for (index, curve) in curves.iter().enumerate() {
        let (r, g, b) = run_colour(index);
        let colour = RGBColor(r, g, b);
        let style = colour.stroke_width(2);
        // The legend entry comes with the first series drawn, an empty one if the run has no point.
        chart
            .draw_series(LineSeries::new(curve.segments.first().into_iter().flatten().copied(), style))
            .map_err(fail)?
            .label(curve.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + LEGEND_SWATCH as i32 - 8, y)], style));
        for segment in curve.segments.iter().skip(1) {
            chart.draw_series(LineSeries::new(segment.iter().copied(), style)).map_err(fail)?;
        }
        // A point with no neighbour (a one-epoch run) has no line: mark it.
        let lone = curve.segments.iter().filter(|s| s.len() == 1).flatten();
        chart.draw_series(lone.map(|&p| Circle::new(p, 4, colour.filled()))).map_err(fail)?;
    }

    let (plot_w, plot_h) = chart.plotting_area().dim_in_pixel();
    let x = match corner {
        Corner::UpperLeft | Corner::LowerLeft => LEGEND_INSET,
        Corner::UpperRight | Corner::LowerRight => plot_w as i32 - legend.0 - LEGEND_INSET,
    };
    let y = match corner {
        Corner::UpperLeft | Corner::UpperRight => LEGEND_INSET,
        Corner::LowerLeft | Corner::LowerRight => plot_h as i32 - legend.1 - LEGEND_INSET,
    };
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::Coordinate(x, y))
        .margin(LEGEND_MARGIN)
        .legend_area_size(LEGEND_SWATCH)
        .label_font(legend_font)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(0xbb, 0xbb, 0xbb))
        .draw()
        .map_err(fail)?;
    Ok(())
}

/// Chooses the top of the y axis and the legend's corner: the first free corner (upper right, upper
/// left, lower right, lower left) with the y axis 8% above the largest value, then with more headroom,
/// up to three times the largest value (the top two thirds free: room for a legend of many lines
/// above curves that cross the whole width); if none is ever free, the corner crossed by the fewest
/// curve samples.
fn place_legend(
    curves: &[Curve],
    max_epoch: u32,
    max_value: f64,
    plot: (f64, f64),
    legend: (i32, i32),
) -> (f64, Corner) {
    const CORNERS: [Corner; 4] =
        [Corner::UpperRight, Corner::UpperLeft, Corner::LowerRight, Corner::LowerLeft];
    let mut best: Option<(usize, Corner)> = None;
    for headroom in [1.08, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0] {
        let y_top = max_value * headroom;
        for corner in CORNERS {
            let hits = legend_hits(curves, max_epoch, y_top, plot, legend, corner);
            if hits == 0 {
                return (y_top, corner);
            }
            if headroom == 1.08 && best.is_none_or(|(h, _)| hits < h) {
                best = Some((hits, corner));
            }
        }
    }
    (max_value * 1.08, best.map_or(Corner::UpperRight, |(_, c)| c))
}

/// How many samples along the curves fall inside the legend box (plus a few pixels) at `corner`.
fn legend_hits(
    curves: &[Curve],
    max_epoch: u32,
    y_top: f64,
    (plot_w, plot_h): (f64, f64),
    (legend_w, legend_h): (i32, i32),
    corner: Corner,
) -> usize {
    let pad = 4.0;
    let (w, h) = (legend_w as f64 + 2.0 * pad, legend_h as f64 + 2.0 * pad);
    let inset = LEGEND_INSET as f64 - pad;
    let left = match corner {
        Corner::UpperLeft | Corner::LowerLeft => inset,
        Corner::UpperRight | Corner::LowerRight => plot_w - w - inset,
    };
    let top = match corner {
        Corner::UpperLeft | Corner::UpperRight => inset,
        Corner::LowerLeft | Corner::LowerRight => plot_h - h - inset,
    };
    let to_pixel = |(e, v): (u32, f64)| (e as f64 / max_epoch as f64 * plot_w, (1.0 - v / y_top) * plot_h);
    let inside = |(x, y): (f64, f64)| x >= left && x <= left + w && y >= top && y <= top + h;
    let mut hits = 0;
    for curve in curves {
        for segment in &curve.segments {
            let pixels: Vec<(f64, f64)> = segment.iter().map(|&p| to_pixel(p)).collect();
            hits += pixels.iter().filter(|&&p| inside(p)).count();
            for pair in pixels.windows(2) {
                let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
                let steps = ((x1 - x0).abs().max((y1 - y0).abs()) / 2.0).ceil().max(1.0) as usize;
                hits += (1..steps)
                    .map(|s| s as f64 / steps as f64)
                    .filter(|t| inside((x0 + t * (x1 - x0), y0 + t * (y1 - y0))))
                    .count();
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nine flat curves across every epoch, at 1/9, 2/9, ... 9/9 of the largest value (the agreement
    /// chart's nine lines span the width like this): no corner below the largest value is free, so
    /// the legend of nine lines (16 px type: about 190 px tall) must go into headroom above it, and
    /// there it crosses no curve.
    #[test]
    fn a_legend_of_many_lines_covers_no_curve() {
        let curves: Vec<Curve> = (1..=9)
            .map(|i| Curve {
                label: format!("run {i}"),
                segments: vec![(1..=10).map(|e| (e, i as f64)).collect()],
            })
            .collect();
        let plot = ((WIDTH - 2 * MARGIN - Y_LABEL_AREA) as f64, (HEIGHT - 2 * MARGIN - X_LABEL_AREA) as f64);
        let legend = (200, 9 * 19 + 2 * LEGEND_MARGIN as i32);
        let (y_top, corner) = place_legend(&curves, 10, 9.0, plot, legend);
        assert_eq!(legend_hits(&curves, 10, y_top, plot, legend, corner), 0, "y top {y_top}, {corner:?}");
    }
}
