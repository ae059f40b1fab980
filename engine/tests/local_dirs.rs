//! Directories (issue 13, scenarios 3 and 4): new directories are made durable in their parent,
//! `quarantine/` is private (0700) and its copies survive a power cut.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use streamkeep::implementor::fs::{FileHandle, FileSystem, StdFs};
use streamkeep::{AppendOptions, LocalOptions, LocalStore, StreamId, StreamStore};

/// The real file system, recording the directories it syncs.
#[derive(Default)]
struct Recording(Mutex<Vec<PathBuf>>);

impl Recording {
    fn synced(&self) -> Vec<PathBuf> {
        self.0.lock().unwrap().clone()
    }
}

impl FileSystem for Recording {
    fn open(&self, path: &Path, write: bool) -> io::Result<Arc<dyn FileHandle>> {
        StdFs.open(path, write)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.lock().unwrap().push(dir.to_path_buf());
        StdFs.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        StdFs.exists(path)
    }
}

/// A fresh store in a directory whose parents do not exist yet: every new directory's parent is
/// synced, top down (it failed when only the segment directory's own entries were synced).
#[tokio::test]
async fn new_directories_are_synced_in_their_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a").join("data");
    let fs = Arc::new(Recording::default());
    let options = LocalOptions::default().fs(fs.clone());
    let store = LocalStore::open(&dir, options).await.unwrap();
    store.close().await.unwrap();
    let synced = fs.synced();
    let at = |p: &Path| synced.iter().position(|s| s == p);
    let (top, parent, data) = (at(tmp.path()), at(&tmp.path().join("a")), at(&dir));
    assert!(
        top.is_some() && parent.is_some() && data.is_some(),
        "directory syncs: {synced:?}"
    );
    assert!(top < parent && parent < data, "not top down: {synced:?}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("segments")), 0o700);
}

/// Damage in the middle of the log is copied to `quarantine/`, which is created private (0700,
/// it holds payload bytes) and synced in the data directory, as is the copy in it (it failed with
/// the umask's mode and no directory sync).
#[tokio::test]
async fn quarantine_is_private_and_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = LocalStore::open(&dir, LocalOptions::default())
        .await
        .unwrap();
    let s = StreamId::new("s").unwrap();
    for n in 0..3u8 {
        // One group each: each later group starts with a `Commit` frame that proves the earlier
        // ones durable, so damage in the first is damage in the middle.
        let payload = Bytes::from(vec![b'A' + n; 300]);
        store
            .append(&s, vec![payload], AppendOptions::default())
            .await
            .unwrap();
    }
    store.abandon().await;
    drop(store);
    let seg_dir = dir.join("segments");
    let name = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&name).unwrap();
    let at = bytes.windows(300).position(|w| w == [b'A'; 300]).unwrap();
    bytes[at + 10] ^= 0xFF;
    std::fs::write(&name, &bytes).unwrap();
    let fs = Arc::new(Recording::default());
    let options = LocalOptions::default().fs(fs.clone());
    let store = LocalStore::open(&dir, options).await.unwrap();
    let report = store.recovery_report();
    assert_eq!(report.quarantined.len(), 1, "{report:#?}");
    let qdir = dir.join("quarantine");
    let mode = std::fs::metadata(&qdir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "quarantine/ is readable by others");
    let synced = fs.synced();
    assert!(
        synced.contains(&dir),
        "quarantine/ not synced in the data directory: {synced:?}"
    );
    assert!(
        synced.contains(&qdir),
        "the quarantined copy not synced: {synced:?}"
    );
    store.close().await.unwrap();
}

/// Opens `dir` and expects a refusal naming `what`.
async fn refused(dir: &Path, what: &str) {
    let e = LocalStore::open(dir, LocalOptions::default())
        .await
        .err()
        .unwrap_or_else(|| panic!("{} was opened ({what})", dir.display()));
    assert_eq!(e.kind(), streamkeep::ErrorKind::InvalidArgument, "{e}");
    assert!(e.message().contains(what), "{e}");
}

/// A store made and closed in `dir`.
async fn made(dir: &Path) {
    let store = LocalStore::open(dir, LocalOptions::default())
        .await
        .unwrap();
    store
        .append(
            &StreamId::new("s").unwrap(),
            vec![Bytes::from("x")],
            AppendOptions::default(),
        )
        .await
        .unwrap();
    store.close().await.unwrap();
}

/// Issue 13, scenario 4: a data directory writable by group or others, or holding a symlink (in
/// it or in `segments/`), is refused with a clear error, and the symlink's target is untouched.
/// It failed: such directories were opened as they were (and `LOCK` followed its symlink).
#[tokio::test]
async fn hostile_directories_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    made(&dir).await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    refused(&dir, "writable by group or others").await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(dir.join("segments"), std::fs::Permissions::from_mode(0o702)).unwrap();
    refused(&dir, "writable by group or others").await;
    std::fs::set_permissions(dir.join("segments"), std::fs::Permissions::from_mode(0o700)).unwrap();
    made(&dir).await;

    // `LOCK` replaced by a symlink to a file that must not be truncated.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("LOCK")).unwrap();
    refused(&dir, "symlink").await;
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    std::fs::remove_file(dir.join("LOCK")).unwrap();

    // A symlink among the segments.
    std::os::unix::fs::symlink(
        &victim,
        dir.join("segments").join("00000000000000000099.seg"),
    )
    .unwrap();
    refused(&dir, "symlink").await;
    std::fs::remove_file(dir.join("segments").join("00000000000000000099.seg")).unwrap();
    made(&dir).await;
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

/// A data directory owned by another user is refused (run as root, which can hand it over;
/// otherwise the case cannot be set up and the test says so).
#[tokio::test]
async fn a_directory_owned_by_another_user_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    made(&dir).await;
    if std::os::unix::fs::chown(&dir, Some(54_321), None).is_err() {
        eprintln!("skipped: this user cannot chown the directory to another uid");
        return;
    }
    refused(&dir, "owned by uid 54321").await;
}
