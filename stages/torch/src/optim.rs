//! Adam, AdamW and SGD over one flat parameter buffer.
//!
//! Every trainable variable becomes a view into a single fp32 buffer (`set_data`), so an update is
//! a handful of kernels over the whole model instead of a dozen per variable, the global gradient
//! norm is one reduction, and the optimiser state is three tensors that a resumed training loads
//! back exactly (tch's built-in optimisers cannot save their state).

use std::collections::HashMap;
use std::path::Path;

use stages::train::Optimizer;
use tch::{Kind, Tensor, nn};

pub struct FlatOptimizer {
    kind: Optimizer,
    /// Trainable variables with their offset and length in the flat buffer.
    vars: Vec<(String, Tensor, i64, i64)>,
    flat: Tensor,
    /// Adam: first moment; SGD: momentum buffer.
    m: Tensor,
    /// Adam: second moment (unused by SGD).
    v: Tensor,
    step: i64,
    pub weight_decay: f64,
    pub momentum: f64,
    betas: (f64, f64),
    eps: f64,
}

/// Storage order of a variable: channels-last conv weights are flattened as [O, H, W, I].
fn storage_view(t: &Tensor) -> Tensor {
    if t.dim() == 4 && !t.is_contiguous() && t.permute([0, 2, 3, 1]).is_contiguous() {
        t.permute([0, 2, 3, 1]).reshape([-1])
    } else {
        t.reshape([-1])
    }
}

impl FlatOptimizer {
    /// Moves every trainable variable of `vs` into one flat buffer (their values unchanged).
    pub fn new(vs: &nn::VarStore, kind: Optimizer, weight_decay: f64, momentum: f64) -> FlatOptimizer {
        let _guard = tch::no_grad_guard();
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let total: i64 = named.iter().map(|(_, t)| t.numel() as i64).sum();
        let flat = Tensor::zeros([total], (Kind::Float, vs.device()));
        let mut vars = Vec::new();
        let mut off = 0;
        for (name, mut t) in named {
            let n = t.numel() as i64;
            let mut slice = flat.narrow(0, off, n);
            slice.copy_(&storage_view(&t));
            let channels_last = t.dim() == 4 && !t.is_contiguous();
            let view = if channels_last {
                let s = t.size();
                slice.view([s[0], s[2], s[3], s[1]]).permute([0, 3, 1, 2])
            } else {
                slice.view(t.size().as_slice())
            };
            t.set_data(&view);
            vars.push((name, t, off, n));
            off += n;
        }
        let m = flat.zeros_like();
        let v = flat.zeros_like();
        FlatOptimizer { kind, vars, flat, m, v, step: 0, weight_decay, momentum, betas: (0.9, 0.999), eps: 1e-8 }
    }

    pub fn parameters(&self) -> i64 {
        self.flat.numel() as i64
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for (_, t, _, _) in &mut self.vars {
            t.zero_grad();
        }
    }

