//! Runs every case against one implementation and reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::case::{Failure, Requirement};
use crate::factory::Factory;
use crate::support::Ctx;

/// How long one case may take before it counts as failed (a hung wait must not hang CI).
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// The result of one implementation's run.
#[derive(Debug, Default)]
pub struct Summary {
    /// The implementation's name.
    pub name: String,
    /// Cases that ran and passed.
    pub passed: Vec<String>,
    /// Cases that ran and failed, with why.
    pub failed: Vec<(String, String)>,
    /// Cases not run, with the capability that was missing.
    pub skipped: Vec<(String, Requirement)>,
}

impl Summary {
    /// The closing line: `conformance <name>: <N> passed, <N> failed, <N> skipped`.
    pub fn line(&self) -> String {
        format!(
            "conformance {}: {} passed, {} failed, {} skipped",
            self.name,
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        )
    }
}

fn random_ns() -> String {
    format!("t{:08x}", rand::random::<u32>())
}

/// Runs the cases whose name contains `filter` (all if empty) against the stores `factory` opens.
///
/// Prints one line per case as it goes and returns the summary (the caller prints
/// [`Summary::line`]). Setup failures (the store cannot be opened) fail every case.
pub async fn run_suite(name: &str, factory: Arc<dyn Factory>, filter: &str) -> Summary {
    let mut summary = Summary {
        name: name.to_owned(),
        ..Summary::default()
    };
    let ns = random_ns();
    let cases: Vec<_> = crate::cases()
        .into_iter()
        .filter(|c| c.name.contains(filter))
        .collect();
    let store = match factory.open(&ns).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conformance {name}: cannot open the store: {e}");
            summary.failed = cases
                .into_iter()
                .map(|c| (c.name, format!("store did not open: {e}")))
                .collect();
            return summary;
        }
    };
    let caps = store.capabilities();
    for (i, case) in cases.into_iter().enumerate() {
        let server_too_slow = case.requires.contains(&Requirement::ThousandWaiters)
            && !factory.serves_thousand_waiters();
        if server_too_slow {
            println!(
                "  skip {name}::{} (the factory's test server cannot serve 1,000 waiters in time)",
                case.name
            );
            summary
                .skipped
                .push((case.name, Requirement::ThousandWaiters));
            continue;
        }
        if let Some(req) = case.requires.iter().find(|r| !r.met(&caps)) {
            println!(
                "  skip {name}::{} (capability `{}` not declared)",
                case.name,
                req.name()
            );
            summary.skipped.push((case.name, *req));
            continue;
        }
        let ctx = Ctx {
            store: Arc::clone(&store),
            factory: Arc::clone(&factory),
            prefix: format!("{}/", case.name),
            own_ns: format!("{ns}_{i}"),
        };
        let started = Instant::now();
        let outcome = match tokio::time::timeout(CASE_TIMEOUT, (case.run)(&ctx)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure(format!("timed out after {CASE_TIMEOUT:?}"))),
        };
        // Cases that opened a store of their own closed it; remove what it left.
        if let Err(e) = factory.destroy(&ctx.own_ns).await {
            eprintln!("  warning: cleanup of {} failed: {e}", ctx.own_ns);
        }
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => {
                println!("  ok   {name}::{} ({ms} ms)", case.name);
                summary.passed.push(case.name);
            }
            Err(f) => {
                println!("  FAIL {name}::{} ({ms} ms): {f}", case.name);
                summary.failed.push((case.name, f.0));
            }
        }
    }
    if let Err(e) = store.close().await {
        eprintln!("  warning: closing the store failed: {e}");
    }
    if let Err(e) = factory.destroy(&ns).await {
        eprintln!("  warning: cleanup of {ns} failed: {e}");
    }
    summary
}
