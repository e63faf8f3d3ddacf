//! Batches prepared on a background thread while the model trains.
//!
//! An epoch is a plan (the order of the images, the batch size, whether to augment and with which seed),
//! so the same seed and epoch always give the same batches, whatever the thread timing. Each batch
//! draws its augmentation from its own stream of the epoch's seed, so a resumed run can start in the
//! middle of an epoch and see exactly the batches it would have seen.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::augment::Standardizer;
use super::dataset::{Dataset, IMAGE_BYTES, IMAGE_CHANNELS, IMAGE_SIDE};

/// Batches prepared ahead of the one being trained on.
const PREFETCH: usize = 3;

/// One batch: images (B, 3, 32, 32) f32 standardised, labels (B,) i64, on the CPU.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
}

/// How one pass over a data set is cut into batches.
#[derive(Debug, Clone)]
pub struct EpochPlan {
    /// Image indices in the order they are served.
    pub order: Vec<usize>,
    pub batch_size: usize,
    /// Drop a last batch smaller than `batch_size` (training: a batch of one breaks BatchNorm).
    pub drop_last: bool,
    /// Seed of the flip/crop augmentation; `None` serves the images as they are (evaluation).
    pub augment_seed: Option<u64>,
    /// Batches of the plan to skip (a run resumed in the middle of an epoch).
    pub start_batch: usize,
}

/// RNG streams of one training epoch: one for the order, one for the augmentation.
const ORDER_STREAM: u64 = 0;
const AUGMENT_STREAM: u64 = 1;

impl EpochPlan {
    /// Training epoch `epoch` (0-based) under `seed`: a fresh shuffle and augmentation, full batches.
    pub fn training(len: usize, batch_size: usize, seed: u64, epoch: u64) -> Self {
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut epoch_rng(seed, epoch, ORDER_STREAM));
        EpochPlan {
            order,
            batch_size,
            drop_last: true,
            augment_seed: Some(epoch_rng(seed, epoch, AUGMENT_STREAM).next_u64()),
            start_batch: 0,
        }
    }

    /// Every image once, in order, no augmentation.
    pub fn evaluation(len: usize, batch_size: usize) -> Self {
        EpochPlan {
            order: (0..len).collect(),
            batch_size,
            drop_last: false,
            augment_seed: None,
            start_batch: 0,
        }
    }

    /// Batches this plan yields.
    pub fn batches(&self) -> usize {
        if self.drop_last {
            self.order.len() / self.batch_size
        } else {
            self.order.len().div_ceil(self.batch_size)
        }
    }
}

/// The RNG of one (seed, epoch, stream): independent of every other epoch's.
fn epoch_rng(seed: u64, epoch: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch * 2 + stream);
    rng
}

/// Serves the batches of one plan, prepared on a background thread.
pub struct Loader {
    batches: Receiver<Batch>,
    worker: Option<JoinHandle<()>>,
}

impl Loader {
    pub fn spawn(data: Arc<Dataset>, standardizer: Standardizer, plan: EpochPlan) -> Self {
        let (sender, batches) = sync_channel(PREFETCH);
        let worker = std::thread::spawn(move || {
            for (b, indices) in plan.order.chunks(plan.batch_size).enumerate().skip(plan.start_batch) {
                if plan.drop_last && indices.len() < plan.batch_size {
                    break;
                }
                let mut rng = plan.augment_seed.map(|seed| {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    rng.set_stream(b as u64); // batch b's own stream
                    rng
                });
                let batch = make_batch(&data, &standardizer, indices, rng.as_mut());
                if sender.send(batch).is_err() {
                    break; // the trainer stopped early (an iteration budget, an error)
                }
            }
        });
        Loader { batches, worker: Some(worker) }
    }
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.batches.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Close the channel first so a worker blocked on a full queue wakes up and exits.
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.batches, closed));
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Gathers, standardises and (when `rng` is given) augments the images at `indices`.
pub fn make_batch(
    data: &Dataset,
    standardizer: &Standardizer,
    indices: &[usize],
    mut rng: Option<&mut ChaCha8Rng>,
) -> Batch {
    let mut pixels = vec![0f32; indices.len() * IMAGE_BYTES];
    let mut labels = Vec::with_capacity(indices.len());
    for (out, &i) in pixels.chunks_exact_mut(IMAGE_BYTES).zip(indices) {
        match rng.as_deref_mut() {
            Some(rng) => standardizer.apply_augmented(data.image(i), rng, out),
            None => standardizer.apply(data.image(i), out),
        }
        labels.push(data.labels[i] as i64);
    }
    let side = IMAGE_SIDE as i64;
    Batch {
        images: Tensor::from_slice(&pixels).view([indices.len() as i64, IMAGE_CHANNELS as i64, side, side]),
        labels: Tensor::from_slice(&labels),
    }
}
