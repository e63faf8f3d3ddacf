//! The byte form of what travels between ranks: numbers, strings, tensors and tensors by name.
//!
//! A message is the concatenation of its fields, little-endian, with no framing beyond lengths: both
//! ends run the same binary (checked at start-up, see `session.rs`), so the layout needs no version.
//! A tensor is its kind, its memory layout, its shape and its raw elements in that layout, exactly
//! what libtorch holds: the receiver gets bit-identical values laid out as the sender had them (a
//! channels-last bf16 activation stays one, and crosses as 2 bytes per element).

use anyhow::{bail, Context};
use tch::{Device, Kind, Tensor};

use crate::base::named::Named;
use crate::precision::{is_channels_last, NCHW_FROM_NHWC, NHWC};

/// Something with a byte form.
pub trait Wire: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader) -> anyhow::Result<Self>;

    /// The whole message as bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.bytes
    }

    /// A message from its bytes; every byte must be used.
    fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut r = Reader::new(bytes);
        let value = Self::read(&mut r)?;
        r.finish()?;
        Ok(value)
    }
}

/// Appends fields to a message.
#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }

    pub fn i64(&mut self, v: i64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    pub fn str(&mut self, v: &str) {
        self.usize(v.len());
        self.bytes.extend_from_slice(v.as_bytes());
    }

    /// A tensor's kind, layout, shape and elements (copied to the CPU first).
    pub fn tensor(&mut self, t: &Tensor) {
        let t = t.to_device(Device::Cpu);
        let kind = t.kind();
        self.u8(kind_code(kind));
        let channels_last = is_channels_last(&t);
        self.bool(channels_last);
        let shape = t.size();
        self.usize(shape.len());
        shape.iter().for_each(|&d| self.i64(d));
        // (N, C, H, W) stored as (N, H, W, C) is that permutation, contiguous: its bytes in memory order.
        let t = if channels_last { t.permute(NHWC).contiguous() } else { t.contiguous() };
        let numel = t.numel();
        let start = self.bytes.len();
        self.bytes.resize(start + numel * kind.elt_size_in_bytes(), 0);
        t.copy_data_u8(&mut self.bytes[start..], numel);
    }

    pub fn named(&mut self, named: &Named) {
        self.usize(named.len());
        for (name, t) in named {
            self.str(name);
            self.tensor(t);
        }
    }
}

/// Reads fields from a message in the order they were written.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// Checks that every byte of the message was read.
    pub fn finish(&self) -> anyhow::Result<()> {
        if self.at != self.bytes.len() {
            bail!("{} bytes left over after a message of {}", self.bytes.len() - self.at, self.at);
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            bail!("message ends after {} bytes, {} more expected", self.bytes.len(), n);
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> anyhow::Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes taken"))
    }

    pub fn u8(&mut self) -> anyhow::Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> anyhow::Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn usize(&mut self) -> anyhow::Result<usize> {
        Ok(usize::try_from(self.u64()?)?)
    }

    pub fn i64(&mut self) -> anyhow::Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> anyhow::Result<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub fn bool(&mut self) -> anyhow::Result<bool> {
        Ok(self.u8()? != 0)
    }

    pub fn str(&mut self) -> anyhow::Result<String> {
        let n = self.usize()?;
        String::from_utf8(self.take(n)?.to_vec()).context("a string that is not UTF-8")
    }

    pub fn tensor(&mut self) -> anyhow::Result<Tensor> {
        let kind = kind_of(self.u8()?)?;
        let channels_last = self.bool()?;
        let dims = self.usize()?;
        let shape = (0..dims).map(|_| self.i64()).collect::<anyhow::Result<Vec<i64>>>()?;
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?));
        let bytes = numel.and_then(|n| n.checked_mul(kind.elt_size_in_bytes()));
        let Some(bytes) = bytes else { bail!("tensor shape {shape:?} is not a size") };
        if !channels_last {
            return Ok(Tensor::from_data_size(self.take(bytes)?, &shape, kind));
        }
        let [n, c, h, w] = shape[..] else { bail!("a channels-last tensor of shape {shape:?}, not 4-D") };
        let stored = Tensor::from_data_size(self.take(bytes)?, &[n, h, w, c], kind);
        Ok(stored.permute(NCHW_FROM_NHWC))
    }

    pub fn named(&mut self) -> anyhow::Result<Named> {
        let n = self.usize()?;
        (0..n).map(|_| Ok((self.str()?, self.tensor()?))).collect()
    }
}

/// The kinds that travel: what the network's variables, inputs, labels and masks are made of, and the
/// activations of bf16 mixed precision.
const KINDS: [Kind; 7] =
    [Kind::Float, Kind::Double, Kind::Int64, Kind::Bool, Kind::Uint8, Kind::Int, Kind::BFloat16];

fn kind_code(kind: Kind) -> u8 {
    KINDS.iter().position(|&k| k == kind).unwrap_or_else(|| panic!("no wire form for {kind:?}")) as u8
}

fn kind_of(code: u8) -> anyhow::Result<Kind> {
    KINDS.get(code as usize).copied().with_context(|| format!("unknown tensor kind code {code}"))
}

/// Lists of things with a byte form.
impl<T: Wire> Wire for Vec<T> {
    fn write(&self, w: &mut Writer) {
        w.usize(self.len());
        self.iter().for_each(|x| x.write(w));
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        let n = r.usize()?;
        (0..n).map(|_| T::read(r)).collect()
    }
}

impl Wire for Named {
    fn write(&self, w: &mut Writer) {
        w.named(self);
    }

    fn read(r: &mut Reader) -> anyhow::Result<Self> {
        r.named()
    }
}
