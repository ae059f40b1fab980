//! `streamstore-bench`: runs the quick or full benchmark plan and writes a markdown table and an SVG
//! plot. The quick mode ends with three `ratio <name>: <x>` lines for scripts. See
//! `docs/benchmarks.md`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use streamstore_bench::backend::Result;
use streamstore_bench::plan::{self, Settings};
use streamstore_bench::{fairness, procs, report};

/// Benchmarks of the streamstore local engine against the disk and against peers.
#[derive(Parser, Debug)]
#[command(name = "streamstore-bench", version)]
struct Args {
    /// The reduced plan (a few minutes); the default.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// The full plan (about 20 minutes, writes tens of GiB for the recovery runs).
    #[arg(long)]
    full: bool,
    /// Where the results (results.md, results.svg) go; default $HOME/.cache/streamstore/bench-results.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where data files go while a case runs (removed afterwards); default
    /// $HOME/.cache/streamstore/bench-work. Put it on the disk you want to measure.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Repetitions per case (default 3 quick, 5 full).
    #[arg(long)]
    reps: Option<usize>,
    /// Measured milliseconds per case (default 700 quick, 1500 full).
    #[arg(long)]
    millis: Option<u64>,
    /// Recovery data sizes in MiB, comma-separated (default 64,256,1024 quick; 1024,4096,16384 full).
    #[arg(long, value_delimiter = ',')]
    recovery_mib: Option<Vec<u64>>,
    /// Idle streams for the RSS / fd measurement (default 100000; 0 skips it).
    #[arg(long)]
    idle_streams: Option<usize>,
    /// Only run cases whose key contains this, or one of several separated by commas (skips
    /// recovery and idle). `fairness` runs issue 17's case (noisy vs quiet streams).
    #[arg(long)]
    filter: Option<String>,
    #[command(subcommand)]
    child: Option<Child>,
}

#[derive(Subcommand, Debug)]
enum Child {
    /// Internal: measurements that need their own process.
    #[command(hide = true)]
    Child {
        #[command(subcommand)]
        what: ChildWhat,
    },
}

#[derive(Subcommand, Debug)]
enum ChildWhat {
    /// Fill a store until `bytes`, say so, keep writing until killed.
    Fill {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        bytes: u64,
    },
    /// Create (or reopen) idle streams and print RSS and fds.
    Idle {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        streams: usize,
        #[arg(long)]
        reopen: bool,
    },
}

fn cache_dir(leaf: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache/streamstore").join(leaf)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    if let Some(Child::Child { what }) = args.child {
        return match what {
            ChildWhat::Fill { dir, bytes } => procs::child_fill(&dir, bytes).await,
            ChildWhat::Idle {
                dir,
                streams,
                reopen,
            } => procs::child_idle(&dir, streams, reopen).await,
        };
    }
    let full = args.full;
    let settings = Settings {
        full,
        reps: args.reps.unwrap_or(if full { 5 } else { 3 }),
        warmup: Duration::from_millis(if full { 300 } else { 200 }),
        duration: Duration::from_millis(args.millis.unwrap_or(if full { 1500 } else { 700 })),
        recovery_sizes: args
            .recovery_mib
            .unwrap_or_else(|| {
                if full {
                    vec![1024, 4096, 16384]
                } else {
                    vec![64, 256, 1024]
                }
            })
            .into_iter()
            .map(|m| m << 20)
            .collect(),
        idle_streams: args.idle_streams.unwrap_or(100_000),
        work_dir: args.work_dir.unwrap_or_else(|| cache_dir("bench-work")),
        filter: args.filter,
    };
    let out = args.out.unwrap_or_else(|| cache_dir("bench-results"));
    std::fs::create_dir_all(&out)?;
    // Issue 17's case runs on its own (its ratios are within one repetition of four cases).
    let alts: Vec<&str> = settings
        .filter
        .as_deref()
        .map_or(Vec::new(), |f| f.split(',').collect());
    if alts.contains(&"fairness") {
        let (md, lines) = fairness::run(&settings).await?;
        std::fs::write(out.join("fairness.md"), &md)?;
        println!("{md}");
        print!("{lines}");
        if alts.len() == 1 {
            let _ = std::fs::remove_dir_all(&settings.work_dir);
            return Ok(());
        }
    }
    let command: Vec<String> = std::env::args().collect();
    let command = command.join(" ");
    let exe = procs::current_exe()?;
    let results = plan::run(&settings, &exe).await?;
    let machine = report::machine(&settings);
    let _ = std::fs::remove_dir_all(&settings.work_dir);

    let md = format!(
        "# streamstore benchmark results\n\n{}\n## Machine\n\n{}",
        report::markdown(&results, &settings, &command),
        machine
    );
    std::fs::write(out.join("results.md"), &md)?;
    std::fs::write(out.join("results.svg"), report::svg(&results))?;
    println!("{md}");
    println!(
        "results: {} and {}",
        out.join("results.md").display(),
        out.join("results.svg").display()
    );
    print!("{}", report::ratio_lines(&results));
    Ok(())
}
