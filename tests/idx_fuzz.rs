//! Property tests of the idx parser: arbitrary bytes never panic, and encoding then parsing is the identity.
use advdet::data::idx::{encode_idx, parse_idx};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_idx(&bytes);
    }

    #[test]
    fn mutated_headers_never_panic(dims in proptest::collection::vec(0usize..6, 1..4), flip in 0usize..16, bit in 0u8..8) {
        let n: usize = dims.iter().product();
        let mut bytes = encode_idx(&dims, &vec![7u8; n]);
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        let _ = parse_idx(&bytes);
    }

    #[test]
    fn roundtrip(dims in proptest::collection::vec(1usize..5, 1..4), seed in any::<u8>()) {
        let n: usize = dims.iter().product();
        let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let parsed = parse_idx(&encode_idx(&dims, &data)).unwrap();
        prop_assert_eq!(parsed.dims, dims);
        prop_assert_eq!(parsed.data, data);
    }
}
