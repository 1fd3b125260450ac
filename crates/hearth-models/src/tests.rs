//! Unit tests of crate-private helpers (kernels have their own in `kernels/tests.rs`).

use crate::bert::erf;

#[test]
fn erf_matches_tabulated_values() {
    // erf from Abramowitz & Stegun table 7.1 / scipy.special.erf.
    for (x, want) in [
        (0.0, 0.0),
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (-1.5, -0.966_105_146_475_310_7),
        (2.0, 0.995_322_265_018_952_7),
        (-3.5, -0.999_999_256_901_627_7),
        (6.0, 1.0),
    ] {
        assert!(
            (erf(x) - want).abs() < 2e-7,
            "erf({x}) = {} want {want}",
            erf(x)
        );
    }
}
