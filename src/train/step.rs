//! One training step, on one device or through the parallel executor: the same loss, gradients and
//! optimizer update either way (tests/parallel/parallel_executor.rs), in fp32 or bf16 mixed precision.

use tch::{nn::VarStore, Tensor};

use crate::base::named::{assign_variables, copy_variables, Named, Snapshot};
use crate::base::optimizer::{Optimizer, OptimizerSettings};
use crate::model::{loss, Net};
use crate::precision::Precision;
use crate::runtime::executor::{Executor, StepResult};

pub enum Stepper {
    /// Forward, backward and the update on the network itself; the inputs are cast to `precision`
    /// first.
    Single { optimizer: Optimizer, precision: Precision },
    /// The network's weights live on the executor's devices; the trainer's copy is refreshed by
    /// [`Stepper::sync`] before it is evaluated or saved.
    Parallel(Executor),
}

impl Stepper {
    /// One SGD step on images (B, 3, H, W) and labels (B,) at learning rate `lr`.
    pub fn step(&mut self, net: &Net, images: &Tensor, labels: &Tensor, lr: f64) -> StepResult {
        match self {
            Stepper::Single { optimizer, precision } => {
                single_step(net, optimizer, &precision.input(images), labels, lr, |_| {})
            }
            Stepper::Parallel(executor) => executor.step(images, labels, lr),
        }
    }

    /// Brings the trainer's copy of the weights (and BN statistics) up to date.
    pub fn sync(&self, vs: &VarStore) {
        if let Stepper::Parallel(executor) = self {
            assign_variables(vs, &executor.variables(vs.device()));
        }
    }

    /// The optimizer of `settings` on one device, or with `parallel` = (network, devices, plan) the
    /// executor for `vs`'s network; either starts from `vs`'s weights and the optimizer state `state`
    /// (a checkpoint's, or empty) and steps in `precision`.
    pub fn new(
        vs: &VarStore,
        state: Named,
        settings: OptimizerSettings,
        precision: Precision,
        parallel: Option<(&crate::model::Network, &crate::runtime::Devices, crate::runtime::Plan)>,
    ) -> anyhow::Result<Self> {
        let Some((network, devices, plan)) = parallel else {
            let mut optimizer = Optimizer::new(vs, settings);
            optimizer.set_momentum(&state);
            return Ok(Stepper::Single { optimizer, precision });
        };
        let initial = Snapshot { variables: copy_variables(vs, tch::Device::Cpu), momentum: state };
        let executor = Executor::new(network, devices, plan, &initial, settings)?.with_precision(precision);
        Ok(Stepper::Parallel(executor))
    }

    /// The optimizer's momentum buffers by parameter name (for a checkpoint).
    pub fn momentum(&self) -> Named {
        match self {
            Stepper::Single { optimizer, .. } => optimizer.momentum(tch::Device::Cpu),
            Stepper::Parallel(executor) => executor.momentum(),
        }
    }
}

/// The phases of a step on one device, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The forward pass and the loss.
    Forward,
    /// The gradients of every parameter.
    Backward,
    /// The SGD update, and the wait for its loss on an asynchronous device.
    Update,
}

/// One SGD step of `net` on one device at learning rate `lr`: `input` (B, 3, H, W) already in the
/// step's precision and memory layout, labels (B,). `phase_done` is told as each phase ends (the bench
/// times them); the loss is the mean cross-entropy of model/loss.rs.
pub fn single_step(
    net: &Net,
    sgd: &mut Optimizer,
    input: &Tensor,
    labels: &Tensor,
    lr: f64,
    mut phase_done: impl FnMut(Phase),
) -> StepResult {
    let logits = net.forward(input, true);
    let loss = loss::cross_entropy(&logits, labels);
    phase_done(Phase::Forward);
    let gradients = sgd.gradients(&loss);
    phase_done(Phase::Backward);
    sgd.step(&gradients, lr);
    // Reading the loss waits for the step on asynchronous devices.
    let result = StepResult { loss: loss.double_value(&[]), correct: loss::correct(&logits, labels) };
    phase_done(Phase::Update);
    result
}
