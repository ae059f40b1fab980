//! The conformance suite every `StreamStore` implementation passes.
//!
//! A library of backend-generic async checks ([`cases()`]) and a runner ([`run_suite`]) that
//! takes a [`Factory`] for the implementation under test. Each run gets a fresh random namespace
//! and cleans it up afterwards; each case works on stream ids under its own prefix, and the cases
//! that close or reopen a store get a namespace of their own.
//!
//! A case that needs a capability the store does not declare is reported as skipped, with the
//! capability named, and never counted as passed.
//!
//! The runner binary is `tests/conformance.rs`; it picks implementations from `STREAMSTORE_TEST`.

#![forbid(unsafe_code)]

/// The README's example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;

mod case;
mod cases;
mod factory;
mod runner;
pub mod support;

pub use case::{Case, Failure, Outcome, Requirement};
pub use cases::cases;
pub use factory::Factory;
pub use runner::{run_suite, Summary};
pub use support::Ctx;
