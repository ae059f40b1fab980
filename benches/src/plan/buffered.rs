//! Buffered bulk: 100 B records in batches of 1000, and 64 KiB records against the raw
//! sequential-write bandwidth (page cache, and until a final `fdatasync`).

use streamstore::Durability;

use super::{Plan, Work, KIB};
use crate::systems::System;
use crate::workload::Spread;

/// The `buffered` group.
pub(super) fn push(p: &mut Plan) {
    let buffered = System::Local(Durability::Buffered);
    let rr = Spread::RoundRobin;
    let a = p.spec(1, 1, 100, 1000, rr);
    p.push("buffered", Work::Append(buffered, a));
    if p.settings.full {
        let a = p.spec(64, 64, 100, 1000, rr);
        p.push("buffered", Work::Append(buffered, a));
    }
    for durable in [false, true] {
        p.push(
            "buffered",
            Work::SeqWrite {
                chunk: 1 << 20,
                durable,
            },
        );
    }
    let a = p.spec(1, 1, 64 * KIB, 16, rr);
    p.push("buffered", Work::Append(buffered, a));
}
