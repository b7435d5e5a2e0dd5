//! Logistic regression trained with mini-batch SGD.

use sepal_sdk::prelude::*;

use crate::data::{Dataset, XorShift, DIM};

/// Samples per SGD step.
pub const BATCH_SIZE: usize = 32;

/// `p(y = 1 | x) = sigmoid(w · x + b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticRegression {
    /// One weight per feature.
    pub weights: Vec<f32>,
    /// The bias.
    pub bias: f32,
}

impl Default for LogisticRegression {
    fn default() -> Self {
        LogisticRegression { weights: vec![0.0; DIM], bias: 0.0 }
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl LogisticRegression {
    /// All-zero parameters: predicts 0.5 for everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// The parameters as Flower arrays, laid out like a PyTorch `nn.Linear(DIM, 1)`:
    /// `weight` of shape `[1, DIM]` and `bias` of shape `[1]`, both `float32`.
    pub fn to_arrays(&self) -> ArrayRecord {
        let weight = Array::from_f32(&self.weights, &[1, DIM]).expect("shape matches");
        ArrayRecord::new().with("weight", weight).with("bias", Array::vector_f32(&[self.bias]))
    }

    /// Reads parameters written by [`LogisticRegression::to_arrays`].
    pub fn from_arrays(arrays: &ArrayRecord) -> Result<Self, AppError> {
        let get = |key: &str| -> Result<Vec<f32>, AppError> {
            Ok(arrays.get(key).ok_or_else(|| AppError::new(format!("no {key:?} array")))?.to_f32()?)
        };
        let weights = get("weight")?;
        let bias = get("bias")?;
        if weights.len() != DIM || bias.len() != 1 {
            return Err(AppError::new(format!(
                "expected {DIM} weights and 1 bias, got {} and {}",
                weights.len(),
                bias.len()
            )));
        }
        Ok(LogisticRegression { weights, bias: bias[0] })
    }

    /// `p(y = 1 | x)`.
    pub fn predict_proba(&self, x: &[f32]) -> f32 {
        let z: f32 = self.weights.iter().zip(x).map(|(w, x)| w * x).sum::<f32>() + self.bias;
        sigmoid(z)
    }

    /// Mean binary cross-entropy and accuracy (threshold 0.5) on `data`.
    pub fn evaluate(&self, data: &Dataset) -> (f64, f64) {
        if data.is_empty() {
            return (0.0, 0.0);
        }
        let mut loss = 0.0;
        let mut correct = 0usize;
        for i in 0..data.len() {
            let p = f64::from(self.predict_proba(data.row(i))).clamp(1e-7, 1.0 - 1e-7);
            let y = f64::from(data.y[i]);
            loss -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
            if (p >= 0.5) == (y == 1.0) {
                correct += 1;
            }
        }
        let n = data.len() as f64;
        (loss / n, correct as f64 / n)
    }

    /// Runs `epochs` epochs of mini-batch SGD with learning rate `lr`, shuffling with
    /// `seed`; returns the mean training loss of the last epoch.
    pub fn train(&mut self, data: &Dataset, epochs: usize, lr: f32, seed: u64) -> f64 {
        let mut rng = XorShift::new(seed);
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut grad = [0.0f32; DIM];
        let mut last_loss = 0.0;
        for _ in 0..epochs {
            // Fisher-Yates shuffle.
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            let mut loss = 0.0;
            for batch in order.chunks(BATCH_SIZE) {
                grad.fill(0.0);
                let mut grad_bias = 0.0;
                for &i in batch {
                    let x = data.row(i);
                    let p = self.predict_proba(x);
                    let err = p - data.y[i];
                    for (g, x) in grad.iter_mut().zip(x) {
                        *g += err * x;
                    }
                    grad_bias += err;
                    let pc = f64::from(p).clamp(1e-7, 1.0 - 1e-7);
                    loss -= if data.y[i] == 1.0 { pc.ln() } else { (1.0 - pc).ln() };
                }
                let step = lr / batch.len() as f32;
                for (w, g) in self.weights.iter_mut().zip(&grad) {
                    *w -= step * g;
                }
                self.bias -= step * grad_bias;
            }
            last_loss = loss / data.len().max(1) as f64;
        }
        last_loss
    }
}
