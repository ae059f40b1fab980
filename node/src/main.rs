//! `streamstore-node`: see the crate docs and node/README.md.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = streamstore_node::Config::parse();
    match streamstore_node::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamstore-node: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
