//! Model test: random sequences of operations (with close and reopen in between) applied to a
//! `LocalStore` and to the reference `MemoryStore` must give the same observable results.
//! Incarnation ids and timestamps differ by nature: incarnations are compared by "changed or
//! not" since the last observation, timestamps not at all.

mod powerloss_fs;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use powerloss_fs::{PowerLossFs, Rng, Tear};
use proptest::prelude::*;
use streamkeep::{
    AppendOptions, Durability, Error, Expect, IdempotencyKey, Incarnation, ListOptions,
    LocalOptions, LocalStore, MemoryStore, ReadOptions, Retention, StreamId, StreamStore,
};

#[derive(Clone, Debug)]
enum Op {
    Append {
        s: u8,
        n: u8,
        size: u16,
        expect: Option<Option<u8>>,
        key: Option<u8>,
    },
    Read {
        s: u8,
        from: u8,
        max: u8,
        max_bytes: u16,
        wait: bool,
    },
    Seal(u8),
    Trim(u8, u8),
    Delete(u8),
    Info(u8),
    List,
    MaxBytes(u8, Option<u16>),
    Checkpoint,
    Reopen,
    /// Stop without checkpoint or clean marker: the reopen replays the log.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3u8, 1..4u8, 0..2500u16, proptest::option::weighted(0.3, proptest::option::of(0..12u8)), proptest::option::weighted(0.3, 0..4u8))
            .prop_map(|(s, n, size, expect, key)| Op::Append { s, n, size, expect, key }),
        4 => (0..3u8, 0..14u8, 1..6u8, 1..1200u16, proptest::bool::weighted(0.2))
            .prop_map(|(s, from, max, max_bytes, wait)| Op::Read { s, from, max, max_bytes, wait }),
        1 => (0..3u8).prop_map(Op::Seal),
        2 => (0..3u8, 0..14u8).prop_map(|(s, b)| Op::Trim(s, b)),
        1 => (0..3u8).prop_map(Op::Delete),
        2 => (0..3u8).prop_map(Op::Info),
        1 => Just(Op::List),
        1 => (0..3u8, proptest::option::of(0..1500u16)).prop_map(|(s, m)| Op::MaxBytes(s, m)),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        2 => Just(Op::Crash),
    ]
}

fn id(s: u8) -> StreamId {
    StreamId::new(format!("m/{s}")).unwrap()
}

fn options(durability: Durability, power: Option<&Power>) -> LocalOptions {
    // Small segments: rolls and segment collection happen within a case.
    let mut o = LocalOptions::default()
        .durability(durability)
        .segment_bytes(64 << 10);
    if let Some(p) = power {
        o.fs = p.fs.clone();
    }
    o
}

/// A power-loss file system and what its cuts do.
struct Power {
    fs: Arc<PowerLossFs>,
    rng: Rng,
    cuts: u64,
}

impl Power {
    /// Cuts the power (after the store was abandoned) and brings it back.
    fn cut(&mut self) {
        const TEARS: [Tear; 4] = [Tear::None, Tear::Zeros, Tear::Garbage, Tear::Partial];
        self.fs.arm(0);
        let tear = TEARS[usize::try_from(self.cuts % 4).unwrap_or(0)];
        let persist = self.rng.below(100);
        self.fs.restart(&mut self.rng, persist, tear);
        self.cuts += 1;
    }
}

/// Per stream: the incarnations last seen from (memory, local).
#[derive(Default)]
struct Incarnations(HashMap<u8, (Option<Incarnation>, Option<Incarnation>)>);

impl Incarnations {
    fn check(&mut self, s: u8, mem: Option<Incarnation>, local: Option<Incarnation>, what: &str) {
        assert_eq!(
            mem.is_some(),
            local.is_some(),
            "{what}: incarnation presence"
        );
        let last = self.0.entry(s).or_insert((mem, local));
        if mem.is_some() && last.0.is_some() {
            assert_eq!(
                last.0 != mem,
                last.1 != local,
                "{what}: incarnation changed on one side only"
            );
        }
        *last = (mem.or(last.0), local.or(last.1));
    }
}

