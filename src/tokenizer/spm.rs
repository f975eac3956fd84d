//! SentencePiece-style tokenization of GGUF `llama` vocabularies, exactly as llama.cpp's
//! `llm_tokenizer_spm_session` (llama-vocab.cpp, commit 0c1e57098) does it: the text
//! (spaces already escaped to `▁`) starts as one symbol per UTF-8 char; the bigram whose
//! concatenation is a token with the highest score (ties: leftmost) merges first, until
//! no adjacent pair forms a token; symbols that are not tokens fall back to byte tokens
//! `<0xXX>` (or the raw one-byte token).
//!
//! Public operations: [`Spm::new`], [`Spm::tokenize`], [`escape_whitespace`].

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{Error, Result};

/// The SentencePiece word-boundary mark llama.cpp writes for a space.
pub const SPACE_MARK: &str = "\u{2581}";

/// A SentencePiece vocabulary: token texts and scores.
pub struct Spm {
    token_to_id: HashMap<String, u32>,
    scores: Vec<f32>,
    byte_ids: [Option<u32>; 256],
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    n: usize,
    prev: isize,
    next: isize,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Max-heap order of llama.cpp's `llm_bigram_spm::comparator`: higher score first,
    /// then the lower left index.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// llama.cpp's `llama_escape_whitespace`: every space becomes `▁`.
pub fn escape_whitespace(text: &str) -> String {
    text.replace(' ', SPACE_MARK)
}

impl Spm {
    /// Builds the lookup tables; a later token with the same text wins, as in llama.cpp.
    pub fn new(tokens: &[&str], scores: Vec<f32>) -> Self {
        let mut token_to_id = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            token_to_id.insert(t.to_string(), i as u32);
        }
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = token_to_id
                .get(&format!("<0x{b:02X}>"))
                .or_else(|| {
                    char::from_u32(b as u32)
                        .filter(|_| b < 0x80)
                        .and_then(|c| token_to_id.get(&c.to_string()))
                })
                .copied();
        }
        Spm {
            token_to_id,
            scores,
            byte_ids,
        }
    }

    fn token(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// Appends the tokens of `text` (whitespace already escaped) to `out`.
    pub fn tokenize(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, ch)) in text.char_indices().enumerate() {
            let n = ch.len_utf8();
            symbols.push(Symbol {
                start,
                n,
                prev: i as isize - 1,
                next: if start + n == text.len() {
                    -1
                } else {
                    i as isize + 1
                },
            });
        }
        if symbols.is_empty() {
            return Ok(());
        }
        let mut queue = BinaryHeap::new();
        let mut rev_merge: HashMap<&str, (usize, usize)> = HashMap::new();
        for i in 1..symbols.len() {
            self.try_add_bigram(
                text,
                &symbols,
                i as isize - 1,
                i as isize,
                &mut queue,
                &mut rev_merge,
            );
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            if l.n == 0 || r.n == 0 || l.n + r.n != b.size {
                continue;
            }
            symbols[b.left].n += r.n;
            symbols[b.right].n = 0;
            symbols[b.left].next = r.next;
            if r.next >= 0 {
                symbols[r.next as usize].prev = b.left as isize;
            }
            let (prev, next) = (symbols[b.left].prev, symbols[b.left].next);
            self.try_add_bigram(
                text,
                &symbols,
                prev,
                b.left as isize,
                &mut queue,
                &mut rev_merge,
            );
            self.try_add_bigram(
                text,
                &symbols,
                b.left as isize,
                next,
                &mut queue,
                &mut rev_merge,
            );
        }
        let mut i: isize = 0;
        while i != -1 {
            let s = symbols[i as usize];
            self.resegment(text, &symbols, s, &rev_merge, out, 0)?;
            i = s.next;
        }
        Ok(())
    }

    fn try_add_bigram<'t>(
        &self,
        text: &'t str,
        symbols: &[Symbol],
        left: isize,
        right: isize,
        queue: &mut BinaryHeap<Bigram>,
        rev_merge: &mut HashMap<&'t str, (usize, usize)>,
    ) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        let Some(piece) = text.get(l.start..l.start + l.n + r.n) else {
            return;
        };
        let Some(id) = self.token(piece) else {
            return;
        };
        let Some(&score) = self.scores.get(id as usize) else {
            return;
        };
        queue.push(Bigram {
            left: left as usize,
            right: right as usize,
            score,
            size: piece.len(),
        });
        rev_merge.insert(piece, (left as usize, right as usize));
    }

    fn resegment(
        &self,
        text: &str,
        symbols: &[Symbol],
        s: Symbol,
        rev_merge: &HashMap<&str, (usize, usize)>,
        out: &mut Vec<u32>,
        depth: usize,
    ) -> Result<()> {
        let piece = text.get(s.start..s.start + s.n).unwrap_or_default();
        if let Some(id) = self.token(piece) {
            out.push(id);
            return Ok(());
        }
        match rev_merge.get(piece) {
            Some(&(l, r)) if depth < 64 => {
                self.resegment(text, symbols, symbols[l], rev_merge, out, depth + 1)?;
                self.resegment(text, symbols, symbols[r], rev_merge, out, depth + 1)
            }
            _ => {
                for &b in piece.as_bytes() {
                    let id = self.byte_ids[b as usize].ok_or_else(|| {
                        Error::Tokenizer(format!(
                            "byte 0x{b:02X} has no token (<0x{b:02X}>) in this SentencePiece vocabulary"
                        ))
                    })?;
                    out.push(id);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spm() -> Spm {
        // ids: 0 <unk>, 1..=3 bytes for 'a','b','\xe4'.., then pieces with scores.
        let mut tokens = vec!["<unk>".to_string()];
        for b in 0..=255u32 {
            tokens.push(format!("<0x{b:02X}>"));
        }
        let pieces = [
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -3.0),
            ("ab", -4.0),
            ("▁a", -5.0),
            ("▁ab", -0.5),
        ];
        let mut scores = vec![0.0; tokens.len()];
        for (p, s) in pieces {
            tokens.push(p.to_string());
            scores.push(s);
        }
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        Spm::new(&refs, scores)
    }

    fn ids(s: &Spm, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        s.tokenize(&escape_whitespace(text), &mut out).unwrap();
        out
    }

    #[test]
    fn merges_by_score_then_leftmost() {
        let s = spm();
        // ▁ab (-0.5) is not reachable directly: "ab" (-4) beats "▁a" (-5) as first merge,
        // then "▁"+"ab" forms ▁ab.
        assert_eq!(ids(&s, " ab"), vec![262]);
        assert_eq!(ids(&s, "ab"), vec![260]);
        assert_eq!(ids(&s, "aa"), vec![258, 258]);
    }

    #[test]
    fn unknown_chars_fall_back_to_bytes() {
        let s = spm();
        // 'é' = C3 A9 -> <0xC3> <0xA9> (ids 1 + byte)
        assert_eq!(ids(&s, "é"), vec![1 + 0xC3, 1 + 0xA9]);
        assert!(ids(&s, "").is_empty());
    }
}
