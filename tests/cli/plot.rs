//! `warpnet plot`: learning curves of fake run folders as PNG and SVG through the binary, and the
//! one-line errors (exit code 2, no file written) for bad input.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use warpnet::report::plot::{read_curve, run_colour, Metric, HEIGHT, WIDTH};
use warpnet::train::metrics::EpochRecord;

use crate::binary;
use binary::warpnet;

fn record(epoch: usize, test_error: f64) -> EpochRecord {
    EpochRecord {
        epoch,
        step: 46 * epoch,
        lr: 0.1,
        train_loss: 0.3 + 1.5 * (-(epoch as f64) / 6.0).exp(),
        train_accuracy: 1.0 - 0.8 * test_error,
        test_loss: 0.4 + 2.0 * (-(epoch as f64) / 6.0).exp(),
        test_error,
        seconds: 30.3,
        images_per_s: 194.0,
        data_wait_seconds: 0.1,
    }
}

/// A run folder `parent/name` whose metrics.jsonl holds `epochs` epochs of a falling test error that
/// starts at `start` and levels off at `end` (fractions), written as `warpnet train` writes them.
fn fake_run(parent: &Path, name: &str, epochs: usize, start: f64, end: f64) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let lines: Vec<String> = (1..=epochs)
        .map(|e| {
            let wiggle = 0.01 * ((e * 7 % 5) as f64 - 2.0) / 2.0;
            let error = end + (start - end) * (-(e as f64) / 8.0).exp() + wiggle;
            serde_json::to_string(&record(e, error)).unwrap()
        })
        .collect();
    std::fs::write(dir.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
    dir
}

/// Two runs of the same length, as in the paper's Fig. 2.
fn two_runs(parent: &Path) -> (PathBuf, PathBuf) {
    (
        fake_run(parent, "WRN-13-4-fashion-mnist", 40, 0.60, 0.09),
        fake_run(parent, "WarpNet1-13-4-fashion-mnist", 40, 0.70, 0.10),
    )
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The names of the files in `dir`.
fn listing(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// Asserts a one-line refusal naming every needle (binary::assert_rejected_naming), and that nothing
/// new appeared in `out_dir`.
fn assert_rejected(args: &[&str], needles: &[&str], out_dir: &Path) {
    let before = listing(out_dir);
    binary::assert_rejected_naming(args, needles);
    assert_eq!(listing(out_dir), before, "{args:?} wrote a file");
}

#[test]
fn png_has_its_size_and_both_curves() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_runs(dir.path());
    let out_dir = dir.path().join("plots");
    std::fs::create_dir(&out_dir).unwrap();
    let png = out_dir.join("fig2.png");
    let out = warpnet(&["plot", s(&a), s(&b), "--out", s(&png)]);
    assert!(out.status.success(), "stderr {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), s(&png), "prints the path written");
    assert_eq!(listing(&out_dir), HashSet::from(["fig2.png".to_string()]), "no temporary file left");

    let image = image::open(&png).expect("a PNG that decodes").to_rgb8();
    assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
    let colours: HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 2, "a chart, not a blank picture: {} colours", colours.len());
    // Each curve's colour covers far more pixels than its legend swatch (about 70 pixels).
    for run in 0..2 {
        let (r, g, b) = run_colour(run);
        let count = image.pixels().filter(|p| p.0 == [r, g, b]).count();
        assert!(count > 400, "run {run}'s colour ({r}, {g}, {b}) covers only {count} pixels");
    }
    assert_ne!(run_colour(0), run_colour(1), "distinct colours");
}

#[test]
fn svg_names_both_runs_and_the_axes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_runs(dir.path());
    let svg_path = dir.path().join("fig2.svg");
    let out = warpnet(&["plot", s(&a), s(&b), "--out", s(&svg_path), "--title", "Fashion-MNIST"]);
    assert!(out.status.success(), "stderr {}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    for text in
        ["WRN-13-4-fashion-mnist", "WarpNet1-13-4-fashion-mnist", "epoch", "test error (%)", "Fashion-MNIST"]
    {
        assert!(svg.contains(text), "the SVG lacks {text:?}");
    }

    // Another metric changes the y axis label; an upper-case extension is still SVG.
    let loss_path = dir.path().join("loss.SVG");
    let out = warpnet(&["plot", s(&a), s(&b), "--out", s(&loss_path), "--metric", "train-loss"]);
    assert!(out.status.success(), "stderr {}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(&loss_path).unwrap();
    assert!(svg.contains("training loss") && !svg.contains("test error (%)"));
}

#[test]
fn bad_input_is_one_line_exit_2_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = two_runs(dir.path());
    let out_dir = dir.path().join("plots");
    std::fs::create_dir(&out_dir).unwrap();
    let png = out_dir.join("fig.png");

    // A folder with no metrics.jsonl.
    let bare = dir.path().join("bare-run");
    std::fs::create_dir(&bare).unwrap();
    assert_rejected(
        &["plot", s(&good), s(&bare), "--out", s(&png)],
        &["bare-run", "metrics.jsonl"],
        &out_dir,
    );

    // A folder that does not exist.
    let missing = dir.path().join("no-such-run");
    assert_rejected(&["plot", s(&missing), "--out", s(&png)], &["no-such-run"], &out_dir);

    // An empty metrics.jsonl.
    let empty = dir.path().join("empty-run");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("metrics.jsonl"), "").unwrap();
    assert_rejected(
        &["plot", s(&empty), "--out", s(&png)],
        &["empty-run", "metrics.jsonl", "empty"],
        &out_dir,
    );

    // A line that is not JSON, named by its number.
    let broken = dir.path().join("broken-run");
    std::fs::create_dir(&broken).unwrap();
    let first = serde_json::to_string(&record(1, 0.5)).unwrap();
    let second = serde_json::to_string(&record(2, 0.4)).unwrap();
    std::fs::write(broken.join("metrics.jsonl"), format!("{first}\n{second}\n{{\"epoch\":3,\"test_er\n"))
        .unwrap();
    assert_rejected(
        &["plot", s(&broken), "--out", s(&png)],
        &["broken-run", "metrics.jsonl", "line 3"],
        &out_dir,
    );

    // A record without the metric asked for.
    let partial = dir.path().join("partial-run");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("metrics.jsonl"), format!("{first}\n{{\"epoch\":2}}\n")).unwrap();
    assert_rejected(&["plot", s(&partial), "--out", s(&png)], &["line 2", "test_error"], &out_dir);

    // An output extension that is neither .png nor .svg, and none at all.
    let jpg = out_dir.join("fig.jpg");
    assert_rejected(&["plot", s(&good), "--out", s(&jpg)], &["--out", ".jpg"], &out_dir);
    let bare_name = out_dir.join("fig");
    assert_rejected(&["plot", s(&good), "--out", s(&bare_name)], &["--out", "extension"], &out_dir);

    // An output folder that does not exist.
    let nowhere = dir.path().join("no-such-folder").join("fig.png");
    assert_rejected(&["plot", s(&good), "--out", s(&nowhere)], &["--out", "no-such-folder"], &out_dir);
    assert!(!nowhere.exists());

    // No run folders, and no --out.
    assert_rejected(&["plot", "--out", s(&png)], &["no run folders"], &out_dir);
    assert_rejected(&["plot", s(&good)], &["--out", "missing"], &out_dir);

    assert!(!png.exists() && !jpg.exists());
}

