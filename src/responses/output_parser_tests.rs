//! Tests of the output parser over hand-built token sequences: markers by id and by text
//! at every position, deltas that span `</think>`, reasoning cut by the token limit, text
//! after tool calls, malformed and broken calls, and starting states from prompt tails.

use super::*;

const THINK: u32 = 151667;
const END_THINK: u32 = 151668;
const CALL: u32 = 151657;
const END_CALL: u32 = 151658;
const TEXT: u32 = 1;

fn marker(text: &str, id: Option<u32>) -> Marker {
    Marker {
        text: text.into(),
        id,
    }
}

/// Qwen3: every marker a single token.
fn by_id() -> ParserConfig {
    ParserConfig {
        reasoning: Some((
            marker("<think>", Some(THINK)),
            marker("</think>", Some(END_THINK)),
        )),
        tool_calls: Some((
            marker("<tool_call>", Some(CALL)),
            marker("</tool_call>", Some(END_CALL)),
        )),
        calls_enabled: true,
    }
}

/// The same markers matched by text (a vocabulary without them as tokens).
fn by_text() -> ParserConfig {
    ParserConfig {
        reasoning: Some((marker("<think>", None), marker("</think>", None))),
        tool_calls: Some((marker("<tool_call>", None), marker("</tool_call>", None))),
        calls_enabled: true,
    }
}

/// Pieces with adjacent texts merged, so different chunkings compare equal.
#[derive(Debug, Clone, PartialEq)]
enum N {
    Text(String),
    Reasoning(String),
    ReasoningEnd,
    Call(String, String, bool),
}

fn normalise(pieces: Vec<Piece<u32>>) -> Vec<N> {
    let mut out: Vec<N> = Vec::new();
    let mut args_acc = String::new();
    for p in pieces {
        match p {
            Piece::Text { text, .. } => match out.last_mut() {
                Some(N::Text(t)) => t.push_str(&text),
                _ => out.push(N::Text(text)),
            },
            Piece::Reasoning(text) => match out.last_mut() {
                Some(N::Reasoning(t)) => t.push_str(&text),
                _ => out.push(N::Reasoning(text)),
            },
            Piece::ReasoningEnd => out.push(N::ReasoningEnd),
            Piece::CallStart { name } => {
                args_acc.clear();
                out.push(N::Call(name, String::new(), false));
            }
            Piece::CallArgs(a) => args_acc.push_str(&a),
            Piece::CallEnd {
                arguments,
                complete,
            } => {
                assert_eq!(arguments, args_acc, "done arguments = concatenated deltas");
                if let Some(N::Call(_, a, c)) = out.last_mut() {
                    *a = arguments;
                    *c = complete;
                }
            }
        }
    }
    out
}

/// Runs tokens `(id, text)` through a parser; tags are the token's index.
fn run(config: ParserConfig, tail: &str, tokens: &[(u32, &str)]) -> (Vec<Piece<u32>>, usize) {
    let (mut p, mut out) = OutputParser::new(config, tail);
    for (i, &(id, text)) in tokens.iter().enumerate() {
        out.extend(p.push(id, text.to_owned(), i as u32 + 100));
    }
    out.extend(p.finish());
    (out, p.reasoning_tokens())
}

fn text(s: &str) -> N {
    N::Text(s.into())
}
fn reasoning(s: &str) -> N {
    N::Reasoning(s.into())
}
fn call(name: &str, args: &str) -> N {
    N::Call(name.into(), args.into(), true)
}

const ARGS: &str = r#"{"city": "Paris"}"#;

