//! Records read from stdin for `append`: one record per line, read as bytes with a cap.
//!
//! A record is exactly the bytes between two `\n` (or before the end of input): nothing is
//! decoded, so a line that is not UTF-8 is appended as it is, and a `\r` before the `\n` stays
//! part of the record. A line is never held in memory beyond `cap + 1` bytes: a longer one is
//! refused as soon as it passes the cap, and the rest of it is never read.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What the next line of input is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its `\n`.
    Record(Vec<u8>),
    /// A line longer than the cap (only its first `cap + 1` bytes were read).
    TooLong,
}

/// Reads lines from `input`, counting them from 1.
pub struct Lines<R> {
    input: R,
    cap: usize,
    number: u64,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    /// Lines of at most `cap` bytes each.
    pub fn new(input: R, cap: usize) -> Self {
        Lines {
            input,
            cap,
            number: 0,
        }
    }

    /// The number (from 1) of the line the last `next` returned.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The next line, or `None` at the end of input. A last line without `\n` is a line; an
    /// input that ends with `\n` has no empty line after it.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        let mut line = Vec::new();
        let mut seen_any = false;
        loop {
            let buf = self.input.fill_buf().await?;
            if buf.is_empty() {
                if !seen_any {
                    return Ok(None);
                }
                self.number += 1;
                return Ok(Some(Line::Record(line)));
            }
            seen_any = true;
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if line.len() + take > self.cap {
                // Never buffer more than the cap: the line is refused here.
                self.number += 1;
                return Ok(Some(Line::TooLong));
            }
            line.extend_from_slice(&buf[..take]);
            self.input.consume(if done { take + 1 } else { take });
            if done {
                self.number += 1;
                return Ok(Some(Line::Record(line)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], cap: usize) -> Vec<Line> {
        let mut lines = Lines::new(input, cap);
        let mut out = Vec::new();
        while let Some(line) = lines.next().await.expect("reading a slice cannot fail") {
            let stop = line == Line::TooLong;
            out.push(line);
            if stop {
                break;
            }
        }
        out
    }

    fn rec(s: &[u8]) -> Line {
        Line::Record(s.to_vec())
    }

    #[tokio::test]
    async fn lines_are_bytes_between_newlines() {
        assert_eq!(
            all(b"a\r\n\xff\xfe\n\nlast", 16).await,
            vec![rec(b"a\r"), rec(b"\xff\xfe"), rec(b""), rec(b"last")]
        );
        assert_eq!(all(b"a\n", 16).await, vec![rec(b"a")]);
        assert!(all(b"", 16).await.is_empty());
    }

    #[tokio::test]
    async fn a_line_over_the_cap_is_refused_without_reading_it_whole() {
        assert_eq!(
            all(b"1234\n12345\n", 4).await,
            vec![rec(b"1234"), Line::TooLong]
        );
        assert_eq!(all(b"12345", 4).await, vec![Line::TooLong]);
    }
}
