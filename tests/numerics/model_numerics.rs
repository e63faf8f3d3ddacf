//! The network's numerics against independent computations: BatchNorm by hand, the parameter count
//! against the closed formula for WRN-n-kw, stage shapes, and the whole forward pass re-composed by hand
//! from the named weights (paper Table 1).

use std::collections::HashMap;

use tch::{nn::VarStore, Device, Kind, Tensor};
use warpnet::model::layers::{BatchNorm2d, BN_EPS, BN_MOMENTUM};
use warpnet::model::{Net, NetConfig};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// BatchNorm2d in training mode against a hand computation over a (2, 2, 2, 2) input, in f64.
#[test]
fn batch_norm_matches_hand_computation() {
    let _drawing = crate::common::draw_exclusively();
    let mut vs = VarStore::new(Device::Cpu);
    let mut bn = BatchNorm2d::new(vs.root() / "bn", 2);
    vs.double();
    tch::no_grad(|| {
        bn.weight.copy_(&Tensor::from_slice(&[2.0f64, 0.5]));
        bn.bias.copy_(&Tensor::from_slice(&[1.0f64, -1.0]));
    });
    // x[b][c][h][w] = values below, (B=2, C=2, H=2, W=2).
    let values: Vec<f64> = (0..16).map(|i| ((i * 7) % 11) as f64 - 3.0).collect();
    let x = Tensor::from_slice(&values).view([2, 2, 2, 2]);
    let y = bn.forward(&x, true);

    let at = |b: usize, c: usize, p: usize| values[b * 8 + c * 4 + p];
    let (gamma, beta) = ([2.0, 0.5], [1.0, -1.0]);
    for c in 0..2 {
        let xs: Vec<f64> =
            (0..2).flat_map(|b| (0..4).map(move |p| (b, p))).map(|(b, p)| at(b, c, p)).collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var_biased = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        for b in 0..2 {
            for p in 0..4 {
                let expected = gamma[c] * (at(b, c, p) - mean) / (var_biased + BN_EPS).sqrt() + beta[c];
                let got = y.double_value(&[b as i64, c as i64, (p / 2) as i64, (p % 2) as i64]);
                // f64 arithmetic on 8 values: agreement to rounding.
                assert!((got - expected).abs() < 1e-12, "c={c} b={b} p={p}: {got} vs {expected}");
            }
        }
        // Running statistics: (1 - m) * initial + m * batch value, variance unbiased (n - 1).
        let var_unbiased = var_biased * n / (n - 1.0);
        let rm = bn.running_mean.double_value(&[c as i64]);
        let rv = bn.running_var.double_value(&[c as i64]);
        assert!((rm - BN_MOMENTUM * mean).abs() < 1e-12);
        assert!((rv - ((1.0 - BN_MOMENTUM) + BN_MOMENTUM * var_unbiased)).abs() < 1e-12);
    }
    // Eval mode uses the running statistics.
    let y_eval = bn.forward(&x, false);
    let rm = &bn.running_mean;
    let rv = &bn.running_var;
    let expected = (&x - rm.view([1, 2, 1, 1])) / (rv.view([1, 2, 1, 1]) + BN_EPS).sqrt()
        * bn.weight.view([1, 2, 1, 1])
        + bn.bias.view([1, 2, 1, 1]);
    assert!(max_abs_diff(&y_eval, &expected) < 1e-12);
}

/// Parameters of WRN-n-kw by the closed formula (trainable only; BN running statistics excluded):
/// stem conv 3*16*9 + stem BN 2*16; per unit at width c: two 3x3 convs 2*9c^2 and three BNs 3*2c, with
/// K*Nwarp units at each of c = 16kw, 32kw, 64kw; head BN 2*64kw and Linear 64kw*classes + classes.
fn closed_form_parameters(units: i64, kw: i64, classes: i64) -> i64 {
    let stem = 3 * 16 * 9 + 2 * 16;
    let stages: i64 = [16 * kw, 32 * kw, 64 * kw].iter().map(|c| units * (18 * c * c + 6 * c)).sum();
    let head = 2 * 64 * kw + 64 * kw * classes + classes;
    stem + stages + head
}

