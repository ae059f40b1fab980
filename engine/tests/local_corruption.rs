//! Corruption: build a small store, then for every byte of its files flip it (and for many lengths
//! cut the file), reopen and read everything. Each case must either show exactly the original data
//! or be detected and reported (an error from open or a read, or a recovery report); different
//! data must never be served, and nothing may panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use streamkeep::{
    AppendOptions, Durability, IdempotencyKey, ListOptions, LocalOptions, LocalStore, ReadOptions,
    Record, StreamId, StreamStore,
};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    first: u64,
    next: u64,
    sealed: bool,
    records: Vec<Record>,
}

fn options() -> LocalOptions {
    LocalOptions::default()
        .durability(Durability::Sync)
        .segment_bytes(64 << 10)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// Every record ever appended, by stream and offset (trimmed ones included).
type History = BTreeMap<String, Vec<Bytes>>;

/// A few streams with keys, a seal and a trim: about 2 KiB of log.
fn build(dir: &Path) -> History {
    let store = LocalStore::open_blocking(dir, options()).unwrap();
    let mut history = History::new();
    rt().block_on(async {
        for i in 0..3u8 {
            let id = StreamId::new(format!("s{i}")).unwrap();
            for j in 0..6u8 {
                let recs: Vec<Bytes> = (0..=(j % 3))
                    .map(|k| Bytes::from(vec![b'a' + i + j + k; 10 + usize::from(j) * 7]))
                    .collect();
                history
                    .entry(id.as_str().to_owned())
                    .or_default()
                    .extend(recs.iter().cloned());
                let opts = if j % 2 == 0 {
                    AppendOptions::default().with_key(IdempotencyKey::new(vec![i, j, 1]).unwrap())
                } else {
                    AppendOptions::default()
                };
                store.append(&id, recs, opts).await.unwrap();
            }
        }
        let s1 = StreamId::new("s1").unwrap();
        store.seal(&s1).await.unwrap();
        store.trim(&StreamId::new("s0").unwrap(), 3).await.unwrap();
        store.close().await.unwrap();
    });
    history
}

/// Everything the store shows, or the first error.
fn observe(store: &LocalStore) -> Result<BTreeMap<String, Seen>, streamkeep::Error> {
    rt().block_on(async {
        let mut out = BTreeMap::new();
        let page = store.list(ListOptions::default().limit(100)).await?;
        for id in page.streams {
            let info = store.info(&id).await?;
            let mut records = Vec::new();
            let mut from = info.first_offset;
            while from < info.next_offset {
                let b = store.read(&id, from, ReadOptions::limit(100)).await?;
                if b.records.is_empty() {
                    break;
                }
                from = b.next_offset;
                records.extend(b.records);
            }
            out.insert(
                id.as_str().to_owned(),
                Seen {
                    first: info.first_offset,
                    next: info.next_offset,
                    sealed: info.sealed,
                    records,
                },
            );
        }
        Ok(out)
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    identical: usize,
    detected: usize,
}

/// Runs one case: copy the original, damage it, reopen, compare.
fn case(
    orig: &Path,
    work: &Path,
    expected: &BTreeMap<String, Seen>,
    history: &History,
    what: &str,
    damage: impl FnOnce(&Path),
    t: &mut Tally,
) {
    let _ = std::fs::remove_dir_all(work);
    copy_dir(orig, work);
    damage(work);
    let store = match LocalStore::open_blocking(work, options()) {
        Ok(s) => s,
        Err(_) => {
            t.detected += 1;
            return;
        }
    };
    let report = store.recovery_report();
    let reported = report.has_damage()
        || report.torn_tail.is_some()
        || !report.removed_empty_segments.is_empty();
    match observe(&store) {
        Err(_) => t.detected += 1,
        Ok(seen) => {
            // Whatever is served must be the record appended at that offset (a torn-tail cut may
            // bring back records of a trim it dropped, which is reported).
            for (id, s) in &seen {
                for r in &s.records {
                    let orig = history
                        .get(id)
                        .and_then(|h| h.get(usize::try_from(r.offset).ok()?));
                    assert_eq!(
                        orig,
                        Some(&r.payload),
                        "{what}: stream {id} offset {} served different data",
                        r.offset
                    );
                }
            }
            if &seen == expected {
                t.identical += 1;
            } else {
                assert!(reported, "{what}: the store changed without a report: {seen:?} vs {expected:?}; {report:?}");
                t.detected += 1;
            }
        }
    }
    drop(store);
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// One past the last non-zero byte.
fn data_len(path: &Path) -> usize {
    let b = std::fs::read(path).unwrap();
    b.iter().rposition(|x| *x != 0).map_or(0, |i| i + 1)
}

fn run(without_checkpoint: bool) -> Tally {
    let tmp = scratch();
    let orig = tmp.path().join("orig");
    let history = build(&orig);
    if without_checkpoint {
        // As after a crash before any checkpoint: recovery must scan (and judge) the whole log.
        std::fs::remove_file(orig.join("CHECKPOINT")).unwrap();
        std::fs::remove_file(orig.join("CLEAN")).unwrap();
    }
    let expected = {
        let work = tmp.path().join("baseline");
        copy_dir(&orig, &work);
        let s = LocalStore::open_blocking(&work, options()).unwrap();
        let e = observe(&s).unwrap();
        drop(s);
        e
    };
    assert_eq!(expected.len(), 3);
    let work = tmp.path().join("work");
    let mut t = Tally::default();
    let mut files: Vec<(PathBuf, usize)> = segment_files(&orig)
        .into_iter()
        .map(|p| {
            let n = data_len(&p) + 16;
            (p, n)
        })
        .collect();
    if !without_checkpoint {
        let ck = orig.join("CHECKPOINT");
        let n = usize::try_from(std::fs::metadata(&ck).unwrap().len()).unwrap();
        files.push((ck, n));
    }
    for (path, n) in &files {
        let rel = path.strip_prefix(&orig).unwrap().to_path_buf();
        for i in 0..*n {
            case(
                &orig,
                &work,
                &expected,
                &history,
                &format!("flip {} byte {i}", rel.display()),
                |w| {
                    let p = w.join(&rel);
                    let mut b = std::fs::read(&p).unwrap();
                    b[i] ^= 0x5a;
                    std::fs::write(&p, b).unwrap();
                },
                &mut t,
            );
        }
        for cut in (0..*n).step_by(5) {
            case(
                &orig,
                &work,
                &expected,
                &history,
                &format!("cut {} at {cut}", rel.display()),
                |w| {
                    let p = w.join(&rel);
                    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                    f.set_len(cut as u64).unwrap();
                },
                &mut t,
            );
        }
    }
    eprintln!("without checkpoint: {without_checkpoint}: {t:?}");
    assert!(t.detected > 0 && t.identical > 0);
    t
}

#[test]
fn every_flipped_byte_is_detected_or_harmless_with_checkpoint() {
    run(false);
}

#[test]
fn every_flipped_byte_is_detected_or_harmless_without_checkpoint() {
    run(true);
}

/// Damage found by a read (after a clean open, so recovery did not scan it): the records before
/// the damaged frame are served, the read that reaches it is `Corruption`, and the records after
/// it can still be read from past the damage.
#[test]
fn a_read_serves_the_records_before_a_damaged_frame() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let id = StreamId::new("s").unwrap();
    let payload = |o: u8| Bytes::from(vec![b'A' + o; 40]);
    {
        let store = LocalStore::open_blocking(&dir, options()).unwrap();
        rt().block_on(async {
            for o in 0..6u8 {
                let r = store
                    .append(&id, vec![payload(o)], AppendOptions::default())
                    .await
                    .unwrap();
                assert_eq!(r.first_offset, u64::from(o));
            }
            store.close().await.unwrap();
        });
    }
    // Flip a byte inside offset 3's payload (its 40 'D's are unique in the log).
    let seg = segment_files(&dir).pop().unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    let at = b.windows(40).position(|w| w == &payload(3)[..]).unwrap();
    b[at + 7] ^= 0x5a;
    std::fs::write(&seg, b).unwrap();

    let store = LocalStore::open_blocking(&dir, options()).unwrap();
    assert!(
        !store.recovery_report().has_damage(),
        "clean open scanned nothing"
    );
    rt().block_on(async {
        let batch = store.read(&id, 0, ReadOptions::limit(100)).await.unwrap();
        let got: Vec<_> = batch.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(got, (0..3).map(payload).collect::<Vec<_>>());
        assert_eq!(batch.next_offset, 3);
        let e = store
            .read(&id, 3, ReadOptions::limit(100))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), streamkeep::ErrorKind::Corruption);
        let after = store.read(&id, 4, ReadOptions::limit(100)).await.unwrap();
        let got: Vec<_> = after.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(got, (4..6).map(payload).collect::<Vec<_>>());
    });
}

/// The same through a memory map: damage in a finished (mapped) segment found by a read.
#[test]
fn a_mapped_read_serves_the_records_before_a_damaged_frame() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let id = StreamId::new("s").unwrap();
    let payload = |o: u64| {
        let mut v = format!("record {o:04} ").into_bytes();
        v.resize(3000, b'x');
        Bytes::from(v)
    };
    {
        let store = LocalStore::open_blocking(&dir, options()).unwrap();
        rt().block_on(async {
            for o in 0..60 {
                store
                    .append(&id, vec![payload(o)], AppendOptions::default())
                    .await
                    .unwrap();
            }
            store.close().await.unwrap();
        });
    }
    let segs = segment_files(&dir);
    assert!(segs.len() >= 3, "{segs:?}");
    // Damage offset 5 in the first (finished) segment.
    let mut b = std::fs::read(&segs[0]).unwrap();
    let at = b.windows(12).position(|w| w == b"record 0005 ").unwrap();
    b[at + 100] ^= 0x5a;
    std::fs::write(&segs[0], b).unwrap();

    let store = LocalStore::open_blocking(&dir, options()).unwrap();
    rt().block_on(async {
        let batch = store.read(&id, 0, ReadOptions::limit(100)).await.unwrap();
        assert!(
            store.mapped_segments() > 0,
            "the finished segment was not mapped"
        );
        let got: Vec<_> = batch.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(got, (0..5).map(payload).collect::<Vec<_>>());
        let e = store
            .read(&id, 5, ReadOptions::limit(100))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), streamkeep::ErrorKind::Corruption);
        let after = store.read(&id, 6, ReadOptions::limit(100)).await.unwrap();
        assert_eq!(after.records[0].payload, payload(6));
    });
}
