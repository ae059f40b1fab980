//! The `Watcher` over an in-memory `HeadSource`, on Tokio's paused clock: thousands of waiters, no
//! missed wake-up, per-tick cost of the batch reads only, jitter, and wake-all on close.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use streamkeep::implementor::wait::{Changes, HeadSource, Wakeup, WatchOptions, Watcher};
use streamkeep::{Error, ErrorKind, Result, StreamId};
use tokio::time::Instant;

/// Heads kept in memory, as another process would change them (no `notify`).
#[derive(Default)]
struct Heads {
    /// Version per stream; absent streams do not exist.
    marks: Mutex<HashMap<StreamId, u64>>,
    /// When each version of each stream was written.
    changed_at: Mutex<HashMap<(StreamId, u64), Instant>>,
    /// Every `marks` call: when, and how many streams it asked for.
    calls: Mutex<Vec<(Instant, usize)>>,
    /// How long a `marks` call takes.
    latency: Duration,
    fail: AtomicBool,
}

impl Heads {
    fn with_latency(latency: Duration) -> Arc<Self> {
        Arc::new(Heads {
            latency,
            ..Heads::default()
        })
    }

    fn get(&self, stream: &StreamId) -> u64 {
        self.marks.lock().unwrap().get(stream).copied().unwrap_or(0)
    }

    fn bump(&self, stream: &StreamId) -> u64 {
        let mut marks = self.marks.lock().unwrap();
        let v = marks.entry(stream.clone()).or_insert(0);
        *v += 1;
        let v = *v;
        drop(marks);
        self.changed_at
            .lock()
            .unwrap()
            .insert((stream.clone(), v), Instant::now());
        v
    }

    fn delete(&self, stream: &StreamId) {
        self.marks.lock().unwrap().remove(stream);
    }

    fn changed_at(&self, stream: &StreamId, version: u64) -> Instant {
        self.changed_at.lock().unwrap()[&(stream.clone(), version)]
    }

    fn calls(&self) -> Vec<(Instant, usize)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl HeadSource for Heads {
    async fn marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), streams.len()));
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Unavailable, "head read failed"));
        }
        let marks = self.marks.lock().unwrap();
        Ok(streams
            .iter()
            .filter_map(|s| marks.get(s).map(|m| (s.clone(), *m)))
            .collect())
    }
}

fn ids(n: usize) -> Vec<StreamId> {
    (0..n)
        .map(|i| StreamId::new(format!("s/{i}")).unwrap())
        .collect()
}

fn options(tick_ms: u64, jitter: f64, batch: usize) -> WatchOptions {
    WatchOptions {
        tick: Duration::from_millis(tick_ms),
        jitter,
        batch,
        settle: Duration::from_millis(2),
        full_pass: Duration::from_secs(2),
    }
}

