//! `streamstore-bench`: see `docs/benchmarks.md`.
fn main() {}
