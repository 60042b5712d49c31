//! A compare table row for the tests of compare.html, shared by `src/compare.rs`'s unit tests
//! and `tests/compare.rs`: the parent module has `CompareRow` in scope.

use super::CompareRow;

/// `variant`'s `metric` row: a baseline of 1,000 against a candidate of 1,201 (+20.1 %, a
/// tight interval over the 10 % threshold), judged `verdict`, gated or not.
pub fn sample_row(variant: &str, metric: &str, verdict: &str, gated: bool) -> CompareRow {
    CompareRow {
        variant: variant.to_owned(),
        metric: metric.to_owned(),
        baseline: "1,000".to_owned(),
        candidate: "1,201".to_owned(),
        change: "+20.1 %".to_owned(),
        verdict: verdict.to_owned(),
        gated,
        detail: "95 % interval +18.0 … +22.3 %, threshold +10 %".to_owned(),
    }
}