/// Has the watcher read `streams` once, so their entries have baselines (the first read of a
/// new entry wakes its waiters whatever it finds).
async fn warm(watcher: &Watcher, streams: &[StreamId]) {
    for s in streams {
        drop(watcher.arm(s));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Whether the wake-up has fired (outside Tokio's cooperative budget, which would report a ready
/// `watch` as pending after 128 polls in one task turn).
fn ready(w: &mut Wakeup<'static>) -> bool {
    tokio::task::unconstrained(w).now_or_never().is_some()
}

/// 2,000 readers wait on their streams while another "process" bumps them in five rounds: every
/// reader sees every round, each change within one jittered tick plus the batch reads.
#[tokio::test(start_paused = true)]
async fn no_missed_wakeup_with_thousands_of_waiters() {
    const W: usize = 2000;
    const ROUNDS: u64 = 5;
    let heads = Heads::with_latency(Duration::from_millis(1));
    let opts = options(50, 0.2, 256);
    let watcher = Arc::new(Watcher::new(heads.clone(), opts));
    let streams = ids(W);
    let mut readers = Vec::new();
    for (i, stream) in streams.clone().into_iter().enumerate() {
        let (watcher, heads) = (Arc::clone(&watcher), Arc::clone(&heads));
        let start = Duration::from_micros(u64::try_from(i).unwrap() * 50);
        readers.push(tokio::spawn(async move {
            // Readers start during the first round, so first reads race with changes.
            tokio::time::sleep(start).await;
            // The waiting-read loop: arm, read, wait; the worst delay from a change to the
            // read that sees it.
            let (mut seen, mut worst) = (None, Duration::ZERO);
            while seen < Some(ROUNDS) {
                let wakeup = watcher.arm(&stream);
                let v = heads.get(&stream);
                if let Some(seen) = seen.filter(|s| v > *s) {
                    worst = worst.max(heads.changed_at(&stream, seen + 1).elapsed());
                }
                if seen < Some(v) {
                    seen = Some(v);
                    continue;
                }
                wakeup.await;
            }
            worst
        }));
    }
    for round in 0..ROUNDS {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Spread each round over 100 ms so changes land before, during and after head reads.
        for (i, stream) in streams.iter().enumerate() {
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            heads.bump(stream);
        }
    }
    let mut worst = Duration::ZERO;
    for r in readers {
        let w = tokio::time::timeout(Duration::from_secs(5), r)
            .await
            .expect("a reader missed a wake-up")
            .unwrap();
        worst = worst.max(w);
    }
    // One jittered tick (60 ms); the rest of the pass under way when the change landed and the
    // next pass up to the stream's batch (8 reads of 1 ms each); a read of new entries under way
    // when the tick fell due (2 ms settle, up to 8 reads); 10 ms to spare. A missed wake-up
    // waits for the next round, 300 ms later.
    let bound = Duration::from_millis(60 + 2 * 8 + 2 + 8 + 10);
    assert!(worst <= bound, "worst wake-up delay {worst:?} > {bound:?}");
    assert!(worst > Duration::ZERO);
    let stats = watcher.stats();
    let per_call = heads.calls().iter().map(|c| c.1).max().unwrap();
    assert!(per_call <= 256, "a head read asked for {per_call} streams");
    assert_eq!(stats.errors, 0);
}

/// With waiters and no changes, each tick costs exactly the batch reads (W / batch calls), and
/// wakes nobody; the cost does not depend on how many readers wait on one stream.
#[tokio::test(start_paused = true)]
async fn cost_per_tick_is_the_batch_reads() {
    let heads = Heads::with_latency(Duration::ZERO);
    let streams = ids(1000);
    for s in &streams {
        heads.bump(s);
    }
    let watcher = Watcher::new(heads.clone(), options(100, 0.0, 100));
    // Three readers per stream: 3,000 waiters on 1,000 streams.
    let mut wakeups: Vec<_> = streams
        .iter()
        .flat_map(|s| [watcher.arm(s), watcher.arm(s), watcher.arm(s)])
        .collect();
    // The first read of new entries wakes them once (module docs); re-arm after it.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(wakeups.iter_mut().all(ready));
    assert_eq!(watcher.stats().reads, 10);
    let mut wakeups: Vec<_> = streams
        .iter()
        .flat_map(|s| [watcher.arm(s), watcher.arm(s), watcher.arm(s)])
        .collect();
    let before = watcher.stats();
    let calls_before = heads.calls().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = watcher.stats();
    let calls: Vec<_> = heads.calls()[calls_before..].to_vec();
    // Ten ticks in the second, one of them maybe at its edge.
    let reads = after.reads - before.reads;
    assert!(
        (100..=110).contains(&reads),
        "{reads} head reads in 10 ticks"
    );
    assert!(
        calls.iter().all(|c| c.1 == 100),
        "every read is one full batch"
    );
    assert_eq!(after.wakes, before.wakes, "nothing moved, nobody woken");
    assert!(wakeups.iter_mut().all(|w| !ready(w)));
    assert_eq!(watcher.watched(), 1000);

    // One stream moves: its three waiters wake, no one else.
    heads.bump(&streams[7]);
    tokio::time::sleep(Duration::from_millis(101)).await;
    let woken: Vec<usize> = wakeups
        .iter_mut()
        .enumerate()
        .filter_map(|(i, w)| ready(w).then_some(i))
        .collect();
    assert_eq!(woken, vec![21, 22, 23]);

    // With no waiter left, entries go after two ticks and the watcher stops reading.
    drop(wakeups);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(watcher.watched(), 0);
    let idle = watcher.stats().reads;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(watcher.stats().reads, idle, "no waiters, no reads");
}

/// The pause between passes is `tick × (1 ± jitter)`, and varies.
#[tokio::test(start_paused = true)]
async fn ticks_are_jittered() {
    let heads = Heads::with_latency(Duration::ZERO);
    let stream = StreamId::new("jittered").unwrap();
    let watcher = Watcher::new(heads.clone(), options(100, 0.5, 100));
    let _first = watcher.arm(&stream);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _wait = watcher.arm(&stream);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = heads.calls();
    let gaps: Vec<Duration> = calls[1..].windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.len() >= 30, "{} passes in 5 s", gaps.len());
    let (lo, hi) = (Duration::from_millis(50), Duration::from_millis(150));
    assert!(gaps.iter().all(|g| (lo..=hi).contains(g)), "{gaps:?}");
    let distinct: std::collections::BTreeSet<_> = gaps.iter().collect();
    assert!(distinct.len() > gaps.len() / 2, "{gaps:?}");
}

/// With a jitter, watchers started together make their first passes at different points of
/// the first tick (their phases), not all one tick after the start.
#[tokio::test(start_paused = true)]
async fn watchers_started_together_are_out_of_step() {
    let stream = StreamId::new("phase").unwrap();
    let mut firsts = Vec::new();
    for _ in 0..8 {
        let heads = Heads::with_latency(Duration::ZERO);
        let watcher = Watcher::new(heads.clone(), options(1000, 0.05, 100));
        let started = tokio::time::Instant::now();
        let _w = watcher.arm(&stream);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The arm's own first read comes at once (settle); the passes after it.
        let calls = heads.calls();
        assert!(calls.len() >= 2, "{calls:?}");
        firsts.push(calls[1].0 - started);
    }
    assert!(
        firsts.iter().all(|f| *f <= Duration::from_millis(1000)),
        "{firsts:?}"
    );
    let distinct: std::collections::BTreeSet<_> = firsts.iter().collect();
    assert!(distinct.len() >= 6, "first passes not spread: {firsts:?}");
}

/// `set_tick` shortens the pause at once.
#[tokio::test(start_paused = true)]
async fn set_tick_takes_effect_at_once() {
    let heads = Heads::with_latency(Duration::ZERO);
    let stream = StreamId::new("retick").unwrap();
    let watcher = Watcher::new(heads.clone(), options(60_000, 0.0, 100));
    warm(&watcher, std::slice::from_ref(&stream)).await;
    let mut w = watcher.arm(&stream);
    heads.bump(&stream);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!ready(&mut w), "the one-minute tick has not come");
    watcher.set_tick(Duration::from_millis(100));
    assert_eq!(watcher.options().tick, Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(101)).await;
    assert!(ready(&mut w));
}

/// `close` wakes every waiter at once and later arms complete at once; dropping does too.
#[tokio::test(start_paused = true)]
async fn close_wakes_all() {
    let heads = Heads::with_latency(Duration::ZERO);
    let streams = ids(1500);
    let watcher = Arc::new(Watcher::new(heads.clone(), options(1000, 0.0, 500)));
    warm(&watcher, &streams).await;
    let waiters: Vec<_> = streams
        .iter()
        .map(|s| tokio::spawn(watcher.arm(s)))
        .collect();
    tokio::task::yield_now().await;
    watcher.close();
    for w in waiters {
        tokio::time::timeout(Duration::from_millis(1), w)
            .await
            .expect("close woke every waiter")
            .unwrap();
    }
    assert!(ready(&mut watcher.arm(&streams[0])));
    let reads = watcher.stats().reads;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        watcher.stats().reads,
        reads,
        "a closed watcher reads nothing"
    );

    let dropped = Watcher::new(heads, options(1000, 0.0, 500));
    let mut w = dropped.arm(&streams[0]);
    drop(dropped);
    assert!(ready(&mut w));
}

