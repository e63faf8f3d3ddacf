//! The byte form of the executor's commands and replies (what crosses between MPI ranks), without MPI:
//! every message read back equals the one written, tensors bit for bit (kind, shape and elements), and
//! a cut or padded message is an error, never a panic or a silently shorter value.

use tch::{Device, Kind, Tensor};
use warpnet::base::named::{Named, Snapshot};
use warpnet::base::optimizer::{OptimizerSettings, SgdSettings};
use warpnet::model::{DerivativeBn, ModelKind, NetConfig, Variant};
use warpnet::runtime::device::Place;
use warpnet::runtime::memory::DeviceMemory;
use warpnet::runtime::mpi::Members;
use warpnet::runtime::replica::{self, Layout, ReplicaStart};
use warpnet::runtime::serial::Message;
use warpnet::runtime::worker::{self, WorkerSpec};
use warpnet::runtime::Placement;

fn config() -> NetConfig {
    NetConfig {
        model: ModelKind::Warp,
        k: 2,
        nwarp: 1,
        width: 1,
        in_channels: 3,
        classes: 10,
        variant: Variant::Warpnet1,
        max_order: None,
        derivative_bn: DerivativeBn::None,
    }
}

/// Same kind, shape and bytes.
fn assert_identical(a: &Tensor, b: &Tensor) {
    assert_eq!(a.kind(), b.kind());
    assert_eq!(a.size(), b.size());
    assert!(a.equal(b), "elements differ");
}

fn assert_same_named(a: &Named, b: &Named) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.values().zip(b.values()).for_each(|(x, y)| assert_identical(x, y));
}

fn named() -> Named {
    let mut n = Named::new();
    n.insert("stage1.unit1.conv1.weight".into(), Tensor::randn([4, 4, 3, 3], (Kind::Float, Device::Cpu)));
    n.insert("stage1.unit1.bn1.running_var".into(), Tensor::rand([4], (Kind::Double, Device::Cpu)));
    n.insert("head.mask".into(), Tensor::randn([2, 3], (Kind::Float, Device::Cpu)).gt(0.0));
    n.insert("empty".into(), Tensor::zeros([0, 5], (Kind::Int64, Device::Cpu)));
    n
}

/// Written, read back.
fn round_trip<T: Message>(value: &T) -> T {
    T::from_bytes(&value.to_bytes()).expect("reads back")
}

#[test]
fn worker_commands_and_replies_round_trip() {
    let _drawing = crate::common::draw_exclusively();
    let x1 = Tensor::randn([2, 16, 32, 32], (Kind::Float, Device::Cpu)); // (B, C, H, W)
    let forward = worker::Command::Forward { layer: 3, x1: x1.shallow_clone(), train: true, measure: false };
    match round_trip(&forward) {
        worker::Command::Forward { layer: 3, x1: got, train: true, measure: false } => {
            assert_identical(&got, &x1)
        }
        _ => panic!("a different command came back"),
    }
    // A non-contiguous tensor travels as its values.
    let transposed = x1.transpose(2, 3);
    match round_trip(&worker::Command::Backward {
        layer: 0,
        grad: transposed.shallow_clone(),
        returned: Vec::new(),
    }) {
        worker::Command::Backward { layer: 0, grad, .. } => assert_identical(&grad, &transposed.contiguous()),
        _ => panic!("a different command came back"),
    }
    let gradients = named();
    match round_trip(&worker::Command::Apply { gradients: named_copy(&gradients), lr: 0.1 }) {
        worker::Command::Apply { gradients: got, lr } => {
            assert_same_named(&got, &gradients);
            assert_eq!(lr, 0.1);
        }
        _ => panic!("a different command came back"),
    }
    let memory =
        DeviceMemory { device: "worker 2 rank 1 cpu".into(), weights: 7, optimizer: 5, activations: None };
    match round_trip(&worker::Reply::Memory(memory.clone())) {
        worker::Reply::Memory(m) => {
            assert_eq!(
                (m.device, m.weights, m.optimizer, m.activations),
                ("worker 2 rank 1 cpu".into(), 7, 5, None)
            )
        }
        _ => panic!("a different reply came back"),
    }
    match round_trip(&worker::Reply::Names(vec!["a".into(), "b.c".into()])) {
        worker::Reply::Names(n) => assert_eq!(n, ["a", "b.c"]),
        _ => panic!("a different reply came back"),
    }
}

