//! SGD with momentum and weight decay, PyTorch's update rule, with its state in plain tensors (so a
//! checkpoint can hold it).
//!
//! For each parameter p with gradient g:  d = g + wd * p;  buf = momentum * buf + d;  p -= lr * buf.
//! (PyTorch starts buf at d on the first step; starting at zero gives the same first buf.)

use tch::{nn::VarStore, Tensor};

pub struct Sgd {
    /// Trainable parameters by name, sorted by name so the update order never depends on a hash map.
    params: Vec<(String, Tensor)>,
    /// Momentum buffers, one per parameter, same shapes.
    buffers: Vec<Tensor>,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Sgd {
    pub fn new(vs: &VarStore, momentum: f64, weight_decay: f64) -> Self {
        let mut params: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Sgd { params, buffers, momentum, weight_decay }
    }

    /// Clears the accumulated gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// One update with learning rate `lr` from the gradients accumulated by `backward`.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for ((_, p), buf) in self.params.iter_mut().zip(&mut self.buffers) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let decayed = grad + &*p * self.weight_decay; // d = g + wd * p
                let _ = buf.g_mul_scalar_(self.momentum).g_add_(&decayed); // buf = m * buf + d
                let _ = p.g_add_(&(&*buf * -lr)); // p -= lr * buf
            }
        });
    }

    /// (name, momentum buffer) pairs, sorted by name.
    pub fn state(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.params.iter().map(|(n, _)| n.as_str()).zip(&self.buffers)
    }
}