#[test]
fn parameter_count_matches_closed_formula() {
    let _drawing = crate::common::draw_exclusively();
    for (k, nwarp, kw, classes) in
        [(1, 1, 1, 10), (1, 2, 4, 10), (2, 3, 4, 100), (3, 2, 2, 1000), (1, 6, 6, 10)]
    {
        let config = NetConfig { k, nwarp, ..NetConfig::wrn(1, kw, classes) };
        let vs = VarStore::new(Device::Cpu);
        let _net = Net::new(&vs.root(), &config);
        let counted: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        let expected = closed_form_parameters((k * nwarp) as i64, kw as i64, classes as i64);
        assert_eq!(counted, expected, "{} with {classes} classes", config.label());
    }
    // The paper's Table 4 quotes 4.8M parameters for WRN-73-2 on ImageNet32 (1000 classes).
    let wrn_73_2 = closed_form_parameters(12, 2, 1000) as f64;
    assert!((wrn_73_2 / 1e6 - 4.8).abs() < 0.05, "{wrn_73_2}");
}

#[test]
fn depth_label_and_stage_shapes() {
    let _drawing = crate::common::draw_exclusively();
    let config = NetConfig::wrn(2, 4, 10);
    assert_eq!(config.label(), "WRN-13-4");
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &config);
    let x = Tensor::randn([5, 3, 32, 32], (Kind::Float, Device::Cpu));
    let shapes: Vec<Vec<i64>> = net.features(&x, false).iter().map(|t| t.size()).collect();
    assert_eq!(shapes, vec![vec![5, 64, 32, 32], vec![5, 128, 16, 16], vec![5, 256, 8, 8]]);
    assert_eq!(net.forward(&x, false).size(), vec![5, 10]);
}

#[test]
fn parameter_names_are_stable() {
    let _drawing = crate::common::draw_exclusively();
    let vs = VarStore::new(Device::Cpu);
    let _net = Net::new(&vs.root(), &NetConfig::wrn(2, 1, 10));
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    for name in [
        "stem.conv.weight",
        "stem.bn.weight",
        "stem.bn.running_var",
        "stage1.unit1.bn0.weight",
        "stage1.unit1.conv1.weight",
        "stage1.unit2.bn2.running_mean",
        "stage3.unit2.conv2.weight",
        "head.bn.bias",
        "head.fc.weight",
        "head.fc.bias",
    ] {
        assert!(names.binary_search(&name.to_string()).is_ok(), "missing {name} in {names:?}");
    }
    // stem: conv + BN(4); per unit: 2 convs + 3 BNs * 4 = 14; head: BN(4) + fc(2).
    assert_eq!(names.len(), 1 + 4 + 3 * 2 * 14 + 4 + 2);
}

/// Table 1 composed by hand from the named weights with raw tensor ops (eval-mode BN), against
/// `Net::forward`. Same ops in the same order, so they agree to f64 rounding.
#[test]
fn forward_equals_table1_composed_by_hand() {
    let _drawing = crate::common::draw_exclusively();
    let config = NetConfig::wrn(2, 2, 10);
    let mut vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &config);
    vs.double();
    // Non-trivial running statistics and affine parameters, so eval-mode BN is not the identity.
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.contains("bn") {
                let noise = Tensor::rand_like(&t) * 0.5 + 0.75;
                t.copy_(&noise);
            }
        }
    });
    let w: HashMap<String, Tensor> = vs.variables();
    let bn = |prefix: &str, x: &Tensor| {
        let p = |s: &str| w[&format!("{prefix}.{s}")].view([1, -1, 1, 1]);
        (x - p("running_mean")) / (p("running_var") + BN_EPS).sqrt() * p("weight") + p("bias")
    };
    let conv = |name: &str, x: &Tensor| x.conv2d(&w[name], None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);

    let x = Tensor::randn([3, 3, 32, 32], (Kind::Double, Device::Cpu));
    let mut h = bn("stem.bn", &conv("stem.conv.weight", &x)).relu();
    h = Tensor::cat(&[&h, &h], 1); // kw = 2 copies of the 16 stem channels
    for stage in 1..=3 {
        if stage > 1 {
            let pooled = h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
            h = Tensor::cat(&[&pooled, &pooled], 1);
        }
        for unit in 1..=2 {
            let u = format!("stage{stage}.unit{unit}");
            let f = bn(&format!("{u}.bn0"), &h);
            let f = bn(&format!("{u}.bn1"), &conv(&format!("{u}.conv1.weight"), &f)).relu();
            let f = bn(&format!("{u}.bn2"), &conv(&format!("{u}.conv2.weight"), &f));
            h = h + f;
        }
    }
    let pooled = bn("head.bn", &h).relu().mean_dim([2i64, 3].as_slice(), false, None);
    let expected = pooled.linear(&w["head.fc.weight"], Some(&w["head.fc.bias"]));
    let got = net.forward(&x, false);
    assert!(max_abs_diff(&got, &expected) < 1e-10, "{}", max_abs_diff(&got, &expected));
}
