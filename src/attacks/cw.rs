//! CW-L2 (Carlini & Wagner 2017, "Towards Evaluating the Robustness of Neural Networks"): Adam in tanh space on
//! ||x' - x||^2 + c * max(Z_y - max_{i != y} Z_i + kappa, 0), with a per-sample binary search over c and early abort;
//! defaults are the authors' released values (9 search steps, 10000 iterations, lr 1e-2, initial c 1e-3, kappa 0).
use super::{
    check_count, check_nonneg, check_positive, input_grad, prepare, select_rows, Attack, Batch, Norm, Targeting,
};
use crate::error::Result;
use crate::models::Model;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct CwL2 {
    /// Initial trade-off constant c.
    pub c: f64,
    /// Confidence margin kappa.
    pub kappa: f64,
    /// Adam iterations per binary-search step.
    pub steps: usize,
    pub lr: f64,
    pub binary_steps: usize,
    /// Stops a search step when the loss has not fallen by 0.01% over a tenth of the iterations.
    pub abort_early: bool,
    pub targeting: Targeting,
}

impl Default for CwL2 {
    fn default() -> Self {
        CwL2 {
            c: 1e-3,
            kappa: 0.0,
            steps: 10_000,
            lr: 1e-2,
            binary_steps: 9,
            abort_early: true,
            targeting: Targeting::Untargeted,
        }
    }
}

impl CwL2 {
    pub fn validate(&self) -> Result<()> {
        check_positive("cw-l2", "c", self.c)?;
        check_nonneg("cw-l2", "kappa", self.kappa)?;
        check_count("cw-l2", "steps", self.steps)?;
        check_positive("cw-l2", "lr", self.lr)?;
        check_count("cw-l2", "binary_steps", self.binary_steps)
    }

    /// Per-sample margin loss f and success (with the kappa margin) for logits `z`.
    fn margin(&self, z: &Tensor, b: &Batch) -> (Tensor, Tensor) {
        let (cls, targeted) = match &b.targets {
            Some(t) => (t, true),
            None => (&b.ys, false),
        };
        let onehot = cls.one_hot(b.classes).to_kind(Kind::Float);
        let real = (z * &onehot).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let other = (z - &onehot * 1e4).amax([1i64].as_slice(), false);
        let diff = if targeted { &other - &real } else { &real - &other };
        let f = (&diff + self.kappa).clamp_min(0.0);
        // success as in C&W's `compare`: the class must win (targeted) or lose (untargeted) by kappa
        let shifted = if targeted { z - &onehot * self.kappa } else { z + &onehot * self.kappa };
        let pred = shifted.argmax(-1, false);
        let ok = if targeted { pred.eq_tensor(cls) } else { pred.ne_tensor(cls) };
        (f, ok)
    }
}

impl Attack for CwL2 {
    fn name(&self) -> String {
        "cw-l2".into()
    }
    fn norm(&self) -> Norm {
        Norm::L2
    }
    fn budget(&self) -> Option<f64> {
        None
    }
    fn targeting(&self) -> &Targeting {
        &self.targeting
    }
    fn perturb_at(&self, model: &Model, xs: &Tensor, ys: &Tensor, offset: usize) -> Result<Tensor> {
        self.validate()?;
        let b = prepare(model, xs, ys, &self.targeting, offset)?;
        let n = b.xs.size()[0];
        let opts = (Kind::Float, b.xs.device());
        // C&W's change of variables, shrunk by 0.999999 so pixels at 0 or 1 get a finite w
        let w0 = ((&b.xs * 2.0 - 1.0) * 0.999_999).atanh();
        let (mut lower, mut upper) = (Tensor::zeros([n], opts), Tensor::full([n], 1e10, opts));
        let mut c = Tensor::full([n], self.c, opts);
        let mut best_l2 = Tensor::full([n], 1e10, opts);
        let mut best = b.xs.copy();
        let check_every = (self.steps / 10).max(1);
        for _ in 0..self.binary_steps {
            let mut w = w0.copy();
            let (mut m, mut v) = (w.zeros_like(), w.zeros_like());
            let mut found = Tensor::zeros([n], (Kind::Bool, b.xs.device()));
            let mut prev = f64::INFINITY;
            for it in 0..self.steps {
                let mut out: Option<(Tensor, Tensor, Tensor, f64)> = None;
                let grad = input_grad(&w, |w| {
                    let x = (w.tanh() + 1.0) * 0.5;
                    let z = model.net.forward(&x, None, false);
                    let l2 = (&x - &b.xs).square().sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float);
                    let (f, ok) = self.margin(&z, &b);
                    let loss = l2.sum(Kind::Float) + (&c * f).sum(Kind::Float);
                    out = Some((x.detach(), l2.detach(), ok, f64::try_from(&loss)?));
                    Ok(loss)
                })?;
                let Some((x, l2, ok, loss)) = out else { break };
                // Adam (Kingma & Ba 2015), as the authors use, restarted for each value of c
                let t = (it + 1) as i32;
                m = &m * 0.9 + &grad * 0.1;
                v = &v * 0.999 + grad.square() * 0.001;
                let mhat = &m / (1.0 - 0.9f64.powi(t));
                let vhat = &v / (1.0 - 0.999f64.powi(t));
                w = &w - mhat / (vhat.sqrt() + 1e-8) * self.lr;
                let improved = ok.logical_and(&l2.lt_tensor(&best_l2));
                best_l2 = l2.where_self(&improved, &best_l2);
                best = select_rows(&improved, &x, &best);
                found = found.logical_or(&ok);
                if self.abort_early && it % check_every == 0 {
                    if loss > prev * 0.9999 {
                        break;
                    }
                    prev = loss;
                }
            }
            // the binary search over c, per sample
            upper = c.minimum(&upper).where_self(&found, &upper);
            lower = c.maximum(&lower).where_self(&found.logical_not(), &lower);
            let bounded = upper.lt(1e9);
            c = ((&lower + &upper) * 0.5).where_self(&bounded, &(&c * 10.0));
        }
        Ok(best)
    }
}
