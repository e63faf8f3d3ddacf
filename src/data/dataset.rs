//! An image classification set held in memory as raw bytes.

/// Images are stored as they come off disk: `u8`, shape (N, 3, 32, 32), planes R, G, B (grey images are
/// repeated to three planes). Labels are class indices in `0..classes`.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// (N, 3, 32, 32) bytes, row-major.
    pub images: Vec<u8>,
    /// (N,) class indices.
    pub labels: Vec<u16>,
    /// Number of classes (labels are checked to lie below it).
    pub classes: usize,
}

/// Side of the square images every reader produces.
pub const IMAGE_SIDE: usize = 32;
/// Colour planes per image.
pub const IMAGE_CHANNELS: usize = 3;
/// Bytes per image: 3 * 32 * 32.
pub const IMAGE_BYTES: usize = IMAGE_CHANNELS * IMAGE_SIDE * IMAGE_SIDE;

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of image `i`: (3, 32, 32).
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Keeps only the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        self.labels.truncate(n);
        self.images.truncate(n.min(self.labels.len()) * IMAGE_BYTES);
    }

    /// Appends another set of the same classes.
    pub fn extend(&mut self, other: Dataset) {
        debug_assert_eq!(self.classes, other.classes);
        self.images.extend_from_slice(&other.images);
        self.labels.extend_from_slice(&other.labels);
    }
}

/// The training and test splits of one data set.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
    /// Human-readable class names, `classes` of them.
    pub class_names: Vec<String>,
}
