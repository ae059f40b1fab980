//! The subcommands and what each does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::json;
use streamstore::{
    AppendOptions, Capabilities, Error, Expect, IdempotencyKey, ListOptions, ReadOptions, Result,
    Retention, StreamId, StreamStore, StreamStoreExt, SubscribeOptions, MAX_IDEMPOTENCY_KEY_BYTES,
};

use crate::input::{Line, Lines};
use crate::output::{emit, info, record};
use crate::store_url::{open_store, parse_durability};

/// Durable per-stream logs from the command line. Output is JSON lines.
#[derive(Parser, Debug)]
#[command(name = "streamstore", version)]
pub struct Cli {
    /// Where the streams live: a directory or file:// URL (the local engine), memory:,
    /// postgres://…, mysql://…, cassandra://host:port/keyspace (add ?table_prefix=name_ to
    /// choose the tables), mongodb://… (add ?collection_prefix=name_), or
    /// dynamodb://host:port/table?region=… (dynamodb://aws/table for AWS; credentials from the
    /// standard AWS environment).
    #[arg(
        long,
        global = true,
        default_value = "./streamstore-data",
        env = "STREAMSTORE_URL"
    )]
    store: String,
    /// Local engine only: when appends are acknowledged: sync (after fdatasync), buffered, or
    /// `interval:<ms>`.
    #[arg(long, global = true, default_value = "sync")]
    durability: String,
    /// More log lines on stderr: -v debug, -vv trace (default: info, or RUST_LOG if set).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The log filter: `RUST_LOG` if set, else the level `-v` asks for.
    pub fn log_filter(&self) -> String {
        if let Ok(f) = std::env::var("RUST_LOG") {
            return f;
        }
        match self.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
        .to_owned()
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append records: one per line of stdin, or one per file given. Prints
    /// {"stream","offset"} for each record once it is acknowledged (durable in Sync mode).
    /// A line's record is its bytes exactly (not decoded; a `\r` before the `\n` is kept); a
    /// line longer than the store's largest record is refused without being read whole. On a
    /// failure the error names the line and what was appended before it.
    Append {
        stream: String,
        /// Files whose whole contents are one record each (instead of stdin lines).
        files: Vec<PathBuf>,
        /// Expected state: `any`, `none` (the stream must not exist) or the next offset.
        #[arg(long, default_value = "any")]
        expect: String,
        /// Idempotency key: a retry with the same key writes nothing new. In line mode the
        /// key of line i is KEY/i, so re-running the same command is safe.
        #[arg(long)]
        key: Option<String>,
        /// Append all records as one atomic batch instead of one append per record.
        #[arg(long)]
        atomic: bool,
    },
    /// Print records from an offset.
    Read {
        stream: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many records (without --follow).
        #[arg(long)]
        limit: Option<u64>,
        /// Keep printing new records until the stream is sealed.
        #[arg(long)]
        follow: bool,
        /// Only records that a crash can no longer take away (see docs/contract.md).
        #[arg(long)]
        durable: bool,
    },
    /// Describe a stream.
    Info { stream: String },
    /// Seal a stream: no more appends.
    Seal { stream: String },
    /// Remove the records below an offset.
    Trim {
        stream: String,
        #[arg(long)]
        before: u64,
    },
    /// Delete a stream.
    Delete { stream: String },
    /// List streams.
    List {
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Set a stream's retention policy.
    Retention {
        stream: String,
        /// Delete the stream this many seconds after it is sealed.
        #[arg(long)]
        after_seal_secs: Option<u64>,
        /// Delete the stream this many seconds after its last append.
        #[arg(long)]
        after_idle_secs: Option<u64>,
        /// Keep at most this many payload bytes.
        #[arg(long)]
        max_bytes: Option<u64>,
    },
    /// Check every checksum of the store's files (local engine).
    Verify,
    /// Print the store's statistics and capabilities.
    Stats,
    /// Run the benchmark harness (`streamstore-bench`, built beside this binary): `--quick`
    /// (a few minutes, ends with `ratio ...` lines) or `--full`. Arguments pass through.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn parse_expect(s: &str) -> Result<Expect> {
    match s {
        "any" => Ok(Expect::Any),
        "none" | "no-stream" => Ok(Expect::NoStream),
        n => n.parse().map(Expect::Next).map_err(|_| {
            Error::invalid(format!("--expect takes any, none or an offset, not {n:?}"))
        }),
    }
}

fn io_err(e: std::io::Error) -> Error {
    Error::new(
        streamstore::ErrorKind::Unavailable,
        "cannot read or write the terminal",
    )
    .with_source(e)
}

/// Runs one command against the store named by `--store`.
pub async fn run(cli: Cli) -> Result<()> {
    if let Command::Bench { args } = cli.command {
        return bench(args).await;
    }
    let opened = open_store(&cli.store, parse_durability(&cli.durability)?).await?;
    let store = Arc::clone(&opened.store);
    let result = dispatch(cli.command, &store, &opened).await;
    let closed = store.close().await;
    result.and(closed)
}

async fn dispatch(
    command: Command,
    store: &Arc<dyn StreamStore>,
    opened: &crate::store_url::Opened,
) -> Result<()> {
    match command {
        Command::Append {
            stream,
            files,
            expect,
            key,
            atomic,
        } => {
            let id = StreamId::new(stream)?;
            append(store, &id, files, parse_expect(&expect)?, key, atomic).await
        }
        Command::Read {
            stream,
            from,
            limit,
            follow,
            durable,
        } => read(store, &StreamId::new(stream)?, from, limit, follow, durable).await,
        Command::Info { stream } => {
            emit(&info(&store.info(&StreamId::new(stream)?).await?)).map_err(io_err)
        }
        Command::Seal { stream } => {
            emit(&info(&store.seal(&StreamId::new(stream)?).await?)).map_err(io_err)
        }
        Command::Trim { stream, before } => {
            let id = StreamId::new(stream)?;
            let first = store.trim(&id, before).await?;
            emit(&json!({"stream": id.as_str(), "first_offset": first})).map_err(io_err)
        }
        Command::Delete { stream } => {
            let id = StreamId::new(stream)?;
            let existed = store.delete(&id).await?;
            emit(&json!({"stream": id.as_str(), "deleted": existed})).map_err(io_err)
        }
        Command::List {
            prefix,
            after,
            limit,
        } => {
            let after = after.map(StreamId::new).transpose()?;
            let page = store
                .list(
                    ListOptions::default()
                        .prefix(prefix)
                        .after(after)
                        .limit(limit),
                )
                .await?;
            for s in &page.streams {
                emit(&json!({"stream": s.as_str()})).map_err(io_err)?;
            }
            if let Some(next) = page.next_after {
                eprintln!(
                    "more streams follow; continue with --after {:?}",
                    next.as_str()
                );
            }
            Ok(())
        }
        Command::Retention {
            stream,
            after_seal_secs,
            after_idle_secs,
            max_bytes,
        } => {
            let id = StreamId::new(stream)?;
            let policy = {
                let mut o = Retention::default();
                o.delete_after_seal = after_seal_secs.map(Duration::from_secs);
                o.delete_after_idle = after_idle_secs.map(Duration::from_secs);
                o.max_bytes = max_bytes;
                o
            };
            store.set_retention(&id, policy).await?;
            emit(&info(&store.info(&id).await?)).map_err(io_err)
        }
        Command::Verify => opened.verify().await,
        Command::Stats => opened.stats().await,
        Command::Bench { .. } => Err(Error::invalid("bench takes no store")),
    }
}

async fn append(
    store: &Arc<dyn StreamStore>,
    id: &StreamId,
    files: Vec<PathBuf>,
    expect: Expect,
    key: Option<String>,
    atomic: bool,
) -> Result<()> {
    let caps = store.capabilities();
    if !files.is_empty() {
        let records = read_files(&files, &caps).await?;
        return append_batch(store, id, records, expect, key).await;
    }
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut lines = Lines::new(stdin, caps.max_record_bytes);
    if atomic {
        let records = read_batch(&mut lines, &caps).await?;
        return append_batch(store, id, records, expect, key).await;
    }
    // Line mode: each line is its own append, acknowledged (and printed) before the next is read.
    // The longest key this run can use (KEY/<any u64>) is checked before the first append, so a
    // run never stops partway on a key that grew too long.
    if let Some(k) = &key {
        IdempotencyKey::new(format!("{k}/{}", u64::MAX).into_bytes()).map_err(|_| {
            Error::invalid(format!(
                "--key is {} bytes; with the /<line index> suffix it could pass the {}-byte key \
                 limit: use at most {} bytes",
                k.len(),
                MAX_IDEMPOTENCY_KEY_BYTES,
                MAX_IDEMPOTENCY_KEY_BYTES - 1 - u64::MAX.to_string().len()
            ))
        })?;
    }
    let mut expect = expect;
    let mut appended: Option<(u64, u64)> = None;
    while let Some(line) = lines.next().await.map_err(io_err)? {
        let number = lines.number();
        let outcome = match line {
            Line::TooLong => Err(too_long_line(&caps)),
            Line::Record(record) => {
                let mut options = AppendOptions::expect(expect);
                if let Some(k) = &key {
                    let index = number - 1;
                    options =
                        options.with_key(IdempotencyKey::new(format!("{k}/{index}").into_bytes())?);
                }
                store.append(id, vec![Bytes::from(record)], options).await
            }
        };
        let r = outcome.map_err(|e| at_line(e, number, appended))?;
        emit(&json!({"stream": id.as_str(), "offset": r.first_offset})).map_err(io_err)?;
        appended = Some((
            appended.map_or(r.first_offset, |(first, _)| first),
            r.first_offset,
        ));
        if !matches!(expect, Expect::Any) {
            expect = Expect::Next(r.next_offset());
        }
    }
    Ok(())
}

/// One atomic append of `records` (files, or `--atomic` lines), with `key` as it is.
async fn append_batch(
    store: &Arc<dyn StreamStore>,
    id: &StreamId,
    records: Vec<Bytes>,
    expect: Expect,
    key: Option<String>,
) -> Result<()> {
    let mut options = AppendOptions::expect(expect);
    if let Some(k) = key {
        options = options.with_key(IdempotencyKey::new(k.into_bytes())?);
    }
    let r = store.append(id, records, options).await?;
    for offset in r.offsets() {
        emit(&json!({"stream": id.as_str(), "offset": offset})).map_err(io_err)?;
    }
    Ok(())
}

/// Every line of stdin as one batch, refused (before anything is appended) as soon as it passes
/// the store's record, batch-size or batch-count limit: stdin is never buffered beyond them.
async fn read_batch<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut Lines<R>,
    caps: &Capabilities,
) -> Result<Vec<Bytes>> {
    let mut records = Vec::new();
    let mut total = 0usize;
    while let Some(line) = lines.next().await.map_err(io_err)? {
        let number = lines.number();
        let Line::Record(record) = line else {
            return Err(at_line(too_long_line(caps), number, None));
        };
        total += record.len();
        if records.len() == caps.max_batch_records || total > caps.max_batch_bytes {
            return Err(at_line(
                Error::too_large(format!(
                    "--atomic: the batch passes the store's limit of {} records / {} bytes",
                    caps.max_batch_records, caps.max_batch_bytes
                )),
                number,
                None,
            ));
        }
        records.push(Bytes::from(record));
    }
    Ok(records)
}

