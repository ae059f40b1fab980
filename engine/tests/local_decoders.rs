//! A quick, deterministic stand-in for the `fuzz/` target: random and mutated inputs to every
//! decoder of the on-disk format must never panic.

use rand::{Rng, SeedableRng};

#[test]
fn decoders_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // A valid segment header followed by a valid frame, to mutate from.
    let tmp = tempfile::tempdir().unwrap();
    let store = streamkeep::LocalStore::open_blocking(tmp.path(), Default::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use streamkeep::StreamStore;
        let id = streamkeep::StreamId::new("x").unwrap();
        let key = streamkeep::IdempotencyKey::new(&b"k"[..]).unwrap();
        let opts = streamkeep::AppendOptions::default().with_key(key);
        store
            .append(
                &id,
                vec![bytes::Bytes::from("hello"), bytes::Bytes::new()],
                opts,
            )
            .await
            .unwrap();
        store.close().await.unwrap();
    });
    let seg = std::fs::read(tmp.path().join("segments/00000000000000000001.seg")).unwrap();
    let seeds = [
        seg[..512].to_vec(),
        std::fs::read(tmp.path().join("CHECKPOINT")).unwrap(),
    ];
    let mut accepted = 0;
    for _ in 0..20_000 {
        let len = rng.gen_range(0..300);
        let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        accepted += streamkeep::local::fuzz_decoders(&junk);
    }
    for seed in &seeds {
        for _ in 0..20_000 {
            let mut m = seed.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..m.len());
                m[i] = rng.gen();
            }
            if rng.gen_ratio(1, 4) {
                m.truncate(rng.gen_range(0..m.len()));
            }
            accepted += streamkeep::local::fuzz_decoders(&m);
        }
        assert!(streamkeep::local::fuzz_decoders(seed) > 0);
    }
    assert!(accepted > 0);
}
