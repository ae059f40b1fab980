//! The parts of the `streamstore` command that other programs reuse: `--store URL` parsing and
//! opening ([`store_url::open_store`]), and the JSON-lines record output. The matching node
//! (`streamstore-node`) opens its store through the same function, so every URL the CLI accepts
//! works there too.

#![forbid(unsafe_code)]

pub mod output;
pub mod stats_json;
pub mod store_url;
