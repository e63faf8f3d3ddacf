//! The byte forms of the executor's commands and replies, and of what builds a device on another
//! rank: a term worker (`WorkerSpec` and its starting state) or a whole replica (`Layout` and its
//! starting state). Each enum is a one-byte variant number followed by its fields in order.

use anyhow::{bail, Context};
use tch::Device;

use super::wire::{Reader, Wire, Writer};
use crate::base::named::Snapshot;
use crate::base::optimizer::SgdSettings;
use crate::model::net::layer_operator;
use crate::model::NetConfig;
use crate::parallel::device::Place;
use crate::parallel::memory::DeviceMemory;
use crate::parallel::placement::Placement;
use crate::parallel::replica::{self, Layout};
use crate::parallel::worker::{self, WorkerSpec};

fn write_device(w: &mut Writer, device: Device) {
    w.i64(match device {
        Device::Cuda(i) => i as i64,
        _ => -1,
    });
}

fn read_device(r: &mut Reader) -> anyhow::Result<Device> {
    Ok(match r.i64()? {
        -1 => Device::Cpu,
        i => Device::Cuda(usize::try_from(i).context("device index")?),
    })
}

fn write_config(w: &mut Writer, config: &NetConfig) {
    w.str(&serde_json::to_string(config).expect("a network config serializes"));
}

fn read_config(r: &mut Reader) -> anyhow::Result<NetConfig> {
    Ok(serde_json::from_str(&r.str()?)?)
}

/// A placement travels as its text and is parsed again against the network's terms.
fn read_placement(r: &mut Reader, config: &NetConfig) -> anyhow::Result<Placement> {
    Placement::parse(&r.str()?, &layer_operator(config).0)
}

fn write_sgd(w: &mut Writer, sgd: SgdSettings) {
    w.f64(sgd.momentum);
    w.f64(sgd.weight_decay);
}

fn read_sgd(r: &mut Reader) -> anyhow::Result<SgdSettings> {
    Ok(SgdSettings { momentum: r.f64()?, weight_decay: r.f64()? })
}

impl Wire for WorkerSpec {
    fn write(&self, w: &mut Writer) {
        write_config(w, &self.config);
        w.str(&self.placement.to_string());
        w.usize(self.group);
        w.usize(self.place.rank);
        write_device(w, self.place.device);
        write_device(w, self.home);
        w.usize(self.threads);
        write_sgd(w, self.sgd);
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        let config = read_config(r)?;
        let placement = read_placement(r, &config)?;
        let group = r.usize()?;
        let place = Place { rank: r.usize()?, device: read_device(r)? };
        let (home, threads, sgd) = (read_device(r)?, r.usize()?, read_sgd(r)?);
        Ok(WorkerSpec { config, placement, group, place, home, threads, sgd })
    }
}

/// A replica to build: its network, layout, starting state and optimizer settings.
pub struct ReplicaStart {
    pub config: NetConfig,
    pub layout: Layout,
    pub initial: Snapshot,
    pub sgd: SgdSettings,
}

impl Wire for ReplicaStart {
    fn write(&self, w: &mut Writer) {
        write_config(w, &self.config);
        match &self.layout {
            Layout::Whole { device, threads } => {
                w.u8(0);
                write_device(w, *device);
                w.usize(*threads);
            }
            Layout::Split { home, threads, placement, workers, threads_per_worker } => {
                w.u8(1);
                write_device(w, *home);
                w.usize(*threads);
                w.str(&placement.to_string());
                w.usize(workers.len());
                for place in workers {
                    w.usize(place.rank);
                    write_device(w, place.device);
                }
                w.usize(*threads_per_worker);
            }
        }
        w.named(&self.initial.variables);
        w.named(&self.initial.momentum);
        write_sgd(w, self.sgd);
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        let config = read_config(r)?;
        let layout = match r.u8()? {
            0 => Layout::Whole { device: read_device(r)?, threads: r.usize()? },
            1 => {
                let (home, threads) = (read_device(r)?, r.usize()?);
                let placement = read_placement(r, &config)?;
                let n = r.usize()?;
                let workers = (0..n)
                    .map(|_| Ok(Place { rank: r.usize()?, device: read_device(r)? }))
                    .collect::<anyhow::Result<Vec<Place>>>()?;
                Layout::Split { home, threads, placement, workers, threads_per_worker: r.usize()? }
            }
            v => bail!("unknown replica layout {v}"),
        };
        let initial = Snapshot { variables: r.named()?, momentum: r.named()? };
        Ok(ReplicaStart { config, layout, initial, sgd: read_sgd(r)? })
    }
}

impl Wire for DeviceMemory {
    fn write(&self, w: &mut Writer) {
        w.str(&self.device);
        w.usize(self.weights);
        w.usize(self.optimizer);
        w.bool(self.activations.is_some());
        w.usize(self.activations.unwrap_or(0));
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        let (device, weights, optimizer) = (r.str()?, r.usize()?, r.usize()?);
        let (measured, activations) = (r.bool()?, r.usize()?);
        Ok(DeviceMemory { device, weights, optimizer, activations: measured.then_some(activations) })
    }
}

