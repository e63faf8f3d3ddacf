//! The optimizers, PyTorch's update rules, with their state in plain tensors (so a checkpoint can hold
//! it): SGD with momentum and weight decay (the paper's), and AdamW (the transformer's).
//!
//! SGD, for each parameter p with gradient g:  d = g + wd * p;  buf = momentum * buf + d;  p -= lr * buf.
//! (PyTorch starts buf at d on the first step; starting at zero gives the same first buf.)
//!
//! AdamW at step t:  p -= lr * wd * p (matrices only: parameters of two or more dimensions);
//! m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//! p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)  (PyTorch's fused kernel computes it).
//!
//! Gradients are values, not accumulators: [`Optimizer::gradients`] returns dL/dp for every parameter
//! (`torch.autograd.grad`), so nothing is zeroed between steps and gradients from several replicas can
//! be summed before [`Optimizer::step`].

mod fused_adamw;

use fused_adamw::Moments;
use tch::{nn::VarStore, Tensor};

/// What SGD needs besides the learning rate; every device of a run uses the same.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgdSettings {
    pub momentum: f64,
    /// L2 weight decay, added to every parameter's gradient.
    pub weight_decay: f64,
}

impl SgdSettings {
    /// The paper's (section 4.1): momentum 0.9, weight decay 5e-4.
    pub const PAPER: SgdSettings = SgdSettings { momentum: 0.9, weight_decay: 5e-4 };
}

/// The paper's initial learning rate (section 4.1); timing loops step at it.
pub const PAPER_LR: f64 = 0.1;

/// What AdamW needs besides the learning rate.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWSettings {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay, on matrices only.
    pub weight_decay: f64,
}

impl AdamWSettings {
    /// GPT's: betas (0.9, 0.95), eps 1e-8, weight decay 0.1.
    pub const GPT: AdamWSettings = AdamWSettings { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
}

/// An update rule and its settings; every device of a run uses the same.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerSettings {
    Sgd(SgdSettings),
    AdamW(AdamWSettings),
}

impl From<SgdSettings> for OptimizerSettings {
    fn from(settings: SgdSettings) -> Self {
        OptimizerSettings::Sgd(settings)
    }
}

impl From<AdamWSettings> for OptimizerSettings {
    fn from(settings: AdamWSettings) -> Self {
        OptimizerSettings::AdamW(settings)
    }
}

/// The state key of AdamW's second moment of parameter `name` (its first moment is under `name`).
fn second_moment(name: &str) -> String {
    format!("{name}{SECOND_MOMENT}")
}
/// Suffix of the second moments' keys in [`Optimizer::momentum`].
const SECOND_MOMENT: &str = ".exp_avg_sq";
/// The key of AdamW's step count in [`Optimizer::momentum`] (a scalar).
const ADAMW_STEPS: &str = "adamw.steps";

pub struct Optimizer {
    /// Trainable parameters by name, sorted by name so the update order never depends on a hash map.
    params: Vec<(String, Tensor)>,
    /// Per parameter, same shapes: SGD's momentum buffer; AdamW's first and second moments.
    buffers: Vec<Vec<Tensor>>,
    /// Steps taken (AdamW's bias correction).
    steps: i64,
    pub settings: OptimizerSettings,
}

impl Optimizer {
    pub fn new(vs: &VarStore, settings: impl Into<OptimizerSettings>) -> Self {
        let mut params: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self::over(params, settings)
    }