/// `notify`, `notify_each` and `wake_all` wake at once, without waiting for a tick; a deleted
/// stream and a failed head read wake their waiters at the next tick.
#[tokio::test(start_paused = true)]
async fn notify_deletes_and_errors() {
    let heads = Heads::with_latency(Duration::ZERO);
    let streams = ids(4);
    for s in &streams {
        heads.bump(s);
    }
    let watcher = Watcher::new(heads.clone(), options(1000, 0.0, 100));
    warm(&watcher, &streams).await;
    let arm_all = || -> Vec<Wakeup<'static>> { streams.iter().map(|s| watcher.arm(s)).collect() };

    let mut w = arm_all();
    watcher.notify(&streams[1]);
    watcher.notify_each([&streams[2], &streams[3]]);
    let woken: Vec<bool> = w.iter_mut().map(ready).collect();
    assert_eq!(woken, [false, true, true, true]);
    watcher.wake_all();
    assert!(ready(&mut w[0]));

    let mut w = arm_all();
    heads.delete(&streams[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!ready(&mut w[0]), "no tick yet");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let woken: Vec<bool> = w.iter_mut().map(ready).collect();
    assert_eq!(
        woken,
        [true, false, false, false],
        "only the deleted stream"
    );

    let mut w = arm_all();
    heads.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(w.iter_mut().all(ready), "a failed read wakes its batch");
    assert!(watcher.stats().errors >= 1);
    // After the failure the baselines still hold: no spurious wake once reads succeed again.
    heads.fail.store(false, Ordering::SeqCst);
    let mut w = arm_all();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(w.iter_mut().all(|w| !ready(w)));
}

/// [`Heads`] with a change index: a log of the streams changed, the cursor being its length.
/// `bump_unlogged` is a change the index misses (a late stamp beyond the source's margin).
struct Indexed {
    heads: Arc<Heads>,
    log: Mutex<Vec<StreamId>>,
    /// Answer "too many to list".
    overflow: AtomicBool,
    /// How long a `changes` call takes.
    change_latency: Duration,
    /// When each `changes` call started.
    change_calls: Mutex<Vec<Instant>>,
}

impl Indexed {
    fn new() -> Arc<Self> {
        Self::with_change_latency(Duration::ZERO)
    }

    fn with_change_latency(change_latency: Duration) -> Arc<Self> {
        Arc::new(Indexed {
            heads: Heads::with_latency(Duration::ZERO),
            log: Mutex::new(Vec::new()),
            overflow: AtomicBool::new(false),
            change_latency,
            change_calls: Mutex::new(Vec::new()),
        })
    }

    fn bump(&self, stream: &StreamId) {
        self.heads.bump(stream);
        self.log.lock().unwrap().push(stream.clone());
    }

    fn bump_unlogged(&self, stream: &StreamId) {
        self.heads.bump(stream);
    }
}

#[async_trait]
impl HeadSource for Indexed {
    async fn marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.heads.marks(streams).await
    }

    fn tracks_changes(&self) -> bool {
        true
    }

    async fn changes(&self, since: Option<u64>) -> Result<Changes> {
        self.change_calls.lock().unwrap().push(Instant::now());
        if !self.change_latency.is_zero() {
            tokio::time::sleep(self.change_latency).await;
        }
        let log = self.log.lock().unwrap();
        let cursor = u64::try_from(log.len()).unwrap();
        if self.overflow.load(Ordering::SeqCst) {
            return Ok(Changes {
                cursor,
                marks: None,
            });
        }
        let from = usize::try_from(since.unwrap_or(cursor)).unwrap();
        let marks = self.heads.marks.lock().unwrap();
        Ok(Changes {
            cursor,
            marks: Some(
                log[from..]
                    .iter()
                    .map(|s| (s.clone(), marks.get(s).copied()))
                    .collect(),
            ),
        })
    }
}

