//! The results as a markdown table, an SVG plot and the ratio lines.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::plan::{Results, Settings};
use crate::stats::f;

/// The machine the numbers came from: `nproc`, `free -h`, `uname -r`, the disk of the work dir.
pub fn machine(s: &Settings) -> String {
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| format!("({cmd} unavailable)"))
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let work = s.work_dir.display().to_string();
    format!(
        "- nproc: {}\n- CPU: {cpu}\n- uname -r: {}\n- free -h:\n```\n{}\n```\n- disk of the work dir (`df -hT {work}`, `findmnt`):\n```\n{}\n{}\n```\n",
        run("nproc", &[]),
        run("uname", &["-r"]),
        run("free", &["-h"]),
        run("df", &["-hT", &work]),
        run("findmnt", &["-no", "SOURCE,FSTYPE,OPTIONS", "-T", &work]),
    )
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// The ratio lines a script reads (`ratio <name>: <x>`), headline ratios only, in this order.
pub fn ratio_lines(r: &Results) -> String {
    let mut out = String::new();
    for name in [
        "sync_vs_raw_fdatasync",
        "streams10k_vs_1",
        "local_vs_sqlite_full",
    ] {
        let v = r
            .ratios
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| r.ratio(d))
            .map_or_else(|| "nan".to_string(), |x| format!("{x:.3}"));
        let _ = writeln!(out, "ratio {name}: {v}");
    }
    out
}