fn same_err<T: std::fmt::Debug, U: std::fmt::Debug>(
    a: &Result<T, Error>,
    b: &Result<U, Error>,
    what: &str,
) {
    match (a, b) {
        (Err(x), Err(y)) => assert_eq!(x.kind(), y.kind(), "{what}: {x} vs {y}"),
        (Ok(_), Ok(_)) => {}
        _ => panic!("{what}: memory {a:?} but local {b:?}"),
    }
}

async fn run(ops: Vec<Op>, dir: &Path, durability: Durability, mut power: Option<Power>) {
    let mem = MemoryStore::new();
    let mut local = LocalStore::open(dir, options(durability, power.as_ref()))
        .await
        .unwrap();
    let mut inc = Incarnations::default();
    for (step, op) in ops.into_iter().enumerate() {
        let what = format!("step {step} {op:?}");
        match op {
            Op::Append {
                s,
                n,
                size,
                expect,
                key,
            } => {
                let records: Vec<Bytes> = (0..n)
                    .map(|k| {
                        Bytes::from(vec![
                            b'a' + u8::try_from(step % 26).unwrap() + k;
                            usize::from(size) + usize::from(k)
                        ])
                    })
                    .collect();
                let mut o = AppendOptions::expect(match expect {
                    None => Expect::Any,
                    Some(None) => Expect::NoStream,
                    Some(Some(n)) => Expect::Next(u64::from(n)),
                });
                if let Some(k) = key {
                    o = o.with_key(IdempotencyKey::new(vec![k]).unwrap());
                }
                let a = mem.append(&id(s), records.clone(), o.clone()).await;
                let b = local.append(&id(s), records, o).await;
                same_err(&a, &b, &what);
                if let (Ok(a), Ok(b)) = (a, b) {
                    assert_eq!(
                        (a.first_offset, a.count),
                        (b.first_offset, b.count),
                        "{what}"
                    );
                    inc.check(s, Some(a.incarnation), Some(b.incarnation), &what);
                }
            }
            Op::Read {
                s,
                from,
                max,
                max_bytes,
                wait,
            } => {
                let mut o = ReadOptions::limit(usize::from(max)).bytes(usize::from(max_bytes));
                if wait {
                    o = o.wait(Duration::from_millis(2));
                }
                let a = mem.read(&id(s), u64::from(from), o).await;
                let b = local.read(&id(s), u64::from(from), o).await;
                same_err(&a, &b, &what);
                // A durable read right after: a prefix of the plain read (all of it in `Sync`).
                let mut od = o;
                od.wait = None;
                let d = local.read(&id(s), u64::from(from), od.durable()).await;
                same_err(&b, &d, &what);
                if let (Ok(b), Ok(d)) = (&b, &d) {
                    let n = d.records.len();
                    assert!(n <= b.records.len(), "{what}: durable read longer");
                    assert_eq!(
                        d.records[..],
                        b.records[..n],
                        "{what}: durable read differs"
                    );
                    if durability == Durability::Sync {
                        assert_eq!(n, b.records.len(), "{what}: durable read short in Sync");
                    }
                }
                if let (Ok(a), Ok(b)) = (a, b) {
                    let strip = |r: &streamkeep::Record| (r.offset, r.payload.clone());
                    assert_eq!(
                        a.records.iter().map(strip).collect::<Vec<_>>(),
                        b.records.iter().map(strip).collect::<Vec<_>>(),
                        "{what}"
                    );
                    assert_eq!(
                        (a.next_offset, a.end_offset, a.first_available, a.sealed),
                        (b.next_offset, b.end_offset, b.first_available, b.sealed),
                        "{what}"
                    );
                    inc.check(s, a.incarnation, b.incarnation, &what);
                }
            }
            Op::Seal(s) => {
                let a = mem.seal(&id(s)).await;
                let b = local.seal(&id(s)).await;
                same_err(&a, &b, &what);
                if let (Ok(a), Ok(b)) = (a, b) {
                    assert_eq!(
                        (a.first_offset, a.next_offset, a.sealed, a.bytes),
                        (b.first_offset, b.next_offset, b.sealed, b.bytes),
                        "{what}"
                    );
                }
            }
            Op::Trim(s, before) => {
                let a = mem.trim(&id(s), u64::from(before)).await;
                let b = local.trim(&id(s), u64::from(before)).await;
                same_err(&a, &b, &what);
                if let (Ok(a), Ok(b)) = (a, b) {
                    assert_eq!(a, b, "{what}");
                }
            }
            Op::Delete(s) => {
                let a = mem.delete(&id(s)).await;
                let b = local.delete(&id(s)).await;
                same_err(&a, &b, &what);
                if let (Ok(a), Ok(b)) = (a, b) {
                    assert_eq!(a, b, "{what}");
                }
            }
            Op::Info(s) => {
                let a = mem.info(&id(s)).await;
                let b = local.info(&id(s)).await;
                same_err(&a, &b, &what);
                if let (Ok(a), Ok(b)) = (a, b) {
                    assert_eq!(
                        (
                            a.first_offset,
                            a.next_offset,
                            a.sealed,
                            a.sealed_ms.is_some(),
                            a.bytes,
                            a.retention
                        ),
                        (
                            b.first_offset,
                            b.next_offset,
                            b.sealed,
                            b.sealed_ms.is_some(),
                            b.bytes,
                            b.retention
                        ),
                        "{what}"
                    );
                    inc.check(s, Some(a.incarnation), Some(b.incarnation), &what);
                }
            }
            Op::List => {
                let a = mem.list(ListOptions::default()).await.unwrap();
                let b = local.list(ListOptions::default()).await.unwrap();
                assert_eq!(a, b, "{what}");
            }
            Op::MaxBytes(s, m) => {
                let r = {
                    let mut o = Retention::default();
                    o.max_bytes = m.map(u64::from);
                    o
                };
                let a = mem.set_retention(&id(s), r).await;
                let b = local.set_retention(&id(s), r).await;
                same_err(&a, &b, &what);
            }
            Op::Checkpoint => local.checkpoint().await.unwrap(),
            Op::Reopen | Op::Crash => {
                let crash = matches!(op, Op::Crash);
                if crash {
                    local.abandon().await;
                } else {
                    local.close().await.unwrap();
                }
                drop(local);
                if let (true, Some(p)) = (crash, power.as_mut()) {
                    p.cut();
                }
                local = LocalStore::open(dir, options(durability, power.as_ref()))
                    .await
                    .unwrap();
                let report = local.recovery_report();
                if crash && durability != Durability::Sync {
                    // Acknowledged before syncing: every stream gets a new incarnation.
                    inc = Incarnations::default();
                    assert!(
                        report.quarantined.is_empty() && report.lost.is_empty(),
                        "{what}"
                    );
                } else {
                    assert!(!report.has_damage(), "{what}: {report:?}");
                }
            }
        }
    }
    local.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn local_store_behaves_like_the_memory_store(
        ops in proptest::collection::vec(op(), 1..100),
        mode in 0..3u8,
    ) {
        let durability = match mode {
            0 => Durability::Sync,
            1 => Durability::Interval(Duration::from_millis(1)),
            _ => Durability::Buffered,
        };
        let shm = Path::new("/dev/shm");
        let tmp = if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops, &tmp.path().join("store"), durability, None));
    }

    /// `Sync` mode over the power-loss file system: every `Crash` is a power cut.
    #[test]
    fn local_store_behaves_like_the_memory_store_across_power_cuts(
        ops in proptest::collection::vec(op(), 1..100),
        seed in 0..u64::MAX,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let power = Power { fs: PowerLossFs::new(), rng: Rng::new(seed), cuts: 0 };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops, &tmp.path().join("store"), Durability::Sync, Some(power)));
    }
}
