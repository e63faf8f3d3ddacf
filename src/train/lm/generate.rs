//! Text from a trained language model: byte after byte, each drawn from the model's distribution over
//! the next byte given the last `context` bytes, sharpened by a temperature and cut to the top k.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::evaluate::as_input;
use crate::model::Net;

/// How the next byte is drawn.
#[derive(Debug, Clone, Copy, PartialEq, clap::Args, serde::Serialize)]
pub struct Sampling {
    /// Logits are divided by it: below 1 sharper, above 1 flatter; 0 takes the likeliest byte.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Only the k likeliest bytes are drawn from (256: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `length` bytes following `prompt`, from `net` with a position table of `context` bytes.
pub fn generate(net: &Net, context: usize, prompt: &[u8], length: usize, sampling: Sampling) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
    let mut text = prompt.to_vec();
    tch::no_grad(|| {
        for _ in 0..length {
            // An empty prompt starts from a newline, the byte that starts a line of text.
            let window: Vec<i64> = match text.len() {
                0 => vec![i64::from(b'\n')],
                n => text[n.saturating_sub(context)..].iter().map(|&b| i64::from(b)).collect(),
            };
            let tokens = Tensor::from_slice(&window).view([1, -1]); // (1, T)
            let logits = net.forward(&as_input(&tokens), false).to_kind(Kind::Double); // (1, T, 256)
            let last: Vec<f64> = Vec::try_from(logits.get(0).get(-1)).expect("256 logits");
            text.push(draw(&last, sampling, &mut rng));
        }
    });
    text.split_off(prompt.len())
}

/// A byte drawn from `logits` (256) as `sampling` says.
fn draw(logits: &[f64], sampling: Sampling, rng: &mut ChaCha8Rng) -> u8 {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if sampling.temperature <= 0.0 {
        return order[0] as u8;
    }
    order.truncate(sampling.top_k.clamp(1, logits.len()));
    let top = logits[order[0]];
    // Softmax of the kept logits over the temperature, shifted by the largest for range.
    let weights: Vec<f64> = order.iter().map(|&i| ((logits[i] - top) / sampling.temperature).exp()).collect();
    let mut pick = rng.gen_range(0.0..weights.iter().sum::<f64>());
    for (&i, w) in order.iter().zip(&weights) {
        if pick < *w {
            return i as u8;
        }
        pick -= w;
    }
    order[order.len() - 1] as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_temperature_and_top_k() {
        let mut logits = vec![-30.0; 256];
        (logits[b'a' as usize], logits[b'b' as usize], logits[b'c' as usize]) = (2.0, 1.0, 0.0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let greedy = Sampling { temperature: 0.0, top_k: 256, seed: 0 };
        assert_eq!(draw(&logits, greedy, &mut rng), b'a');
        let top2 = Sampling { temperature: 1.0, top_k: 2, seed: 0 };
        let draws: Vec<u8> = (0..4000).map(|_| draw(&logits, top2, &mut rng)).collect();
        assert!(draws.iter().all(|&b| b == b'a' || b == b'b'), "a byte outside the top 2");
        // Hand-computed: P(a) = e^2 / (e^2 + e^1) = 0.731; 4000 draws have a standard error of 0.007,
        // so 0.03 is over four of them.
        let share = draws.iter().filter(|&&b| b == b'a').count() as f64 / draws.len() as f64;
        assert!((share - 0.731).abs() < 0.03, "P(a) = {share}");
    }
}
