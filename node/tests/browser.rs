//! A real browser follows a stream: headless Chromium (Debian's `chromium`, installed by
//! `scripts/chromium.sh`) opens the node's `GET /` page for a stream, records are appended while
//! it is open, the stream is sealed, and the page's DOM must show every record. A screenshot is
//! kept under the test's output directory for people to look at.
//!
//! Chromium is found through `STREAMSTORE_CHROMIUM` or `chromium` on the PATH; if neither exists
//! the test says so and passes without running (`scripts/test.sh` installs it first).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{client, enc, NodeProc};

fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("STREAMSTORE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
            .find(|p| p.is_file())
    })
}

fn chromium_command(bin: &PathBuf, profile: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=900,700",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null())
    .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn a_browser_page_shows_records_as_they_are_appended() {
    let Some(bin) = chromium() else {
        let _ = writeln!(
            std::io::stdout(),
            "browser: skipped (no chromium; scripts/chromium.sh installs it)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let node = NodeProc::start(&["--store", store.to_str().expect("utf-8")]).await;
    let http = client();
    let stream = "web/demo <b>1</b>";
    let append = |text: String| {
        let url = node.url(&format!("/v1/streams/{}/records", enc(stream)));
        let http = http.clone();
        async move {
            let r = http.post(url).body(text).send().await.expect("append");
            assert_eq!(r.status(), 200);
        }
    };
    // History before the page opens, live records while it is open, then the seal.
    for i in 0..3 {
        append(format!("before {i}")).await;
    }
    let page = node.url(&format!("/?stream={}", enc(stream)));
    let mut dump = chromium_command(&bin, &dir.path().join("profile-dump"));
    // Virtual time waits for pending fetches: the dump comes once the SSE stream has ended.
    dump.args(["--dump-dom", "--virtual-time-budget=20000"])
        .arg(&page)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let browser = dump.spawn().expect("start chromium");
    // The page's EventSource is connected before the live records exist.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while node.metric(&http, "streamstore_node_sse_connections").await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the page never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..3 {
        append(format!("live {i} <script>alert(1)</script>")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sealed = http
        .post(node.url(&format!("/v1/streams/{}/seal", enc(stream))))
        .send()
        .await
        .expect("seal");
    assert_eq!(sealed.status(), 200);
    let output = tokio::time::timeout(Duration::from_secs(60), browser.wait_with_output())
        .await
        .expect("chromium finished in 60 s")
        .expect("chromium ran");
    let dom = String::from_utf8_lossy(&output.stdout);
    for i in 0..3 {
        assert!(
            dom.contains(&format!("before {i}")),
            "record 'before {i}' missing:\n{dom}"
        );
        // Payloads are text, never markup: the tag shows escaped.
        assert!(
            dom.contains(&format!("live {i} &lt;script&gt;alert(1)&lt;/script&gt;")),
            "record 'live {i}' missing or not escaped:\n{dom}"
        );
    }
    assert!(
        dom.contains("ended: 6 records"),
        "the page did not see the end:\n{dom}"
    );
    assert!(dom.contains("id=\"record-5\""), "{dom}");

    // A screenshot of the finished page for people to look at.
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-browser");
    std::fs::create_dir_all(&out).expect("output dir");
    let shot = out.join("page.png");
    let _ = std::fs::remove_file(&shot);
    let status = chromium_command(&bin, &dir.path().join("profile-shot"))
        .args(["--virtual-time-budget=10000"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&page)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .expect("chromium screenshot");
    assert!(status.success(), "{status:?}");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1000, "no screenshot at {}", shot.display());
    // Written to stdout directly, so it shows even though libtest captures a passing test's prints.
    let _ = writeln!(
        std::io::stdout(),
        "browser: 6 records shown live; screenshot {}",
        shot.display()
    );
}
