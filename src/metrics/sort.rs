//! Order-preserving u64 keys of f64 scores (the transform of Herf, "Radix tricks", 2001): sorting the keys as integers
//! is the one sort under every ROC metric, and about twice as fast as sorting the floats with `f64::total_cmp`.

/// Maps a finite score to a key whose ascending order is the scores' descending order; -0.0 and 0.0 share one key
/// (they are the same threshold).
pub(crate) fn key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits();
    let ascending = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    !ascending
}

/// The score of a key (0.0 for the key of -0.0).
pub(crate) fn from_key(k: u64) -> f64 {
    let ascending = !k;
    let bits = if ascending >> 63 == 1 { ascending & !(1 << 63) } else { !ascending };
    f64::from_bits(bits)
}

/// Sorts keys in ascending order, that is their scores in descending order: std's unstable sort for short slices, an
/// LSD radix sort (one byte per pass, passes whose byte is the same in every key skipped) from `RADIX_MIN` keys on.
pub(crate) fn sort_keys(keys: &mut [u64]) {
    if keys.len() < RADIX_MIN {
        keys.sort_unstable();
    } else {
        radix_sort(keys);
    }
}

/// Below this many keys the comparison sort is faster (measured with `cargo bench --bench metrics`).
const RADIX_MIN: usize = 2048;

fn radix_sort(keys: &mut [u64]) {
    let mut counts = [[0usize; 256]; 8];
    for &k in keys.iter() {
        for (b, c) in counts.iter_mut().enumerate() {
            c[((k >> (8 * b)) & 0xff) as usize] += 1;
        }
    }
    let n = keys.len();
    let mut buf = vec![0u64; n];
    let mut in_keys = true; // whether the current order lives in `keys` (else in `buf`)
    for (b, count) in counts.iter().enumerate() {
        if count.contains(&n) {
            continue; // every key has the same byte here: this pass would not move anything
        }
        let mut offsets = [0usize; 256];
        let mut sum = 0;
        for (o, &c) in offsets.iter_mut().zip(count.iter()) {
            *o = sum;
            sum += c;
        }
        let (src, dst): (&[u64], &mut [u64]) = if in_keys { (&*keys, &mut buf) } else { (&buf, &mut *keys) };
        for &k in src {
            let d = ((k >> (8 * b)) & 0xff) as usize;
            dst[offsets[d]] = k;
            offsets[d] += 1;
        }
        in_keys = !in_keys;
    }
    if !in_keys {
        keys.copy_from_slice(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// The radix sort agrees with std's sort: random keys, keys that differ only in a few bytes (skipped passes),
        /// and many duplicates, on both sides of `RADIX_MIN`.
        #[test]
        fn radix_sort_agrees_with_std(
            seeds in proptest::collection::vec(any::<u64>(), 0..6000),
            mask in prop_oneof![Just(u64::MAX), Just(0xff00_0000_0000_00ff_u64), Just(0x0000_0f00_0000_0000_u64), Just(0_u64)],
            base in any::<u64>(),
        ) {
            let keys: Vec<u64> = seeds.iter().map(|s| base ^ (s & mask)).collect();
            let mut ours = keys.clone();
            sort_keys(&mut ours);
            let mut want = keys;
            want.sort_unstable();
            prop_assert_eq!(ours, want);
        }
    }

    #[test]
    fn key_order_is_descending_score_order() {
        let mut rng = crate::rng::Rng::new(7);
        for n in [0, 1, 5, 5000, 60_000] {
            let xs: Vec<f64> = (0..n)
                .map(|i| match i % 5 {
                    0 => (rng.below(7) as f64) - 3.0,
                    1 => -0.0,
                    2 => f64::MAX / (1 + rng.below(9)) as f64,
                    _ => (rng.next_u64() as f64 / u64::MAX as f64 - 0.5) * 1e-300,
                })
                .collect();
            let mut keys: Vec<u64> = xs.iter().map(|&x| key(x)).collect();
            sort_keys(&mut keys);
            let sorted: Vec<f64> = keys.into_iter().map(from_key).collect();
            let mut expected: Vec<f64> = xs.iter().map(|x| x + 0.0).collect();
            expected.sort_unstable_by(|a, b| b.total_cmp(a));
            assert_eq!(
                sorted.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
