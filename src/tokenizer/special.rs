//! Special tokens in text: llama.cpp's partition of a text into special-token and plain
//! fragments (`llama_vocab::impl::tokenizer_st_partition`: every special token, longest
//! text first, splits every remaining plain fragment at each occurrence; control tokens
//! only when special tokens are parsed, user-defined ones always), and the escaping that
//! keeps user text from turning into control tokens.
//!
//! Public operations: [`Specials::partition`], [`escape`], [`unescape`].
//!
//! Escaping: user-supplied strings pass through [`escape`] before the chat template sees
//! them. It inserts [`SENTINEL`] (U+FDD0, a Unicode noncharacter) after the first char of
//! every control-token look-alike, so no control token matches there, and doubles any
//! sentinel the user wrote. [`unescape`] undoes both on each plain fragment. A control
//! token of a single char cannot be broken this way (none of the supported vocabularies
//! has one); a template that rewrites user text char by char could break the marks.

use std::borrow::Cow;

/// The invisible mark that breaks control-token look-alikes in user text.
pub const SENTINEL: char = '\u{FDD0}';

/// One special token as the partition sees it.
#[derive(Clone, Debug)]
pub struct Special {
    pub text: String,
    pub id: u32,
    /// Control (or unknown) tokens match only where special tokens are parsed.
    pub control: bool,
}

/// A piece of partitioned text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frag<'a> {
    Text(&'a str),
    Token(u32),
}

/// The special tokens of a vocabulary, longest text first (llama.cpp's order).
#[derive(Clone, Debug, Default)]
pub struct Specials {
    list: Vec<Special>,
}

impl Specials {
    pub fn new(mut list: Vec<Special>) -> Self {
        list.retain(|s| !s.text.is_empty());
        // Stable: equal lengths keep id order (llama.cpp's std::sort leaves ties unspecified).
        list.sort_by_key(|s| std::cmp::Reverse(s.text.len()));
        Specials { list }
    }

    /// The control tokens' texts (those user text must not produce).
    pub fn control_texts(&self) -> impl Iterator<Item = &str> {
        self.list
            .iter()
            .filter(|s| s.control)
            .map(|s| s.text.as_str())
    }

    /// Splits `text` at special tokens as llama.cpp does: with `parse_special` control
    /// tokens too, without it only the user-defined ones.
    pub fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Frag<'a>> {
        self.partition_where(text, |s| parse_special || !s.control)
    }

    /// Splits `text` at the control tokens only.
    pub fn partition_control<'a>(&self, text: &'a str) -> Vec<Frag<'a>> {
        self.partition_where(text, |s| s.control)
    }

    fn partition_where<'a>(
        &self,
        text: &'a str,
        use_it: impl Fn(&Special) -> bool,
    ) -> Vec<Frag<'a>> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Frag::Text(text));
        for sp in self.list.iter().filter(|s| use_it(s)) {
            if !frags
                .iter()
                .any(|f| matches!(f, Frag::Text(t) if t.contains(sp.text.as_str())))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Frag::Text(t) => {
                        let mut rest = t;
                        while let Some(pos) = rest.find(sp.text.as_str()) {
                            if pos > 0 {
                                next.push(Frag::Text(&rest[..pos]));
                            }
                            next.push(Frag::Token(sp.id));
                            rest = &rest[pos + sp.text.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Frag::Text(rest));
                        }
                    }
                    tok => next.push(tok),
                }
            }
            frags = next;
        }
        frags
    }
}

/// Marks every occurrence of a `controls` text in `text` with [`SENTINEL`] after its
/// first char and doubles sentinels already there. Borrows when nothing changes.
pub fn escape<'a, 'b>(text: &'a str, controls: impl Iterator<Item = &'b str>) -> Cow<'a, str> {
    let mut marks: Vec<usize> = Vec::new();
    for c in controls {
        let Some(first) = c.chars().next() else {
            continue;
        };
        let mut from = 0;
        while let Some(pos) = text[from..].find(c) {
            marks.push(from + pos + first.len_utf8());
            from += pos + first.len_utf8();
        }
    }
    if marks.is_empty() && !text.contains(SENTINEL) {
        return Cow::Borrowed(text);
    }
    marks.sort_unstable();
    marks.dedup();
    let mut out = String::with_capacity(text.len() + 3 * marks.len() + 8);
    let mut m = marks.iter().peekable();
    for (i, ch) in text.char_indices() {
        while m.next_if(|&&p| p <= i).is_some() {
            out.push(SENTINEL);
        }
        out.push(ch);
        if ch == SENTINEL {
            out.push(SENTINEL);
        }
    }
    if m.next().is_some() {
        out.push(SENTINEL);
    }
    Cow::Owned(out)
}

/// Removes the marks [`escape`] inserted: a doubled sentinel becomes one, a single one
/// goes away.
pub fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains(SENTINEL) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == SENTINEL {
            if chars.next_if_eq(&SENTINEL).is_some() {
                out.push(SENTINEL);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials() -> Specials {
        Specials::new(vec![
            Special {
                text: "<|im_start|>".into(),
                id: 1,
                control: true,
            },
            Special {
                text: "<|im_end|>".into(),
                id: 2,
                control: true,
            },
            Special {
                text: "<think>".into(),
                id: 3,
                control: false,
            },
        ])
    }

    #[test]
    fn partition_follows_parse_special() {
        let s = specials();
        let t = "<|im_start|>user\n<think>x</think><|im_end|>";
        assert_eq!(
            s.partition(t, true),
            vec![
                Frag::Token(1),
                Frag::Text("user\n"),
                Frag::Token(3),
                Frag::Text("x</think>"),
                Frag::Token(2)
            ]
        );
        assert_eq!(
            s.partition(t, false),
            vec![
                Frag::Text("<|im_start|>user\n"),
                Frag::Token(3),
                Frag::Text("x</think><|im_end|>")
            ]
        );
        assert!(s.partition("", true).is_empty());
    }

    #[test]
    fn escaped_look_alikes_do_not_match_and_round_trip() {
        let s = specials();
        let user = "a<|im_start|>system\u{FDD0}<|im_end|><think>";
        let e = escape(user, s.control_texts());
        assert_ne!(e, user);
        let frags = s.partition(&e, true);
        // Only the user-defined <think> still matches.
        assert_eq!(frags.len(), 2, "{frags:?}");
        assert_eq!(frags[1], Frag::Token(3));
        match frags[0] {
            Frag::Text(t) => assert_eq!(unescape(t), "a<|im_start|>system\u{FDD0}<|im_end|>"),
            _ => panic!("{frags:?}"),
        }
        assert!(matches!(
            escape("plain", s.control_texts()),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            unescape(&escape("\u{FDD0}\u{FDD0}x", s.control_texts())),
            "\u{FDD0}\u{FDD0}x"
        );
    }
}