/// With a change index, a pass reads the changes: a logged change wakes its waiters within a
/// tick whatever W; the safety net, a read of every entry every `full_pass`, is spread over the
/// ticks (each reads its share, about W × tick / `full_pass`), and finds a change the index
/// missed within `full_pass`; and "too many to list" falls back to a read of every entry at
/// once.
#[tokio::test(start_paused = true)]
async fn change_index_reads_only_changes_and_full_pass_is_the_safety_net() {
    let src = Indexed::new();
    let streams = ids(1000);
    for s in &streams {
        src.bump(s);
    }
    let opts = WatchOptions {
        full_pass: Duration::from_secs(5),
        ..options(100, 0.0, 100)
    };
    let watcher = Watcher::new(src.clone(), opts);
    warm(&watcher, &streams).await;
    let arm_all = || -> Vec<Wakeup<'static>> { streams.iter().map(|s| watcher.arm(s)).collect() };
    let mut w = arm_all();
    // The first pass fetches a cursor, then reads every entry (changes before the cursor).
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(watcher.stats().full_passes, 1);
    assert!(w.iter_mut().all(|w| !ready(w)), "nothing moved");
    let calls = src.heads.calls().len();
    let before = watcher.stats();

    src.bump(&streams[7]);
    tokio::time::sleep(Duration::from_millis(101)).await;
    let woken: Vec<usize> = w
        .iter_mut()
        .enumerate()
        .filter_map(|(i, w)| ready(w).then_some(i))
        .collect();
    assert_eq!(woken, vec![7], "the logged change, within a tick");
    let mut w = arm_all();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = watcher.stats();
    let ticks = after.change_reads - before.change_reads;
    assert!((10..=12).contains(&ticks), "{ticks} ticks");
    // Each tick reads its share of the round: 1,000 × 100 ms / 5 s = 20 entries.
    let shares: Vec<usize> = src.heads.calls()[calls..].iter().map(|c| c.1).collect();
    assert!(shares.iter().all(|&n| n <= 21), "{shares:?}");
    let read: usize = shares.iter().sum();
    assert!(
        (200..=250).contains(&read),
        "{read} entries read in {ticks} ticks"
    );
    assert_eq!(
        after.full_passes, 1,
        "the round that started with the first pass"
    );
    assert_eq!(
        after.streams_read - before.streams_read,
        1 + u64::try_from(read).unwrap(),
        "one change reported once, and the shares"
    );

    // Missed by the index: found by the round. `s/3` (223rd in the round's order) was read
    // about 1.1 s into the round that started at 0.1 s, before this change: the next round
    // (from 5.1 s) finds it, not earlier.
    src.bump_unlogged(&streams[3]);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(!ready(&mut w[3]), "not read again yet");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let woken: Vec<usize> = w
        .iter_mut()
        .enumerate()
        .filter_map(|(i, w)| ready(w).then_some(i))
        .collect();
    assert_eq!(woken, vec![3], "the round found the unlogged change");
    assert_eq!(watcher.stats().full_passes, 2);

    // Too many to list: a full pass at the next tick.
    let mut w = arm_all();
    src.overflow.store(true, Ordering::SeqCst);
    src.bump_unlogged(&streams[9]);
    tokio::time::sleep(Duration::from_millis(101)).await;
    assert!(ready(&mut w[9]));
    assert!(!ready(&mut w[8]));
    assert_eq!(watcher.stats().full_passes, 3);
}