    /// The gradients as one flat tensor (zeros where a variable received none).
    fn flat_grad(&self) -> Tensor {
        let parts: Vec<Tensor> = self
            .vars
            .iter()
            .map(|(_, t, _, n)| {
                let g = t.grad();
                if g.defined() { storage_view(&g) } else { Tensor::zeros([*n], (Kind::Float, self.flat.device())) }
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// One update with learning rate `lr`; clips the global gradient norm to `clip` first. Returns
    /// the gradient norm as a device scalar (reading it synchronises; the step itself does not).
    pub fn step(&mut self, lr: f64, clip: Option<f64>) -> Tensor {
        let _guard = tch::no_grad_guard();
        let mut g = self.flat_grad();
        let norm = g.norm();
        if let Some(max) = clip {
            let coef = (Tensor::from(max).to_device(g.device()) / (&norm + 1e-6)).clamp_max(1.0);
            g *= coef;
        }
        self.step += 1;
        let wd = self.weight_decay;
        match self.kind {
            Optimizer::Sgd => {
                if wd > 0.0 {
                    g += &self.flat * wd;
                }
                if self.step == 1 {
                    self.m.copy_(&g);
                } else {
                    self.m *= self.momentum;
                    self.m += &g;
                }
                self.flat -= &self.m * lr;
            }
            Optimizer::Adam | Optimizer::Adamw => {
                if self.kind == Optimizer::Adamw && wd > 0.0 {
                    self.flat *= 1.0 - lr * wd;
                } else if wd > 0.0 {
                    g += &self.flat * wd;
                }
                let (b1, b2) = self.betas;
                let _ = self.m.lerp_(&g, 1.0 - b1);
                self.v *= b2;
                self.v += (&g * &g) * (1.0 - b2);
                let bc1 = 1.0 - b1.powi(self.step as i32);
                let bc2 = 1.0 - b2.powi(self.step as i32);
                let denom = self.v.sqrt() / bc2.sqrt() + self.eps;
                self.flat -= (&self.m / denom) * (lr / bc1);
            }
        }
        norm
    }

    /// The optimiser state (moments and step count) as the bytes of a safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, midog_model::Error> {
        let mut meta = HashMap::new();
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert("parameters".to_string(), self.flat.numel().to_string());
        midog_model::weights::safetensors_bytes(
            &[("m".to_string(), self.m.shallow_clone()), ("v".to_string(), self.v.shallow_clone())],
            meta,
        )
    }

    /// Restores a state written by [`FlatOptimizer::to_bytes`] for the same model.
    pub fn load(&mut self, path: &Path) -> Result<(), String> {
        let (tensors, meta) = midog_model::weights::read_safetensors(path).map_err(|e| e.to_string())?;
        let get = |n: &str| tensors.iter().find(|(k, _)| k == n).map(|(_, t)| t.shallow_clone());
        let (Some(m), Some(v)) = (get("m"), get("v")) else {
            return Err(format!("{}: not an optimiser state", path.display()));
        };
        if m.numel() != self.m.numel() || v.numel() != self.v.numel() {
            return Err(format!(
                "{}: optimiser state for another model ({} values, expected {})",
                path.display(),
                m.numel(),
                self.m.numel()
            ));
        }
        let _guard = tch::no_grad_guard();
        self.m.copy_(&m.to_device(self.m.device()));
        self.v.copy_(&v.to_device(self.v.device()));
        self.step = meta.get("step").and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{Module, OptimizerConfig};

    fn model(vs: &nn::VarStore) -> nn::Sequential {
        tch::manual_seed(0);
        let p = vs.root();
        nn::seq().add(nn::linear(&p / "a", 4, 8, Default::default())).add_fn(|x| x.relu()).add(nn::linear(
            &p / "b",
            8,
            1,
            Default::default(),
        ))
    }

    // Inputs without the global RNG: tests run in parallel threads and share it.
    fn loss(m: &nn::Sequential) -> Tensor {
        let x = (Tensor::arange(64, (Kind::Float, tch::Device::Cpu)).view([16, 4]) * 0.37).sin();
        (m.forward(&x) - x.sum_dim_intlist([1i64].as_slice(), true, Kind::Float)).square().mean(Kind::Float)
    }

    #[test]
    fn adam_matches_tch_adam() {
        let vs1 = nn::VarStore::new(tch::Device::Cpu);
        let m1 = model(&vs1);
        let mut ours = FlatOptimizer::new(&vs1, Optimizer::Adam, 0.0, 0.9);
        let mut vs2 = nn::VarStore::new(tch::Device::Cpu);
        let m2 = model(&vs2);
        // The same starting weights whatever another test thread did to the global RNG.
        vs2.copy(&vs1).unwrap();
        let mut theirs = nn::Adam::default().build(&vs2, 1e-2).unwrap();
        for _ in 0..5 {
            ours.zero_grad();
            loss(&m1).backward();
            let _ = ours.step(1e-2, None);
            theirs.backward_step(&loss(&m2));
        }
        let a = vs1.variables();
        let b = vs2.variables();
        for (k, t) in &a {
            let d = (t - &b[k]).abs().max().double_value(&[]);
            assert!(d < 1e-6, "{k}: {d}");
        }
    }

    #[test]
    fn state_round_trips_and_training_continues_identically() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let m = model(&vs);
        let mut opt = FlatOptimizer::new(&vs, Optimizer::Adamw, 0.01, 0.9);
        for _ in 0..3 {
            opt.zero_grad();
            loss(&m).backward();
            let _ = opt.step(1e-2, Some(1.0));
        }
        std::fs::write(dir.path().join("opt.safetensors"), opt.to_bytes().unwrap()).unwrap();
        let snapshot: HashMap<String, Tensor> = vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
        opt.zero_grad();
        loss(&m).backward();
        let _ = opt.step(1e-2, Some(1.0));
        let after: HashMap<String, Tensor> = vs.variables();

        // A fresh model at the snapshot with the saved state takes the same step.
        let vs2 = nn::VarStore::new(tch::Device::Cpu);
        let m2 = model(&vs2);
        tch::no_grad(|| {
            for (k, v) in vs2.variables() {
                let mut v = v;
                v.copy_(&snapshot[&k]);
            }
        });
        let mut opt2 = FlatOptimizer::new(&vs2, Optimizer::Adamw, 0.01, 0.9);
        opt2.load(&dir.path().join("opt.safetensors")).unwrap();
        opt2.zero_grad();
        loss(&m2).backward();
        let _ = opt2.step(1e-2, Some(1.0));
        for (k, v) in vs2.variables() {
            let d = (&v - &after[&k]).abs().max().double_value(&[]);
            assert!(d < 1e-7, "{k}: {d}");
        }
    }
}
