//! SGD with momentum and weight decay, PyTorch's update rule, with its state in plain tensors (so a
//! checkpoint can hold it).
//!
//! For each parameter p with gradient g:  d = g + wd * p;  buf = momentum * buf + d;  p -= lr * buf.
//! (PyTorch starts buf at d on the first step; starting at zero gives the same first buf.)
//!
//! Gradients are values, not accumulators: [`Sgd::gradients`] returns dL/dp for every parameter
//! (`torch.autograd.grad`), so nothing is zeroed between steps and gradients from several replicas can
//! be summed before [`Sgd::step`].

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

pub struct Sgd {
    /// Trainable parameters by name, sorted by name so the update order never depends on a hash map.
    params: Vec<(String, Tensor)>,
    /// Momentum buffers, one per parameter, same shapes.
    buffers: Vec<Tensor>,
    pub settings: SgdSettings,
}

impl Sgd {
    pub fn new(vs: &VarStore, settings: SgdSettings) -> Self {
        let mut params: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self::over(params, settings)
    }

    /// SGD over the given (name, parameter) pairs, sorted by name.
    pub fn over(mut params: Vec<(String, Tensor)>, settings: SgdSettings) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Sgd { params, buffers, settings }
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

    /// One update with learning rate `lr` from `gradients` (one per parameter, as [`Sgd::gradients`]).
    /// The gradients are read, not modified (several devices may hold the same summed gradient).
    pub fn step(&mut self, gradients: &[Tensor], lr: f64) {
        assert_eq!(gradients.len(), self.params.len(), "one gradient per parameter");
        tch::no_grad(|| {
            for (((_, p), buf), g) in self.params.iter_mut().zip(&mut self.buffers).zip(gradients) {
                let decayed = g + &*p * self.settings.weight_decay; // d = g + wd * p
                let _ = buf.g_mul_scalar_(self.settings.momentum).g_add_(&decayed); // buf = m * buf + d
                let _ = p.g_add_(&(&*buf * -lr)); // p -= lr * buf
            }
        });
    }

    /// Parameter names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _)| n.as_str())
    }

    /// (name, momentum buffer) pairs, sorted by name.
    pub fn state(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names().zip(&self.buffers)
    }

    /// Copies of the momentum buffers by parameter name, on `device` (for a checkpoint).
    pub fn momentum(&self, device: tch::Device) -> std::collections::BTreeMap<String, Tensor> {
        self.state().map(|(n, b)| (n.to_string(), b.to_device(device).copy())).collect()
    }

    /// Restores the momentum buffers from `values` (by parameter name; names it lacks keep theirs).
    pub fn set_momentum(&mut self, values: &std::collections::BTreeMap<String, Tensor>) {
        tch::no_grad(|| {
            for ((name, _), buffer) in self.params.iter().zip(&mut self.buffers) {
                if let Some(value) = values.get(name) {
                    buffer.copy_(value);
                }
            }
        });
    }
}
