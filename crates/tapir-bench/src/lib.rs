//! tapir's load generator (`tapir-load`) and micro-benchmarks (`cargo bench -p tapir-bench`); see
//! `docs/benchmarks.md`.
