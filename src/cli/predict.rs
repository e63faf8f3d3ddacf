//! `warpnet predict`: the top-5 classes of each image, by a trained network.
//!
//! Images are prepared as the run's data set was (data/image_file.rs): a network trained on 28x28 grey
//! Fashion-MNIST takes 28x28 (and 32x32) images, grey or RGB, in grey; one trained on 32x32 RGB takes
//! 32x32 images, grey repeated. Other sizes are resized with a warning.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::flags::PrecisionFlag;
use crate::base::atomic_file::write_atomic;
use crate::data::image_file::{self, Prepared};
use crate::data::{IMAGE_BYTES, IMAGE_CHANNELS, IMAGE_SIDE};
use crate::model::Net;
use crate::report::Table;
use crate::train::checkpoint::load_weights;
use crate::train::evaluate::TOP_K;
use crate::train::run_folder;

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// A run folder (its model.safetensors) or weights written by `warpnet train`
    /// (RUN/model.safetensors, RUN/checkpoints/step-N.safetensors); RUN/config.toml gives the network.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// PNG or JPEG images, or folders of them.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub precision: PrecisionFlag,
    /// Print the predictions as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
    /// Also write the predictions to this CSV file: image, then class and probability for each rank.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Prediction {
    image: PathBuf,
    /// (class name, probability), most probable first.
    top: Vec<(String, f64)>,
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let run = run_folder::open(&args.checkpoint)?;
    // Every image is read and checked before anything is printed.
    let files = image_file::expand(&args.images)?;
    let source = run.config.data.source_images();
    let prepared: Vec<Prepared> =
        files.iter().map(|f| image_file::prepare(f, source)).collect::<anyhow::Result<_>>()?;
    for warning in prepared.iter().filter_map(|p| p.warning.as_ref()) {
        eprintln!("{warning}");
    }
    let net_config = run.config.net(run.data.class_names.len());
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &net_config);
    load_weights(&vs, &run.weights)?;

    let mut standardized = vec![0f32; prepared.len() * IMAGE_BYTES];
    for (out, image) in standardized.chunks_exact_mut(IMAGE_BYTES).zip(&prepared) {
        run.data.standardizer.apply(&image.pixels, out);
    }
    let side = IMAGE_SIDE as i64;
    let batch =
        Tensor::from_slice(&standardized).view([prepared.len() as i64, IMAGE_CHANNELS as i64, side, side]); // (N, 3, 32, 32)
    let precision = args.precision.decide(&[Device::Cpu]).precision;
    let logits = tch::no_grad(|| net.forward(&precision.input(&batch), false)); // (N, classes)
    let probabilities = logits.softmax(-1, Kind::Double);
    let k = TOP_K.min(run.data.class_names.len() as i64);
    let (values, indices) = probabilities.topk(k, -1, true, true);
    let mut predictions = Vec::new();
    for (i, image) in files.iter().enumerate() {
        let p: Vec<f64> = Vec::try_from(values.get(i as i64))?;
        let c: Vec<i64> = Vec::try_from(indices.get(i as i64))?;
        let top: Vec<(String, f64)> =
            c.iter().zip(p).map(|(&c, p)| (run.data.class_names[c as usize].clone(), p)).collect();
        let shown: Vec<String> = top
            .iter()
            .enumerate()
            .map(|(r, (name, p))| format!("{}. {name} {:.1}%", r + 1, 100.0 * p))
            .collect();
        println!("{}: {}", image.display(), shown.join("  "));
        predictions.push(Prediction { image: image.clone(), top });
    }
    if let Some(file) = &args.csv {
        write_atomic(file, csv_table(&predictions, k as usize).csv().as_bytes())?;
    }
    if args.json {
        let model = net_config.label();
        super::print_json(
            &serde_json::json!({ "model": model, "precision": precision, "predictions": predictions }),
        )?;
    }
    Ok(())
}

/// image, class_1, p_1, ..., class_k, p_k: one row per image.
fn csv_table(predictions: &[Prediction], k: usize) -> Table {
    let mut headers = vec!["image".to_string()];
    for rank in 1..=k {
        headers.extend([format!("class_{rank}"), format!("p_{rank}")]);
    }
    let mut table = Table::new(&headers.iter().map(String::as_str).collect::<Vec<_>>());
    for prediction in predictions {
        let mut row = vec![prediction.image.display().to_string()];
        for (name, p) in &prediction.top {
            row.extend([name.clone(), format!("{p:.6}")]);
        }
        table.push(row);
    }
    table
}
