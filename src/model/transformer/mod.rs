//! A byte-level language model of pre-LN, decoder-only (causal) transformer blocks as an
//! [`Architecture`]: every block's attention and MLP sublayers are two residual units (attention.rs,
//! mlp.rs), grouped into warp layers of K sublayers (K = 2: one block; K = 4: two).
//!
//! The variants mean one thing for every K: `sequential` (every sublayer its own residual step: the
//! standard GPT block), `parallel` (order 1: x + A(x) + M(x), the GPT-J/PaLM block for K = 2),
//! `warpnet1` (F'_j x1), `warpnet2` (order 2, for K = 2 the parallel block with M'(x)A(x) restored) and
//! `exact` (every order). Shapes: tokens (B, T); the stream (B, T, D); logits (B, T, 256).

pub mod attention;
pub mod mlp;
pub mod norm;

use serde::{Deserialize, Serialize};
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use super::architecture::{Architecture, Description, LayerIndex, Module};
use super::layers::Linear;
use super::terms::{self, Term};
use super::unit::Unit;
use attention::Attention;
use mlp::Mlp;
use norm::{LayerNorm, NormAt, NormTangent};

/// Bytes: the vocabulary of a byte-level model, no tokenizer.
pub const VOCABULARY: usize = 256;
/// The spread of the embeddings' initial values (GPT-2's).
const EMBEDDING_STD: f64 = 0.02;

/// Which terms a warp layer of sublayers keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LmVariant {
    /// Every sublayer its own residual step (K = 1 layers): the standard GPT block.
    Sequential,
    /// Order 1: x1 + the sum of the K sublayers at x1 (the parallel block for K = 2).
    Parallel,
    /// F_i for every i and F'_j x1 for j >= 2.
    Warpnet1,
    /// Order at most 2: F_i and F'_j F_i.
    Warpnet2,
    /// Every order: the first-order expansion of K sequential sublayers (eq. 3).
    Exact,
}

/// The language model's shape; as flags, each with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LmConfig {
    /// Transformer blocks N: 2N sublayers.
    #[arg(long, default_value_t = 4)]
    pub blocks: usize,
    /// The stream's width D.
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// Attention heads (dividing D).
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Bytes of context: the position table's length.
    #[arg(long, default_value_t = 128)]
    pub context: usize,
    /// Which terms a warp layer keeps.
    #[arg(long, value_enum, default_value_t = LmVariant::Warpnet2)]
    pub variant: LmVariant,
    /// Sublayers per warp layer K (2: one block, 4: two); ignored by `sequential`; divides 2N.
    #[arg(long, default_value_t = 2)]
    pub k: usize,
    /// LayerNorm in the tangent passes: exact, or frozen (its statistics at x1 held constant).
    #[arg(long, value_enum, default_value_t = NormTangent::Exact)]
    pub norm_tangent: NormTangent,
}

impl LmConfig {
    /// Sublayers per warp layer: 1 for the sequential model.
    pub fn units_per_layer(&self) -> usize {
        match self.variant {
            LmVariant::Sequential => 1,
            _ => self.k,
        }
    }

    /// Checks the values; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, value) in [
            ("--blocks", self.blocks),
            ("--width", self.width),
            ("--heads", self.heads),
            ("--context", self.context),
            ("--k", self.k),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1, got 0"));
            }
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(format!("--heads {} does not divide --width {}", self.heads, self.width));
        }
        if !(2 * self.blocks).is_multiple_of(self.units_per_layer()) {
            return Err(format!(
                "--k {} does not divide the {} sublayers of {} blocks",
                self.k,
                2 * self.blocks,
                self.blocks
            ));
        }
        Ok(())
    }
}

/// Token and position embeddings: tokens (B, T) -> the stream (B, T, D), in the kind the input came
/// in (a float input carries the run's precision; its values are the tokens).
#[derive(Debug)]
pub struct Embedding {
    /// (256, D)
    pub tokens: Tensor,
    /// (context, D)
    pub positions: Tensor,
}

impl Module for Embedding {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let t = x.size()[1];
        let stream = Tensor::embedding(&self.tokens, &x.to_kind(Kind::Int64), -1, false, false)
            + self.positions.narrow(0, 0, t);
        match x.kind() {
            Kind::BFloat16 | Kind::Half | Kind::Double => stream.to_kind(x.kind()),
            _ => stream,
        }
    }
}

/// The final LayerNorm and the linear map to the logits: (B, T, D) -> (B, T, 256).
#[derive(Debug)]
pub struct LmHead {
    pub norm: LayerNorm,
    pub out: Linear,
}