/// An entry created during a round joins its end: a change the index misses is found by that
/// round (within `full_pass` of the entry's first read), not by the next one.
#[tokio::test(start_paused = true)]
async fn an_entry_created_during_a_round_is_read_before_it_ends() {
    let src = Indexed::new();
    let streams = ids(1000);
    // After every `s/<digits>` in the round's order.
    let late = StreamId::new("s/late").unwrap();
    for s in streams.iter().chain([&late]) {
        src.bump(s);
    }
    let opts = WatchOptions {
        full_pass: Duration::from_secs(5),
        ..options(100, 0.0, 100)
    };
    let start = Instant::now();
    let watcher = Watcher::new(src.clone(), opts);
    warm(&watcher, &streams).await;
    let _waiting: Vec<_> = streams.iter().map(|s| watcher.arm(s)).collect();
    // The round starts with the first pass, at 0.1 s, and ends by 5.0 s.
    tokio::time::sleep_until(start + Duration::from_millis(2000)).await;
    assert_eq!(watcher.stats().full_passes, 1);
    warm(&watcher, std::slice::from_ref(&late)).await;
    let mut w = watcher.arm(&late);
    src.bump_unlogged(&late);
    tokio::time::sleep_until(start + Duration::from_millis(4950)).await;
    assert!(!ready(&mut w), "read with the round's last share");
    tokio::time::sleep_until(start + Duration::from_millis(5050)).await;
    assert!(ready(&mut w), "the round found the unlogged change");
    assert_eq!(watcher.stats().full_passes, 1, "before the next round");
}

