//! `streamstore`: the command-line front end of every `StreamStore`.
//!
//! One `--store URL` picks the implementation: a path or `file://` URL is the local engine (the
//! default is `./streamstore-data`), `memory:` an in-process store. Output is JSON lines on stdout;
//! errors go to stderr with a non-zero exit code.

#![forbid(unsafe_code)]

mod commands;
mod input;

use streamstore_cli::{output, store_url};

use std::process::ExitCode;

use clap::Parser;

use crate::commands::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("streamstore: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamstore: {e}");
            ExitCode::FAILURE
        }
    }
}
