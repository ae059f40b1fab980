//! The `streamstore` binary end to end on the local engine: JSON lines out, typed errors to
//! stderr with a non-zero exit code.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    run_bytes(dir, args, stdin.as_bytes())
}

fn run_bytes(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamstore"))
        .arg("--store")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("streamstore starts");
    child.stdin.take().expect("stdin").write_all(stdin).ok(); // the command may refuse the input and exit before reading all of it

    child.wait_with_output().expect("streamstore finishes")
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect()
}

#[test]
fn append_read_info_seal_verify() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let out = run(&dir, &["append", "job/42"], "step 1\nstep 2\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acks = lines(&out);
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[1]["stream"], "job/42");
    assert_eq!(acks[1]["offset"], 1);

    let out = run(&dir, &["read", "job/42", "--from", "1"], "");
    let recs = lines(&out);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["payload"], "step 2");
    assert!(recs[0]["timestamp"].as_u64().is_some_and(|t| t > 0));

    let out = run(&dir, &["seal", "job/42"], "");
    assert_eq!(lines(&out)[0]["sealed"], true);
    let out = run(&dir, &["append", "job/42"], "late\n");
    assert!(!out.status.success(), "append after seal succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sealed"));

    let out = run(&dir, &["info", "job/42"], "");
    let info = &lines(&out)[0];
    assert_eq!(
        (info["next_offset"].as_u64(), info["sealed"].as_bool()),
        (Some(2), Some(true))
    );

    let out = run(&dir, &["verify"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = lines(&out).pop().expect("a summary line");
    assert_eq!(summary["problems"], 0);
    assert_eq!(summary["records"], 2);
}

#[test]
fn binary_payloads_are_base64_and_expectations_are_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let file = tmp.path().join("blob");
    std::fs::write(&file, [0xff, 0x00, 0xfe]).expect("write blob");
    let out = run(
        &dir,
        &[
            "append",
            "s",
            file.to_str().expect("utf-8 path"),
            "--expect",
            "none",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&dir, &["read", "s"], "");
    let rec = &lines(&out)[0];
    assert_eq!(rec["encoding"], "base64");
    assert_eq!(rec["payload"], "/wD+");

    let out = run(&dir, &["append", "s", "--expect", "5"], "x\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("conflict"));
    let out = run(&dir, &["append", "bad\u{1}id"], "x\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid argument"));
}

#[test]
fn idempotency_key_makes_a_rerun_write_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    for _ in 0..2 {
        let out = run(&dir, &["append", "s", "--key", "batch-7"], "a\nb\n");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let offsets: Vec<_> = lines(&out).iter().map(|l| l["offset"].as_u64()).collect();
        assert_eq!(offsets, vec![Some(0), Some(1)]);
    }
    let out = run(&dir, &["read", "s"], "");
    assert_eq!(lines(&out).len(), 2);
}

#[test]
fn durable_reads_on_the_local_engine_and_unsupported_on_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let out = run(&dir, &["append", "s"], "a\nb\n");
    assert!(out.status.success());
    let out = run(&dir, &["read", "s", "--durable"], "");
    let payloads: Vec<_> = lines(&out).iter().map(|r| r["payload"].clone()).collect();
    assert_eq!(payloads, ["a", "b"]);

    let out = run(
        std::path::Path::new("memory:"),
        &["read", "s", "--durable"],
        "",
    );
    assert!(!out.status.success(), "memory served a durable read");
    assert!(String::from_utf8_lossy(&out.stderr).contains("durable"));
}

/// Line input is bytes with a cap: a line over the record limit is refused without being read
/// whole, the error names the line and what was appended before it; non-UTF-8 bytes and `\r` are
/// kept as they are.
#[test]
fn append_lines_are_bytes_and_failures_name_the_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut input = b"ok\r\n\xff\xfe\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 2 << 20)); // over the 1 MiB record limit, no newline
    let out = run_bytes(&dir, &["append", "s"], &input);
    assert!(!out.status.success(), "an oversized line was appended");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too large"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("offsets 0 to 1"), "{err}");
    assert_eq!(
        lines(&out).len(),
        2,
        "the two lines before it are acknowledged"
    );

    let out = run(&dir, &["read", "s"], "");
    let recs = lines(&out);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["payload"], "ok\r");
    assert_eq!(recs[1]["encoding"], "base64");
    assert_eq!(recs[1]["payload"], "//4=");
}

/// Limits that a whole run can break are checked before the first append: a key that would
/// grow past the key limit with its `/<line index>` suffix, and an `--atomic` batch over the
/// record-count limit.
#[test]
fn append_limits_are_checked_before_anything_is_appended() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let key = "k".repeat(110);
    let out = run(&dir, &["append", "s", "--key", &key], "a\nb\n");
    assert!(
        !out.status.success(),
        "a key that can pass the limit was accepted"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key is 110 bytes"));

    let many = "r\n".repeat(100_001);
    let out = run(&dir, &["append", "s", "--atomic"], &many);
    assert!(
        !out.status.success(),
        "an --atomic batch over the limit was accepted"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was appended"), "{err}");

    let out = run(&dir, &["info", "s"], "");
    assert!(
        !out.status.success(),
        "the stream exists after refused appends"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
