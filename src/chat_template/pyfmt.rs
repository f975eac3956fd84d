//! Python's text forms of template values, so that minijinja prints what Jinja2 prints:
//! `json.dumps` (the `tojson` filter Hugging Face installs: `ensure_ascii`, `indent`,
//! `separators`, `sort_keys`), `str()` (what `{{ value }}` writes: `None`, `True`,
//! `1e-05`, `['a', 1]`), `repr()` of strings, and `str.isspace`. Follows CPython 3.11
//! (`Lib/json/encoder.py`, `float_repr` with `repr` style `r`, `unicode_repr`).
//!
//! Public operations (crate-internal): [`json_dumps`], [`write_str`], [`float_repr`],
//! [`is_space`].

use std::fmt::Write;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// `json.dumps` options.
pub(crate) struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: one line; `Some(s)`: newline and `s` per level.
    pub indent: Option<String>,
    pub item_separator: String,
    pub key_separator: String,
    pub sort_keys: bool,
}

impl JsonOptions {
    /// Python's defaults for the given indent: `", "` between items unless indenting.
    pub fn new(indent: Option<String>) -> Self {
        JsonOptions {
            ensure_ascii: false,
            item_separator: if indent.is_some() { "," } else { ", " }.to_owned(),
            key_separator: ": ".to_owned(),
            indent,
            sort_keys: false,
        }
    }
}

fn type_error(value: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "tojson: object of type {} is not JSON serializable",
            value.kind()
        ),
    )
}

/// `json.dumps(value, ...)`.
pub(crate) fn json_dumps(value: &Value, opts: &JsonOptions) -> Result<String, Error> {
    let mut out = String::new();
    dump(&mut out, value, opts, 0)?;
    Ok(out)
}

fn newline(out: &mut String, opts: &JsonOptions, level: usize) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(ind);
        }
    }
}

fn dump(out: &mut String, value: &Value, opts: &JsonOptions, level: usize) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, value, true),
        ValueKind::String => json_string(out, value.as_str().unwrap_or_default(), opts),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_separator);
                }
                newline(out, opts, level + 1);
                dump(out, item, opts, level + 1)?;
            }
            newline(out, opts, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((json_key(&key)?, item));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_separator);
                }
                newline(out, opts, level + 1);
                json_string(out, key, opts);
                out.push_str(&opts.key_separator);
                dump(out, item, opts, level + 1)?;
            }
            newline(out, opts, level);
            out.push('}');
        }
        _ => return Err(type_error(value)),
    }
    Ok(())
}

/// A dict key as `json.dumps` converts it: strings stay, numbers, bools and None are
/// written as JSON scalars.
fn json_key(key: &Value) -> Result<String, Error> {
    let mut s = String::new();
    match key.kind() {
        ValueKind::String => s.push_str(key.as_str().unwrap_or_default()),
        ValueKind::None => s.push_str("null"),
        ValueKind::Bool => s.push_str(if key.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(&mut s, key, true),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: keys must be str, int, float, bool or None, not {}",
                    key.kind()
                ),
            ))
        }
    }
    Ok(s)
}

fn json_string(out: &mut String, s: &str, opts: &JsonOptions) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if opts.ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes an int as Python does, a float as `float.__repr__` (`json` spells the
/// non-finite ones `NaN`, `Infinity`, `-Infinity`; `str()` spells them `nan`, `inf`).
fn write_number(out: &mut String, value: &Value, json: bool) {
    if value.is_integer() {
        if let Ok(i) = i128::try_from(value.clone()) {
            let _ = write!(out, "{i}");
        } else {
            let _ = write!(out, "{value}");
        }
        return;
    }
    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    if f.is_nan() {
        out.push_str(if json { "NaN" } else { "nan" });
    } else if f.is_infinite() {
        let s = match (json, f > 0.0) {
            (true, true) => "Infinity",
            (true, false) => "-Infinity",
            (false, true) => "inf",
            (false, false) => "-inf",
        };
        out.push_str(s);
    } else {
        out.push_str(&float_repr(f));
    }
}

/// `repr(f)` for a finite float: the shortest round-trip digits, positional when the
/// decimal exponent is in `-4..16`, else `d.ddde+XX`; always a `.0` on whole numbers.
pub(crate) fn float_repr(f: f64) -> String {
    // `{:e}` gives the shortest round-trip digits: "-1.5e-7", "1e21", "0e0".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// Python's `str.isspace` for one character (Rust's `is_whitespace` plus the
/// information separators U+001C..U+001F).
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str(value)`, as Jinja2's `{{ value }}` writes it.
pub(crate) fn write_str(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => write_repr(out, value),
    }
}

/// `repr(value)`: strings quoted, containers recursive.
fn write_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_number(out, value, false),
        ValueKind::String => string_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            out.push('[');
            if let Ok(items) = value.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &item);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = value.try_iter() {
                for (i, key) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &key);
                    out.push_str(": ");
                    write_repr(out, &value.get_item(&key).unwrap_or_default());
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// `repr(s)`: single quotes unless the text holds `'` and no `"`; control characters
/// escaped. (Python also escapes other non-printable code points, e.g. U+00A0, U+2028;
/// those are escaped here for the common ones listed below.)
fn string_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) || c == '\u{ad}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{1680}'
            | '\u{2000}'..='\u{200f}'
            | '\u{2028}'..='\u{202f}'
            | '\u{205f}'
            | '\u{2060}'..='\u{2064}'
            | '\u{3000}'
            | '\u{feff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1.5, "1.5"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789.125, "123456789.125"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-2.5e21, "-2.5e+21"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn json_dumps_matches_python() {
        let v = Value::from_serialize(
            serde_json::json!({"b": [1, 2.0, null, true, "é<&>\"\u{1}"], "a": {}}),
        );
        assert_eq!(
            json_dumps(&v, &JsonOptions::new(None)).unwrap(),
            r#"{"b": [1, 2.0, null, true, "é<&>\"\u0001"], "a": {}}"#
        );
        let mut o = JsonOptions::new(Some("  ".into()));
        o.sort_keys = true;
        o.ensure_ascii = true;
        assert_eq!(
            json_dumps(&v, &o).unwrap(),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.0,\n    null,\n    true,\n    \"\\u00e9<&>\\\"\\u0001\"\n  ]\n}"
        );
    }

    #[test]
    fn str_of_values_matches_python() {
        let v =
            Value::from_serialize(serde_json::json!(["it's", "a\"b'c", null, false, {"k": 1e-7}]));
        let mut s = String::new();
        write_str(&mut s, &v);
        assert_eq!(s, r#"["it's", 'a"b\'c', None, False, {'k': 1e-07}]"#);
    }
}
