//! The executor's steps that the any-unit and transformer tests compare across placements.

use tch::{Device, Tensor};
use warpnet::base::named::{deep_copy, Named, Snapshot};
use warpnet::base::optimizer::SgdSettings;
use warpnet::model::Network;
use warpnet::runtime::{Devices, Executor, Placement, Plan};

/// Two SGD steps of `network` on `devices` with `placement`, from `initial`, on the batches
/// `batch(0)` and `batch(1)` (inputs, targets): the losses and the variables.
pub fn two_steps(
    network: &Network,
    initial: &Named,
    devices: &str,
    placement: Option<&str>,
    batch: impl Fn(u64) -> (Tensor, Tensor),
) -> (Vec<f64>, Named) {
    let devices: Devices = devices.parse().unwrap();
    let placement = placement.map(|p| Placement::parse(p, &network.terms()).unwrap());
    let plan = Plan::new(&devices, placement).unwrap();
    let start = Snapshot { variables: deep_copy(initial), momentum: Named::new() };
    let mut executor = Executor::new(network, &devices, plan, &start, SgdSettings::PAPER).unwrap();
    let losses = (0..2)
        .map(|step| {
            let (inputs, targets) = batch(step);
            executor.step(&inputs, &targets, 0.1).loss
        })
        .collect();
    (losses, executor.variables(Device::Cpu))
}
