//! An incremental JSON syntax checker for tool-call bodies that arrive a few characters
//! at a time. It validates as it goes (so streamed argument text is always a valid JSON
//! prefix) and reports, for the outermost object, where each member's key and value begin
//! and end, which is what the Hermes tool-call parser needs to find `"name"` and to
//! stream `"arguments"` before the object is complete. Public operations:
//! [`JsonScanner::feed`], [`JsonScanner::is_complete`], [`JsonScanner::failed`].

/// Something the scanner saw in the outermost object (byte offsets into the fed text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// A member key, the string's quotes included.
    Key { start: usize, end: usize },
    /// A member value starts at this offset.
    ValueStart(usize),
    /// A member value ends before this offset.
    ValueEnd(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level value.
    Start,
    /// A value is expected.
    Value,
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closing bracket.
    CommaOrEnd,
    /// Inside a string; `key` when it is an object key.
    Str {
        key: bool,
        escape: bool,
        hex: u8,
    },
    /// Inside a number.
    Number,
    /// Inside `true`/`false`/`null`: the literal and how much of it was seen.
    Literal(&'static [u8], usize),
    /// The top-level value is complete; only whitespace may follow.
    Done,
    Failed,
}

/// Incremental JSON checker; see the module doc.
#[derive(Debug, Clone)]
pub struct JsonScanner {
    stack: Vec<Container>,
    state: State,
    /// Bytes fed so far.
    pos: usize,
    /// Start offset of the string being scanned.
    str_start: usize,
}

impl Default for JsonScanner {
    fn default() -> Self {
        JsonScanner {
            stack: Vec::new(),
            state: State::Start,
            pos: 0,
            str_start: 0,
        }
    }
}

impl JsonScanner {
    /// Whether a complete top-level value was read (trailing whitespace allowed).
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the text is not a JSON prefix; `failed_at` says where.
    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Bytes accepted so far (the offset of the first bad byte after a failure).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Feeds more text; returns the marks of the outermost object it completes. Stops at
    /// the first byte that cannot continue valid JSON.
    pub fn feed(&mut self, text: &str) -> Vec<Mark> {
        let mut marks = Vec::new();
        for &b in text.as_bytes() {
            if self.state == State::Failed {
                break;
            }
            self.step(b, &mut marks);
            if self.state != State::Failed {
                self.pos += 1;
            }
        }
        marks
    }

    /// Depth 1 = directly inside the outermost object.
    fn at_top_member(&self) -> bool {
        self.stack.len() == 1 && self.stack[0] == Container::Object
    }

    fn step(&mut self, b: u8, marks: &mut Vec<Mark>) {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.state {
            State::Start | State::Value => {
                if ws {
                    return;
                }
                if self.state == State::Value && self.at_top_member() {
                    marks.push(Mark::ValueStart(self.pos));
                }
                self.begin_value(b, marks);
            }
            State::KeyOrEnd | State::Key => {
                if ws {
                } else if b == b'"' {
                    self.str_start = self.pos;
                    self.state = State::Str {
                        key: true,
                        escape: false,
                        hex: 0,
                    };
                } else if b == b'}' && self.state == State::KeyOrEnd {
                    self.close(marks);
                } else {
                    self.state = State::Failed;
                }
            }
            State::Colon => {
                if ws {
                } else if b == b':' {
                    self.state = State::Value;
                } else {
                    self.state = State::Failed;
                }
            }
            State::CommaOrEnd => {
                if ws {
                    return;
                }
                match (b, self.stack.last()) {
                    (b',', Some(Container::Object)) => self.state = State::Key,
                    (b',', Some(Container::Array)) => self.state = State::Value,
                    (b'}', Some(Container::Object)) | (b']', Some(Container::Array)) => {
                        self.close(marks)
                    }
                    _ => self.state = State::Failed,
                }
            }
            State::Str { key, escape, hex } => {
                if hex > 0 {
                    if b.is_ascii_hexdigit() {
                        self.state = State::Str {
                            key,
                            escape: false,
                            hex: hex - 1,
                        };
                    } else {
                        self.state = State::Failed;
                    }
                } else if escape {
                    let hex = match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 0,
                        b'u' => 4,
                        _ => {
                            self.state = State::Failed;
                            return;
                        }
                    };
                    self.state = State::Str {
                        key,
                        escape: false,
                        hex,
                    };
                } else if b == b'\\' {
                    self.state = State::Str {
                        key,
                        escape: true,
                        hex: 0,
                    };
                } else if b == b'"' {
                    if key {
                        if self.at_top_member() {
                            marks.push(Mark::Key {
                                start: self.str_start,
                                end: self.pos + 1,
                            });
                        }
                        self.state = State::Colon;
                    } else {
                        self.pos += 1;
                        self.value_done(marks);
                        self.pos -= 1;
                    }
                } else if b < 0x20 {
                    self.state = State::Failed;
                }
            }
            State::Number => {
                if b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-') {
                    return;
                }
                self.value_done(marks);
                self.step(b, marks);
            }
            State::Literal(lit, n) => {
                if lit.get(n) == Some(&b) {
                    if n + 1 == lit.len() {
                        self.pos += 1;
                        self.value_done(marks);
                        self.pos -= 1;
                    } else {
                        self.state = State::Literal(lit, n + 1);
                    }
                } else {
                    self.state = State::Failed;
                }
            }
            State::Done => {
                if !ws {
                    self.state = State::Failed;
                }
            }
            State::Failed => {}
        }
    }

    fn begin_value(&mut self, b: u8, marks: &mut Vec<Mark>) {
        match b {
            b'{' => {
                self.stack.push(Container::Object);
                self.state = State::KeyOrEnd;
            }
            b'[' => {
                self.stack.push(Container::Array);
                self.state = State::Value;
            }
            b']' if self.stack.last() == Some(&Container::Array) => {
                // `[]`: an empty array (a `]` where the first element would be).
                self.close(marks);
            }
            b'"' => {
                self.str_start = self.pos;
                self.state = State::Str {
                    key: false,
                    escape: false,
                    hex: 0,
                };
            }
            b'-' | b'0'..=b'9' => self.state = State::Number,
            b't' => self.state = State::Literal(b"true", 1),
            b'f' => self.state = State::Literal(b"false", 1),
            b'n' => self.state = State::Literal(b"null", 1),
            _ => self.state = State::Failed,
        }
    }

    /// Closes the innermost container (the closing byte is at `pos`).
    fn close(&mut self, marks: &mut Vec<Mark>) {
        self.stack.pop();
        self.pos += 1;
        self.value_done(marks);
        self.pos -= 1;
    }

    /// A value ended just before `pos`.
    fn value_done(&mut self, marks: &mut Vec<Mark>) {
        if self.at_top_member() {
            marks.push(Mark::ValueEnd(self.pos));
        }
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::CommaOrEnd
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> (JsonScanner, Vec<Mark>) {
        let mut s = JsonScanner::default();
        let marks = s.feed(text);
        (s, marks)
    }

    #[test]
    fn valid_documents_complete_and_invalid_ones_fail_where_they_break() {
        for ok in [
            r#"{}"#,
            r#"{"a": [1, -2.5e3, true, false, null, "x\"\u00e9\n"], "b": {"c": []}}"#,
            r#"  {"k":{"n":[[]]}}  "#,
            r#"[1,2]"#,
            r#""s""#,
        ] {
            let (s, _) = scan(ok);
            assert!(s.is_complete(), "{ok}");
        }
        for (bad, at) in [
            (r#"{"a" 1}"#, 5),
            (r#"{"a": tru}"#, 9),
            (r#"{a: 1}"#, 1),
            (r#"{"a": 1,}"#, 8),
            (r#"{"a": "\q"}"#, 8),
            (r#"{"a": 1}}"#, 8),
            (r#"{"a": [1 2]}"#, 9),
        ] {
            let (s, _) = scan(bad);
            assert!(s.failed(), "{bad}");
            assert_eq!(s.position(), at, "{bad}");
        }
        // Prefixes are neither complete nor failed.
        let (s, _) = scan(r#"{"name": "f", "arguments": {"x": [1, "a"#);
        assert!(!s.is_complete() && !s.failed());
    }

    #[test]
    fn marks_locate_top_level_members_whatever_the_chunking() {
        let text = r#"{"name": "get", "arguments": {"city": "Paris", "n": [1]}, "z": 3}"#;
        let (_, whole) = scan(text);
        let key = |k: &str| {
            let at = text.find(&format!("\"{k}\"")).unwrap();
            Mark::Key {
                start: at,
                end: at + k.len() + 2,
            }
        };
        let args_at = text.find(r#"{"city""#).unwrap();
        let args_end = text.find(r#"]}"#).unwrap() + 2;
        assert_eq!(
            whole,
            vec![
                key("name"),
                Mark::ValueStart(9),
                Mark::ValueEnd(14),
                key("arguments"),
                Mark::ValueStart(args_at),
                Mark::ValueEnd(args_end),
                key("z"),
                Mark::ValueStart(text.len() - 2),
                Mark::ValueEnd(text.len() - 1),
            ]
        );
        // Fed one byte at a time: the same marks.
        let mut s = JsonScanner::default();
        let mut marks = Vec::new();
        for i in 0..text.len() {
            marks.extend(s.feed(&text[i..i + 1]));
        }
        assert_eq!(marks, whole);
        assert!(s.is_complete());
    }
}