/// The files' contents, one record each, after checking their sizes against the limits.
async fn read_files(files: &[PathBuf], caps: &Capabilities) -> Result<Vec<Bytes>> {
    if files.len() > caps.max_batch_records {
        return Err(Error::too_large(format!(
            "{} files: the store takes at most {} records in one append",
            files.len(),
            caps.max_batch_records
        )));
    }
    let mut records = Vec::new();
    let mut total = 0u64;
    for f in files {
        let cannot = |e| Error::invalid(format!("cannot read {}", f.display())).with_source(e);
        let len = tokio::fs::metadata(f).await.map_err(cannot)?.len();
        total += len;
        if usize::try_from(len).map_or(true, |l| l > caps.max_record_bytes) {
            return Err(Error::too_large(format!(
                "{} is {len} bytes; the store's largest record is {} bytes",
                f.display(),
                caps.max_record_bytes
            )));
        }
        if usize::try_from(total).map_or(true, |t| t > caps.max_batch_bytes) {
            return Err(Error::too_large(format!(
                "the files add up to more than the store's largest batch ({} bytes)",
                caps.max_batch_bytes
            )));
        }
        records.push(Bytes::from(tokio::fs::read(f).await.map_err(cannot)?));
    }
    Ok(records)
}

fn too_long_line(caps: &Capabilities) -> Error {
    Error::too_large(format!(
        "the line is longer than the store's largest record ({} bytes)",
        caps.max_record_bytes
    ))
}

