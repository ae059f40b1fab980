//! Helpers the cases share: the per-case context, assertions, and small I/O shorthands.

use std::sync::Arc;

use bytes::Bytes;
use streamstore::{
    AppendOptions, AppendResult, Capabilities, ErrorKind, ReadOptions, Record, StreamId,
    StreamStore,
};

use crate::case::Failure;
use crate::factory::Factory;

/// What a case gets: the run's store, a stream-id prefix of its own, and the factory for cases that
/// need a store of their own.
pub struct Ctx {
    /// The store shared by the run's cases (never closed by a case).
    pub store: Arc<dyn StreamStore>,
    /// The factory, for [`Ctx::open_own`].
    pub factory: Arc<dyn Factory>,
    pub(crate) prefix: String,
    pub(crate) own_ns: String,
}

impl Ctx {
    /// A stream id unique to this case (`<case prefix><name>`).
    pub fn id(&self, name: &str) -> StreamId {
        StreamId::new(format!("{}{name}", self.prefix)).expect("case stream ids are valid")
    }

    /// The case's id prefix, for `list`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store's capabilities.
    pub fn caps(&self) -> Capabilities {
        self.store.capabilities()
    }

    /// The namespace reserved for this case's own store (opened with [`Ctx::open_own`]).
    pub fn own_ns(&self) -> &str {
        &self.own_ns
    }

    /// Opens (or reopens) this case's own store; the runner destroys it after the case.
    pub async fn open_own(&self) -> Result<Arc<dyn StreamStore>, Failure> {
        Ok(self.factory.open(&self.own_ns).await?)
    }

    /// Opens this case's own store twice, as two processes would ([`Factory::concurrent_opens_share_data`]),
    /// or once (both handles the same store object) where the implementation cannot share.
    /// Returns the two handles and whether they are distinct store objects.
    pub async fn open_own_pair(
        &self,
    ) -> Result<(Arc<dyn StreamStore>, Arc<dyn StreamStore>, bool), Failure> {
        let first = self.open_own().await?;
        if !self.factory.concurrent_opens_share_data() {
            return Ok((Arc::clone(&first), first, false));
        }
        match self.open_own().await {
            Ok(second) => Ok((first, second, true)),
            Err(e) => {
                let _ = first.close().await;
                Err(e)
            }
        }
    }
}

/// Fails the case with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::Failure(format!($($msg)+)));
        }
    };
}

/// Fails the case unless `a == b`, showing both.
#[macro_export]
macro_rules! ensure_eq {
    ($a:expr, $b:expr $(,)?) => {{
        match (&$a, &$b) {
            (a, b) => {
                if a != b {
                    return Err($crate::Failure(format!(
                        "{} != {}: {:?} != {:?} (line {})",
                        stringify!($a),
                        stringify!($b),
                        a,
                        b,
                        line!()
                    )));
                }
            }
        }
    }};
}

/// A payload from text.
pub fn b(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref())
}

/// Payloads from texts.
pub fn batch(items: &[&str]) -> Vec<Bytes> {
    items.iter().map(b).collect()
}

/// Appends with default options.
pub async fn put(
    store: &Arc<dyn StreamStore>,
    id: &StreamId,
    items: &[&str],
) -> Result<AppendResult, Failure> {
    Ok(store
        .append(id, batch(items), AppendOptions::default())
        .await?)
}

/// Reads every record from `from` to the end, page by page.
pub async fn read_all(
    store: &Arc<dyn StreamStore>,
    id: &StreamId,
    from: u64,
) -> Result<Vec<Record>, Failure> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let page = store.read(id, next, ReadOptions::limit(500)).await?;
        if page.records.is_empty() {
            return Ok(out);
        }
        next = page.next_offset;
        out.extend(page.records);
    }
}

/// The payloads of records, as text.
pub fn texts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

/// The offsets of records.
pub fn offsets(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.offset).collect()
}

/// Checks that `result` failed with exactly `kind`.
pub fn expect_kind<T: std::fmt::Debug>(
    result: Result<T, streamstore::Error>,
    kind: ErrorKind,
) -> Result<(), Failure> {
    match result {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(Failure(format!(
            "expected {kind:?}, got error {e} ({:?})",
            e.kind()
        ))),
        Ok(v) => Err(Failure(format!("expected {kind:?}, got success {v:?}"))),
    }
}