#[test]
fn qwen3_reasoning_then_answer_by_token_id() {
    let toks = [
        (THINK, "<think>"),
        (TEXT, "\n"),
        (TEXT, "Let"),
        (TEXT, " me"),
        (TEXT, " think"),
        (TEXT, "\n"),
        (END_THINK, "</think>"),
        (TEXT, "\n\n"),
        (TEXT, "Hi"),
        (TEXT, "!"),
    ];
    let (pieces, rt) = run(by_id(), "<|im_start|>assistant\n", &toks);
    assert_eq!(rt, 7, "<think> .. </think> inclusive");
    // Answer text keeps each token's tag; layout whitespace is gone.
    let texts: Vec<(u32, String)> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text { tag, text } => Some((*tag, text.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec![(108, "Hi".into()), (109, "!".into())]);
    assert_eq!(
        normalise(pieces),
        vec![reasoning("Let me think"), N::ReasoningEnd, text("Hi!")]
    );
}

#[test]
fn markers_by_text_at_every_split_position() {
    let whole = format!(
        "Sure.<think>\nplan it\n</think>\n\nOK<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {ARGS}}}\n</tool_call>\nafter"
    );
    let want = vec![
        text("Sure."),
        reasoning("plan it"),
        N::ReasoningEnd,
        text("OK"),
        call("get_weather", ARGS),
        text("after"),
    ];
    // Whole, split in two at every byte, and one byte per token.
    assert_eq!(normalise(run(by_text(), "", &[(TEXT, &whole)]).0), want);
    for cut in 1..whole.len() {
        let toks = [(TEXT, &whole[..cut]), (TEXT, &whole[cut..])];
        assert_eq!(normalise(run(by_text(), "", &toks).0), want, "cut at {cut}");
    }
    let bytes: Vec<String> = whole.chars().map(String::from).collect();
    let toks: Vec<(u32, &str)> = bytes.iter().map(|s| (TEXT, s.as_str())).collect();
    assert_eq!(normalise(run(by_text(), "", &toks).0), want);
}

#[test]
fn a_delta_spanning_the_end_of_reasoning_is_split() {
    // One token holds the end of the reasoning, the marker and the start of the answer.
    let toks = [
        (TEXT, "<think>so it is 4"),
        (TEXT, ".</think>\n\nThe answer"),
        (TEXT, " is 4."),
    ];
    let (pieces, _) = run(by_text(), "", &toks);
    assert_eq!(
        normalise(pieces.clone()),
        vec![
            reasoning("so it is 4."),
            N::ReasoningEnd,
            text("The answer is 4.")
        ]
    );
    // The answer's first text is the token's right part; the reasoning got the left.
    assert!(pieces.contains(&Piece::Reasoning(".".into())));
}

#[test]
fn reasoning_cut_by_the_token_limit_stays_open_for_the_stream_to_close() {
    let toks = [(THINK, "<think>"), (TEXT, "still"), (TEXT, " going")];
    let (pieces, rt) = run(by_id(), "", &toks);
    assert_eq!(normalise(pieces), vec![reasoning("still going")]);
    assert_eq!(rt, 3);
}

#[test]
fn the_starting_state_comes_from_the_prompt_tail() {
    // DeepSeek-R1 style: the template opened the block.
    let toks = [(TEXT, "hmm"), (END_THINK, "</think>"), (TEXT, "Yes.")];
    let (pieces, rt) = run(by_id(), "<｜Assistant｜><think>\n", &toks);
    assert_eq!(
        normalise(pieces),
        vec![reasoning("hmm"), N::ReasoningEnd, text("Yes.")]
    );
    assert_eq!(rt, 2);
    // Qwen3 with thinking off: the block is closed in the prompt.
    let (pieces, rt) = run(
        by_id(),
        "<|im_start|>assistant\n<think>\n\n</think>\n\n",
        &[(TEXT, "Yes.")],
    );
    assert_eq!((normalise(pieces), rt), (vec![text("Yes.")], 0));
    // A forced call: the prompt ends inside the body, the name already written.
    let toks = [
        (TEXT, "{\"city\""),
        (TEXT, ": \"Paris\"}"),
        (TEXT, "}"),
        (END_CALL, ""),
    ];
    let (pieces, _) = run(
        by_id(),
        "assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ",
        &toks,
    );
    assert_eq!(normalise(pieces), vec![call("get_weather", ARGS)]);
}

#[test]
fn two_calls_stream_their_arguments_then_text_after() {
    let toks = [
        (CALL, ""),
        (TEXT, "\n{\"name\": \"get_weather\", "),
        (TEXT, "\"arguments\": {\"ci"),
        (TEXT, "ty\": \"Paris\"}}\n"),
        (END_CALL, ""),
        (TEXT, "\n"),
        (CALL, ""),
        (
            TEXT,
            "{\"arguments\": {\"tz\": \"UTC\"}, \"name\": \"get_time\"}",
        ),
        (END_CALL, ""),
        (TEXT, "\n\nDone."),
    ];
    let (pieces, rt) = run(by_id(), "", &toks);
    assert_eq!(rt, 0);
    // The first call's arguments stream in two deltas before the call ends.
    let args: Vec<&Piece<u32>> = pieces
        .iter()
        .take_while(|p| !matches!(p, Piece::CallEnd { .. }))
        .filter(|p| matches!(p, Piece::CallArgs(_)))
        .collect();
    assert_eq!(
        args,
        vec![
            &Piece::CallArgs("{\"ci".into()),
            &Piece::CallArgs("ty\": \"Paris\"}".into())
        ]
    );
    // Arguments given before the name: the call opens when the body is complete.
    assert_eq!(
        normalise(pieces),
        vec![
            call("get_weather", ARGS),
            call("get_time", r#"{"tz": "UTC"}"#),
            text("Done.")
        ]
    );
}

#[test]
fn malformed_calls_end_as_text_and_broken_ones_incomplete() {
    // Never JSON: the body becomes answer text, markers removed.
    let toks = [(CALL, ""), (TEXT, "get_weather(Paris)"), (END_CALL, "")];
    assert_eq!(
        normalise(run(by_id(), "", &toks).0),
        vec![text("get_weather(Paris)")]
    );
    // A name that is not a string, or no name: text too.
    let toks = [
        (CALL, ""),
        (TEXT, "{\"name\": 3, \"arguments\": {}}"),
        (END_CALL, ""),
    ];
    assert_eq!(
        normalise(run(by_id(), "", &toks).0),
        vec![text("{\"name\": 3, \"arguments\": {}}")]
    );
    // Opened, then the arguments stop being JSON: the call ends incomplete with what
    // was valid, the rest is text.
    let toks = [
        (CALL, ""),
        (TEXT, "{\"name\": \"f\", \"arguments\": {\"a\": 1"),
        (TEXT, " oops}}"),
        (END_CALL, ""),
    ];
    assert_eq!(
        normalise(run(by_id(), "", &toks).0),
        vec![
            N::Call("f".into(), "{\"a\": 1 ".into(), false),
            text("oops}}")
        ]
    );
    // Cut by the token limit inside the arguments: incomplete, nothing after.
    let toks = [
        (CALL, ""),
        (TEXT, "{\"name\": \"f\", \"arguments\": {\"a\": "),
    ];
    assert_eq!(
        normalise(run(by_id(), "", &toks).0),
        vec![N::Call("f".into(), "{\"a\": ".into(), false)]
    );
    // A complete body without its end marker (the model stopped right after): a call.
    let toks = [(CALL, ""), (TEXT, "{\"name\": \"f\", \"arguments\": {}}")];
    assert_eq!(normalise(run(by_id(), "", &toks).0), vec![call("f", "{}")]);
    // Arguments as a JSON string holding an object.
    let toks = [
        (CALL, ""),
        (TEXT, r#"{"name": "f", "arguments": "{\"a\": 1}"}"#),
        (END_CALL, ""),
    ];
    assert_eq!(
        normalise(run(by_id(), "", &toks).0),
        vec![call("f", r#"{"a":1}"#)]
    );
}

#[test]
fn stray_markers_are_dropped_and_whitespace_only_text_before_a_call_opens_nothing() {
    let toks = [
        (END_THINK, "</think>"),
        (TEXT, "A"),
        (TEXT, "\n\n"),
        (CALL, ""),
        (TEXT, "{\"name\": \"f\", \"arguments\": {}}"),
        (THINK, "<think>"),
        (END_CALL, ""),
    ];
    assert_eq!(
        normalise(run(by_id(), "", &toks).0),
        vec![text("A"), call("f", "{}")]
    );
    // Trailing whitespace of a plain answer is kept.
    let toks = [(TEXT, "A"), (TEXT, "\n")];
    assert_eq!(normalise(run(by_id(), "", &toks).0), vec![text("A\n")]);
}

#[test]
fn without_markers_every_token_is_text_with_its_tag() {
    let (pieces, rt) = run(
        ParserConfig::default(),
        "",
        &[(TEXT, "<think>"), (TEXT, " x")],
    );
    assert_eq!(rt, 0);
    assert_eq!(
        pieces,
        vec![
            Piece::Text {
                tag: 100,
                text: "<think>".into()
            },
            Piece::Text {
                tag: 101,
                text: " x".into()
            }
        ]
    );
}

#[test]
fn with_calls_disabled_a_call_block_is_text() {
    let config = ParserConfig {
        calls_enabled: false,
        ..by_id()
    };
    let toks = [
        (CALL, ""),
        (TEXT, "{\"name\": \"f\", \"arguments\": {}}"),
        (END_CALL, ""),
    ];
    assert_eq!(
        normalise(run(config, "", &toks).0),
        vec![text("{\"name\": \"f\", \"arguments\": {}}")]
    );
}

#[test]
fn a_token_that_starts_a_character_keeps_its_tag() {
    let toks = [(TEXT, "caf"), (TEXT, ""), (TEXT, "\u{e9}")];
    let (pieces, _) = run(by_id(), "", &toks);
    let tags: Vec<u32> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text { tag, .. } => Some(*tag),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec![100, 101, 102]);
}

#[test]
fn random_token_streams_never_panic_and_calls_stay_consistent() {
    // Fragments a model might emit, markers and broken JSON included.
    let frags: &[(u32, &str)] = &[
        (THINK, "<think>"),
        (END_THINK, "</think>"),
        (CALL, "<tool_call>"),
        (END_CALL, "</tool_call>"),
        (TEXT, "{\"name\": \"f\", \"arguments\": "),
        (TEXT, "{\"a\": [1, \"é\\\"\"]}"),
        (TEXT, "}"),
        (TEXT, "\n"),
        (TEXT, " "),
        (TEXT, ""),
        (TEXT, "世界"),
        (TEXT, "<thi"),
        (TEXT, "nk>"),
        (TEXT, "</tool_"),
        (TEXT, "call>"),
        (TEXT, "\"arguments\""),
        (TEXT, "oops"),
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for round in 0..4000 {
        let config = if round % 2 == 0 { by_id() } else { by_text() };
        let len = 1 + next(24);
        let toks: Vec<(u32, &str)> = (0..len).map(|_| frags[next(frags.len())]).collect();
        let tail = [
            "",
            "<think>\n",
            "<tool_call>\n{\"name\": \"g\", \"arguments\":",
        ][next(3)];
        // normalise() asserts that each call's done arguments are its deltas.
        let (pieces, rt) = run(config, tail, &toks);
        assert!(rt <= toks.len());
        normalise(pieces);
    }
}

#[test]
fn stray_markers_written_as_text_are_dropped_too() {
    let toks = [(TEXT, "A</think>B</tool_call>C<think>r<tool_call>s</think>D")];
    assert_eq!(
        normalise(run(by_text(), "", &toks).0),
        vec![text("ABC"), reasoning("rs"), N::ReasoningEnd, text("D")]
    );
}