/// `e` as it happened at line `number`, saying what was appended before it.
fn at_line(e: Error, number: u64, appended: Option<(u64, u64)>) -> Error {
    let before = match appended {
        None => "nothing was appended".to_owned(),
        Some((first, last)) => format!(
            "the {} line(s) before it were appended (offsets {first} to {last})",
            number - 1
        ),
    };
    Error::new(
        e.kind(),
        format!("line {number}: {}; {before}", e.message()),
    )
    .with_source(e)
}

async fn read(
    store: &Arc<dyn StreamStore>,
    id: &StreamId,
    from: u64,
    limit: Option<u64>,
    follow: bool,
    durable: bool,
) -> Result<()> {
    let mut left = limit.unwrap_or(u64::MAX);
    let options = |max: usize| {
        let o = ReadOptions::limit(max);
        if durable {
            o.durable()
        } else {
            o
        }
    };
    if follow {
        let subscribe = SubscribeOptions::default().durable(durable);
        let mut sub = store.subscribe(id, from, subscribe);
        while left > 0 {
            match sub.next().await {
                Some(r) => emit(&record(id, &r?)).map_err(io_err)?,
                None => break,
            }
            left -= 1;
        }
        return Ok(());
    }
    let mut next = from;
    while left > 0 {
        let max = usize::try_from(left.min(1000)).unwrap_or(1000);
        let page = store.read(id, next, options(max)).await?;
        if page.records.is_empty() {
            break;
        }
        for r in &page.records {
            emit(&record(id, r)).map_err(io_err)?;
        }
        left = left.saturating_sub(page.records.len() as u64);
        next = page.next_offset;
    }
    Ok(())
}

/// Runs the `streamstore-bench` binary found next to this executable (or on `PATH`), passing
/// `args` through, with inherited stdout/stderr; a non-zero exit is an error.
async fn bench(args: Vec<String>) -> Result<()> {
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("streamstore-bench"));
    let program = beside
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("streamstore-bench"));
    let status = tokio::process::Command::new(&program)
        .args(&args)
        .status()
        .await
        .map_err(|e| {
            Error::invalid(format!(
                "cannot run {}: install it with `cargo install --locked --path benches`",
                program.display()
            ))
            .with_source(e)
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(
            streamstore::ErrorKind::Internal,
            format!("the benchmark harness failed ({status})"),
        ))
    }
}
