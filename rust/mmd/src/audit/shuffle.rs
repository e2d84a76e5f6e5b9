//! Uniformly random permutations of a multiset of labels, produced chunk by chunk in cache.
//!
//! Cutting a uniform permutation of the labels into consecutive chunks, each chunk's composition is
//! multivariate hypergeometric given what the earlier chunks took, and given its composition the
//! order inside a chunk is uniform. So: draw the composition, write the labels, Fisher-Yates shuffle
//! the chunk. Exact, O(n) per permutation, and it never touches memory outside the current chunk.

use super::hypergeometric::sample_multivariate;
use super::rng::Rng;

pub struct ChunkShuffler {
    remaining: Vec<u64>,
    composition: Vec<u64>,
}

impl ChunkShuffler {
    /// A permutation of a multiset with `counts[label]` copies of each label.
    pub fn new(counts: &[u64]) -> Self {
        Self {
            remaining: counts.to_vec(),
            composition: vec![0; counts.len()],
        }
    }

    /// Writes the next `out.len()` labels of the permutation.
    pub fn fill(&mut self, rng: &mut Rng, out: &mut [u32]) {
        sample_multivariate(
            rng,
            &self.remaining,
            out.len() as u64,
            &mut self.composition,
        );
        let mut at = 0;
        for (label, (&take, left)) in self
            .composition
            .iter()
            .zip(self.remaining.iter_mut())
            .enumerate()
        {
            out[at..at + take as usize].fill(label as u32);
            at += take as usize;
            *left -= take;
        }
        shuffle(rng, out);
    }
}

/// Fisher-Yates shuffle (two 32-bit draws per random word when the slice is short enough).
pub fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    if items.len() > u32::MAX as usize {
        for i in (1..items.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
        return;
    }
    let mut i = items.len();
    while i > 1 {
        let word = rng.next_u64();
        let j = rng.below_u32(word as u32, i as u32) as usize;
        items.swap(i - 1, j);
        i -= 1;
        if i > 1 {
            let j = rng.below_u32((word >> 32) as u32, i as u32) as usize;
            items.swap(i - 1, j);
            i -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_form_a_uniform_permutation() {
        // Labels [0, 0, 1, 2] have 12 distinct arrangements; chunking by 3 then 1 must reach each
        // with probability 1/12.
        let counts = [2u64, 1, 1];
        let mut seen = std::collections::HashMap::new();
        let trials = 60_000;
        for t in 0..trials {
            let mut rng = Rng::new(5, t);
            let mut shuffler = ChunkShuffler::new(&counts);
            let mut labels = [0u32; 4];
            shuffler.fill(&mut rng, &mut labels[..3]);
            shuffler.fill(&mut rng, &mut labels[3..]);
            *seen.entry(labels).or_insert(0u32) += 1;
        }
        assert_eq!(seen.len(), 12);
        for (arrangement, &count) in &seen {
            // Binomial(60000, 1/12): mean 5000, sd ~ 68.
            assert!((4_650..5_350).contains(&count), "{arrangement:?}: {count}");
        }
    }
}
