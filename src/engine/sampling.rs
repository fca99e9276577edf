//! Choosing the next token: greedy, or temperature with nucleus (top-p).

use rand::rngs::StdRng;
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 0.0, top_p: 0.95, seed: 0 }
    }
}

/// Picks a token. `allowed`, when given, restricts the choice (token healing).
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut StdRng, allowed: Option<&dyn Fn(u32) -> bool>) -> u32 {
    let ok = |i: usize| allowed.map(|f| f(i as u32)).unwrap_or(true) && logits[i].is_finite();
    if s.temperature <= 0.0 {
        let mut best = None;
        for i in 0..logits.len() {
            if ok(i) && best.is_none_or(|b: usize| logits[i] > logits[b]) {
                best = Some(i);
            }
        }
        return best.unwrap_or(0) as u32;
    }
    let mut cands: Vec<(usize, f32)> = (0..logits.len()).filter(|&i| ok(i)).map(|i| (i, logits[i])).collect();
    if cands.is_empty() {
        return 0;
    }
    let max = cands.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let t = s.temperature;
    let mut sum = 0.0f64;
    for c in &mut cands {
        c.1 = ((c.1 - max) / t).exp();
        sum += c.1 as f64;
    }
    cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    let top_p = s.top_p.clamp(0.0, 1.0) as f64;
    let mut kept = 0.0f64;
    let mut n = 0;
    for c in &cands {
        kept += c.1 as f64;
        n += 1;
        if kept >= top_p * sum {
            break;
        }
    }
    let cands = &cands[..n.max(1)];
    let mut r = rng.random::<f64>() * kept;
    for c in cands {
        r -= c.1 as f64;
        if r <= 0.0 {
            return c.0 as u32;
        }
    }
    cands[cands.len() - 1].0 as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn greedy_takes_the_max_and_respects_the_mask() {
        let logits = [0.1, 3.0, 2.0, f32::NAN];
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(sample(&logits, &Sampling::default(), &mut rng, None), 1);
        let not_one = |t: u32| t != 1;
        assert_eq!(sample(&logits, &Sampling::default(), &mut rng, Some(&not_one)), 2);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let logits = [10.0, 0.0, 0.0, 0.0];
        let s = Sampling { temperature: 1.0, top_p: 0.5, seed: 1 };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(sample(&logits, &s, &mut rng, None), 0);
        }
    }
}
