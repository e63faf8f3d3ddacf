//! What a network of warp layers is made of, for everything that builds, places or plans one: its
//! layers and the units in each, the term list every layer evaluates, the modules around the layers
//! (stem, between stages, head), its activation shapes, and what its tangents allow. The paper's Table 1
//! network ([`NetConfig`], model/wrn/) is one architecture; a network of another kind of unit is
//! another implementation of [`Architecture`], with nothing else to change.

use std::fmt;
use std::sync::Arc;

use tch::nn::Path;
use tch::Tensor;

use super::config::NetConfig;
use super::terms::Term;
use super::transformer::LmConfig;
use super::unit::Unit;

/// Where a warp layer sits: its stage and its index within the stage (both 0-based). Layers of one
/// stage have one activation shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerIndex {
    pub stage: usize,
    pub layer: usize,
}

/// A module around the warp layers: the stem, the step between stages, the head.
pub trait Module: Send + fmt::Debug {
    /// In training mode (`train`) its normalisation statistics (if any) are the batch's.
    fn forward(&self, x: &Tensor, train: bool) -> Tensor;
}

/// An architecture behind a shared handle: every device's thread builds its part from it.
pub type Network = Arc<dyn Architecture>;

/// A residual network grouped into warp layers of K units each.
pub trait Architecture: Send + Sync + fmt::Debug {
    /// Every warp layer, in forward order, stage by stage.
    fn layers(&self) -> Vec<LayerIndex>;

    /// Units per warp layer: K.
    fn units_per_layer(&self) -> usize;

    /// Stages: runs of layers of one activation shape (the Table 1 network's three).
    fn stages(&self) -> usize {
        self.layers().iter().map(|at| at.stage + 1).max().unwrap_or(0)
    }

    /// The terms every warp layer sums (model/terms.rs), in the paper's order.
    fn terms(&self) -> Vec<Term>;

    /// Unit `c` (0-based) of layer `at`, its variables created under `root`. Variables are named by
    /// the architecture and stable (checkpoints read them by name).
    fn unit(&self, root: &Path, at: LayerIndex, c: usize) -> Box<dyn Unit>;

    /// The stem: an input batch to the first layer's x1. Built before the units, the head after them
    /// (the order fixes each variable's random initial values).
    fn stem(&self, root: &Path) -> Box<dyn Module>;

    /// Between stages: the last layer's output of a stage to the next stage's x1 (no variables).
    fn between_stages(&self) -> Box<dyn Module>;

    /// The head: the last layer's output to the logits (B, classes).
    fn head(&self, root: &Path) -> Box<dyn Module>;

    /// One input sample's shape, (C, H, W) for images.
    fn input_shape(&self) -> Vec<i64>;

    /// Classes of the head's logits.
    fn classes(&self) -> usize;

    /// A batch of `batch` random samples on `device` from libtorch's generator, for timing: inputs
    /// (B, input...) in fp32, standard normal, and labels (B,) uniform over the classes.
    fn random_batch(&self, batch: i64, device: tch::Device) -> (tch::Tensor, tch::Tensor) {
        let shape: Vec<i64> = std::iter::once(batch).chain(self.input_shape()).collect();
        let inputs = tch::Tensor::randn(shape.as_slice(), (tch::Kind::Float, device));
        (inputs, tch::Tensor::randint(self.classes() as i64, [batch], (tch::Kind::Int64, device)))
    }

    /// One sample's shape of the activations at stage `stage`: every warp layer's x1 there.
    fn activation_shape(&self, stage: usize) -> Vec<i64>;

    /// Bytes per batch row of what a piece of F'_j x1 at stage `stage` reads of unit j's
    /// linearisation ([`Unit::rows`]): what crosses between devices when the piece is on another
    /// device than F_j's.
    fn linearization_row_bytes(&self, stage: usize) -> u64;

    /// Whether a tangent pass reads its unit's primal pass at x1 (one that reads only weights needs no
    /// primal pass and no linearisation sent between devices).
    fn tangent_reads_primal(&self) -> bool;

    /// Whether its units' tangents are linear in v (true Jacobians are), so that terms sharing their
    /// outermost Jacobian share one pass (model/warp.rs); a map that is not is evaluated term by term.
    fn tangents_linear(&self) -> bool {
        true
    }

    /// Whether a piece of F'_j x1 on some rows of the batch can be evaluated apart from the others
    /// (its linearisation is per row); if not, what the split needs, for the message.
    fn pieces_apart(&self) -> Result<(), String>;

    /// The network's name for tables and logs ("WarpNet1-13-1").
    fn label(&self) -> String;

    /// What another MPI rank builds this architecture from; `None` for an architecture that lives in
    /// this process only.
    fn description(&self) -> Option<Description>;
}

/// The architectures that can be built from a description (on another MPI rank, from a file).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Description {
    /// The paper's Table 1 network.
    Wrn(NetConfig),
    /// The byte-level transformer language model.
    Lm(LmConfig),
}

impl Description {
    /// The architecture it describes.
    pub fn network(self) -> Network {
        match self {
            Description::Wrn(config) => Arc::new(config),
            Description::Lm(config) => Arc::new(config),
        }
    }
}

impl NetConfig {
    /// This configuration as a shared [`Network`].
    pub fn network(&self) -> Network {
        Arc::new(self.clone())
    }
}
