//! Feeds arbitrary bytes to every decoder of the local engine's on-disk format (segment header,
//! frame header and body, checkpoint). A panic, an overflow or a hang is a bug.
//!
//! ```text
//! cargo install cargo-fuzz
//! cd fuzz && cargo +nightly fuzz run decoders -- -max_total_time=60
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = streamstore::local::fuzz_decoders(data);
});
