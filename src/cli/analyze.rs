//! `warpnet analyze taylor|paths|gradients|agreement`: the paper's claims about the expansion, each as
//! a command that prints its figures (and with --json one JSON line) and draws a chart.
//!
//! The network is a checkpoint's (`--checkpoint`, weights of a WRN or a WarpNet: the analyses read its
//! units as the sequential ResNet) or a fresh random one of the shape given by --nwarp and --width
//! (K * Nwarp units per stage with K = 1). Real images: the first --images test images of --data.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tch::{nn::VarStore, Device, Tensor};

use super::flags::positive;
use crate::analysis::agreement::{self, AgreementSettings};
use crate::analysis::{block::Sequential, gradients, paths, taylor};
use crate::base::named::copy_variables;
use crate::data::{self, augment::Standardizer, loader::make_batch, DataSpec};
use crate::model::{DerivativeBn, NetConfig, Variant};
use crate::report::curves::Curve;
use crate::report::plot::{self, Axes, Format};
use crate::report::Table;
use crate::train::checkpoint::load_weights;

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    #[command(subcommand)]
    pub what: Analysis,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Analysis {
    /// Relative error of the warp expansion against the sequential units, K = 1..6, every variant,
    /// per warp layer (--json) and per stage, on the trained network and on a random one of its shape.
    Taylor(NetworkArgs),
    /// Binomial path counts C(K, k) and each path length's share of a block's output.
    Paths(NetworkArgs),
    /// Gradient norm carried by paths of each length, and the fitted per-unit factor ||F'||.
    Gradients(NetworkArgs),
    /// Train WarpNet1 (true derivative), WarpNet1 with the released code's term, and their WRN twin with
    /// one seed; evaluate every epoch's weights both as WarpNet and as WRN.
    Agreement(AgreementArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AgreementArgs {
    /// Epochs of each run; the learning rate drops x0.1 at 60% and 83% of them (the demo's schedule).
    #[arg(long, default_value = "6", value_parser = positive)]
    pub epochs: usize,
    /// Warp factor K of the WarpNets (the WRN has K * Nwarp units per stage).
    #[arg(long, default_value = "2", value_parser = positive)]
    pub k: usize,
    #[arg(long, default_value = "1", value_parser = positive)]
    pub nwarp: usize,
    #[arg(long, default_value = "1", value_parser = positive)]
    pub width: usize,
    /// Training data (default: the embedded Fashion-MNIST subset).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: DataSpec,
    /// Use only the first N training images.
    #[arg(long)]
    pub limit_train: Option<usize>,
    #[arg(long, default_value = "0")]
    pub seed: u64,
    /// Folder of the three run folders (a finished run found there is evaluated again, not retrained)
    /// and, without --plot, of the chart agreement.png.
    #[arg(long, default_value = "runs/agreement")]
    pub out: PathBuf,
    /// Chart file (.png or .svg); default <out>/agreement.png.
    #[arg(long, value_parser = chart_file)]
    pub plot: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct NetworkArgs {
    /// A run folder (its model.safetensors) or weights written by `warpnet train`
    /// (RUN/model.safetensors, RUN/checkpoints/step-N.safetensors); RUN/config.toml gives the network.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Random network: warp layers per stage (units per stage with K = 1).
    #[arg(long, default_value = "6", value_parser = positive)]
    pub nwarp: usize,
    /// Random network: widening factor kw.
    #[arg(long, default_value = "1", value_parser = positive)]
    pub width: usize,
    /// Data set of the real images (default: the checkpoint's, else the embedded Fashion-MNIST subset).
    #[arg(long)]
    pub data: Option<DataSpec>,
    /// Test images fed through the network.
    #[arg(long, default_value = "128", value_parser = positive)]
    pub images: usize,
    /// Largest K (taylor, paths) or the block's K (gradients).
    #[arg(long, default_value = "6", value_parser = positive)]
    pub k: usize,
    /// BN in the Jacobians: frozen (default: with eval-mode BN the true derivative), none (the paper's).
    #[arg(long, value_enum, default_value = "frozen")]
    pub derivative_bn: DerivativeBn,
    /// Seed of the random network.
    #[arg(long, default_value = "0")]
    pub seed: i64,
    /// Chart file (.png or .svg); default runs/analysis/<analysis>.png.
    #[arg(long, value_parser = chart_file)]
    pub plot: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// The networks an analysis looks at: the checkpoint's ("trained") and a random one ("untrained"),
/// with the images and labels it sees.
struct Subjects {
    networks: Vec<(String, Sequential)>,
    images: Tensor,
    labels: Tensor,
}

fn subjects(args: &NetworkArgs, with_random: bool) -> anyhow::Result<Subjects> {
    let (trained, spec, standardizer) = match &args.checkpoint {
        Some(path) => {
            let run = crate::train::run_folder::open(path)?;
            let spec = args.data.clone().unwrap_or(run.config.data.clone());
            let config = run.config.net(run.data.class_names.len());
            let vs = VarStore::new(Device::Cpu);
            let _net = crate::model::Net::new(&vs.root(), &config);
            load_weights(&vs, &run.weights)?;
            let seq = Sequential::new(&config, &copy_variables(&vs, Device::Cpu));
            (Some(seq), spec, Some(run.data.standardizer))
        }
        None => (None, args.data.clone().unwrap_or(DataSpec::FashionMnistEmbedded), None),
    };
    let splits = data::load(&spec)?;
    let standardizer = standardizer.unwrap_or_else(|| Standardizer::fit(&splits.train));
    let n = args.images.min(splits.test.len());
    let batch = make_batch(&splits.test, &standardizer, &(0..n).collect::<Vec<_>>(), None);
    let shape = match &trained {
        Some(seq) => seq.config.clone(),
        None => NetConfig::wrn(args.nwarp, args.width, splits.train.classes),
    };
    let mut networks = Vec::new();
    if let Some(seq) = trained {
        networks.push(("trained".to_string(), seq));
    }
    if with_random || networks.is_empty() {
        networks.push(("untrained".to_string(), Sequential::random(&shape, args.seed)));
    }
    Ok(Subjects { networks, images: batch.images, labels: batch.labels })
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    match args.what {
        Analysis::Taylor(a) => run_taylor(&a),
        Analysis::Paths(a) => run_paths(&a),
        Analysis::Gradients(a) => run_gradients(&a),
        Analysis::Agreement(a) => run_agreement(&a),
    }
}

fn run_agreement(args: &AgreementArgs) -> anyhow::Result<()> {
    let settings = AgreementSettings {
        epochs: args.epochs,
        k: args.k,
        nwarp: args.nwarp,
        width: args.width,
        data: args.data.clone(),
        limit_train: args.limit_train,
        seed: args.seed,
        out: args.out.clone(),
    };
    let agreement = agreement::run(&settings)?;
    print!("{}", agreement.table.markdown());
    let chart = args.plot.clone().unwrap_or_else(|| args.out.join("agreement.png"));
    write_chart(&chart, &agreement.curves, &agreement.axes)?;
    if args.json {
        super::print_json(&agreement.rows)?;
    }
    Ok(())
}

fn run_taylor(args: &NetworkArgs) -> anyhow::Result<()> {
    let subjects = subjects(args, true)?;
    let variants = [Variant::Exact, Variant::Warpnet2, Variant::Warpnet1, Variant::Released];
    let ks: Vec<usize> = (1..=args.k).collect();
    let mut table = Table::new(&[
        "network",
        "K",
        "variant",
        "stage 1",
        "stage 2",
        "stage 3",
        "mask flips (mean of stages)",
    ]);
    let mut all = Vec::new();
    let mut curves = Vec::new();
    for (name, seq) in &subjects.networks {
        let layers = taylor::layers(seq, &subjects.images, &ks, &variants, args.derivative_bn);
        let rows = taylor::per_stage(&layers);
        for group in rows.chunks(crate::model::config::STAGES) {
            let flips = group.iter().map(|r| r.mask_flips).sum::<f64>() / group.len() as f64;
            let mut cells = vec![
                format!("{name} {}", seq.config.label()),
                group[0].k.to_string(),
                group[0].variant.clone(),
            ];
            cells.extend(group.iter().map(|r| format!("{:.2e}", r.relative_error)));
            cells.push(format!("{:.2}%", 100.0 * flips));
            table.push(cells);
        }
        for variant in variants.iter().filter(|v| **v != Variant::Released) {
            // One curve per variant: the error averaged over stages, against K.
            let points: Vec<(u32, f64)> = ks
                .iter()
                .filter_map(|&k| {
                    let of_k: Vec<f64> = rows
                        .iter()
                        .filter(|r| r.k == k && r.variant == variant.to_string())
                        .map(|r| r.relative_error)
                        .collect();
                    (!of_k.is_empty()).then(|| (k as u32, of_k.iter().sum::<f64>() / of_k.len() as f64))
                })
                .collect();
            curves.push(Curve { label: format!("{variant}, {name}"), segments: vec![points] });
        }
        // Per stage ("rows", the table) and per warp layer ("layers": stage, first unit).
        all.push(serde_json::json!({
            "network": name, "model": seq.config.label(), "rows": rows, "layers": layers,
        }));
    }
    println!(
        "relative error = ||x1 + terms - x_(K+1)|| / ||x_(K+1) - x1||, eval mode, {} test images, derivative BN {}; \
         mean over a stage's warp layers (each layer: --json, \"layers\")",
        subjects.images.size()[0],
        args.derivative_bn
    );
    print!("{}", table.markdown());
    let axes = Axes { x: "K (units per warp layer)".into(), y: "relative error of the expansion".into() };
    draw(args, "taylor", &curves, &axes)?;
    if args.json {
        super::print_json(
            &serde_json::json!({ "derivative_bn": args.derivative_bn.to_string(), "networks": all }),
        )?;
    }
    Ok(())
}

fn run_paths(args: &NetworkArgs) -> anyhow::Result<()> {
    let subjects = subjects(args, false)?;
    let (name, seq) = &subjects.networks[0];
    let mut table = Table::new(&["K", "path length k", "terms", "C(K, k)", "share of the block's output"]);
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    for k in 1..=args.k {
        let of_k = paths::paths(k, Some((seq, &subjects.images)), args.derivative_bn);
        for r in &of_k {
            let share = r.relative_norm.map_or("n/a (K > units per stage)".into(), |v| format!("{v:.3}"));
            table.push(vec![
                k.to_string(),
                r.length.to_string(),
                r.terms.to_string(),
                r.binomial.to_string(),
                share,
            ]);
        }
        if of_k.iter().all(|r| r.relative_norm.is_some()) && k > 1 {
            let points = of_k.iter().map(|r| (r.length as u32, r.relative_norm.unwrap_or(0.0))).collect();
            curves.push(Curve { label: format!("K = {k}"), segments: vec![points] });
        }
        rows.extend(of_k);
    }
    println!(
        "{name} {}: share = ||sum of the length-k terms|| / ||x_(K+1) - x1||, mean over blocks",
        seq.config.label()
    );
    print!("{}", table.markdown());
    let axes = Axes { x: "path length k".into(), y: "share of the block's output".into() };
    draw(args, "paths", &curves, &axes)?;
    if args.json {
        super::print_json(
            &serde_json::json!({ "network": name, "model": seq.config.label(), "rows": rows }),
        )?;
    }
    Ok(())
}

fn run_gradients(args: &NetworkArgs) -> anyhow::Result<()> {
    let subjects = subjects(args, false)?;
    let (name, seq) = &subjects.networks[0];
    let k = args.k.min(seq.units());
    let mut fits = Vec::new();
    let mut table = Table::new(&["stage", "path length k", "paths", "mean gradient norm", "||g|| a^k (fit)"]);
    let mut curves = Vec::new();
    for stage in 0..crate::model::config::STAGES {
        let fit =
            gradients::gradients(seq, &subjects.images, &subjects.labels, stage, 0, k, args.derivative_bn);
        for r in &fit.rows {
            table.push(vec![
                fit.stage.to_string(),
                r.length.to_string(),
                r.paths.to_string(),
                format!("{:.3e}", r.mean_norm),
                format!("{:.3e}", r.fitted),
            ]);
        }
        let first = fit.rows[0].mean_norm;
        let points = fit.rows.iter().map(|r| (r.length as u32, r.mean_norm / first)).collect();
        curves.push(Curve {
            label: format!("stage {}: a = {:.3}", fit.stage, fit.factor),
            segments: vec![points],
        });
        fits.push(fit);
    }
    println!(
        "{name} {}: gradient of the loss carried through each path of the first {k} units of a stage",
        seq.config.label()
    );
    print!("{}", table.markdown());
    for fit in &fits {
        println!(
            "stage {}: per-unit factor a = ||F'|| = {:.4}, R^2 of ln(norm) vs k = {:.4}",
            fit.stage, fit.factor, fit.r_squared
        );
    }
    let axes = Axes { x: "path length k".into(), y: "mean gradient norm / ||g||".into() };
    draw(args, "gradients", &curves, &axes)?;
    if args.json {
        super::print_json(
            &serde_json::json!({ "network": name, "model": seq.config.label(), "fits": fits }),
        )?;
    }
    Ok(())
}

/// A --plot value: a path ending in .png or .svg (checked before any work starts).
pub fn chart_file(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    Format::from_path(&path).map(|_| path).map_err(|_| format!("'{value}': expected a .png or .svg file"))
}

/// Writes the chart to --plot or runs/analysis/<name>.png and says where.
pub fn draw(args: &NetworkArgs, name: &str, curves: &[Curve], axes: &Axes) -> anyhow::Result<()> {
    let out = args.plot.clone().unwrap_or_else(|| PathBuf::from("runs/analysis").join(format!("{name}.png")));
    write_chart(&out, curves, axes)
}

/// Renders `curves` to `out` (.png or .svg), creating its folder, and says where.
pub fn write_chart(out: &std::path::Path, curves: &[Curve], axes: &Axes) -> anyhow::Result<()> {
    Format::from_path(out)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::error::input_error(format!("{}: {e}", dir.display())))?;
    }
    plot::write_chart(curves, out, axes, None)?;
    println!("chart: {}", out.display());
    Ok(())
}
