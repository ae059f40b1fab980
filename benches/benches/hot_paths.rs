//! Criterion micro-benchmarks of the engine's hot paths, through its public API.
//!
//! - checksums: `crc32fast` (the engine's frame CRC) over 1 KiB and 64 KiB;
//! - framing: `local::format` data-body + frame encode, and header decode + body check + body
//!   decode, for a batch of 16 × 1 KiB records;
//! - index lookup: the sparse per-stream index (`local::index`) is private, so it is measured
//!   through `LocalStore::read` of one record at a random offset of a 65,536-record stream
//!   (index lookup + positioned read from the page cache);
//! - the reference `MemoryStore` append, as the cost of the contract's code path without I/O.
//!
//! Run: `cargo bench -p streamstore-bench --bench hot_paths`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use streamstore::implementor::local_format::{
    body_ok, decode_data_body, decode_header, encode_data_body, encode_frame, FrameHeader,
    FRAME_HEADER_LEN,
};
use streamstore::{
    AppendOptions, Durability, LocalOptions, LocalStore, MemoryStore, ReadOptions, StreamId,
    StreamStore,
};

fn records(n: usize, size: usize) -> Vec<Bytes> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    (0..n)
        .map(|_| {
            let mut v = vec![0u8; size];
            rng.fill(&mut v[..]);
            Bytes::from(v)
        })
        .collect()
}

fn checksums(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32");
    for size in [1024usize, 64 << 10] {
        let data = records(1, size).pop().unwrap_or_default();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            b.iter(|| crc32fast::hash(black_box(d)));
        });
    }
    g.finish();
}

const SALT: u32 = 0x5eed_1234;

fn encode(recs: &[Bytes], buf: &mut Vec<u8>, body: &mut Vec<u8>) {
    body.clear();
    encode_data_body(body, None, recs);
    buf.clear();
    let count = u32::try_from(recs.len()).unwrap_or(u32::MAX);
    let frame = FrameHeader::data(7, 1000, 0, 1_700_000_000_000, count);
    encode_frame(buf, SALT, &frame, body);
}

fn framing(c: &mut Criterion) {
    let recs = records(16, 1024);
    let mut g = c.benchmark_group("frame_16x1KiB");
    g.throughput(Throughput::Elements(16));
    let (mut buf, mut body) = (Vec::new(), Vec::new());
    g.bench_function("encode", |b| {
        b.iter(|| encode(black_box(&recs), &mut buf, &mut body));
    });
    encode(&recs, &mut buf, &mut body);
    let frame = Bytes::from(buf.clone());
    g.bench_function("decode", |b| {
        b.iter(|| {
            let h = decode_header(black_box(&frame), SALT).expect("valid header");
            let body = frame.slice(FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.body_len());
            assert!(body_ok(&h, &body, SALT));
            decode_data_body(&h, &body)
                .expect("valid body")
                .records
                .len()
        });
    });
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = std::env::temp_dir().join(format!("streamstore-bench-idx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let n = 65_536u64;
    let store = rt.block_on(async {
        let opts = LocalOptions::default().durability(Durability::Buffered);
        let store = LocalStore::open(&dir, opts).await.expect("open");
        let id = StreamId::new("s").expect("id");
        let recs = records(64, 1024);
        for _ in 0..n / 1000 + 1 {
            let batch: Vec<Bytes> = recs.iter().cycle().take(1000).cloned().collect();
            store
                .append(&id, batch, AppendOptions::default())
                .await
                .expect("append");
        }
        store
    });
    let id = StreamId::new("s").expect("id");
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    c.bench_function("local_read_1_at_random_offset_of_65536", |b| {
        b.iter(|| {
            let from = rng.gen_range(0..n);
            rt.block_on(store.read(&id, from, ReadOptions::limit(1)))
                .expect("read")
                .records
                .len()
        });
    });
    rt.block_on(store.close()).expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}

fn memory_append(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let id = StreamId::new("s").expect("id");
    let rec = records(1, 100);
    c.bench_function("memory_append_1x100B", |b| {
        // A fresh store per measurement, so the stream does not grow without bound.
        b.iter_custom(|iters| {
            let store: Arc<dyn StreamStore> = Arc::new(MemoryStore::new());
            let t0 = std::time::Instant::now();
            for _ in 0..iters {
                rt.block_on(store.append(&id, rec.clone(), AppendOptions::default()))
                    .expect("append");
            }
            t0.elapsed()
        });
    });
}

criterion_group!(benches, checksums, framing, index_lookup, memory_append);
criterion_main!(benches);
