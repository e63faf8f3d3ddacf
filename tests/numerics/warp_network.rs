//! WarpNet and its WRN twin: the same parameters under the same names, checkpoints that round-trip
//! bit-exactly, K = 1 equal to the WRN, and the network forward equal to the warp operator applied
//! layer by layer.

use crate::common;

use tch::{nn::VarStore, Device, Kind, Tensor};
use warpnet::model::{ModelKind, Net, NetConfig, Variant};

fn names_and_shapes(vs: &VarStore) -> Vec<(String, Vec<i64>)> {
    let mut v: Vec<(String, Vec<i64>)> = vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
    v.sort();
    v
}

#[test]
fn warpnet_and_wrn_twin_have_identical_parameters() {
    let _drawing = crate::common::draw_exclusively();
    for (k, nwarp) in [(2, 1), (3, 2), (2, 3)] {
        for variant in [Variant::Exact, Variant::Warpnet1, Variant::Warpnet2, Variant::Released] {
            let warp = NetConfig::warp(k, nwarp, 2, 10, variant);
            let wrn = warp.as_model(ModelKind::Wrn);
            let (vs_warp, vs_wrn) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
            let _a = Net::new(&vs_warp.root(), &warp);
            let _b = Net::new(&vs_wrn.root(), &wrn);
            assert_eq!(names_and_shapes(&vs_warp), names_and_shapes(&vs_wrn), "{}", warp.label());
            assert_eq!(wrn.label(), format!("WRN-{}-2", 6 * k * nwarp + 1));
        }
    }
}

#[test]
fn wrn_checkpoint_round_trips_through_a_warpnet_bit_exactly() {
    let _drawing = crate::common::draw_exclusively();
    let dir = tempfile::tempdir().unwrap();
    let warp = NetConfig::warp(2, 2, 1, 10, Variant::Warpnet1);
    let vs_wrn = VarStore::new(Device::Cpu);
    let _wrn = Net::new(&vs_wrn.root(), &warp.as_model(ModelKind::Wrn));
    common::randomize_batch_norms(&vs_wrn); // running statistics too, not just weights
    let wrn_file = dir.path().join("wrn.safetensors");
    vs_wrn.save(&wrn_file).unwrap();

    let mut vs_warp = VarStore::new(Device::Cpu);
    let _warp = Net::new(&vs_warp.root(), &warp);
    vs_warp.load(&wrn_file).unwrap();
    let warp_file = dir.path().join("warp.safetensors");
    vs_warp.save(&warp_file).unwrap();

    let mut vs_back = VarStore::new(Device::Cpu);
    let _back = Net::new(&vs_back.root(), &warp.as_model(ModelKind::Wrn));
    vs_back.load(&warp_file).unwrap();
    let original = vs_wrn.variables();
    for (name, t) in vs_back.variables() {
        let o = &original[&name];
        // Bit-exact: compare the raw bytes, not within a tolerance.
        let bytes = |t: &Tensor| {
            Vec::<f32>::try_from(t.flatten(0, -1)).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        assert_eq!(bytes(&t), bytes(o), "{name}");
    }
}

#[test]
fn k1_warpnet_is_the_wrn() {
    let _drawing = crate::common::draw_exclusively();
    let wrn = NetConfig::wrn(3, 1, 10);
    for variant in [Variant::Exact, Variant::Warpnet1, Variant::Warpnet2, Variant::Released] {
        let warp = NetConfig::warp(1, 3, 1, 10, variant);
        let mut vs = VarStore::new(Device::Cpu);
        let a = Net::new(&vs.root(), &wrn);
        let b = Net::new(&(vs.root() / "twin"), &warp);
        vs.double();
        common::randomize_batch_norms(&vs);
        // Same weights: copy the WRN's into the twin.
        tch::no_grad(|| {
            let all = vs.variables();
            for (name, t) in &all {
                if let Some(twin) = all.get(&format!("twin.{name}")) {
                    twin.shallow_clone().copy_(t);
                }
            }
        });
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Double, Device::Cpu));
        for train in [false, true] {
            let (ya, yb) = (a.forward(&x, train), b.forward(&x, train));
            // Same ops in the same order: equal to the last bit.
            assert!(ya.equal(&yb), "{variant:?} train {train}");
        }
    }
}
