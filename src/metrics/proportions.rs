//! Two rates over the same images compared as the paired data they are: the share of images an attack gets past a
//! detector when it attacks the detector on one route, and when it attacks it on another (the adaptive attack's
//! evasion on the full model and on the class subnetwork of Wang, Hu, Su, arXiv 1910.02673). The interval is
//! Newcombe's square-and-add interval from Wilson score limits (Stat. Med. 1998, 17:2635, method 10; the correlation
//! without continuity correction, as Fagerland, Lydersen & Laake, Stat. Methods Med. Res. 2014, give it); the test is
//! McNemar's exact (conditional binomial) test on the discordant images, conservative at small counts.
use crate::error::Error;

/// The two-sided 97.5% standard normal quantile of the 95% intervals.
const Z: f64 = 1.959_963_984_540_054;

/// `b`'s rate minus `a`'s over the same `n` images, with the 2x2 table it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedRates {
    pub n: usize,
    /// Images counted under both, under `a` only, under `b` only.
    pub both: usize,
    pub only_a: usize,
    pub only_b: usize,
    pub rate_a: f64,
    pub rate_b: f64,
    /// `rate_b - rate_a`, and its 95% interval.
    pub delta: f64,
    pub lo: f64,
    pub hi: f64,
    /// McNemar's exact two-sided p: `only_b` against Binomial(only_a + only_b, 1/2); 1 without discordant images.
    pub p: f64,
}

/// Wilson's score interval (95%) of `x` successes in `n`.
pub fn wilson(x: usize, n: usize) -> (f64, f64) {
    let (nf, p) = (n as f64, x as f64 / n as f64);
    let z2 = Z * Z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = Z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// McNemar's exact two-sided p of `k` against Binomial(m, 1/2): twice the smaller tail, at most 1. The terms are
/// summed in log space (0.5^m underflows beyond m = 1074).
pub fn mcnemar_exact(k: usize, m: usize) -> f64 {
    if m == 0 {
        return 1.0;
    }
    let low = k.min(m - k);
    // ln C(m, i) 2^-m for i = 0..=low
    let mut ln_term = -(m as f64) * std::f64::consts::LN_2;
    let mut terms = vec![ln_term];
    for i in 1..=low {
        ln_term += ((m - i + 1) as f64).ln() - (i as f64).ln();
        terms.push(ln_term);
    }
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = top.exp() * terms.iter().map(|t| (t - top).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// The paired comparison of the indicator vectors `a` and `b` (one entry per image, the same images in the same order).
pub fn paired_rates(a: &[bool], b: &[bool]) -> crate::Result<PairedRates> {
    if a.len() != b.len() || a.is_empty() {
        return Err(Error::config(
            "paired rates",
            format!("{} and {} images", a.len(), b.len()),
            "a paired comparison needs both indicators of every image, and at least one image",
        ));
    }
    let n = a.len();
    let count = |f: &dyn Fn(bool, bool) -> bool| a.iter().zip(b).filter(|(&x, &y)| f(x, y)).count();
    let (both, only_a, only_b) = (count(&|x, y| x && y), count(&|x, y| x && !y), count(&|x, y| !x && y));
    let neither = n - both - only_a - only_b;
    let (xa, xb) = (both + only_a, both + only_b);
    let (rate_a, rate_b) = (xa as f64 / n as f64, xb as f64 / n as f64);
    let ((la, ua), (lb, ub)) = (wilson(xa, n), wilson(xb, n));
    // the correlation of the two indicators; 0 where a margin is empty
    let margins = [xb, n - xb, xa, n - xa].iter().map(|&m| m as f64).product::<f64>();
    let phi = match margins > 0.0 {
        true => (both as f64 * neither as f64 - only_a as f64 * only_b as f64) / margins.sqrt(),
        false => 0.0,
    };
    let delta = rate_b - rate_a;
    let (db_lo, db_hi, da_lo, da_hi) = (rate_b - lb, ub - rate_b, rate_a - la, ua - rate_a);
    let lo = delta - (db_lo * db_lo - 2.0 * phi * db_lo * da_hi + da_hi * da_hi).max(0.0).sqrt();
    let hi = delta + (db_hi * db_hi - 2.0 * phi * db_hi * da_lo + da_lo * da_lo).max(0.0).sqrt();
    let p = mcnemar_exact(only_b, only_a + only_b);
    Ok(PairedRates { n, both, only_a, only_b, rate_a, rate_b, delta, lo, hi, p })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_exact_matches_hand_counts() {
        // 1 of 8 discordant: 2 (1 + 8) / 256
        assert!((mcnemar_exact(1, 8) - 18.0 / 256.0).abs() < 1e-15);
        assert!((mcnemar_exact(7, 8) - 18.0 / 256.0).abs() < 1e-15);
        assert_eq!(mcnemar_exact(4, 8), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // far beyond 0.5^1074: finite, and tiny
        let p = mcnemar_exact(0, 2000);
        assert!(p == 0.0 || p < 1e-300);
        assert!(mcnemar_exact(900, 2000) > 0.0 && mcnemar_exact(900, 2000) < 1e-5);
    }

    #[test]
    fn no_discordant_images_give_a_zero_delta_and_p_one() -> crate::Result<()> {
        let a = [true, false, true, false];
        let r = paired_rates(&a, &a)?;
        assert_eq!((r.delta, r.p, r.only_a, r.only_b), (0.0, 1.0, 0, 0));
        assert!(r.lo <= 0.0 && r.hi >= 0.0);
        assert!(paired_rates(&a, &a[..3]).is_err());
        Ok(())
    }
}
