//! The table-name prefix: the only caller-chosen text that ever becomes part of SQL text.

use std::fmt;
use streamstore::implementor::ErrorShorthand;

use streamstore::{Error, Result};

/// A validated table-name prefix: `[a-z][a-z0-9_]{0,30}`.
///
/// The pattern keeps every table name a plain lower-case identifier that needs no quoting in
/// PostgreSQL or MySQL (and is not case-folded differently by either), and keeps the longest
/// table name (`<prefix>idempotency`, 42 bytes) below both servers' 63/64-byte identifier limits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TablePrefix(String);

impl TablePrefix {
    /// The longest prefix accepted, in bytes.
    pub const MAX_LEN: usize = 31;

    /// Validates `prefix`; anything outside `[a-z][a-z0-9_]{0,30}` is `InvalidArgument`.
    pub fn new(prefix: &str) -> Result<Self> {
        let mut bytes = prefix.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !first_ok || !rest_ok || prefix.len() > Self::MAX_LEN {
            return Err(Error::invalid(format!(
                "a table prefix must match [a-z][a-z0-9_]{{0,30}}; got {prefix:?}"
            )));
        }
        Ok(TablePrefix(prefix.to_owned()))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A 64-bit key for the database's named/advisory lock that serializes schema creation of
    /// this prefix across processes (FNV-1a of `streamstore:<prefix>`; stable across versions).
    pub fn lock_key(&self) -> i64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"streamstore:".iter().chain(self.0.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        i64::from_le_bytes(h.to_le_bytes())
    }

    /// The table names built from this prefix.
    pub fn tables(&self) -> Tables {
        Tables {
            streams: format!("{}streams", self.0),
            records: format!("{}records", self.0),
            idempotency: format!("{}idempotency", self.0),
            meta: format!("{}meta", self.0),
            deletions: format!("{}deletions", self.0),
        }
    }
}

impl fmt::Debug for TablePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TablePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tables of one prefix. Every name is `<prefix><table>` with a validated prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// One row per live stream: its head (incarnation, offsets, seal, bytes, retention).
    pub streams: String,
    /// One row per record, keyed by `(stream_id, off)`.
    pub records: String,
    /// Recent idempotency keys per stream.
    pub idempotency: String,
    /// Schema metadata (`schema_version`).
    pub meta: String,
    /// Recent deletions, for the watchers of other store objects (MySQL's change index; see
    /// `backends/mysql/src/changes.rs`). Other adapters do not create it.
    pub deletions: String,
}

impl Tables {
    /// All tables, in the order they are dropped.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.deletions,
            &self.records,
            &self.idempotency,
            &self.streams,
            &self.meta,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_pattern() {
        for ok in ["a", "ss_", "t1_x", "abcdefghijklmnopqrstuvwxyz01234"] {
            assert!(TablePrefix::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "_a",
            "A",
            "a-b",
            "a b",
            "a;drop",
            "abcdefghijklmnopqrstuvwxyz012345",
        ] {
            assert!(TablePrefix::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TablePrefix::new("x_").unwrap().tables().streams,
            "x_streams"
        );
    }
}
