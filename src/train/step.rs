//! One training step, on one device or through the parallel executor: the same loss, gradients and
//! SGD update either way (tests/parallel/parallel_executor.rs), in fp32 or bf16 mixed precision.

use tch::{nn::VarStore, Tensor};

use crate::base::named::{assign_variables, copy_variables, Named, Snapshot};
use crate::base::optimizer::Sgd;
use crate::model::{loss, Net};
use crate::parallel::executor::{Executor, StepResult};
use crate::precision::Precision;

pub enum Stepper {
    /// Forward, backward and SGD on the network itself; the images are cast to `precision` first.
    Single { sgd: Sgd, precision: Precision },
    /// The network's weights live on the executor's devices; the trainer's copy is refreshed by
    /// [`Stepper::sync`] before it is evaluated or saved.
    Parallel(Executor),
}

impl Stepper {
    /// One SGD step on images (B, 3, H, W) and labels (B,) at learning rate `lr`.
    pub fn step(&mut self, net: &Net, images: &Tensor, labels: &Tensor, lr: f64) -> StepResult {
        match self {
            Stepper::Single { sgd, precision } => {
                let logits = net.forward(&precision.input(images), true);
                let loss = loss::cross_entropy(&logits, labels);
                let gradients = sgd.gradients(&loss);
                sgd.step(&gradients, lr);
                StepResult { loss: loss.double_value(&[]), correct: loss::correct(&logits, labels) }
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

    /// The executor for `vs`'s network, starting from its current weights and `momentum`, stepping in
    /// `precision`.
    pub fn parallel(
        vs: &VarStore,
        momentum: Named,
        config: &crate::model::NetConfig,
        devices: &crate::parallel::Devices,
        plan: crate::parallel::Plan,
        sgd: crate::base::optimizer::SgdSettings,
        precision: Precision,
    ) -> anyhow::Result<Self> {
        let initial = Snapshot { variables: copy_variables(vs, tch::Device::Cpu), momentum };
        let executor = Executor::new(config, devices, plan, &initial, sgd)?.with_precision(precision);
        Ok(Stepper::Parallel(executor))
    }

    /// The optimizer's momentum buffers by parameter name (for a checkpoint).
    pub fn momentum(&self) -> Named {
        match self {
            Stepper::Single { sgd, .. } => sgd.momentum(tch::Device::Cpu),
            Stepper::Parallel(executor) => executor.momentum(),
        }
    }
}
