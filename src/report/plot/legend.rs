//! Where a chart's legend goes: a corner of the plot that no curve crosses, with headroom above the
//! curves if no corner is free at first.

use super::Curve;

/// Gap between the legend box and the plot's edges, in pixels.
pub const LEGEND_INSET: i32 = 10;

/// A corner of the plotting area, where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
}

impl Corner {
    /// The top-left pixel of a box of `size` in this corner of a `plot`, `inset` from its edges.
    pub fn origin(self, (plot_w, plot_h): (f64, f64), (w, h): (f64, f64), inset: f64) -> (f64, f64) {
        let left = match self {
            Corner::UpperLeft | Corner::LowerLeft => inset,
            Corner::UpperRight | Corner::LowerRight => plot_w - w - inset,
        };
        let top = match self {
            Corner::UpperLeft | Corner::UpperRight => inset,
            Corner::LowerLeft | Corner::LowerRight => plot_h - h - inset,
        };
        (left, top)
    }
}

/// Chooses the top of the y axis and the legend's corner: the first free corner (upper right, upper
/// left, lower right, lower left) with the y axis 8% above the largest value, then with more headroom,
/// up to three times the largest value (the top two thirds free: room for a legend of many lines
/// above curves that cross the whole width); if none is ever free, the corner crossed by the fewest
/// curve samples.
pub fn place_legend(
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
    let (left, top) = corner.origin((plot_w, plot_h), (w, h), LEGEND_INSET as f64 - pad);
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
    use crate::report::plot::{HEIGHT, LEGEND_MARGIN, MARGIN, WIDTH, X_LABEL_AREA, Y_LABEL_AREA};

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
