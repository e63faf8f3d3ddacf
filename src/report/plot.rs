//! Learning curves: one metric against epoch for several runs on one chart (the paper's Fig. 2), as
//! PNG or SVG.
//!
//! A run is a folder written by `warpnet train`; its `metrics.jsonl` holds one JSON object per epoch
//! ([`crate::train::metrics::EpochRecord`]). The curve's label is the folder name. The chart is drawn
//! in memory and written atomically, so a failure never leaves a partial file under the output name.

mod legend;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use anyhow::{anyhow, Context};
use plotters::coord::types::{RangedCoordf64, RangedCoordu32};
use plotters::coord::Shift;
use plotters::element::MultiLineText;
use plotters::prelude::*;
use plotters::style::FontStyle;

pub use super::curves::{read_curve, read_lm_curve, Curve, Metric};
use crate::base::atomic_file::write_atomic;
use crate::error::input_error;
use legend::{place_legend, Corner, LEGEND_INSET};

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

/// The chart a language model's run folder holds: validation bits per byte against step.
pub const LM_CHART: &str = "validation-bpb.png";

/// Draws validation bits per byte against step for every language model's run folder in `runs`, one
/// line each labelled with its folder name, and writes the chart to `out`.
pub fn plot_lm_runs(runs: &[PathBuf], out: &Path, title: Option<&str>) -> anyhow::Result<()> {
    let curves = runs.iter().map(|dir| read_lm_curve(dir)).collect::<anyhow::Result<Vec<_>>>()?;
    let axes = Axes { x: "step".into(), y: "validation bits per byte".into() };
    write_chart(&curves, out, &axes, title)
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
pub(super) const MARGIN: u32 = 20;
pub(super) const X_LABEL_AREA: u32 = 60;
pub(super) const Y_LABEL_AREA: u32 = 80;
const TITLE_SIZE: u32 = 26;
const AXIS_SIZE: u32 = 20;
const TICK_SIZE: u32 = 16;
const LEGEND_SIZE: u32 = 16;
pub(super) const LEGEND_MARGIN: u32 = 10;
const LEGEND_SWATCH: u32 = 40;

/// The chart's coordinates: epochs across, values up.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordu32, RangedCoordf64>>;
type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

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
    let legend = legend_size(curves)?;
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
    draw_mesh(&mut chart, axes, y_top).map_err(fail)?;
    draw_curves(&mut chart, curves).map_err(fail)?;
    draw_legend(&mut chart, corner, legend).map_err(fail)
}

/// The legend box's width and height in pixels: one line per curve beside its colour swatch.
fn legend_size(curves: &[Curve]) -> anyhow::Result<(i32, i32)> {
    let legend_style: TextStyle = (FAMILY, LEGEND_SIZE).into_font().into();
    let mut legend_text = MultiLineText::<_, &str>::new((0, 0), &legend_style);
    for curve in curves {
        legend_text.push_line(curve.label.as_str());
    }
    let (text_w, text_h) =
        legend_text.estimate_dimension().map_err(|e| anyhow!("cannot lay out text: {e}"))?;
    Ok((text_w + (LEGEND_SWATCH + 2 * LEGEND_MARGIN) as i32, text_h + 2 * LEGEND_MARGIN as i32))
}

/// Axes, their titles and the grid; tick labels with as many decimals as the y range needs.
fn draw_mesh<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    axes: &Axes,
    y_top: f64,
) -> DrawResult<DB> {
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
}

/// Each curve's segments in its run colour, lone points marked, one legend entry per curve.
fn draw_curves<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, curves: &[Curve]) -> DrawResult<DB> {
    for (index, curve) in curves.iter().enumerate() {
        let (r, g, b) = run_colour(index);
        let colour = RGBColor(r, g, b);
        let style = colour.stroke_width(2);
        // The legend entry comes with the first series drawn, an empty one if the run has no point.
        chart
            .draw_series(LineSeries::new(curve.segments.first().into_iter().flatten().copied(), style))?
            .label(curve.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + LEGEND_SWATCH as i32 - 8, y)], style));
        for segment in curve.segments.iter().skip(1) {
            chart.draw_series(LineSeries::new(segment.iter().copied(), style))?;
        }
        // A point with no neighbour (a one-epoch run) has no line: mark it.
        let lone = curve.segments.iter().filter(|s| s.len() == 1).flatten();
        chart.draw_series(lone.map(|&p| Circle::new(p, 4, colour.filled())))?;
    }
    Ok(())
}

/// The legend box of size `legend` in `corner` of the plotting area.
fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    corner: Corner,
    legend: (i32, i32),
) -> DrawResult<DB> {
    let (plot_w, plot_h) = chart.plotting_area().dim_in_pixel();
    let plot = (plot_w as f64, plot_h as f64);
    let (x, y) = corner.origin(plot, (legend.0 as f64, legend.1 as f64), LEGEND_INSET as f64);
    let (x, y) = (x.round() as i32, y.round() as i32);
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::Coordinate(x, y))
        .margin(LEGEND_MARGIN)
        .legend_area_size(LEGEND_SWATCH)
        .label_font((FAMILY, LEGEND_SIZE).into_font())
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(0xbb, 0xbb, 0xbb))
        .draw()
}
