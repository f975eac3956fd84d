//! Stop strings, matched on the detokenized output text the way vLLM's output processor
//! does (`vllm/v1/engine/detokenizer.py::check_stop_strings`): the first stop string to
//! complete ends the output, and it and everything after it are never emitted. Text that
//! could still be the start of a stop string is held back until it is confirmed (a stop)
//! or broken (released); at the end of a response the held text is flushed.
//!
//! [`StopStrings::scan`] is the pure matcher over the pending text. [`StopFilter`] keeps
//! that pending text as tagged segments (one per generated token, the tag carrying e.g.
//! its logprobs) and releases whole segments only, so every released segment still
//! belongs to its token; the one segment cut by a stop keeps the text before the stop.
//! Operations: [`StopFilter::push`], [`StopFilter::append_to_last`],
//! [`StopFilter::release`], [`StopFilter::finish`].

use std::collections::VecDeque;

/// What the pending text allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A stop string starts at this byte offset.
    Stop(usize),
    /// No stop string; the bytes before this offset can never become part of one.
    Safe(usize),
}

/// A request's stop strings (empty strings are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopStrings {
    stops: Vec<String>,
    longest: usize,
}

impl StopStrings {
    pub fn new(stops: Vec<String>) -> Self {
        let stops: Vec<String> = stops.into_iter().filter(|s| !s.is_empty()).collect();
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        StopStrings { stops, longest }
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Scans `text`, the output not emitted yet (none of it starts a stop string that
    /// ends in text emitted earlier). Cost: O(len(text) x number of stop strings).
    pub fn scan(&self, text: &str) -> Scan {
        // The match that completes first (the smallest end; then the earliest start), so
        // the result does not depend on how the text was split into tokens.
        let first = self
            .stops
            .iter()
            .filter_map(|s| text.find(s.as_str()).map(|at| (at + s.len(), at)))
            .min();
        if let Some((_, at)) = first {
            return Scan::Stop(at);
        }
        // The earliest suffix that is a proper prefix of a stop string.
        let lo = text.len().saturating_sub(self.longest.saturating_sub(1));
        let held = (lo..text.len())
            .filter(|&i| text.is_char_boundary(i))
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&text[i..])));
        Scan::Safe(held.unwrap_or(text.len()))
    }
}

/// A piece of output text and what it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment<T> {
    pub tag: T,
    pub text: String,
}

/// What [`StopFilter::release`] lets out.
#[derive(Debug, Clone, PartialEq)]
pub struct Released<T> {
    /// Segments to emit now, in order (their texts concatenated are the delta).
    pub segments: Vec<Segment<T>>,
    /// A stop string matched: nothing follows these segments.
    pub stopped: bool,
}

impl<T> Released<T> {
    /// The released text.
    pub fn text(&self) -> String {
        self.segments.iter().map(|s| s.text.as_str()).collect()
    }
}

/// Pending output text of one response, as segments, checked against stop strings.
#[derive(Debug)]
pub struct StopFilter<T> {
    stops: StopStrings,
    pending: VecDeque<Segment<T>>,
    /// The pending segments' texts, concatenated.
    text: String,
    stopped: bool,
}

