//! A synthetic binary-classification data set: two Gaussian blobs in [`DIM`] dimensions.
//!
//! Every node regenerates the same data set from a fixed seed and keeps its own partition,
//! so no data is shipped and runs are reproducible. Partitions have different sizes
//! (partition `k` of `n` holds a share proportional to `k + 1`), so FedAvg's weighting by
//! example count matters.

/// Number of features.
pub const DIM: usize = 10;

/// Samples in the whole (federated) data set.
pub const TOTAL_SAMPLES: usize = 2_000;

/// Samples in the server's held-out test set.
pub const CENTRAL_TEST_SAMPLES: usize = 500;

const SEED: u64 = 0x5E9A_1F10_3E2D_C0DE;
const CENTRAL_SEED: u64 = 0x00DD_BA11_5EED;

/// Mean of class 1; class 0 has the opposite mean. Both have unit variance, so the best
/// possible accuracy is Φ(|MEAN|) ≈ 0.94.
const MEAN: [f32; DIM] = [1.0, -0.8, 0.6, 0.4, -0.3, 0.2, 0.0, 0.0, 0.1, -0.1];

/// A small, fast, deterministic RNG (xorshift64*). Good enough for synthetic data.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    pub fn next_f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.next_f64(), self.next_f64());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Labelled samples: `x` is row-major, [`DIM`] features per sample; `y` is 0 or 1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// Features, `len() * DIM` values.
    pub x: Vec<f32>,
    /// Labels, 0.0 or 1.0.
    pub y: Vec<f32>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The features of sample `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * DIM..(i + 1) * DIM]
    }

    /// Samples `range` as a new data set.
    fn slice(&self, range: std::ops::Range<usize>) -> Dataset {
        Dataset { x: self.x[range.start * DIM..range.end * DIM].to_vec(), y: self.y[range].to_vec() }
    }
}

/// `n` samples drawn with `seed`: a fair coin picks the class, then the features are the
/// class mean plus unit Gaussian noise.
pub fn generate(n: usize, seed: u64) -> Dataset {
    let mut rng = XorShift::new(seed);
    let mut data = Dataset { x: Vec::with_capacity(n * DIM), y: Vec::with_capacity(n) };
    for _ in 0..n {
        let label = rng.next_u64() >> 63;
        let sign = if label == 1 { 1.0 } else { -1.0 };
        for mean in MEAN {
            data.x.push(sign * mean + rng.normal() as f32);
        }
        data.y.push(label as f32);
    }
    data
}

/// The share of partition `k` of `n`: `[start, end)` in samples, proportional to `k + 1`.
pub fn partition_bounds(k: usize, n: usize, total: usize) -> (usize, usize) {
    let weight = |m: usize| m * (m + 1) / 2; // 1 + 2 + ... + m
    let all = weight(n);
    (total * weight(k) / all, total * weight(k + 1) / all)
}

/// Partition `partition_id` of `num_partitions`, split 80/20 into (train, test).
pub fn partition(partition_id: usize, num_partitions: usize) -> Result<(Dataset, Dataset), String> {
    if num_partitions == 0 || partition_id >= num_partitions {
        return Err(format!("partition-id {partition_id} is not below num-partitions {num_partitions}"));
    }
    let all = generate(TOTAL_SAMPLES, SEED);
    let (start, end) = partition_bounds(partition_id, num_partitions, all.len());
    let part = all.slice(start..end);
    let split = part.len() * 4 / 5;
    Ok((part.slice(0..split), part.slice(split..part.len())))
}

/// The server's held-out test set (drawn independently of the partitions).
pub fn central_test_set() -> Dataset {
    generate(CENTRAL_TEST_SAMPLES, CENTRAL_SEED)
}