impl Wire for String {
    fn write(&self, w: &mut Writer) {
        w.str(self);
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        r.str()
    }
}

impl Wire for (String, f64) {
    fn write(&self, w: &mut Writer) {
        w.str(&self.0);
        w.f64(self.1);
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        Ok((r.str()?, r.f64()?))
    }
}

impl Wire for worker::Command {
    fn write(&self, w: &mut Writer) {
        use worker::Command::*;
        match self {
            Forward { layer, x1, train, measure } => {
                w.u8(0);
                w.usize(*layer);
                w.tensor(x1);
                w.bool(*train);
                w.bool(*measure);
            }
            Backward { layer, grad } => {
                w.u8(1);
                w.usize(*layer);
                w.tensor(grad);
            }
            TakeGradients => w.u8(2),
            Apply { gradients, lr } => {
                w.u8(3);
                w.named(gradients);
                w.f64(*lr);
            }
            Variables => w.u8(4),
            Memory => w.u8(5),
            Busy => w.u8(6),
            Momentum => w.u8(7),
            Parameters => w.u8(8),
            Primal { layer, x1, train, measure } => {
                w.u8(9);
                w.usize(*layer);
                w.tensor(x1);
                w.bool(*train);
                w.bool(*measure);
            }
            Terms { layer, masks, measure } => {
                w.u8(10);
                w.usize(*layer);
                w.named(masks);
                w.bool(*measure);
            }
        }
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        use worker::Command::*;
        Ok(match r.u8()? {
            0 => Forward { layer: r.usize()?, x1: r.tensor()?, train: r.bool()?, measure: r.bool()? },
            1 => Backward { layer: r.usize()?, grad: r.tensor()? },
            2 => TakeGradients,
            3 => Apply { gradients: r.named()?, lr: r.f64()? },
            4 => Variables,
            5 => Memory,
            6 => Busy,
            7 => Momentum,
            8 => Parameters,
            9 => Primal { layer: r.usize()?, x1: r.tensor()?, train: r.bool()?, measure: r.bool()? },
            10 => Terms { layer: r.usize()?, masks: r.named()?, measure: r.bool()? },
            v => bail!("unknown worker command {v}"),
        })
    }
}

impl Wire for worker::Reply {
    fn write(&self, w: &mut Writer) {
        use worker::Reply::*;
        match self {
            Tensor(t) => {
                w.u8(0);
                w.tensor(t);
            }
            Named(n) => {
                w.u8(1);
                w.named(n);
            }
            Memory(m) => {
                w.u8(2);
                m.write(w);
            }
            Seconds(s) => {
                w.u8(3);
                w.f64(*s);
            }
            Done => w.u8(4),
            Names(n) => {
                w.u8(5);
                n.write(w);
            }
        }
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        use worker::Reply::*;
        Ok(match r.u8()? {
            0 => Tensor(r.tensor()?),
            1 => Named(r.named()?),
            2 => Memory(DeviceMemory::read(r)?),
            3 => Seconds(r.f64()?),
            4 => Done,
            5 => Names(Vec::read(r)?),
            v => bail!("unknown worker reply {v}"),
        })
    }
}

impl Wire for replica::Command {
    fn write(&self, w: &mut Writer) {
        use replica::Command::*;
        match self {
            Gradients { images, labels, scale, measure } => {
                w.u8(0);
                w.tensor(images);
                w.tensor(labels);
                w.f64(*scale);
                w.bool(*measure);
            }
            Apply { gradients, lr } => {
                w.u8(1);
                w.named(gradients);
                w.f64(*lr);
            }
            Variables => w.u8(2),
            WorkerVariables => w.u8(3),
            Busy => w.u8(4),
            Momentum => w.u8(5),
        }
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        use replica::Command::*;
        Ok(match r.u8()? {
            0 => Gradients { images: r.tensor()?, labels: r.tensor()?, scale: r.f64()?, measure: r.bool()? },
            1 => Apply { gradients: r.named()?, lr: r.f64()? },
            2 => Variables,
            3 => WorkerVariables,
            4 => Busy,
            5 => Momentum,
            v => bail!("unknown replica command {v}"),
        })
    }
}

impl Wire for replica::Reply {
    fn write(&self, w: &mut Writer) {
        use replica::Reply::*;
        match self {
            Gradients { loss_sum, correct, gradients, memory } => {
                w.u8(0);
                w.f64(*loss_sum);
                w.i64(*correct);
                w.named(gradients);
                memory.write(w);
            }
            Variables(v) => {
                w.u8(1);
                w.named(v);
            }
            PerWorker(v) => {
                w.u8(2);
                v.write(w);
            }
            Busy(b) => {
                w.u8(3);
                b.write(w);
            }
            Done => w.u8(4),
        }
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        use replica::Reply::*;
        Ok(match r.u8()? {
            0 => Gradients {
                loss_sum: r.f64()?,
                correct: r.i64()?,
                gradients: r.named()?,
                memory: Vec::read(r)?,
            },
            1 => Variables(r.named()?),
            2 => PerWorker(Vec::read(r)?),
            3 => Busy(Vec::read(r)?),
            4 => Done,
            v => bail!("unknown replica reply {v}"),
        })
    }
}
