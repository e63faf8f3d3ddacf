//! Per-channel standardisation ("whitening") and the training augmentation: random horizontal flip and
//! random 32x32 crop from 4-pixel zero padding.
//!
//! The padding is zero in raw pixel space (black), as torchvision's RandomCrop(32, padding=4) before
//! Normalize, so padded pixels read (0 - mean) / std after standardisation.

use rand::Rng;

use super::dataset::{Dataset, IMAGE_CHANNELS, IMAGE_SIDE};

/// Pixels of padding on every side before the random crop.
pub const CROP_PADDING: usize = 4;

/// Per-channel mean and standard deviation of the training set, in pixel/255 units.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    pub mean: [f32; IMAGE_CHANNELS],
    pub std: [f32; IMAGE_CHANNELS],
}

/// Below this a channel is taken as constant and divided by 1 instead of its (near-zero) deviation.
const MIN_STD: f64 = 1e-6;

impl Standardizer {
    /// Statistics of every pixel of every image, per channel (computed in f64).
    pub fn fit(data: &Dataset) -> Self {
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        let mut sum = [0f64; IMAGE_CHANNELS];
        let mut sum_sq = [0f64; IMAGE_CHANNELS];
        for image in data.images.chunks_exact(IMAGE_CHANNELS * plane) {
            for (c, channel) in image.chunks_exact(plane).enumerate() {
                for &p in channel {
                    let v = p as f64 / 255.0;
                    sum[c] += v;
                    sum_sq[c] += v * v;
                }
            }
        }
        let count = (data.len() * plane).max(1) as f64;
        let mut mean = [0f32; IMAGE_CHANNELS];
        let mut std = [1f32; IMAGE_CHANNELS];
        for c in 0..IMAGE_CHANNELS {
            let m = sum[c] / count;
            let var = (sum_sq[c] / count - m * m).max(0.0);
            mean[c] = m as f32;
            std[c] = if var.sqrt() < MIN_STD { 1.0 } else { var.sqrt() as f32 };
        }
        Standardizer { mean, std }
    }

    /// Standardised value of raw byte `p` in channel `c`.
    #[inline]
    fn value(&self, c: usize, p: u8) -> f32 {
        (p as f32 / 255.0 - self.mean[c]) / self.std[c]
    }

    /// Writes one (3, 32, 32) image standardised into `out` (same shape), without augmentation.
    pub fn apply(&self, image: &[u8], out: &mut [f32]) {
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        for c in 0..IMAGE_CHANNELS {
            let src = &image[c * plane..(c + 1) * plane];
            let dst = &mut out[c * plane..(c + 1) * plane];
            for (d, &p) in dst.iter_mut().zip(src) {
                *d = self.value(c, p);
            }
        }
    }

    /// Writes one (3, 32, 32) image standardised, randomly flipped left-right (probability 1/2) and
    /// randomly cropped from its 4-pixel zero padding (offsets uniform in -4..=4 on each axis).
    pub fn apply_augmented(&self, image: &[u8], rng: &mut impl Rng, out: &mut [f32]) {
        let flip = rng.gen_bool(0.5);
        let pad = CROP_PADDING as isize;
        let dy = rng.gen_range(-pad..=pad);
        let dx = rng.gen_range(-pad..=pad);
        let side = IMAGE_SIDE as isize;
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        for c in 0..IMAGE_CHANNELS {
            let padding_value = self.value(c, 0);
            let src = &image[c * plane..(c + 1) * plane];
            for y in 0..side {
                let sy = y + dy;
                for x in 0..side {
                    let cx = if flip { side - 1 - x } else { x };
                    let sx = cx + dx;
                    let inside = (0..side).contains(&sy) && (0..side).contains(&sx);
                    out[c * plane + (y * side + x) as usize] =
                        if inside { self.value(c, src[(sy * side + sx) as usize]) } else { padding_value };
                }
            }
        }
    }
}