    /// An optimizer over the given (name, parameter) pairs, sorted by name.
    pub fn over(mut params: Vec<(String, Tensor)>, settings: impl Into<OptimizerSettings>) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let settings = settings.into();
        let per_parameter = match settings {
            OptimizerSettings::Sgd(_) => 1,
            OptimizerSettings::AdamW(_) => 2,
        };
        let buffers =
            params.iter().map(|(_, p)| (0..per_parameter).map(|_| p.zeros_like()).collect()).collect();
        Optimizer { params, buffers, steps: 0, settings }
    }

    /// dL/dp for every parameter, in the order of [`Sgd::names`]; a parameter the loss does not reach
    /// gets zeros.
    pub fn gradients(&self, loss: &Tensor) -> Vec<Tensor> {
        let params: Vec<&Tensor> = self.params.iter().map(|(_, p)| p).collect();
        Tensor::run_backward(&[loss], &params, false, false)
            .into_iter()
            .zip(&params)
            .map(|(g, p)| if g.defined() { g } else { p.zeros_like() })
            .collect()
    }

    /// One update with learning rate `lr` from `gradients` (one per parameter, as
    /// [`Optimizer::gradients`]). The gradients are read, not modified (several devices may hold the
    /// same summed gradient).
    pub fn step(&mut self, gradients: &[Tensor], lr: f64) {
        assert_eq!(gradients.len(), self.params.len(), "one gradient per parameter");
        self.steps += 1;
        tch::no_grad(|| match self.settings {
            OptimizerSettings::Sgd(s) => self.sgd_step(s, gradients, lr),
            OptimizerSettings::AdamW(s) => self.adamw_step(s, gradients, lr),
        });
    }

    fn sgd_step(&mut self, s: SgdSettings, gradients: &[Tensor], lr: f64) {
        for (((_, p), buffers), g) in self.params.iter_mut().zip(&mut self.buffers).zip(gradients) {
            let decayed = g + &*p * s.weight_decay; // d = g + wd * p
            let _ = buffers[0].g_mul_scalar_(s.momentum).g_add_(&decayed); // buf = m * buf + d
            let _ = p.g_add_(&(&buffers[0] * -lr)); // p -= lr * buf
        }
    }

    /// PyTorch's fused AdamW (base/optimizer/fused_adamw.rs), in two calls: the matrices with weight
    /// decay, every other parameter without.
    fn adamw_step(&mut self, s: AdamWSettings, gradients: &[Tensor], lr: f64) {
        for decayed in [true, false] {
            let chosen: Vec<usize> =
                (0..self.params.len()).filter(|&i| (self.params[i].1.dim() >= 2) == decayed).collect();
            let params: Vec<&Tensor> = chosen.iter().map(|&i| &self.params[i].1).collect();
            let grads: Vec<&Tensor> = chosen.iter().map(|&i| &gradients[i]).collect();
            let first: Vec<&Tensor> = chosen.iter().map(|&i| &self.buffers[i][0]).collect();
            let second: Vec<&Tensor> = chosen.iter().map(|&i| &self.buffers[i][1]).collect();
            fused_adamw::step(
                &params,
                &grads,
                Moments { first: &first, second: &second, step: self.steps },
                AdamWSettings { weight_decay: if decayed { s.weight_decay } else { 0.0 }, ..s },
                lr,
            );
        }
    }

    /// Parameter names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _)| n.as_str())
    }

    /// Copies of the optimizer's state by key, on `device` (for a checkpoint): SGD's momentum buffers
    /// and AdamW's first moments by parameter name, AdamW's second moments by name + ".exp_avg_sq" and
    /// its step count.
    pub fn momentum(&self, device: tch::Device) -> std::collections::BTreeMap<String, Tensor> {
        let mut state = std::collections::BTreeMap::new();
        for ((name, _), buffers) in self.params.iter().zip(&self.buffers) {
            state.insert(name.clone(), buffers[0].to_device(device).copy());
            if let Some(second) = buffers.get(1) {
                state.insert(second_moment(name), second.to_device(device).copy());
            }
        }
        if let OptimizerSettings::AdamW(_) = self.settings {
            state.insert(ADAMW_STEPS.into(), Tensor::from(self.steps));
        }
        state
    }

    /// Restores the state from `values` (keys as [`Optimizer::momentum`] writes them; keys it lacks
    /// keep theirs).
    pub fn set_momentum(&mut self, values: &std::collections::BTreeMap<String, Tensor>) {
        tch::no_grad(|| {
            for ((name, _), buffers) in self.params.iter().zip(&mut self.buffers) {
                let keys = [name.clone(), second_moment(name)];
                for (buffer, key) in buffers.iter_mut().zip(keys) {
                    if let Some(value) = values.get(&key) {
                        buffer.copy_(value);
                    }
                }
            }
        });
        if let Some(steps) = values.get(ADAMW_STEPS) {
            self.steps = steps.int64_value(&[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two AdamW steps against the update rule computed by hand in f64 (the module docs'), one matrix
    /// (decayed) and one vector (not): the same numbers to float64 rounding (1e-12 on values of order
    /// 1: a few ulps of each of the dozen operations).
    #[test]
    fn adamw_steps_as_its_rule_says() {
        let settings = AdamWSettings { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
        let matrix = Tensor::from_slice(&[1.0f64, -2.0, 0.5, 3.0]).view([2, 2]);
        let vector = Tensor::from_slice(&[0.25f64, -1.5]);
        let params = vec![("m".to_string(), matrix.copy()), ("v".to_string(), vector.copy())];
        let mut adamw = Optimizer::over(params, OptimizerSettings::AdamW(settings));
        let gradients = [
            Tensor::from_slice(&[0.1f64, -0.2, 0.3, 0.4]).view([2, 2]),
            Tensor::from_slice(&[-0.5f64, 0.05]),
        ];
        let lr = 0.01;
        let given: Vec<Tensor> = gradients.iter().map(Tensor::copy).collect();
        adamw.step(&gradients, lr);
        adamw.step(&gradients, lr);
        // The gradients are read only (the fused kernel may write them, with a grad scale).
        assert!(gradients.iter().zip(&given).all(|(g, given)| g.equal(given)), "gradients changed");
        // By hand, element by element: the same gradient twice, so m_t = (1 - b1^t) g and
        // v_t = (1 - b2^t) g^2, and the bias-corrected step is g / (|g| + eps) each time.
        let expected = |p0: f64, g: f64, decayed: bool| {
            let decay = if decayed { 1.0 - lr * settings.weight_decay } else { 1.0 };
            let step = lr * g / (g.abs() + settings.eps);
            (p0 * decay - step) * decay - step
        };
        let state = adamw.momentum(tch::Device::Cpu);
        assert_eq!(state[ADAMW_STEPS].int64_value(&[]), 2);
        for ((name, p0, decayed), g) in
            [("m", &matrix, true), ("v", &vector, false)].into_iter().zip(&gradients)
        {
            let got =
                Vec::<f64>::try_from(adamw.params.iter().find(|(n, _)| n == name).unwrap().1.flatten(0, -1))
                    .unwrap();
            let (p0, g) = (
                Vec::<f64>::try_from(p0.flatten(0, -1)).unwrap(),
                Vec::<f64>::try_from(g.flatten(0, -1)).unwrap(),
            );
            for ((got, p0), g) in got.iter().zip(p0).zip(g) {
                assert!(
                    (got - expected(p0, g, decayed)).abs() < 1e-12,
                    "{name}: {got} against {}",
                    expected(p0, g, decayed)
                );
            }
        }
    }
}
