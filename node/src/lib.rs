//! `streamstore-node`: a matching node that embeds streamstore.
//!
//! Applications append the outputs of their jobs to streams over HTTP; clients follow a stream in
//! real time with Server-Sent Events (or long-poll reads), resume after a disconnect from the last
//! event they saw, and replay history. Several nodes form a cluster: each stream is owned by one
//! live node (rendezvous hashing of the stream id over the live members) and every request for it
//! is forwarded to its owner. With a shared database store (`--store postgres://…`) a node that
//! takes over a stream continues it where the old owner stopped; writers fence a stale owner with
//! the `expect=N` condition, which the store checks atomically with the append.
//!
//! The HTTP API and its status codes are in the crate's README (`node/README.md`).

#![forbid(unsafe_code)]

pub mod api;
pub mod cluster;
pub mod config;
pub mod errors;
pub mod events;
pub mod forward;
pub mod observe;
pub mod page;
pub mod server;
pub mod token;

pub use config::Config;
pub use server::{run, Node};
