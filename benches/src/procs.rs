//! Measurements that need a process of their own: recovery after `SIGKILL`, and the resources of
//! many idle streams (a fresh process, so the harness's own allocations do not count).
//!
//! The parent re-runs its own executable with the hidden `child` subcommand; the child prints one
//! line the parent parses.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamstore::{AppendOptions, Durability, StreamId};

use crate::backend::{stream_name, Result};
use crate::systems::open_local;
use crate::workload::payloads;

/// Resident set size and open file descriptors of this process, from `/proc/self`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `VmRSS`, bytes.
    pub rss_bytes: u64,
    /// Entries of `/proc/self/fd`.
    pub open_fds: u64,
}

/// Reads this process's RSS and fd count.
pub fn resources() -> Result<Resources> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let rss_kib = parse_vm_rss(&status).ok_or("no VmRSS in /proc/self/status")?;
    let open_fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(Resources {
        rss_bytes: rss_kib * 1024,
        open_fds,
    })
}

/// The `VmRSS` of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Record size and batch of the recovery fill: 4 KiB records, 64 per append, over 1,000 streams.
const FILL_RECORD: usize = 4096;
const FILL_BATCH: usize = 64;
const FILL_STREAMS: usize = 1000;

/// Child: fills a store in `dir` (in `Interval` mode) until `bytes` payload bytes are acknowledged,
/// prints `filled <bytes>`, and keeps appending until it is killed.
pub async fn child_fill(dir: &Path, bytes: u64) -> Result<()> {
    let store = open_local(dir, Durability::Interval(Duration::from_millis(10))).await?;
    let ids: Arc<Vec<StreamId>> = Arc::new(
        (0..FILL_STREAMS)
            .map(|i| StreamId::new(stream_name(i)))
            .collect::<Result<_, _>>()?,
    );
    let pool = Arc::new(payloads(FILL_RECORD, 16, 5));
    let written = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for a in 0..8usize {
        let (store, ids, pool, written) = (
            Arc::clone(&store),
            Arc::clone(&ids),
            Arc::clone(&pool),
            Arc::clone(&written),
        );
        tasks.push(tokio::spawn(async move {
            for k in 0usize.. {
                let id = &ids[(a + k * 8) % ids.len()];
                let recs: Vec<Bytes> = (0..FILL_BATCH)
                    .map(|i| pool[(i + k) % pool.len()].clone())
                    .collect();
                store.append(id, recs, AppendOptions::default()).await?;
                written.fetch_add((FILL_RECORD * FILL_BATCH) as u64, Ordering::Relaxed);
            }
            Ok::<_, crate::backend::BoxError>(())
        }));
    }
    let mut said = false;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if !said && written.load(Ordering::Relaxed) >= bytes {
            println!("filled {}", written.load(Ordering::Relaxed));
            said = true;
        }
        if tasks.iter().any(tokio::task::JoinHandle::is_finished) {
            for t in tasks {
                t.await??;
            }
            return Err("a fill task stopped".into());
        }
    }
}

/// What a recovery measurement found.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    /// Payload bytes acknowledged before the kill.
    pub bytes: u64,
    /// Bytes of the store directory on disk.
    pub disk_bytes: u64,
    /// Time for `LocalStore::open` to return.
    pub open: Duration,
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Fills a store to `bytes` in a child, kills it with `SIGKILL` mid-write, and times the reopen.
pub async fn recovery(exe: &Path, dir: &Path, bytes: u64) -> Result<Recovery> {
    let _ = std::fs::remove_dir_all(dir);
    let mut child = Command::new(exe)
        .args(["child", "fill", "--dir"])
        .arg(dir)
        .arg("--bytes")
        .arg(bytes.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    let filled: u64 = line
        .strip_prefix("filled ")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("child said {line:?}"))?;
    // Let it keep writing a little so the kill lands in the middle of appends.
    tokio::time::sleep(Duration::from_millis(100)).await;
    child.kill()?; // SIGKILL
    child.wait()?;
    let disk_bytes = dir_size(dir);
    let t0 = Instant::now();
    let store = open_local(dir, Durability::Sync).await?;
    let open = t0.elapsed();
    store.close().await?;
    std::fs::remove_dir_all(dir)?;
    Ok(Recovery {
        bytes: filled,
        disk_bytes,
        open,
    })
}

/// Child: creates `streams` streams with one 100-byte record each, or (with `reopen`) opens the
/// existing store; then prints `resources <rss> <fds> <baseline_rss> <baseline_fds>`.
pub async fn child_idle(dir: &Path, streams: usize, reopen: bool) -> Result<()> {
    let base = resources()?;
    let store = open_local(dir, Durability::Sync).await?;
    if !reopen {
        let ids: Arc<Vec<StreamId>> = Arc::new(
            (0..streams)
                .map(|i| StreamId::new(stream_name(i)))
                .collect::<Result<_, _>>()?,
        );
        let payload = Bytes::from(vec![7u8; 100]);
        let mut tasks = Vec::new();
        for a in 0..64usize {
            let (store, ids, payload) = (Arc::clone(&store), Arc::clone(&ids), payload.clone());
            tasks.push(tokio::spawn(async move {
                for id in ids.iter().skip(a).step_by(64) {
                    store
                        .append(id, vec![payload.clone()], AppendOptions::default())
                        .await?;
                }
                Ok::<_, crate::backend::BoxError>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
    }
    // Idle: let background work (checkpoints, sweeps) settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = resources()?;
    println!(
        "resources {} {} {} {}",
        r.rss_bytes, r.open_fds, base.rss_bytes, base.open_fds
    );
    store.close().await?;
    Ok(())
}

/// Resources measured in a child for `streams` idle streams: (after creating, after reopening,
/// the bare process before opening).
pub async fn idle(
    exe: &Path,
    dir: &Path,
    streams: usize,
) -> Result<(Resources, Resources, Resources)> {
    let _ = std::fs::remove_dir_all(dir);
    let run = |reopen: bool| -> Result<(Resources, Resources)> {
        let mut cmd = Command::new(exe);
        cmd.args(["child", "idle", "--dir"])
            .arg(dir)
            .arg("--streams")
            .arg(streams.to_string());
        if reopen {
            cmd.arg("--reopen");
        }
        let out = cmd.stderr(Stdio::inherit()).output()?;
        if !out.status.success() {
            return Err(format!("idle child failed: {}", out.status).into());
        }
        let text = String::from_utf8(out.stdout)?;
        let nums: Vec<u64> = text
            .lines()
            .find_map(|l| l.strip_prefix("resources "))
            .ok_or_else(|| format!("idle child said {text:?}"))?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        match nums.as_slice() {
            [rss, fds, brss, bfds] => Ok((
                Resources {
                    rss_bytes: *rss,
                    open_fds: *fds,
                },
                Resources {
                    rss_bytes: *brss,
                    open_fds: *bfds,
                },
            )),
            _ => Err(format!("idle child said {text:?}").into()),
        }
    };
    let (created, base) = tokio::task::block_in_place(|| run(false))?;
    let (reopened, _) = tokio::task::block_in_place(|| run(true))?;
    std::fs::remove_dir_all(dir)?;
    Ok((created, reopened, base))
}

/// The path of this executable (children are started from it).
pub fn current_exe() -> Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  10 kB\nVmRSS:\t   12345 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(resources().is_ok_and(|r| r.rss_bytes > 0 && r.open_fds > 0));
    }
}