/// Passes start one tick after the previous one started when they are short (the time of the
/// reads is not added to the pause). Without a change index a pass reads every head, so a pause
/// at least as long as it took follows it (the server is not kept busy by full passes): spacing
/// max(tick, 2 × pass), and no catch-up burst of missed ticks. (With a change index, see the
/// next test: back to back.)
#[tokio::test(start_paused = true)]
async fn passes_start_at_fixed_instants() {
    for (latency_ms, gap_ms) in [(30, 100), (80, 160), (150, 300)] {
        let heads = Heads::with_latency(Duration::from_millis(latency_ms));
        let stream = StreamId::new("fixed").unwrap();
        let watcher = Watcher::new(heads.clone(), options(100, 0.0, 100));
        let _first = watcher.arm(&stream);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _wait = watcher.arm(&stream);
        tokio::time::sleep(Duration::from_secs(4)).await;
        let calls = heads.calls();
        let gaps: Vec<Duration> = calls[2..].windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.len() >= 10, "{} passes in 4 s", gaps.len());
        let want = Duration::from_millis(gap_ms);
        assert!(
            gaps.iter().all(|g| *g == want),
            "latency {latency_ms} ms: {gaps:?}"
        );
    }
}

/// With a change index whose read takes 1.5 ticks, passes follow each other at once (one
/// change read every 150 ms, not every 300 ms), and a waiter that arrives meanwhile still gets
/// its first read promptly (at the next pass's start) although the watcher never pauses.
#[tokio::test(start_paused = true)]
async fn overrunning_passes_run_back_to_back_and_still_read_new_entries() {
    let src = Indexed::with_change_latency(Duration::from_millis(150));
    let streams = ids(10);
    for s in &streams {
        src.bump(s);
    }
    let watcher = Watcher::new(src.clone(), options(100, 0.0, 100));
    warm(&watcher, &streams[..5]).await;
    let _waiting: Vec<_> = streams[..5].iter().map(|s| watcher.arm(s)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let starts = src.change_calls.lock().unwrap().clone();
    let gaps: Vec<Duration> = starts[1..].windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 10, "{} change reads in 2 s", gaps.len());
    assert!(
        gaps.iter().all(|g| *g == Duration::from_millis(150)),
        "{gaps:?}"
    );

    // A new waiter while the passes run back to back: its entry's first read wakes it (module
    // docs) within about one pass, not only when a round of every entry reaches it.
    let mut w = watcher.arm(&streams[7]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ready(&mut w), "the new entry was read");
    // The entry now has a baseline: a logged change wakes it within a pass or two.
    let mut w = watcher.arm(&streams[7]);
    src.bump(&streams[7]);
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert!(ready(&mut w), "the change was reported");
}
