//! Resume tokens: the `id:` of every Server-Sent Event.
//!
//! A token is `<incarnation as 16 hex digits>-<offset>`, where the offset is the one the client
//! needs next (one past the record the event carried). Incarnation `0000000000000000` means "no
//! incarnation yet": the stream did not exist when the token was made (no real incarnation is 0).
//! A token names the incarnation so that a client resuming after the stream was deleted and written
//! again is told so (a `reset` event) instead of silently receiving another life's records.

use std::fmt;
use streamstore::implementor::ErrorShorthand;

use streamstore::{Error, Incarnation, Result};

/// Where a follower stands: the incarnation it read and the next offset it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeToken {
    /// The incarnation the client has been reading; `None` before the stream existed.
    pub incarnation: Option<Incarnation>,
    /// The next offset the client needs.
    pub next: u64,
}

impl ResumeToken {
    /// Parses `<16 hex digits>-<decimal offset>`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "a resume token is <16 hex digits>-<offset>, not {s:?}"
            ))
        };
        let (inc, next) = s.trim().split_once('-').ok_or_else(bad)?;
        if inc.len() != 16 {
            return Err(bad());
        }
        let inc = u64::from_str_radix(inc, 16).map_err(|_| bad())?;
        let next = next.parse::<u64>().map_err(|_| bad())?;
        Ok(ResumeToken {
            incarnation: (inc != 0).then_some(Incarnation(inc)),
            next,
        })
    }
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016x}-{}",
            self.incarnation.map_or(0, |i| i.0),
            self.next
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roundtrip_and_reject_garbage() {
        let t = ResumeToken {
            incarnation: Some(Incarnation(0xabc)),
            next: 42,
        };
        assert_eq!(t.to_string(), "0000000000000abc-42");
        assert_eq!(ResumeToken::parse(&t.to_string()).unwrap(), t);
        let none = ResumeToken::parse("0000000000000000-0").unwrap();
        assert_eq!(none.incarnation, None);
        for bad in [
            "",
            "abc-1",
            "0000000000000abc",
            "0000000000000abc-x",
            "zzzzzzzzzzzzzzzz-1",
        ] {
            assert!(ResumeToken::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
