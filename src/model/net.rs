//! A whole network on one device, of any [`Architecture`]: its stem, its stages of warp layers joined
//! by the step between stages, and its head. A WRN is the Table 1 network with K = 1 layers.
//!
//! The pieces are built by the architecture, so that a model-parallel executor can place them on
//! different devices under the same names ([`build_layer`]).

use tch::nn::Path;
use tch::Tensor;

use super::architecture::{Architecture, LayerIndex, Module};
use super::terms::Term;
use super::warp::{PrimalSharing, WarpLayer};

/// One stage: its warp layers, in order.
#[derive(Debug)]
pub struct Stage {
    pub layers: Vec<WarpLayer>,
}

#[derive(Debug)]
pub struct Net {
    pub stem: Box<dyn Module>,
    pub stages: Vec<Stage>,
    pub between_stages: Box<dyn Module>,
    pub head: Box<dyn Module>,
    /// Every warp layer's place, in forward order.
    layers: Vec<LayerIndex>,
}

impl Net {
    /// Builds the network's variables under `root`, with the names its architecture gives them.
    pub fn new(root: &Path, architecture: &dyn Architecture) -> Self {
        // Creation order fixes which random draws each variable gets: stem, units in order, head.
        let stem = architecture.stem(root);
        let layers = architecture.layers();
        let terms = architecture.terms();
        let all_units: Vec<usize> = (0..architecture.units_per_layer()).collect();
        let mut stages: Vec<Stage> =
            (0..architecture.stages()).map(|_| Stage { layers: Vec::new() }).collect();
        for &at in &layers {
            stages[at.stage].layers.push(build_layer(root, architecture, at, &all_units, terms.clone()));
        }
        let head = architecture.head(root);
        Net { stem, stages, between_stages: architecture.between_stages(), head, layers }
    }

    /// How every warp layer shares its primal passes among its terms (shared unless benchmarking).
    pub fn set_primal_sharing(&mut self, sharing: PrimalSharing) {
        self.stages.iter_mut().flat_map(|s| &mut s.layers).for_each(|layer| layer.sharing = sharing);
    }

    /// Logits: (B, input...) -> (B, classes).
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let head_input = self.walk(x, train, |_, layer, h| layer.forward(&h, train));
        self.head.forward(&head_input, train)
    }

    /// The output of every stage (the Table 1 network's: (B, 16kw, 32, 32), (B, 32kw, 16, 16),
    /// (B, 64kw, 8, 8)).
    pub fn features(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut outputs = Vec::with_capacity(self.stages.len());
        let _head_input = self.walk(x, train, |at, layer, h| {
            // the last stage's output, kept below
            let out = layer.forward(&h, train);
            if at.layer + 1 == self.stages[at.stage].layers.len() {
                outputs.push(out.shallow_clone());
            }
            out
        });
        outputs
    }

    /// The stem, then every warp layer in forward order through `layer(at, warp layer, input) -> output`,
    /// the stages joined by the step between them: the input batch to the head's input.
    pub fn walk(
        &self,
        x: &Tensor,
        train: bool,
        mut layer: impl FnMut(LayerIndex, &WarpLayer, Tensor) -> Tensor,
    ) -> Tensor {
        let h = self.stem.forward(x, train);
        walk_layers(
            &self.layers,
            h,
            |h| self.between_stages.forward(&h, train),
            |_, at, h| layer(at, &self.stages[at.stage].layers[at.layer], h),
        )
    }
}

/// The network's walk from the stem's output to the head's input, whoever holds the layers: before the
/// first layer of every later stage `between_stages` (the step between them, or a stand-in that also
/// records it), then `layer(position in layers, at, input) -> output`.
pub fn walk_layers(
    layers: &[LayerIndex],
    stem_output: Tensor,
    mut between_stages: impl FnMut(Tensor) -> Tensor,
    mut layer: impl FnMut(usize, LayerIndex, Tensor) -> Tensor,
) -> Tensor {
    layers.iter().enumerate().fold(stem_output, |h, (i, &at)| {
        let h = if at.stage > 0 && at.layer == 0 { between_stages(h) } else { h };
        layer(i, at, h)
    })
}

/// The warp layer at `at`, holding only the units in `held` (positions within the layer) and evaluating
/// `terms`; the units' variables are created under `root` with the architecture's names.
pub fn build_layer(
    root: &Path,
    architecture: &dyn Architecture,
    at: LayerIndex,
    held: &[usize],
    terms: Vec<Term>,
) -> WarpLayer {
    let units = (0..architecture.units_per_layer())
        .map(|c| held.contains(&c).then(|| architecture.unit(root, at, c)))
        .collect();
    WarpLayer::partial(units, terms)
}
