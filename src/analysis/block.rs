//! The raw material of every analysis: a network run unit by unit as the sequential ResNet (eval mode,
//! real data), and any K consecutive units of one of its stages regrouped as one warp layer.
//!
//! A block is built by `model::net::build_layer`, so its terms are evaluated by the one warp evaluator
//! (model/warp.rs) and its units carry the network's own parameter names and weights.

use tch::{nn::VarStore, Device, Tensor};

use crate::base::named::{copy_variables, Named};
use crate::model::config::{DerivativeBn, ModelKind, NetConfig, Variant};
use crate::model::net::build_layer;
use crate::model::warp::{Assignment, WarpLayer};
use crate::model::{Architecture, LayerIndex, Net};

/// A network viewed as the sequential ResNet (every unit its own layer), with its weights by name.
pub struct Sequential {
    pub config: NetConfig,
    pub net: Net,
    pub weights: Named,
    _vs: VarStore,
}

impl Sequential {
    /// The WRN view of `config` holding `weights` (any warp grouping of the same units has the same names).
    pub fn new(config: &NetConfig, weights: &Named) -> Self {
        let config = config.as_model(ModelKind::Wrn);
        let vs = VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &config);
        crate::base::named::assign_variables(&vs, weights);
        let weights = copy_variables(&vs, Device::Cpu);
        Sequential { config, net, weights, _vs: vs }
    }

    /// A freshly initialised network of `config`'s shape (seeded: libtorch's generator).
    pub fn random(config: &NetConfig, seed: i64) -> Self {
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let _net = Net::new(&vs.root(), &config.as_model(ModelKind::Wrn));
        Self::new(config, &copy_variables(&vs, Device::Cpu))
    }

    /// Units per stage.
    pub fn units(&self) -> usize {
        self.config.units_per_stage()
    }

    /// The input of every unit and the stage's output, eval mode: `trace[s][u]` is x_{u+1} of stage s,
    /// (B, C_s, H_s, W_s), with `units() + 1` entries per stage.
    pub fn trace(&self, images: &Tensor) -> Vec<Vec<Tensor>> {
        tch::no_grad(|| {
            let mut trace: Vec<Vec<Tensor>> = Vec::new();
            let _head_input = self.net.walk(images, false, |at, layer, h| {
                if at.layer == 0 {
                    trace.push(vec![h.shallow_clone()]); // a stage begins: its x1
                }
                let out = layer.forward(&h, false);
                trace.last_mut().expect("a stage begun").push(out.shallow_clone());
                out
            });
            trace
        })
    }

    /// Units `first .. first + k` of stage `stage` (0-based; `first` a multiple of k) as one warp layer
    /// with `variant`'s terms, Jacobians treated as `derivative_bn` says.
    pub fn block(
        &self,
        stage: usize,
        first: usize,
        k: usize,
        variant: Variant,
        derivative_bn: DerivativeBn,
    ) -> Block {
        assert!(
            first.is_multiple_of(k) && first + k <= self.units(),
            "a block of whole units inside the stage"
        );
        let config = NetConfig {
            model: ModelKind::Warp,
            k,
            nwarp: self.units() / k,
            variant,
            max_order: None,
            derivative_bn,
            ..self.config.clone()
        };
        let vs = VarStore::new(Device::Cpu);
        let at = LayerIndex { stage, layer: first / k };
        let held: Vec<usize> = (0..k).collect();
        let layer = build_layer(&vs.root(), &config, at, &held, config.terms());
        // The block's names are the network's own (unit numbers first+1 .. first+k of the stage).
        crate::base::named::assign_variables(&vs, &self.weights);
        Block { layer, _vs: vs }
    }
}

/// K units regrouped as one warp layer (eval mode throughout the analyses).
pub struct Block {
    pub layer: WarpLayer,
    _vs: VarStore,
}

impl Block {
    /// The value of every term of the layer at x1, in the order of `layer.terms`: (B, C, H, W) each.
    pub fn term_values(&self, x1: &Tensor) -> Vec<Tensor> {
        tch::no_grad(|| {
            let primals = self.layer.primal_passes(&self.layer.terms, x1, false, &Assignment::default());
            self.layer.terms.iter().map(|t| self.layer.evaluate(t, x1, &primals)).collect()
        })
    }
}

/// ||a|| / ||b|| over whole tensors (0 when b is 0).
pub fn relative(a: &Tensor, b: &Tensor) -> f64 {
    let denominator = b.norm().double_value(&[]);
    if denominator > 0.0 {
        a.norm().double_value(&[]) / denominator
    } else {
        0.0
    }
}