#[test]
fn a_restarted_history_and_missing_values_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("resumed");
    std::fs::create_dir(&run).unwrap();
    let line = |epoch: usize, error: f64| serde_json::to_string(&record(epoch, error)).unwrap();
    // Epochs 1-3, then a resume from epoch 2 (superseding 2 and 3), then epoch 4 with a NaN training
    // loss (stored as null) and epoch 5 again finite; a blank line in between is ignored.
    let mut nan_loss = record(4, 0.2);
    nan_loss.train_loss = f64::NAN;
    let nan_line = serde_json::to_string(&nan_loss).unwrap();
    assert!(nan_line.contains("\"train_loss\":null"), "{nan_line}");
    let text = [line(1, 0.5), line(2, 0.45), line(3, 0.4), String::new(), line(2, 0.3), line(3, 0.25)]
        .into_iter()
        .chain([nan_line, line(5, 0.15)])
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(run.join("metrics.jsonl"), text).unwrap();

    let curve = read_curve(&run, Metric::TestError).unwrap();
    assert_eq!(curve.label, "resumed");
    let epochs: Vec<u32> = curve.points().map(|p| p.0).collect();
    assert_eq!(epochs, [1, 2, 3, 4, 5]);
    let errors: Vec<f64> = curve.points().map(|p| p.1).collect();
    for (got, want) in errors.iter().zip([50.0, 30.0, 25.0, 20.0, 15.0]) {
        assert!((got - want).abs() < 1e-9, "test error in percent: {errors:?}");
    }
    assert_eq!(curve.segments.len(), 1);

    let loss = read_curve(&run, Metric::TrainLoss).unwrap();
    let segments: Vec<Vec<u32>> = loss.segments.iter().map(|s| s.iter().map(|p| p.0).collect()).collect();
    assert_eq!(segments, [vec![1, 2, 3], vec![5]], "the null loss splits the curve");

    let train_error = read_curve(&run, Metric::TrainError).unwrap();
    let first = train_error.points().next().unwrap();
    assert!((first.1 - 40.0).abs() < 1e-9, "100 (1 - train_accuracy): {first:?}");
}
