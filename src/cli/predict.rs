//! `warpnet predict`: the top-5 classes of each image, by a trained network.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::flags::PrecisionFlag;
use crate::data::{IMAGE_BYTES, IMAGE_CHANNELS, IMAGE_SIDE};
use crate::error::input_error;
use crate::model::Net;
use crate::train::checkpoint::load_weights;
use crate::train::evaluate::TOP_K;
use crate::train::run_folder;

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// Weights written by `warpnet train` (RUN/model.safetensors or RUN/checkpoints/step-N.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// 32x32 RGB PNG images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub precision: PrecisionFlag,
    /// Print the predictions as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
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
    let pixels: Vec<Vec<u8>> = args.images.iter().map(|p| read_png(p)).collect::<anyhow::Result<_>>()?;
    let net_config = run.config.net(run.data.class_names.len());
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &net_config);
    load_weights(&vs, &args.checkpoint)?;

    let mut standardized = vec![0f32; pixels.len() * IMAGE_BYTES];
    for (out, image) in standardized.chunks_exact_mut(IMAGE_BYTES).zip(&pixels) {
        run.data.standardizer.apply(image, out);
    }
    let side = IMAGE_SIDE as i64;
    let batch =
        Tensor::from_slice(&standardized).view([pixels.len() as i64, IMAGE_CHANNELS as i64, side, side]);
    let precision = args.precision.decide(&[Device::Cpu]).precision;
    let logits = tch::no_grad(|| net.forward(&precision.input(&batch), false)); // (N, classes)
    let probabilities = logits.softmax(-1, Kind::Double);
    let k = TOP_K.min(run.data.class_names.len() as i64);
    let (values, indices) = probabilities.topk(k, -1, true, true);
    let mut predictions = Vec::new();
    for (i, image) in args.images.iter().enumerate() {
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
    if args.json {
        let model = net_config.label();
        super::print_json(
            &serde_json::json!({ "model": model, "precision": precision, "predictions": predictions }),
        )?;
    }
    Ok(())
}

/// A 32x32 8-bit RGB PNG as (3, 32, 32) bytes, planes R, G, B; anything else is one input-error line.
pub fn read_png(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).map_err(|e| input_error(format!("{}: cannot read: {e}", path.display())))?;
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .map_err(|e| input_error(format!("{}: not a PNG image ({e})", path.display())))?;
    let (w, h) = (image.width() as usize, image.height() as usize);
    if (w, h) != (IMAGE_SIDE, IMAGE_SIDE) {
        crate::bail_input!("{}: {w}x{h} pixels; the network reads {IMAGE_SIDE}x{IMAGE_SIDE}", path.display());
    }
    if image.color() != image::ColorType::Rgb8 {
        crate::bail_input!(
            "{}: colour type {:?}; the network reads 8-bit RGB",
            path.display(),
            image.color()
        );
    }
    let interleaved = image.to_rgb8().into_raw(); // (H, W, 3)
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    let mut planar = vec![0u8; IMAGE_BYTES];
    for (p, rgb) in interleaved.chunks_exact(IMAGE_CHANNELS).enumerate() {
        for (c, &v) in rgb.iter().enumerate() {
            planar[c * plane + p] = v;
        }
    }
    Ok(planar)
}