impl Module for LmHead {
    fn forward(&self, h: &Tensor, _train: bool) -> Tensor {
        self.out.forward(&self.norm.forward(h))
    }
}

/// One stage: the stream has one shape throughout.
#[derive(Debug)]
struct Same;

impl Module for Same {
    fn forward(&self, h: &Tensor, _train: bool) -> Tensor {
        h.shallow_clone()
    }
}

impl Architecture for LmConfig {
    fn layers(&self) -> Vec<LayerIndex> {
        (0..2 * self.blocks / self.units_per_layer()).map(|layer| LayerIndex { stage: 0, layer }).collect()
    }

    fn units_per_layer(&self) -> usize {
        LmConfig::units_per_layer(self)
    }

    fn terms(&self) -> Vec<Term> {
        let k = self.units_per_layer();
        match self.variant {
            LmVariant::Sequential => terms::exact(1, 1),
            LmVariant::Parallel => terms::exact(k, 1),
            LmVariant::Warpnet1 => terms::warpnet1(k),
            LmVariant::Warpnet2 => terms::exact(k, 2.min(k)),
            LmVariant::Exact => terms::exact(k, k),
        }
    }

    /// Sublayer u = layer x K + c: block u / 2's attention (u even) or MLP, named `block{b}.attn.*` or
    /// `block{b}.mlp.*` whatever the grouping (a checkpoint of one variant loads into another).
    fn unit(&self, root: &Path, at: LayerIndex, c: usize) -> Box<dyn Unit> {
        let sublayer = at.layer * self.units_per_layer() + c;
        let block = root / format!("block{}", sublayer / 2);
        let width = self.width as i64;
        match sublayer % 2 {
            0 => Box::new(Attention::new(&(&block / "attn"), width, self.heads as i64, self.norm_tangent)),
            _ => Box::new(Mlp::new(&(&block / "mlp"), width, self.norm_tangent)),
        }
    }

    fn stem(&self, root: &Path) -> Box<dyn Module> {
        let normal = Init::Randn { mean: 0.0, stdev: EMBEDDING_STD };
        let (vocabulary, width, context) = (VOCABULARY as i64, self.width as i64, self.context as i64);
        let embed = root / "embed";
        Box::new(Embedding {
            tokens: embed.var("tokens", &[vocabulary, width], normal),
            positions: embed.var("positions", &[context, width], normal),
        })
    }

    fn between_stages(&self) -> Box<dyn Module> {
        Box::new(Same)
    }

    fn head(&self, root: &Path) -> Box<dyn Module> {
        let width = self.width as i64;
        Box::new(LmHead {
            norm: LayerNorm::new(root / "head" / "norm", width),
            out: Linear::new(root / "head" / "out", width, VOCABULARY as i64),
        })
    }

    fn input_shape(&self) -> Vec<i64> {
        vec![self.context as i64]
    }

    fn classes(&self) -> usize {
        VOCABULARY
    }

    /// Random bytes: tokens (B, T) as fp32 values (the form the stem takes them in) and next bytes
    /// (B, T).
    fn random_batch(&self, batch: i64, device: tch::Device) -> (Tensor, Tensor) {
        let shape = [batch, self.context as i64];
        let tokens = Tensor::randint(VOCABULARY as i64, shape, (Kind::Float, device));
        (tokens, Tensor::randint(VOCABULARY as i64, shape, (Kind::Int64, device)))
    }

    fn activation_shape(&self, _stage: usize) -> Vec<i64> {
        vec![self.context as i64, self.width as i64]
    }

    /// An attention sublayer's rows, the larger kind: the norm's statistics, q, k, v and the
    /// probabilities, fp32.
    fn linearization_row_bytes(&self, _stage: usize) -> u64 {
        let (t, d, h) = (self.context as i64, self.width as i64, self.heads as i64);
        NormAt::row_bytes(t, d) + (3 * t * d + h * t * t) as u64 * Kind::Float.elt_size_in_bytes() as u64
    }

    fn tangent_reads_primal(&self) -> bool {
        true
    }

    /// Every linearisation is per sequence: a piece on some sequences of the batch reads their rows.
    fn pieces_apart(&self) -> Result<(), String> {
        Ok(())
    }

    fn label(&self) -> String {
        let variant = format!("{:?}", self.variant).to_lowercase();
        match self.variant {
            LmVariant::Sequential => format!("GPT-{}x{} {variant}", self.blocks, self.width),
            _ => format!("GPT-{}x{} {variant} K={}", self.blocks, self.width, self.k),
        }
    }

    fn description(&self) -> Option<Description> {
        Some(Description::Lm(self.clone()))
    }
}
