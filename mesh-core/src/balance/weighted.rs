//! One weighted draw, shared by traffic splits and the simulator's route mix so that a seed
//! means the same choice in both. Not a balancer: it keeps no state.

use rand::Rng;

/// The index drawn from `weights` in proportion to each, with one draw from `rng`; `None` when
/// they sum to zero.
pub fn weighted_index<R: Rng>(
    rng: &mut R,
    weights: impl Iterator<Item = u32> + Clone,
) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.enumerate() {
        if x < u64::from(w) {
            return Some(i);
        }
        x -= u64::from(w);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Each index comes up in proportion to its weight (4 standard errors over 20,000 draws);
    /// a zero weight never does, and all-zero weights draw nothing.
    #[test]
    fn weighted_index_draws_in_proportion() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let w = [1u32, 0, 3];
        let mut seen = [0u32; 3];
        let n = 20_000;
        for _ in 0..n {
            seen[weighted_index(&mut rng, w.iter().copied()).unwrap()] += 1;
        }
        assert_eq!(seen[1], 0);
        let share = f64::from(seen[0]) / f64::from(n);
        let tol = 4.0 * (0.25f64 * 0.75 / f64::from(n)).sqrt();
        assert!((share - 0.25).abs() < tol, "{share}");
        assert_eq!(weighted_index(&mut rng, [0u32, 0].into_iter()), None);
    }
}
