//! Tensors by variable name: gradients and weights as they travel between devices.

use std::collections::BTreeMap;

use tch::{nn::VarStore, Device, Tensor};

/// Tensors keyed by variable name (`stage1.unit2.conv1.weight`), in name order.
pub type Named = BTreeMap<String, Tensor>;

/// Adds `part` into `total` name by name; a name only in `part` is taken as it is. Sums live on the
/// device of the tensor already in `total`.
pub fn accumulate(total: &mut Named, part: Named) {
    for (name, tensor) in part {
        match total.remove(&name) {
            Some(sum) => {
                let device = sum.device();
                total.insert(name, sum + tensor.to_device(device));
            }
            None => {
                total.insert(name, tensor);
            }
        }
    }
}

/// A copy of every variable of `vs` (weights and BatchNorm statistics) on `device`.
pub fn copy_variables(vs: &VarStore, device: Device) -> Named {
    tch::no_grad(|| vs.variables().into_iter().map(|(name, t)| (name, t.to_device(device).copy())).collect())
}

/// Writes `values` into the variables of `vs` with the same names; every variable of `vs` must have one
/// (`values` may hold more).
pub fn assign_variables(vs: &VarStore, values: &Named) {
    tch::no_grad(|| {
        for (name, variable) in vs.variables() {
            let value = values.get(&name).unwrap_or_else(|| panic!("no value for {name}"));
            variable.shallow_clone().copy_(value);
        }
    });
}

/// Deep copies (on the same devices), so that another thread owns its tensors outright.
pub fn deep_copy(values: &Named) -> Named {
    tch::no_grad(|| values.iter().map(|(n, t)| (n.clone(), t.copy())).collect())
}

/// A network's training state by name: its variables (weights and BatchNorm statistics) and its
/// optimizer's momentum buffers (per trainable parameter; absent names start at zero).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub variables: Named,
    pub momentum: Named,
}

impl Snapshot {
    pub fn deep_copy(&self) -> Snapshot {
        Snapshot { variables: deep_copy(&self.variables), momentum: deep_copy(&self.momentum) }
    }
}
