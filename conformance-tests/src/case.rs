//! What one conformance case is, and how it fails.

use std::fmt;

use futures::future::BoxFuture;
use streamstore::Capabilities;

use crate::support::Ctx;

/// Why a case failed.
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<streamstore::Error> for Failure {
    fn from(e: streamstore::Error) -> Self {
        Failure(format!("unexpected error: {e}"))
    }
}

/// The outcome of a case.
pub type Outcome = Result<(), Failure>;

/// A capability a case needs; cases whose requirement is not met are skipped, visibly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `Capabilities::trim`.
    Trim,
    /// `Capabilities::delete`.
    Delete,
    /// `Capabilities::retention`.
    Retention,
    /// `Capabilities::list`.
    List,
    /// `Capabilities::idempotency` is `Some`.
    Idempotency,
    /// `Capabilities::persistent`.
    Persistent,
    /// `Capabilities::durable_reads`.
    DurableReads,
    /// A test server that serves a thousand concurrent waiting readers within the case's time
    /// on this machine: not a capability of the store but of the server the factory reaches
    /// ([`Factory::serves_thousand_waiters`](crate::Factory::serves_thousand_waiters)); always
    /// met as far as `Capabilities` go, decided by the runner.
    ThousandWaiters,
}

impl Requirement {
    /// Whether `caps` meets the requirement.
    pub fn met(self, caps: &Capabilities) -> bool {
        match self {
            Requirement::Trim => caps.trim,
            Requirement::Delete => caps.delete,
            Requirement::Retention => caps.retention,
            Requirement::List => caps.list,
            Requirement::Idempotency => caps.idempotency.is_some(),
            Requirement::Persistent => caps.persistent,
            Requirement::DurableReads => caps.durable_reads,
            Requirement::ThousandWaiters => true,
        }
    }

    /// The capability's field name.
    pub fn name(self) -> &'static str {
        match self {
            Requirement::Trim => "trim",
            Requirement::Delete => "delete",
            Requirement::Retention => "retention",
            Requirement::List => "list",
            Requirement::Idempotency => "idempotency",
            Requirement::Persistent => "persistent",
            Requirement::DurableReads => "durable_reads",
            Requirement::ThousandWaiters => "a test server serving 1,000 waiters (factory)",
        }
    }
}

/// One conformance case.
pub struct Case {
    /// `group::name`.
    pub name: String,
    /// Capabilities it needs.
    pub requires: &'static [Requirement],
    /// The check.
    pub run: for<'a> fn(&'a Ctx) -> BoxFuture<'a, Outcome>,
}

/// Builds the case list of a module: `case_list!(group; fn_a, fn_b [Trim, Delete], ...)`.
macro_rules! case_list {
    ($group:literal; $( $name:ident $( [ $($req:ident),* ] )? ),* $(,)?) => {
        vec![$(
            $crate::case::Case {
                name: format!("{}::{}", $group, stringify!($name)),
                requires: &[$($($crate::case::Requirement::$req),*)?],
                run: |ctx| Box::pin($name(ctx)),
            }
        ),*]
    };
}
pub(crate) use case_list;
