//! Held keys scrubbed from streamed answers (SSE passed through chunk by chunk), as they are
//! from whole ones: a backend that echoes the key it was sent (in an error event, say) must not
//! hand it to the agent.
//!
//! A key can be split across chunks, so the tail of a chunk that could be the start of a key
//! is held back until the next chunk (or the end) shows what follows. Only such a tail is held:
//! an SSE event ends in `\n\n`, which starts no key, so events pass without delay.

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;

/// What replaces a held key.
pub const REPLACEMENT: &[u8] = b"[REDACTED CREDENTIAL]";

/// The scrubbing state of one stream.
#[derive(Debug)]
pub struct StreamScrub {
    finders: Vec<Finder<'static>>,
    /// Bytes held back: possibly the start of a key.
    carry: BytesMut,
}

impl StreamScrub {
    /// `needles`: the held keys (none makes a scrubber that passes everything through).
    pub fn new<'a>(needles: impl Iterator<Item = &'a [u8]>) -> StreamScrub {
        StreamScrub {
            finders: needles
                .filter(|n| !n.is_empty())
                .map(|n| Finder::new(n).into_owned())
                .collect(),
            carry: BytesMut::new(),
        }
    }

    pub fn is_noop(&self) -> bool {
        self.finders.is_empty()
    }

    /// Takes one chunk; returns what may be sent now (the chunk itself, uncopied, when it holds
    /// no key and ends in no key's beginning).
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        if self.is_noop()
            || (self.carry.is_empty()
                && self.finders.iter().all(|f| f.find(&chunk).is_none())
                && self.key_prefix_tail(&chunk) == 0)
        {
            return chunk;
        }
        self.carry.extend_from_slice(&chunk);
        let pending = std::mem::take(&mut self.carry);
        let mut buf = self.replace_all(pending);
        let hold = self.key_prefix_tail(&buf);
        self.carry = buf.split_off(buf.len() - hold);
        buf.freeze()
    }

    /// The end of the stream: whatever was held back (it cannot be a whole key).
    pub fn finish(&mut self) -> Bytes {
        std::mem::take(&mut self.carry).freeze()
    }

    fn replace_all(&self, mut buf: BytesMut) -> BytesMut {
        for f in &self.finders {
            if f.find(&buf).is_none() {
                continue;
            }
            let mut out = BytesMut::with_capacity(buf.len());
            let mut rest: &[u8] = &buf;
            while let Some(i) = f.find(rest) {
                out.extend_from_slice(&rest[..i]);
                out.extend_from_slice(REPLACEMENT);
                rest = &rest[i + f.needle().len()..];
            }
            out.extend_from_slice(rest);
            buf = out;
        }
        buf
    }

    /// The length of the longest tail of `buf` that is a proper prefix of a key.
    fn key_prefix_tail(&self, buf: &[u8]) -> usize {
        let mut hold = 0;
        for f in &self.finders {
            let key = f.needle();
            let longest = (key.len() - 1).min(buf.len());
            for k in (hold + 1..=longest).rev() {
                if buf.ends_with(&key[..k]) {
                    hold = k;
                    break;
                }
            }
        }
        hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"sk-live-0123456789abcdef";

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut s = StreamScrub::new([KEY].into_iter());
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for c in chunks {
            let b = s.feed(Bytes::copy_from_slice(c));
            sizes.push(b.len());
            out.extend_from_slice(&b);
        }
        out.extend_from_slice(&s.finish());
        (out, sizes)
    }

    #[test]
    fn a_key_split_across_chunks_at_every_point_is_scrubbed() {
        let text = [b"data: {\"error\":\"bad key ".as_slice(), KEY, b"\"}\n\n"].concat();
        for cut1 in 1..text.len() {
            for cut2 in [cut1, (cut1 + 7).min(text.len())] {
                let (out, _) = run(&[&text[..cut1], &text[cut1..cut2], &text[cut2..]]);
                let out = String::from_utf8(out).unwrap();
                assert!(!out.contains("sk-live-0123"), "cut at {cut1}/{cut2}: {out}");
                assert_eq!(
                    out, "data: {\"error\":\"bad key [REDACTED CREDENTIAL]\"}\n\n",
                    "cut at {cut1}/{cut2}"
                );
            }
        }
    }

    #[test]
    fn events_without_key_prefixes_pass_at_once() {
        let ev = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let (out, sizes) = run(&[ev, ev]);
        assert_eq!(sizes, vec![ev.len(), ev.len()], "nothing held back");
        assert_eq!(out, [ev.as_slice(), ev].concat());
    }

    #[test]
    fn a_clean_chunk_passes_uncopied() {
        let mut s = StreamScrub::new([KEY].into_iter());
        let c = Bytes::from_static(b"data: {\"delta\":\"hi\"}\n\n");
        assert_eq!(s.feed(c.clone()).as_ptr(), c.as_ptr());
    }

    #[test]
    fn a_tail_that_only_looks_like_a_key_start_is_released_later() {
        let (out, sizes) = run(&[b"answer: sk-li", b"ke this"]);
        assert_eq!(sizes[0], b"answer: ".len());
        assert_eq!(out, b"answer: sk-like this");
        let (out, _) = run(&[b"ends with sk-"]);
        assert_eq!(out, b"ends with sk-", "released at the end");
    }

    #[test]
    fn repeated_and_adjacent_keys() {
        let text = [KEY, KEY, b" and ", KEY].concat();
        let (out, _) = run(&[&text]);
        assert_eq!(
            out,
            b"[REDACTED CREDENTIAL][REDACTED CREDENTIAL] and [REDACTED CREDENTIAL]"
        );
    }

    #[test]
    fn without_keys_everything_passes() {
        let mut s = StreamScrub::new(std::iter::empty());
        assert!(s.is_noop());
        assert_eq!(
            &s.feed(Bytes::from_static(b"sk-anything"))[..],
            b"sk-anything"
        );
        assert!(s.finish().is_empty());
    }
}