/// The markdown report.
pub fn markdown(r: &Results, s: &Settings, command: &str) -> String {
    let sums = r.summaries();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Command: `{command}`  \nMode: {}, {} repetition(s) per case, {} ms warm-up + {} ms measured per case; throughput is the median over repetitions, percentiles are over every call of every repetition.\n",
        if s.full { "full" } else { "quick" },
        s.reps,
        s.warmup.as_millis(),
        s.duration.as_millis()
    );
    let _ = writeln!(out, "### Ratios (median of per-repetition ratios)\n");
    let _ = writeln!(
        out,
        "| ratio | value | target | met | what |\n|---|---|---|---|---|"
    );
    for d in &r.ratios {
        let v = r.ratio(d);
        let (val, met) = match (v, d.target) {
            (Some(x), Some(t)) => (format!("{x:.3}"), if x >= t { "yes" } else { "**no**" }),
            (Some(x), None) => (format!("{x:.3}"), "—"),
            (None, _) => ("not measured".into(), "—"),
        };
        let target = d.target.map_or("—".to_string(), |t| format!("≥ {t:.2}"));
        let _ = writeln!(
            out,
            "| `{}` | {val} | {target} | {met} | {} |",
            d.name, d.what
        );
    }
    let _ = writeln!(out, "\n### Cases\n");
    let _ = writeln!(
        out,
        "| group | system | workload | records/s | MiB/s | p50 | p99 | p99.9 | calls |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (c, _) in &r.cases {
        let Some(x) = sums.get(&c.key) else {
            let what = if r.skipped.iter().any(|(k, _)| *k == c.key) {
                "skipped"
            } else {
                "failed"
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {what} | | | | | |",
                c.group, c.system, c.workload
            );
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
            c.group,
            c.system,
            c.workload,
            fmt_rate(x.records_per_sec),
            x.bytes_per_sec / f(1 << 20),
            fmt_dur(x.latency.p50),
            fmt_dur(x.latency.p99),
            fmt_dur(x.latency.p999),
            x.latency.count
        );
    }
    if !r.recovery.is_empty() {
        let _ = writeln!(
            out,
            "\n### Recovery after SIGKILL (reopen time as data grows)\n\n| acknowledged data | on disk | `LocalStore::open` |\n|---|---|---|"
        );
        for x in &r.recovery {
            let _ = writeln!(
                out,
                "| {:.0} MiB | {:.0} MiB | {} |",
                f(x.bytes) / f(1 << 20),
                f(x.disk_bytes) / f(1 << 20),
                fmt_dur(x.open)
            );
        }
        if let (Some(a), Some(b)) = (r.recovery.first(), r.recovery.last()) {
            let growth = f(b.bytes) / f(a.bytes.max(1));
            let slow = b.open.as_secs_f64() / a.open.as_secs_f64().max(1e-9);
            let _ = writeln!(
                out,
                "\nData grew {growth:.1}×, reopen time {slow:.2}× (target: flat; counted as met if ≤ 2×): {}",
                if slow <= 2.0 { "met" } else { "**not met**" }
            );
        }
    }
    if let Some((n, created, reopened, base)) = &r.idle {
        let mib = |b: u64| f(b) / f(1 << 20);
        let _ = writeln!(
            out,
            "\n### Idle streams ({n}, one 100 B record each; from /proc/self in a fresh process)\n\n| state | RSS | open fds |\n|---|---|---|\n| bare process (runtime only) | {:.1} MiB | {} |\n| after creating them | {:.1} MiB | {} |\n| after a reopen | {:.1} MiB | {} |",
            mib(base.rss_bytes),
            base.open_fds,
            mib(created.rss_bytes),
            created.open_fds,
            mib(reopened.rss_bytes),
            reopened.open_fds
        );
        let worst_rss = created.rss_bytes.max(reopened.rss_bytes);
        let worst_fds = created.open_fds.max(reopened.open_fds);
        let _ = writeln!(
            out,
            "\nTarget ≤ 64 MiB RSS: {}; ≤ 128 open fds: {}",
            if worst_rss <= 64 << 20 {
                "met"
            } else {
                "**not met**"
            },
            if worst_fds <= 128 {
                "met"
            } else {
                "**not met**"
            }
        );
    }
    if let Some(tail) = sums.get("local-buffered/tail") {
        let _ = writeln!(
            out,
            "\nTail wake p99 (Buffered) {} (target ≤ 50 µs): {}",
            fmt_dur(tail.latency.p99),
            if tail.latency.p99 <= Duration::from_micros(50) {
                "met"
            } else {
                "**not met**"
            }
        );
    }
    if let Some(b) = sums.get("local-buffered/100Bx1000/a1/s1") {
        let _ = writeln!(
            out,
            "\nBuffered 100 B × 1000 per append: {} records/s (target ≥ 2 M): {}",
            fmt_rate(b.records_per_sec),
            if b.records_per_sec >= 2e6 {
                "met"
            } else {
                "**not met**"
            }
        );
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(out, "\n### Skipped\n");
        for (k, why) in &r.skipped {
            let _ = writeln!(out, "- `{k}`: {why}");
        }
    }
    if !r.failures.is_empty() {
        let _ = writeln!(out, "\n### Failures\n");
        for (k, e) in &r.failures {
            let _ = writeln!(out, "- `{k}`: {e}");
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A two-panel horizontal bar chart (records/s and p99 latency, both on log scales), one bar per
/// case, written by hand as SVG.
pub fn svg(r: &Results) -> String {
    let sums = r.summaries();
    let rows: Vec<(String, f64, f64)> = r
        .cases
        .iter()
        .filter_map(|(c, _)| {
            sums.get(&c.key).map(|x| {
                (
                    format!("{} — {}", c.system, c.workload),
                    x.records_per_sec,
                    x.latency.p99.as_secs_f64() * 1e6,
                )
            })
        })
        .collect();
    let (label_w, panel_w, row_h, top) = (520.0, 330.0, 16.0, 40.0);
    let width = label_w + 2.0 * panel_w + 40.0;
    let height = top + row_h * f(rows.len() as u64) + 30.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let panels = [
        (
            "records/s (log scale, 100 … 100 M)",
            2_u32,
            8_u32,
            "#3b7dd8",
        ),
        (
            "p99 latency, µs (log scale, 1 µs … 1 s)",
            0_u32,
            6_u32,
            "#d8703b",
        ),
    ];
    for (p, &(title, lo_decade, hi_decade, color)) in panels.iter().enumerate() {
        let (lo, hi) = (f64::from(lo_decade), f64::from(hi_decade));
        let x0 = label_w + f(p as u64) * (panel_w + 20.0);
        let _ = writeln!(
            o,
            r#"<text x="{x0}" y="16" font-weight="bold">{}</text>"#,
            esc(title)
        );
        for decade in 0..=(hi_decade - lo_decade) {
            let x = x0 + f(u64::from(decade)) / (hi - lo) * panel_w;
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="32" text-anchor="middle" fill="#666">1e{}</text>"##,
                top - 4.0,
                height - 26.0,
                decade + lo_decade
            );
        }
        for (i, (_, rate, p99)) in rows.iter().enumerate() {
            let v = if p == 0 { *rate } else { *p99 };
            let w = if v > 0.0 {
                ((v.log10() - lo) / (hi - lo)).clamp(0.0, 1.0) * panel_w
            } else {
                0.0
            };
            let y = top + f(i as u64) * row_h;
            let _ = writeln!(
                o,
                r#"<rect x="{x0}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{color}"/>"#,
                y + 2.0,
                row_h - 4.0
            );
        }
    }
    for (i, (label, _, _)) in rows.iter().enumerate() {
        let y = top + f(i as u64) * row_h + row_h - 4.0;
        let _ = writeln!(o, r#"<text x="4" y="{y:.1}">{}</text>"#, esc(label));
    }
    let _ = writeln!(o, "</svg>");
    o
}
