//! Reads: replaying one long stream and 1,000 short ones after a reopen (and the embedded
//! peers' replay in the full plan), and the tail latency from an acknowledged append to a
//! waiting reader.

use streamstore::Durability;

use super::{Plan, Work, KIB};
use crate::systems::System;

/// The `replay` group.
pub(super) fn replay(p: &mut Plan) {
    let sync = System::Local(Durability::Sync);
    let (replay_records, many) = if p.settings.full {
        (65_536, 256)
    } else {
        (16_384, 64)
    };
    for (streams, records, readers) in [(1, replay_records, 1), (1000, many, 64)] {
        p.push(
            "replay",
            Work::Replay {
                system: sync,
                streams,
                records,
                record_bytes: KIB,
                readers,
            },
        );
    }
    #[cfg(feature = "peers")]
    if p.settings.full {
        for system in [
            System::Sqlite { full: false },
            System::Fjall { durable: false },
        ] {
            p.push(
                "replay",
                Work::Replay {
                    system,
                    streams: 1,
                    records: replay_records,
                    record_bytes: KIB,
                    readers: 1,
                },
            );
        }
    }
}

/// The `tail` group.
pub(super) fn tail(p: &mut Plan) {
    let full = p.settings.full;
    p.push(
        "tail",
        Work::Tail {
            durability: Durability::Buffered,
            n: if full { 5000 } else { 1000 },
        },
    );
    if full {
        p.push(
            "tail",
            Work::Tail {
                durability: Durability::Sync,
                n: 2000,
            },
        );
    }
}
