//! The synthetic population and its traffic: seeded, reproducible. Follow targets are drawn from
//! a Zipf law over user ranks (a few celebrities, a long tail), follow counts and reader and
//! author activity are heavy-tailed too, as `shared/design/traffic-model.md` asks.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// The shape of the population.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PopulationSpec {
    /// Users.
    pub users: usize,
    /// Mean accounts followed per user.
    pub mean_following: usize,
    /// Zipf exponent of popularity (who gets followed) and of activity (who reads, who posts).
    pub zipf_s: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

/// A population: who follows whom, by index (0 = most popular).
#[derive(Debug, Clone)]
pub struct Population {
    /// `following[u]`: the indices `u` follows.
    pub following: Vec<Vec<usize>>,
    /// `followers[u]`: the indices following `u`.
    pub followers: Vec<Vec<usize>>,
}

impl Population {
    /// Draws the graph.
    pub fn generate(spec: &PopulationSpec) -> Population {
        let n = spec.users.max(2);
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let popularity = Zipf::new(n as f64, spec.zipf_s).expect("valid Zipf");
        let mut following = vec![Vec::new(); n];
        let mut followers = vec![Vec::new(); n];
        for (u, f) in following.iter_mut().enumerate() {
            // Heavy-tailed follow counts: exponential around the mean, at least 1.
            let k = ((-(1.0 - rng.random::<f64>()).ln()) * spec.mean_following as f64).ceil() as usize;
            let k = k.clamp(1, n - 1);
            let mut seen = std::collections::HashSet::new();
            let mut tries = 0;
            while seen.len() < k && tries < k * 20 {
                tries += 1;
                let v = popularity.sample(&mut rng) as usize - 1;
                if v != u && seen.insert(v) {
                    f.push(v);
                    followers[v].push(u);
                }
            }
        }
        Population { following, followers }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.following.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.following.is_empty()
    }

    /// Total follow edges.
    pub fn edges(&self) -> usize {
        self.following.iter().map(Vec::len).sum()
    }
}

/// Picks readers and authors by heavy-tailed activity: a Zipf law over a seeded shuffle of users,
/// so the most active readers are not simply the most followed authors.
#[derive(Debug, Clone)]
pub struct Picker {
    order: Vec<usize>,
    zipf: Zipf<f64>,
}

impl Picker {
    /// A picker over `n` users.
    pub fn new(n: usize, s: f64, seed: u64) -> Picker {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        Picker {
            order,
            zipf: Zipf::new(n.max(1) as f64, s).expect("valid Zipf"),
        }
    }

    /// One user index.
    pub fn pick(&self, rng: &mut impl Rng) -> usize {
        self.order[self.zipf.sample(rng) as usize - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_is_heavy_tailed_and_reproducible() {
        let spec = PopulationSpec {
            users: 2000,
            mean_following: 20,
            zipf_s: 1.1,
            seed: 1,
        };
        let p = Population::generate(&spec);
        let q = Population::generate(&spec);
        assert_eq!(p.following, q.following, "same seed, same graph");
        let mut counts: Vec<usize> = p.followers.iter().map(Vec::len).collect();
        counts.sort_unstable();
        let top = counts[counts.len() - 1];
        let median = counts[counts.len() / 2];
        assert!(top > 20 * median.max(1), "a celebrity: top {top} vs median {median}");
        assert!(p.following.iter().all(|f| !f.is_empty()));
        let mean = p.edges() as f64 / p.len() as f64;
        assert!((10.0..30.0).contains(&mean), "mean following {mean}");
    }
}
