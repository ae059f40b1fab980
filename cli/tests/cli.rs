//! The `streamstore` binary end to end on the local engine: JSON lines out, typed errors to
//! stderr with a non-zero exit code.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamstore"))
        .arg("--store")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("streamstore starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
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
