#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod api;
pub mod cluster;
pub mod config;
pub mod errors;
pub mod events;
pub mod forward;
pub mod gossip;
pub mod observe;
pub mod page;
pub mod server;
pub mod token;

pub use config::Config;
pub use server::{run, Node};
