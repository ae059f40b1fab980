//! Crash test: a child process appends in `Sync` mode to many streams and prints every
//! acknowledgement; the parent kills it with SIGKILL at random moments, reopens the store and
//! checks that every acknowledged record is there, intact, at its offset, with no gaps and no
//! corruption. The child is this test binary run again with `STREAMSTORE_CRASH_CHILD` set.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use streamkeep::{
    AppendOptions, Durability, ErrorKind, Expect, LocalOptions, LocalStore, ReadOptions, StreamId,
    StreamStore,
};

const CHILD_ENV: &str = "STREAMSTORE_CRASH_CHILD";
const STREAMS: usize = 24;
const WRITERS: usize = 6;

fn options() -> LocalOptions {
    // Small segments and frequent checkpoints: crashes land during rolls, checkpoints and
    // segment collection too.
    LocalOptions::default()
        .durability(Durability::Sync)
        .segment_bytes(256 << 10)
        .checkpoint_interval(Duration::from_millis(40))
}

fn stream(i: usize) -> StreamId {
    StreamId::new(format!("crash/{i}")).unwrap()
}

/// The payload of `offset` in stream `i`: recognisable, and of varying length.
fn payload(i: usize, offset: u64) -> Bytes {
    let len = 20 + usize::try_from((offset * 131 + i as u64 * 17) % 1500).unwrap();
    let mut v = format!("{i}:{offset}:").into_bytes();
    v.resize(len, b'a' + u8::try_from(offset % 26).unwrap());
    Bytes::from(v)
}

/// The child: append forever, printing `ack <stream> <first> <count>` after each acknowledgement
/// and `trim <stream> <before>` after each acknowledged trim.
fn child(dir: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Arc::new(LocalStore::open(dir, options()).await.unwrap());
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let mine: Vec<usize> = (0..STREAMS).filter(|i| i % WRITERS == w).collect();
                let mut next = HashMap::new();
                for &i in &mine {
                    let n = match store.info(&stream(i)).await {
                        Ok(info) => info.next_offset,
                        Err(_) => 0,
                    };
                    next.insert(i, n);
                }
                let mut rng = rand::rngs::StdRng::from_entropy();
                loop {
                    let i = mine[rng.gen_range(0..mine.len())];
                    let first = next[&i];
                    if rng.gen_ratio(1, 40) && first > 10 {
                        let before = first - 5;
                        store.trim(&stream(i), before).await.unwrap();
                        let mut o = out.lock().unwrap();
                        writeln!(o, "trim {i} {before}").unwrap();
                        o.flush().unwrap();
                        continue;
                    }
                    let count = rng.gen_range(1..=4u64);
                    let records = (first..first + count).map(|o| payload(i, o)).collect();
                    let r = store
                        .append(
                            &stream(i),
                            records,
                            AppendOptions::expect(Expect::Next(first)),
                        )
                        .await
                        .unwrap();
                    assert_eq!(r.first_offset, first);
                    next.insert(i, first + count);
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {i} {first} {count}").unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

use rand::SeedableRng;

#[test]
fn crash_child_entry() {
    // Only does something when run as the child of `sigkill_never_loses_acknowledged_appends`.
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
}

#[test]
fn sigkill_never_loses_acknowledged_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashMap<usize, u64> = HashMap::new();
    let mut trimmed: HashMap<usize, u64> = HashMap::new();
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let rounds = 20;
    let mut torn = 0;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The reader forwards every line as it arrives, so the kill timer can start at the
        // child's first acknowledgement rather than at spawn: on a cold or loaded machine the
        // child may need longer than the whole kill window just to start and open the store.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        // libtest prints its own lines ("running 1 test") first; wait for a real one. Right
        // after a large build the first fsync can take seconds (dirty pages being written back).
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let real = line.starts_with("ack ") || line.starts_with("trim ");
                    lines.push(line);
                    if real {
                        break;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("round {round}: the child acknowledged nothing within 60 s ({e})");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let mut acks_this_round = 0;
        for line in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["ack", i, first, count] => {
                    let (i, first, count): (usize, u64, u64) = (
                        i.parse().unwrap(),
                        first.parse().unwrap(),
                        count.parse().unwrap(),
                    );
                    let e = acked.entry(i).or_default();
                    *e = (*e).max(first + count);
                    acks_this_round += 1;
                }
                ["trim", i, before] => {
                    let e = trimmed.entry(i.parse().unwrap()).or_default();
                    *e = (*e).max(before.parse().unwrap());
                    acks_this_round += 1;
                }
                _ => {}
            }
        }

        // Reopen and check.
        let store = LocalStore::open_blocking(&dir, options()).unwrap();
        let report = store.recovery_report();
        assert!(!report.has_damage(), "round {round}: {report:?}");
        assert!(report.reincarnated.is_empty());
        torn += usize::from(report.torn_tail.is_some());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..STREAMS {
                let want = acked.get(&i).copied().unwrap_or(0);
                let info = match store.info(&stream(i)).await {
                    Ok(info) => info,
                    Err(e) => {
                        assert_eq!(want, 0, "round {round}: stream {i} lost: {e}");
                        continue;
                    }
                };
                assert!(
                    info.next_offset >= want,
                    "round {round}: stream {i} ends at {} but {want} were acknowledged",
                    info.next_offset
                );
                let min_first = trimmed.get(&i).copied().unwrap_or(0);
                assert!(info.first_offset >= min_first);
                let mut from = info.first_offset;
                while from < info.next_offset {
                    let batch = match store.read(&stream(i), from, ReadOptions::limit(500)).await {
                        Ok(b) => b,
                        Err(e) => panic!("round {round}: reading {i}@{from}: {e}"),
                    };
                    assert!(!batch.records.is_empty());
                    for r in &batch.records {
                        assert_eq!(r.offset, from, "gap in stream {i}");
                        assert_eq!(r.payload, payload(i, r.offset), "stream {i} offset {from}");
                        from += 1;
                    }
                }
                // Records past the acknowledged end were written by appends whose answer the
                // crash swallowed: allowed, and they count as acknowledged from now on (the next
                // child continues after them).
                acked.insert(i, info.next_offset);
            }
            let e = store
                .read(&stream(0), u64::MAX - 1, ReadOptions::limit(1))
                .await;
            assert!(e.is_ok() || e.is_err_and(|e| e.kind() != ErrorKind::Corruption));
        });
        drop(store);
        assert!(
            acks_this_round > 0,
            "round {round}: no acknowledgement parsed"
        );
        if started.elapsed() > Duration::from_secs(40) {
            eprintln!("stopping after {} rounds (time bound)", round + 1);
            break;
        }
    }
    eprintln!(
        "crash test: {} rounds, {torn} torn tails, {} records acknowledged",
        rounds,
        acked.values().sum::<u64>()
    );
}
