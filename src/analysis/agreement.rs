//! `warpnet analyze agreement`: does a WarpNet's training follow its WRN's? The paper (Fig. 2
//! discussion) finds the two error curves "almost exactly on top of each other".
//!
//! Three runs with one seed and recipe: WarpNet1 with the true derivative, WarpNet1 with the released
//! code's term in its place, and their WRN twin. Every epoch's checkpoint is evaluated both as the
//! WarpNet (the run's own operator; warpnet1 for the WRN) and as the sequential WRN (same weights).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tch::{nn::VarStore, Device};

use crate::data::augment::Standardizer;
use crate::data::dataset::Dataset;
use crate::data::loader::make_batch;
use crate::data::{self, DataSpec};
use crate::model::{ModelKind, Net, Variant};
use crate::precision::{Precision, PrecisionSetting};
use crate::report::curves::Curve;
use crate::report::plot::Axes;
use crate::report::Table;
use crate::train::checkpoint::{load_weights, parse_sidecar};
use crate::train::config::TrainConfig;
use crate::train::evaluate::evaluate;
use crate::train::progress::Verbosity;
use crate::train::trainer;

/// Every view is evaluated in fp32: what the analysis measures never depends on the hardware.
const FP32: Precision = Precision::Fp32;

/// What the agreement analysis trains and where (`warpnet analyze agreement` sets it from its flags).
#[derive(Debug, Clone)]
pub struct AgreementSettings {
    /// Epochs of each run; the learning rate drops x0.1 at 60% and 83% of them (the demo's schedule).
    pub epochs: usize,
    /// Warp factor K of the WarpNets (the WRN has K * Nwarp units per stage).
    pub k: usize,
    pub nwarp: usize,
    pub width: usize,
    pub data: DataSpec,
    /// Use only the first N training images.
    pub limit_train: Option<usize>,
    pub seed: u64,
    /// Folder of the three run folders (a finished run found there is evaluated again, not retrained).
    pub out: PathBuf,
}

