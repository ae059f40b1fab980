//! The embedded peers at 1,000 streams (SQLite, fjall, a file per stream; the engine's
//! `Interval` beside them), and the database adapters against their raw driver where a server
//! URL is set.

use super::{Plan, Work, KIB};
use crate::systems::System;
use crate::workload::Spread;

/// The `peers` group: 64 appenders of 1 KiB over 1,000 streams.
pub(super) fn embedded(p: &mut Plan) {
    let a = p.spec(1000, 64, KIB, 1, Spread::RoundRobin);
    #[cfg(feature = "peers")]
    {
        use streamstore::Durability;

        use crate::systems::INTERVAL;

        p.push(
            "peers",
            Work::Append(System::Sqlite { full: true }, a.clone()),
        );
        if p.settings.full {
            for system in [
                System::Sqlite { full: false },
                System::Fjall { durable: true },
                System::Local(Durability::Interval(INTERVAL)),
            ] {
                p.push("peers", Work::Append(system, a.clone()));
            }
        }
    }
    if p.settings.full {
        let system = System::FileLog { durable: true };
        p.push("peers", Work::Append(system, a));
    }
}

/// The `adapters` group: PostgreSQL and MySQL adapters and raw `sqlx`, 16 appenders over 100
/// streams (1 and 16 records per call) and a replay of 4,096 records.
#[cfg(feature = "sql")]
pub(super) fn adapters(p: &mut Plan) {
    for db in [
        crate::peers::sql::Db::Postgres,
        crate::peers::sql::Db::Mysql,
    ] {
        if db.url().is_none() {
            continue;
        }
        for raw in [false, true] {
            let sys = System::Sql { db, raw };
            for batch in [1, 16] {
                let a = p.spec(100, 16, KIB, batch, Spread::RoundRobin);
                p.push("adapters", Work::Append(sys, a));
            }
            p.push(
                "adapters",
                Work::Replay {
                    system: sys,
                    streams: 1,
                    records: 4096,
                    record_bytes: KIB,
                    readers: 1,
                },
            );
        }
    }
}
