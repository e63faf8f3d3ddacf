//! `warpnet analyze taylor|paths|gradients` end to end on tiny random networks: the --json line's
//! fields and their consistency, and the --plot chart written where asked, in the asked format.

use std::path::Path;

use serde_json::Value;

use crate::binary;
use binary::warpnet;

/// Runs `analyze <what> <args> --json --plot <chart>` and returns the parsed last stdout line.
fn analyze(what: &str, args: &[&str], chart: &Path) -> Value {
    let chart_arg = chart.to_str().unwrap();
    let out =
        warpnet(&[&["analyze", what], args, &["--images", "4", "--json", "--plot", chart_arg]].concat());
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&format!("chart: {chart_arg}")), "{what}: says where the chart is\n{stdout}");
    serde_json::from_str(stdout.lines().last().unwrap()).expect("the last line is JSON")
}

/// The chart exists, is not empty, and is the format its extension names.
fn assert_chart(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() > 100, "{}: {} bytes", path.display(), bytes.len());
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display()),
        Some("svg") => assert!(String::from_utf8_lossy(&bytes).contains("<svg"), "{}", path.display()),
        other => panic!("unexpected extension {other:?}"),
    }
}

/// C(n, k) from the multiplicative formula (independent of the crate's Pascal's rule).
fn choose(n: u64, k: u64) -> u64 {
    (0..k).fold(1, |c, i| c * (n - i) / (i + 1))
}

fn number(v: &Value, field: &str) -> f64 {
    v[field].as_f64().unwrap_or_else(|| panic!("{field} is a number in {v}"))
}

#[test]
fn taylor_json_has_every_warp_layer_and_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("charts").join("taylor.svg"); // a folder that does not exist yet
    let json = analyze("taylor", &["--nwarp", "2", "--k", "2"], &chart);
    assert_chart(&chart);
    assert_eq!(json["derivative_bn"], "frozen");
    let networks = json["networks"].as_array().unwrap();
    assert_eq!(networks.len(), 1, "no checkpoint: the random network only");
    assert_eq!(networks[0]["network"], "untrained");
    assert_eq!(networks[0]["model"], "WRN-13-1");
    let (rows, layers) = (networks[0]["rows"].as_array().unwrap(), networks[0]["layers"].as_array().unwrap());
    // 4 variants x 3 stages per K; layers: K = 1 has 2 per stage, K = 2 one.
    assert_eq!(rows.len(), 2 * 4 * 3);
    assert_eq!(layers.len(), (2 + 1) * 4 * 3);
    for layer in layers {
        let (k, first) = (number(layer, "k") as usize, number(layer, "first_unit") as usize);
        assert!((1..=3).contains(&(number(layer, "stage") as usize)), "{layer}");
        assert!(
            first >= 1 && first + k - 1 <= 2 && (first - 1) % k == 0,
            "whole units of the stage: {layer}"
        );
        let error = number(layer, "relative_error");
        assert!(error.is_finite() && error >= 0.0, "{layer}");
        if k == 1 && layer["variant"] == "exact" {
            // One unit is its own expansion: x1 + F(x1) - x2 is float32 rounding, ~1e-7.
            assert!(error < 1e-5, "K = 1 exact: {layer}");
        }
    }
    // Every per-stage figure is the mean of that stage's layers (f64 sums, printed and parsed
    // exactly: agreement to 1e-12 relative).
    for row in rows {
        let same = |l: &&Value| ["k", "variant", "stage"].iter().all(|f| l[*f] == row[*f]);
        let of_row: Vec<f64> = layers.iter().filter(same).map(|l| number(l, "relative_error")).collect();
        assert_eq!(number(row, "blocks") as usize, of_row.len(), "{row}");
        let mean = of_row.iter().sum::<f64>() / of_row.len() as f64;
        let got = number(row, "relative_error");
        assert!((got - mean).abs() <= 1e-12 * mean.abs().max(1e-300), "{row}: mean of layers {mean}");
    }
}

#[test]
fn paths_json_counts_binomials_and_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("paths.png");
    let json = analyze("paths", &["--nwarp", "3", "--k", "3"], &chart);
    assert_chart(&chart);
    assert_eq!(json["model"], "WRN-19-1");
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1 + 2 + 3, "path lengths 1..=K for K = 1..=3");
    for row in rows {
        let (k, length) = (number(row, "k_block") as u64, number(row, "length") as u64);
        assert_eq!(number(row, "terms") as u64, choose(k, length), "{row}");
        assert_eq!(number(row, "binomial") as u64, choose(k, length), "{row}");
        let share = number(row, "relative_norm");
        assert!(share.is_finite() && share > 0.0, "{row}");
        if k == 1 {
            // The one term of a one-unit block is the whole change x2 - x1: float32, ~1e-7.
            assert!((share - 1.0).abs() < 1e-5, "{row}");
        }
    }
}

#[test]
fn gradients_json_fits_every_stage_and_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("gradients.svg");
    let json = analyze("gradients", &["--nwarp", "3", "--k", "3"], &chart);
    assert_chart(&chart);
    let fits = json["fits"].as_array().unwrap();
    assert_eq!(fits.len(), 3, "one fit per stage");
    for (s, fit) in fits.iter().enumerate() {
        assert_eq!(number(fit, "stage") as usize, s + 1);
        assert_eq!((number(fit, "k"), number(fit, "first_unit")), (3.0, 1.0));
        let (factor, r_squared) = (number(fit, "factor"), number(fit, "r_squared"));
        assert!(factor.is_finite() && factor > 0.0, "{fit}");
        assert!(r_squared <= 1.0 + 1e-12, "{fit}");
        let rows = fit["rows"].as_array().unwrap();
        let paths: Vec<u64> = rows.iter().map(|r| number(r, "paths") as u64).collect();
        assert_eq!(paths, (0..=3).map(|k| choose(3, k)).collect::<Vec<_>>(), "{fit}");
        for row in rows {
            assert!(number(row, "mean_norm") > 0.0 && number(row, "fitted") > 0.0, "{row}");
        }
        // The fit is ||g|| a^k: consecutive fitted values differ by the factor a (f64, 1e-9 relative).
        for pair in rows.windows(2) {
            let ratio = number(&pair[1], "fitted") / number(&pair[0], "fitted");
            assert!((ratio - factor).abs() <= 1e-9 * factor, "{ratio} vs a = {factor}");
        }
    }
}

#[test]
fn a_chart_that_is_neither_png_nor_svg_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("taylor.gif");
    let out = warpnet(&["analyze", "taylor", "--nwarp", "1", "--k", "1", "--plot", chart.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--plot") && stderr.contains(".png or .svg"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing computed: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!chart.exists());
}
