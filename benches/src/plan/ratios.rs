//! The ratios a plan reports (numerator and denominator case keys) and their targets.

use super::{RatioDef, Settings};

/// The ratios of the plan `s`: the engine against the disk and against itself, the embedded
/// peers, the database adapters against their raw driver, the server peers.
pub(super) fn all(s: &Settings) -> Vec<RatioDef> {
    let mut ratios = vec![
        RatioDef {
            name: "sync_vs_raw_fdatasync",
            num: "local-sync/1KiBx16/a1/s1".into(),
            den: "raw-fdatasync/1KiBx16".into(),
            bandwidth: false,
            target: Some(0.90),
            what: "Sync, 1 KiB × 16 per append, 1 appender ÷ raw pwrite+fdatasync of 16 KiB",
        },
        RatioDef {
            name: "sync_vs_raw_fdatasync_batch1",
            num: "local-sync/1KiBx1/a1/s1".into(),
            den: "raw-fdatasync/1KiBx1".into(),
            bandwidth: false,
            target: Some(0.90),
            what: "Sync, 1 KiB × 1 per append, 1 appender ÷ raw pwrite+fdatasync of 1 KiB",
        },
        RatioDef {
            name: "group_commit_vs_raw_batch64",
            num: "local-sync/1KiBx1/a64/s1".into(),
            den: "raw-fdatasync/1KiBx64".into(),
            bandwidth: false,
            target: None,
            what: "Sync, 64 appenders × 1 KiB ÷ raw sync of 64 records (ideal batching)",
        },
        RatioDef {
            name: "streams10k_vs_1",
            num: "local-sync/1KiBx1/a64/s10000".into(),
            den: "local-sync/1KiBx1/a64/s1".into(),
            bandwidth: false,
            target: Some(0.80),
            what: "Sync, 64 appenders × 1 KiB: 10,000 streams ÷ 1 stream",
        },
        RatioDef {
            name: "streams1k_vs_1",
            num: "local-sync/1KiBx1/a64/s1000".into(),
            den: "local-sync/1KiBx1/a64/s1".into(),
            bandwidth: false,
            target: None,
            what: "Sync, 64 appenders × 1 KiB: 1,000 streams ÷ 1 stream",
        },
        RatioDef {
            name: "local_vs_sqlite_full",
            num: "local-sync/1KiBx1/a64/s1000".into(),
            den: "sqlite-full/1KiBx1/a64/s1000".into(),
            bandwidth: false,
            target: Some(5.0),
            what:
                "durable appends at 1,000 streams, 64 appenders: Sync ÷ SQLite WAL synchronous=FULL",
        },
        RatioDef {
            name: "buffered64k_vs_raw_write",
            num: "local-buffered/64KiBx16/a1/s1".into(),
            den: "raw-write/1024KiB".into(),
            bandwidth: true,
            target: Some(0.90),
            what: "Buffered 64 KiB × 16 per append ÷ raw sequential 1 MiB writes (bytes/s)",
        },
        RatioDef {
            name: "buffered64k_vs_raw_write_durable",
            num: "local-buffered/64KiBx16/a1/s1".into(),
            den: "raw-write-durable/1024KiB".into(),
            bandwidth: true,
            target: None,
            what: "Buffered 64 KiB × 16 per append ÷ raw sequential 1 MiB writes timed until a final fdatasync returns (the disk's sustained bandwidth)",
        },
    ];
    #[cfg(feature = "sql")]
    for (db, names) in [
        (
            "postgres",
            [
                "postgres_adapter_vs_raw_append",
                "postgres_adapter_vs_raw_append16",
                "postgres_adapter_vs_raw_replay",
            ],
        ),
        (
            "mysql",
            [
                "mysql_adapter_vs_raw_append",
                "mysql_adapter_vs_raw_append16",
                "mysql_adapter_vs_raw_replay",
            ],
        ),
    ] {
        let [a1, a16, rp] = names;
        for (name, suffix, what) in [
            (
                a1,
                "1KiBx1/a16/s100",
                "adapter ÷ raw sqlx: 16 appenders × 1 KiB, 100 streams",
            ),
            (
                a16,
                "1KiBx16/a16/s100",
                "adapter ÷ raw sqlx: 16 appenders × 16 × 1 KiB, 100 streams",
            ),
            (
                rp,
                "replay/s1/r1",
                "adapter ÷ raw sqlx: replay 4,096 × 1 KiB",
            ),
        ] {
            ratios.push(RatioDef {
                name,
                num: format!("{db}-adapter/{suffix}"),
                den: format!("{db}-raw-sqlx/{suffix}"),
                bandwidth: false,
                target: Some(0.80),
                what,
            });
        }
    }
    #[cfg(feature = "peers")]
    ratios.extend(super::servers::ratios());
    if s.full {
        ratios.extend([
            RatioDef {
                name: "local_vs_fjall_sync",
                num: "local-sync/1KiBx1/a64/s1000".into(),
                den: "fjall-sync/1KiBx1/a64/s1000".into(),
                bandwidth: false,
                target: None,
                what: "durable appends at 1,000 streams: Sync ÷ fjall SyncData per batch",
            },
            RatioDef {
                name: "local_vs_filelog_sync",
                num: "local-sync/1KiBx1/a64/s1000".into(),
                den: "filelog-sync/1KiBx1/a64/s1000".into(),
                bandwidth: false,
                target: None,
                what: "durable appends at 1,000 streams: Sync ÷ file per stream + fdatasync",
            },
            RatioDef {
                name: "interval_vs_sqlite_normal",
                num: "local-interval-10ms/1KiBx1/a64/s1000".into(),
                den: "sqlite-normal/1KiBx1/a64/s1000".into(),
                bandwidth: false,
                target: None,
                what: "non-durable appends at 1,000 streams: Interval(10 ms) ÷ SQLite synchronous=NORMAL",
            },
        ]);
    }
    ratios
}
