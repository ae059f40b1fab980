//! Criterion micro-benchmarks of hot paths.
fn main() {}