/// Under bf16 mixed precision activations are bf16 and channels-last: they cross as 2 bytes an element
/// and arrive bit for bit, still channels-last (so the receiving worker computes in the same layout).
#[test]
fn bf16_channels_last_activations_round_trip_in_their_layout() {
    let _drawing = crate::common::draw_exclusively();
    let x1 =
        warpnet::precision::Precision::Bf16.input(&Tensor::randn([2, 16, 8, 8], (Kind::Float, Device::Cpu)));
    assert!(warpnet::precision::is_channels_last(&x1) && x1.kind() == Kind::BFloat16);
    let forward = worker::Command::Forward { layer: 0, x1: x1.shallow_clone(), train: true, measure: false };
    let bytes = forward.to_bytes();
    assert!(bytes.len() < 2 * 16 * 8 * 8 * 2 + 128, "{} bytes: the elements cross as bf16", bytes.len());
    match worker::Command::from_bytes(&bytes).unwrap() {
        worker::Command::Forward { x1: got, .. } => {
            assert_identical(&got, &x1);
            assert!(warpnet::precision::is_channels_last(&got), "arrives channels-last");
        }
        _ => panic!("a different command came back"),
    }
}

fn named_copy(n: &Named) -> Named {
    n.iter().map(|(k, v)| (k.clone(), v.copy())).collect()
}

#[test]
fn replica_commands_replies_and_starts_round_trip() {
    let _drawing = crate::common::draw_exclusively();
    let images = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu)); // (B, 3, H, W)
    let labels = Tensor::from_slice(&[1i64, 9, 0]); // (B,)
    let command = replica::Command::Gradients {
        images: images.copy(),
        labels: labels.copy(),
        scale: 0.375,
        measure: true,
    };
    match round_trip(&command) {
        replica::Command::Gradients { images: i, labels: l, scale, measure: true } => {
            assert_identical(&i, &images);
            assert_identical(&l, &labels);
            assert_eq!(scale, 0.375);
        }
        _ => panic!("a different command came back"),
    }
    let reply =
        replica::Reply::Gradients { loss_sum: 6.5, correct: 2, gradients: named(), memory: Vec::new() };
    let written = reply.to_bytes();
    match replica::Reply::from_bytes(&written).unwrap() {
        replica::Reply::Gradients { loss_sum, correct, gradients, memory } => {
            assert_eq!((loss_sum, correct, memory.len()), (6.5, 2, 0));
            match reply {
                replica::Reply::Gradients { gradients: sent, .. } => assert_same_named(&gradients, &sent),
                _ => unreachable!(),
            }
        }
        _ => panic!("a different reply came back"),
    }
    let config = config();
    let placement =
        Placement::parse("[F1,F2'x1],[F2]", &warpnet::model::Architecture::terms(&config)).unwrap();
    let workers = vec![Place { rank: 2, device: Device::Cpu }, Place { rank: 3, device: Device::Cpu }];
    let layout = Layout::Split {
        home: Device::Cpu,
        threads: 1,
        placement: placement.clone(),
        workers,
        threads_per_worker: 1,
        collective: Some(Members { id: 1, ranks: vec![0, 1] }),
    };
    let variables = named();
    let initial = Snapshot { variables: named_copy(&variables), momentum: Named::new() };
    let optimizer = SgdSettings::PAPER.into();
    let start =
        round_trip(&ReplicaStart { network: config.network(), layout, initial, optimizer, peers: None });
    assert_eq!(start.network.description(), Some(warpnet::model::Description::Wrn(config.clone())));
    assert_same_named(&start.initial.variables, &variables);
    assert!(start.initial.momentum.is_empty());
    assert_eq!(start.optimizer, OptimizerSettings::Sgd(SgdSettings { momentum: 0.9, weight_decay: 5e-4 }));
    match start.layout {
        Layout::Split { placement: p, workers, .. } => {
            assert_eq!(p.to_string(), placement.to_string());
            assert_eq!(workers.iter().map(|w| w.rank).collect::<Vec<_>>(), [2, 3]);
        }
        Layout::Whole { .. } => panic!("a different layout came back"),
    }
    let spec = WorkerSpec {
        network: config.network(),
        placement,
        group: 1,
        place: Place { rank: 1, device: Device::Cpu },
        home: Device::Cpu,
        threads: 2,
        optimizer: SgdSettings::PAPER.into(),
        collective: Some(Members { id: 3, ranks: vec![0, 1] }),
    };
    let back = round_trip(&spec);
    assert_eq!(back.collective, spec.collective);
    assert_eq!(
        (back.group, back.place, back.threads, back.optimizer),
        (1, spec.place, 2, SgdSettings::PAPER.into())
    );
}

#[test]
fn cut_or_padded_messages_are_errors() {
    let bytes = worker::Command::Apply { gradients: named(), lr: 0.5 }.to_bytes();
    for cut in [0, 1, 9, bytes.len() / 2, bytes.len() - 1] {
        assert!(worker::Command::from_bytes(&bytes[..cut]).is_err(), "{cut} of {} bytes read", bytes.len());
    }
    let mut padded = bytes.clone();
    padded.push(0);
    assert!(worker::Command::from_bytes(&padded).is_err(), "a padded message read");
    assert!(worker::Command::from_bytes(&[200]).is_err(), "an unknown variant read");
}