impl<T> StopFilter<T> {
    pub fn new(stops: StopStrings) -> Self {
        StopFilter {
            stops,
            pending: VecDeque::new(),
            text: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string matched (everything after it is dropped).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Appends one segment (a token's text; may be empty).
    pub fn push(&mut self, tag: T, text: &str) {
        if self.stopped {
            return;
        }
        self.text.push_str(text);
        self.pending.push_back(Segment {
            tag,
            text: text.to_owned(),
        });
    }

    /// Appends text to the last pending segment; false (and nothing done) if none.
    pub fn append_to_last(&mut self, text: &str) -> bool {
        match self.pending.back_mut() {
            Some(s) if !self.stopped => {
                s.text.push_str(text);
                self.text.push_str(text);
                true
            }
            _ => false,
        }
    }

    /// Releases the whole segments that can no longer be part of a stop string, or, on a
    /// match, everything before it (the segment the stop starts in is cut). With
    /// `hold_last` the last segment is not complete yet and stays pending. Empty segments
    /// at the end of a release stay pending, so a release with segments has text.
    pub fn release(&mut self, hold_last: bool) -> Released<T> {
        if self.stopped {
            return Released {
                segments: Vec::new(),
                stopped: true,
            };
        }
        match self.stops.scan(&self.text) {
            Scan::Stop(at) => self.cut(at),
            Scan::Safe(safe) => {
                let limit = if hold_last {
                    let last_start =
                        self.text.len() - self.pending.back().map_or(0, |s| s.text.len());
                    safe.min(last_start)
                } else {
                    safe
                };
                // Whole segments that start and end within `limit`.
                let (mut n, mut end, mut n_text) = (0, 0, 0);
                for s in &self.pending {
                    if end >= limit || end + s.text.len() > limit {
                        break;
                    }
                    end += s.text.len();
                    n += 1;
                    if !s.text.is_empty() {
                        n_text = n;
                    }
                }
                self.take(n_text)
            }
        }
    }

    /// Ends the response: the stop strings are checked one last time and everything
    /// pending is released (empty segments included).
    pub fn finish(&mut self) -> Released<T> {
        if self.stopped {
            return self.release(false);
        }
        match self.stops.scan(&self.text) {
            Scan::Stop(at) => self.cut(at),
            Scan::Safe(_) => self.take(self.pending.len()),
        }
    }

    /// Releases the first `n` segments.
    fn take(&mut self, n: usize) -> Released<T> {
        let segments: Vec<Segment<T>> = self.pending.drain(..n).collect();
        let bytes: usize = segments.iter().map(|s| s.text.len()).sum();
        self.text.drain(..bytes);
        Released {
            segments,
            stopped: false,
        }
    }

    /// A stop string starts at byte `at` of the pending text: release what precedes it
    /// (cutting the segment it starts in) and drop the rest.
    fn cut(&mut self, at: usize) -> Released<T> {
        let mut segments = Vec::new();
        let mut start = 0;
        while let Some(mut s) = self.pending.pop_front() {
            if start >= at {
                break;
            }
            let len = s.text.len();
            if start + len > at {
                s.text.truncate(at - start);
            }
            start += len;
            segments.push(s);
        }
        while segments.last().is_some_and(|s| s.text.is_empty()) {
            segments.pop();
        }
        self.pending.clear();
        self.text.clear();
        self.stopped = true;
        Released {
            segments,
            stopped: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> StopStrings {
        StopStrings::new(s.iter().map(|x| x.to_string()).collect())
    }

    /// Feeds `pieces` (one segment each, tagged by index); returns each release's text,
    /// the tags released, and whether it stopped.
    fn run(s: &[&str], pieces: &[&str]) -> (Vec<String>, Vec<usize>, bool) {
        let mut f = StopFilter::new(stops(s));
        let (mut texts, mut tags) = (Vec::new(), Vec::new());
        let mut take = |r: Released<usize>, texts: &mut Vec<String>| {
            texts.push(r.text());
            tags.extend(r.segments.iter().map(|s| s.tag));
            r.stopped
        };
        for (i, p) in pieces.iter().enumerate() {
            f.push(i, p);
            if take(f.release(false), &mut texts) {
                return (texts, tags, true);
            }
        }
        let stopped = take(f.finish(), &mut texts);
        (texts, tags, stopped)
    }

    #[test]
    fn scan_finds_the_earliest_stop_or_the_held_tail() {
        let s = stops(&["world", "lo"]);
        assert_eq!(s.scan("hello world"), Scan::Stop(3));
        assert_eq!(s.scan("hi wor"), Scan::Safe(3));
        assert_eq!(s.scan("hi l"), Scan::Safe(3));
        assert_eq!(s.scan("hi"), Scan::Safe(2));
        assert_eq!(stops(&[]).scan("abc"), Scan::Safe(3));
    }

    #[test]
    fn a_stop_split_across_tokens_is_never_emitted() {
        let (texts, tags, stopped) = run(&["STOP"], &["hello S", "TO", "P and more"]);
        assert!(stopped);
        // "hello S" is held whole (its tail may start the stop), then cut.
        assert_eq!(texts, ["", "", "hello "]);
        assert_eq!(tags, [0]);
    }

    #[test]
    fn a_broken_prefix_is_released() {
        let (texts, tags, stopped) = run(&["STOP"], &["a ST", "ep", "s"]);
        assert!(!stopped);
        assert_eq!(texts, ["", "a STep", "s", ""]);
        assert_eq!(tags, [0, 1, 2]);
    }

    #[test]
    fn overlapping_candidates_stop_at_the_first_completed() {
        // "bc" completes first although "abcd" started earlier.
        let (texts, _, stopped) = run(&["abcd", "bc"], &["x", "a", "b", "c", "d"]);
        assert!(stopped);
        assert_eq!(texts.concat(), "xa");
        // A self-overlapping stop: "aaab" with "aab" keeps one "a".
        let (texts, tags, stopped) = run(&["aab"], &["a", "a", "a", "b"]);
        assert!(stopped);
        assert_eq!(texts.concat(), "a");
        assert_eq!(tags, [0]);
        // Both complete in one piece: the earlier one wins.
        let (texts, _, _) = run(&["cd", "abcdef"], &["xxabcdef"]);
        assert_eq!(texts.concat(), "xxab");
    }

    #[test]
    fn multi_byte_text_is_cut_on_characters() {
        let (texts, tags, stopped) = run(&["世界"], &["你好世", "界!"]);
        assert!(stopped);
        assert_eq!(texts.concat(), "你好");
        assert_eq!(tags, [0]);
        let (texts, _, stopped) = run(&["世界"], &["你好世", "纪"]);
        assert!(!stopped);
        assert_eq!(texts.concat(), "你好世纪");
        // "é" (c3 a9) and "è" (c3 a8) share a first byte: no false match.
        let (texts, _, stopped) = run(&["è"], &["café", "!"]);
        assert!(!stopped);
        assert_eq!(texts.concat(), "café!");
    }

    #[test]
    fn a_stop_at_the_very_start_emits_nothing() {
        let (texts, tags, stopped) = run(&["Hello"], &["Hel", "lo there"]);
        assert!(stopped);
        assert_eq!(texts.concat(), "");
        assert!(tags.is_empty());
    }

    #[test]
    fn two_stop_strings_either_one_ends_the_output() {
        let (texts, _, stopped) = run(&["\n\n", "END"], &["one\n", "two E", "ND\n\n"]);
        assert!(stopped);
        assert_eq!(texts.concat(), "one\ntwo ");
        let (texts, _, stopped) = run(&["\n\n", "END"], &["one\n", "\ntwo END"]);
        assert!(stopped);
        assert_eq!(texts.concat(), "one");
    }

    #[test]
    fn held_text_is_flushed_at_the_end() {
        let (texts, _, stopped) = run(&["world"], &["hello", " wor"]);
        assert!(!stopped);
        assert_eq!(texts, ["hello", "", " wor"]);
    }

    #[test]
    fn without_stops_text_passes_through_but_empty_and_open_segments_wait() {
        let mut f = StopFilter::new(stops(&[]));
        f.push(0, "a");
        f.push(1, "");
        let r = f.release(false);
        assert_eq!((r.text(), r.segments.len()), ("a".to_owned(), 1));
        f.push(2, "世");
        let r = f.release(false);
        assert_eq!(r.segments.iter().map(|s| s.tag).collect::<Vec<_>>(), [1, 2]);
        // An open last segment (its character is incomplete) waits for its next bytes.
        f.push(3, "b");
        assert!(f.release(true).segments.is_empty());
        assert!(f.append_to_last("\u{FFFD}"));
        let r = f.finish();
        assert_eq!(
            r.segments,
            [Segment {
                tag: 3,
                text: "b\u{FFFD}".into()
            }]
        );
        assert!(!f.append_to_last("x"));
    }

    #[test]
    fn after_a_stop_nothing_more_comes_out() {
        let mut f = StopFilter::new(stops(&["x"]));
        f.push(0, "ax");
        assert!(f.release(false).stopped);
        f.push(1, "more");
        let r = f.release(false);
        assert!(r.stopped && r.segments.is_empty());
        assert!(f.finish().segments.is_empty());
    }
}