/// The analysis's figures: one row per run and epoch, the table of them, and the chart's curves.
#[derive(Debug, Clone)]
pub struct Agreement {
    pub rows: Vec<AgreementRow>,
    pub table: Table,
    pub curves: Vec<Curve>,
    pub axes: Axes,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgreementRow {
    pub run: String,
    pub epoch: usize,
    /// Test error (fraction) of the weights evaluated as the WarpNet.
    pub as_warpnet: f64,
    /// ... and as the sequential WRN.
    pub as_wrn: f64,
    /// Both again after re-estimating every BN's running statistics in that view (see
    /// [`reestimate_bn`]): what is left is the function, not the statistics.
    pub as_warpnet_bn_reestimated: f64,
    pub as_wrn_bn_reestimated: f64,
}

/// Training batches run through a view in training mode (no gradients) to re-estimate its BN running
/// statistics: with momentum 0.1, 50 batches leave 0.9^50 < 1% of the old statistics.
const BN_REESTIMATION_BATCHES: usize = 50;

/// Re-estimates the BN running statistics of `net` from `data` (standardised, not augmented), in order.
pub fn reestimate_bn(net: &Net, data: &Dataset, standardizer: &Standardizer, batch: usize) {
    tch::no_grad(|| {
        for b in 0..BN_REESTIMATION_BATCHES {
            let indices: Vec<usize> = (0..batch).map(|i| (b * batch + i) % data.len()).collect();
            let x = make_batch(data, standardizer, &indices, None).images;
            let _ = net.forward(&x, true);
        }
    });
}

/// Trains (or finds) the three runs and evaluates every epoch's checkpoint both ways.
pub fn run(args: &AgreementSettings) -> anyhow::Result<Agreement> {
    let milestones = vec![(args.epochs * 3).div_ceil(5), (args.epochs * 5).div_ceil(6)];
    let base = TrainConfig {
        k: args.k,
        nwarp: args.nwarp,
        width: args.width,
        epochs: args.epochs,
        milestones,
        data: args.data.clone(),
        limit_train: args.limit_train,
        seed: args.seed,
        keep_checkpoints: args.epochs + 1,
        // An analysis: trained and evaluated in fp32 whatever the hardware would pick.
        precision: PrecisionSetting::Fp32,
        ..TrainConfig::demo()
    };
    let runs = [
        ("warpnet1", ModelKind::Warp, Variant::Warpnet1),
        ("warpnet1-released", ModelKind::Warp, Variant::Released),
        ("wrn", ModelKind::Wrn, Variant::Warpnet1),
    ];
    let mut rows = Vec::new();
    for (slug, model, variant) in runs {
        let variant = (model == ModelKind::Warp).then_some(variant);
        let config = TrainConfig { model, variant, ..base.clone() };
        let dir = args.out.join(slug);
        if dir.join("model.safetensors").exists() {
            println!("{slug}: finished run in {}, evaluating it again", dir.display());
        } else {
            println!("training {slug} into {}", dir.display());
            trainer::train(&config, data::load(&config.data)?, &dir, Verbosity::Normal)?;
        }
        rows.extend(evaluate_epochs(&config, &dir, slug)?);
    }
    let mut table = Table::new(&[
        "run",
        "epoch",
        "error as WarpNet",
        "error as WRN",
        "as WarpNet, BN re-estimated",
        "as WRN, BN re-estimated",
    ]);
    for r in &rows {
        let pct = |v: f64| format!("{:.2}%", 100.0 * v);
        table.push(vec![
            r.run.clone(),
            r.epoch.to_string(),
            pct(r.as_warpnet),
            pct(r.as_wrn),
            pct(r.as_warpnet_bn_reestimated),
            pct(r.as_wrn_bn_reestimated),
        ]);
    }
    let mut curves = Vec::new();
    for (slug, _, _) in runs {
        let of = |f: fn(&AgreementRow) -> f64| {
            rows.iter().filter(|r| r.run == slug).map(|r| (r.epoch as u32, 100.0 * f(r))).collect::<Vec<_>>()
        };
        curves.push(Curve { label: format!("{slug} as WarpNet"), segments: vec![of(|r| r.as_warpnet)] });
        curves.push(Curve { label: format!("{slug} as WRN"), segments: vec![of(|r| r.as_wrn)] });
        let reestimated = of(|r| r.as_wrn_bn_reestimated);
        curves.push(Curve { label: format!("{slug} as WRN, BN re-estimated"), segments: vec![reestimated] });
    }
    let axes = Axes { x: "epoch".into(), y: "test error (%)".into() };
    Ok(Agreement { rows, table, curves, axes })
}

/// Every epoch's checkpoint of the run in `dir`, evaluated as the WarpNet and as the WRN.
fn evaluate_epochs(
    config: &TrainConfig,
    dir: &std::path::Path,
    slug: &str,
) -> anyhow::Result<Vec<AgreementRow>> {
    let run = crate::train::run_folder::open(&dir.join("model.safetensors"))?;
    let splits = data::load(&config.data)?;
    let classes = splits.train.classes;
    let train = splits.train;
    let test = Arc::new(splits.test);
    let trained = config.net(classes);
    let warp_variant = config.variant.unwrap_or(Variant::Warpnet1);
    let views = [
        crate::model::NetConfig { model: ModelKind::Warp, variant: warp_variant, ..trained.clone() },
        trained.as_model(ModelKind::Wrn),
    ];
    let mut checkpoints: Vec<PathBuf> = std::fs::read_dir(dir.join(crate::train::checkpoint::CHECKPOINTS))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    checkpoints.sort();
    let mut rows = Vec::new();
    for path in checkpoints {
        let sidecar_path = path.with_extension("json");
        let sidecar = parse_sidecar(&std::fs::read_to_string(&sidecar_path)?, &sidecar_path)?;
        if sidecar.position.epoch == 0 || sidecar.position.batch != 0 {
            continue; // only whole epochs
        }
        let mut errors = Vec::new(); // as WarpNet, as WRN, then both with BN re-estimated
        for reestimate in [false, true] {
            for view in &views {
                let vs = VarStore::new(Device::Cpu);
                let net = Net::new(&vs.root(), view);
                load_weights(&vs, &path)?;
                if reestimate {
                    reestimate_bn(&net, &train, &run.data.standardizer, config.batch);
                }
                errors.push(
                    evaluate(&net, &test, run.data.standardizer, config.eval_batch, Device::Cpu, FP32).error,
                );
            }
        }
        rows.push(AgreementRow {
            run: slug.into(),
            epoch: sidecar.position.epoch,
            as_warpnet: errors[0],
            as_wrn: errors[1],
            as_warpnet_bn_reestimated: errors[2],
            as_wrn_bn_reestimated: errors[3],
        });
    }
    rows.sort_by_key(|r| r.epoch);
    Ok(rows)
}
