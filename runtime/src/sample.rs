//! Choosing the next token from logits: greedy, or temperature with nucleus (top-p) sampling
//! from a seeded generator (the same seed gives the same text).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Next-token choice.
#[derive(Debug)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// `temperature` 0 is greedy; `top_p` in (0, 1] keeps the smallest set of most likely
    /// tokens whose probability reaches it.
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Self {
        Sampler {
            temperature: temperature.max(0.0),
            top_p: top_p.clamp(f32::MIN_POSITIVE, 1.0),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The chosen token id (None for empty logits).
    pub fn next(&mut self, logits: &[f32]) -> Option<usize> {
        if self.temperature == 0.0 {
            return argmax(logits);
        }
        let probs = self.nucleus(logits);
        let total: f64 = probs.iter().map(|&(_, p)| p).sum();
        let mut u = self.rng.random::<f64>() * total;
        for &(id, p) in &probs {
            if u < p {
                return Some(id);
            }
            u -= p;
        }
        probs.last().map(|&(id, _)| id)
    }

    /// `(id, probability)` of the nucleus, most likely first.
    fn nucleus(&self, logits: &[f32]) -> Vec<(usize, f64)> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let t = self.temperature as f64;
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i, ((l - max) as f64 / t).exp()))
            .collect();
        let sum: f64 = probs.iter().map(|&(_, p)| p).sum();
        probs.iter_mut().for_each(|(_, p)| *p /= sum);
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut mass = 0.0;
        let keep = probs
            .iter()
            .position(|&(_, p)| {
                mass += p;
                mass >= self.top_p as f64
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        probs
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f32]) -> Option<usize> {
    v.iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, &x)| match best {
            Some((_, b)) if b >= x => best,
            _ => Some((i, x)),
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(0.0, 1.0, 0);
        assert_eq!(s.next(&[0.1, 3.0, 3.0, -1.0]), Some(1));
        assert_eq!(s.next(&[]), None);
    }

    #[test]
    fn a_tiny_top_p_is_greedy() {
        let mut s = Sampler::new(1.0, 1e-6, 7);
        for _ in 0..20 {
            assert_eq!(s.next(&[0.0, 2.0, 1.0]), Some(1));
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let logits = [0.0f32, (3.0f32).ln()]; // probabilities 1/4, 3/4
        let draw = |seed| {
            let mut s = Sampler::new(1.0, 1.0, seed);
            (0..4000)
                .map(|_| s.next(&logits).unwrap_or(9))
                .collect::<Vec<_>>()
        };
        let a = draw(3);
        assert_eq!(a, draw(3), "same seed, same draws");
        assert_ne!(a, draw(4));
        let ones = a.iter().filter(|&&t| t == 1).count() as f64 / a.len() as f64;
        assert!((ones - 0.75).abs() < 0.03, "share of token 1: {ones}");
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // probabilities ~0.665, 0.245, 0.090: top_p 0.8 keeps the first two only.
        let logits = [2.0f32, 1.0, 0.0];
        let mut s = Sampler::new(1.0, 0.8, 5);
        assert!((0..2000).all(|_| s.next(&logits) != Some(2)));
    }
}
