//! One image file (PNG or JPEG) made into the (3, 32, 32) bytes a network reads, exactly as the data
//! set it was trained on was prepared: for a network trained on 28x28 grey images (Fashion-MNIST), the
//! image in grey, zero-padded to 32x32 and repeated to R, G, B; for one trained on 32x32 RGB images,
//! the image in RGB (a grey one repeated to R, G, B). Another size is resized to the set's side
//! (bilinear, aspect ratio not kept) with a warning.

use std::path::{Path, PathBuf};

use image::{imageops::FilterType, DynamicImage};

use super::idx::{pad_and_repeat, MNIST_SIDE};
use super::spec::SourceImages;
use super::{IMAGE_BYTES, IMAGE_CHANNELS, IMAGE_SIDE};
use crate::error::input_error;

/// File name endings read as images when a folder is given.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// An image ready for the network, and a warning when it had to be resized.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// (3, 32, 32) bytes, planes R, G, B.
    pub pixels: Vec<u8>,
    pub warning: Option<String>,
}

/// Reads `path` and prepares it for a network trained on `source` images; a file that is not a PNG or
/// JPEG image is one input-error line naming it.
pub fn prepare(path: &Path, source: SourceImages) -> anyhow::Result<Prepared> {
    let bytes =
        std::fs::read(path).map_err(|e| input_error(format!("{}: cannot read: {e}", path.display())))?;
    let image = image::load_from_memory(&bytes)
        .map_err(|e| input_error(format!("{}: not a PNG or JPEG image ({e})", path.display())))?;
    let side = match source {
        SourceImages::Grey28 => MNIST_SIDE,
        SourceImages::Rgb32 => IMAGE_SIDE,
    } as u32;
    let (w, h) = (image.width(), image.height());
    let (image, warning) = if (w, h) == (side, side)
        || source == SourceImages::Grey28 && (w, h) == (IMAGE_SIDE as u32, IMAGE_SIDE as u32)
    {
        (image, None)
    } else {
        let warning = format!(
            "warning: {}: {w}x{h} pixels resized to {side}x{side} (bilinear, aspect ratio not kept); the network was trained on {side}x{side} images",
            path.display()
        );
        (image.resize_exact(side, side, FilterType::Triangle), Some(warning))
    };
    let pixels = match source {
        SourceImages::Grey28 => grey_for_network(&image),
        SourceImages::Rgb32 => planar_rgb(&image),
    };
    Ok(Prepared { pixels, warning })
}

/// A grey 28x28 image padded and repeated as in training; a 32x32 one (a padded image saved back, say)
/// only repeated.
fn grey_for_network(image: &DynamicImage) -> Vec<u8> {
    let grey = image.to_luma8();
    if grey.width() as usize == MNIST_SIDE {
        return pad_and_repeat(grey.as_raw());
    }
    grey.as_raw().repeat(IMAGE_CHANNELS)
}

/// (3, 32, 32) planes R, G, B of a 32x32 image (grey repeated to the three).
fn planar_rgb(image: &DynamicImage) -> Vec<u8> {
    let interleaved = image.to_rgb8().into_raw(); // (H, W, 3)
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    let mut planar = vec![0u8; IMAGE_BYTES];
    for (p, rgb) in interleaved.chunks_exact(IMAGE_CHANNELS).enumerate() {
        for (c, &v) in rgb.iter().enumerate() {
            planar[c * plane + p] = v;
        }
    }
    planar
}

/// The image files `paths` name: files as given, folders as every PNG or JPEG file in them, by name. A
/// missing path, or a folder without images, is one input-error line naming it.
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            if !path.exists() {
                crate::bail_input!("{}: no such image file or folder", path.display());
            }
            files.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path)
            .map_err(|e| input_error(format!("{}: cannot read the folder: {e}", path.display())))?;
        let mut images: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && has_image_extension(p))
            .collect();
        if images.is_empty() {
            crate::bail_input!("{}: a folder without PNG or JPEG images", path.display());
        }
        images.sort();
        files.extend(images);
    }
    Ok(files)
}

fn has_image_extension(path: &Path) -> bool {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    extension.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}
