//! The benchmark harness of streamstore; see `docs/benchmarks.md`.
