//! The minijinja environment configured as transformers configures Jinja2 for
//! `apply_chat_template` (transformers 4.57 `utils/chat_template_utils.py`,
//! `_compile_jinja_template`): `trim_blocks`, `lstrip_blocks`, loop controls (`break`,
//! `continue`), its `tojson` filter (`json.dumps` without HTML escaping, with
//! `ensure_ascii`, `indent`, `separators`, `sort_keys`), the globals `raise_exception`
//! and `strftime_now`; plus what makes minijinja behave as Python there: values print as
//! `str()` prints them (`None`, `True`, `1e-05`, `['a']`), and Python's string methods
//! (minijinja-contrib's pycompat, with `strip`/`split`/`find` and friends redone with
//! Python's whitespace and character indices, and `removeprefix`/`removesuffix` added).
//!
//! transformers' `{% generation %}...{% endgeneration %}` tag (its AssistantTracker
//! extension, which only records where assistant text went) renders its body unchanged;
//! [`rewrite_generation_tags`] turns it into `{% if true %}...{% endif %}`, keeping the
//! whitespace control markers, so the output is the same.
//!
//! Public operations (crate-internal): [`environment`], [`rewrite_generation_tags`].

use minijinja::value::{from_args, Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

use super::pyfmt::{self, is_space, JsonOptions};

/// A fresh environment with the Hugging Face helpers installed.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(python_method);
    env.set_formatter(|out, _state, value| {
        let r = match value.as_str() {
            Some(s) => out.write_str(s),
            None => {
                let mut s = String::new();
                pyfmt::write_str(&mut s, value);
                out.write_str(&s)
            }
        };
        r.map_err(|_| Error::from(ErrorKind::WriteFailure))
    });
    env.add_filter("tojson", tojson);
    env.add_filter("string", |v: &Value| {
        let mut s = String::new();
        pyfmt::write_str(&mut s, v);
        s
    });
    env.add_filter("trim", |v: &Value, chars: Option<&str>| {
        // Jinja2's trim: `str(value).strip(chars)`, so undefined trims to "".
        let mut s = String::new();
        pyfmt::write_str(&mut s, v);
        strip(&s, chars, true, true)
    });
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
    env
}

/// `{% generation %}` / `{% endgeneration %}` (with any `-`/`+` markers and spacing)
/// become `{% if true %}` / `{% endif %}`; other text is untouched.
pub(crate) fn rewrite_generation_tags(src: &str) -> std::borrow::Cow<'_, str> {
    if !src.contains("generation") {
        return src.into();
    }
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find("{%") {
        out.push_str(&rest[..i + 2]);
        rest = &rest[i + 2..];
        let marker = rest.strip_prefix(['-', '+']).map_or(0, |_| 1);
        let body = &rest[marker..];
        let ws = body.len() - body.trim_start().len();
        let word = &body[ws..];
        let (tag, replacement) = if word.starts_with("endgeneration") {
            ("endgeneration", "endif")
        } else if word.starts_with("generation") {
            ("generation", "if true")
        } else {
            continue;
        };
        let after = word[tag.len()..].trim_start();
        let closes = after
            .strip_prefix(['-', '+'])
            .unwrap_or(after)
            .starts_with("%}");
        if closes {
            out.push_str(&rest[..marker + ws]);
            out.push_str(replacement);
            rest = &word[tag.len()..];
        }
    }
    out.push_str(rest);
    out.into()
}

/// Hugging Face's `tojson(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, which is `json.dumps` with those arguments.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let bad = |what: &str| Error::new(ErrorKind::InvalidOperation, format!("tojson: {what}"));
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_str(), i64::try_from(v.clone())) {
            (Some(s), _) => Some(s.to_owned()),
            (None, Ok(n)) => Some(" ".repeat(n.clamp(0, 64) as usize)),
            _ => return Err(bad("indent must be an int or a string")),
        },
    };
    let mut opts = JsonOptions::new(indent);
    opts.ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    opts.sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    if let Some(seps) = kwargs.get::<Option<Value>>("separators")? {
        if !seps.is_none() {
            let parts: Vec<String> = seps
                .try_iter()
                .map_err(|_| bad("separators must be a pair of strings"))?
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("separators must be a pair of strings"))?;
            let [item, key] = <[String; 2]>::try_from(parts)
                .map_err(|_| bad("separators must be a pair of strings"))?;
            opts.item_separator = item;
            opts.key_separator = key;
        }
    }
    kwargs.assert_all_used()?;
    pyfmt::json_dumps(value, &opts)
}

/// Python's `str.strip`/`lstrip`/`rstrip`: `chars` None strips Python whitespace.
fn strip(s: &str, chars: Option<&str>, left: bool, right: bool) -> String {
    let set: Option<Vec<char>> = chars.map(|c| c.chars().collect());
    let strip_it = |c: char| match &set {
        Some(set) => set.contains(&c),
        None => is_space(c),
    };
    let mut t = s;
    if left {
        t = t.trim_start_matches(strip_it);
    }
    if right {
        t = t.trim_end_matches(strip_it);
    }
    t.to_owned()
}

/// Python's `str.split(sep=None, maxsplit=-1)`.
fn split(s: &str, sep: Option<&str>, maxsplit: i64) -> Result<Vec<String>, Error> {
    let limit = usize::try_from(maxsplit).ok();
    match sep {
        Some("") => Err(Error::new(ErrorKind::InvalidOperation, "empty separator")),
        Some(sep) => Ok(match limit {
            Some(n) => s
                .splitn(n.saturating_add(1), sep)
                .map(str::to_owned)
                .collect(),
            None => s.split(sep).map(str::to_owned).collect(),
        }),
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_start_matches(is_space);
            while !rest.is_empty() {
                if limit == Some(out.len()) {
                    out.push(rest.to_owned());
                    break;
                }
                match rest.find(is_space) {
                    Some(i) => {
                        out.push(rest[..i].to_owned());
                        rest = rest[i..].trim_start_matches(is_space);
                    }
                    None => {
                        out.push(rest.to_owned());
                        break;
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Methods on values (`s.strip()`, `d.items()`): the string methods whose Python
/// semantics differ from pycompat's are done here; everything else goes to pycompat.
fn python_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let Some(s) = value.as_str().filter(|_| value.kind() == ValueKind::String) else {
        return minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args);
    };
    let opt_str = |v: Option<Value>| -> Result<Option<String>, Error> {
        match v {
            None => Ok(None),
            Some(v) if v.is_none() => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{method}: argument must be a string or None"),
                )
            }),
        }
    };
    let char_index = |byte: Option<usize>| match byte {
        Some(b) => s[..b].chars().count() as i64,
        None => -1,
    };
    Ok(match method {
        "strip" | "lstrip" | "rstrip" => {
            let (chars,): (Option<Value>,) = from_args(args)?;
            let chars = opt_str(chars)?;
            let (l, r) = match method {
                "lstrip" => (true, false),
                "rstrip" => (false, true),
                _ => (true, true),
            };
            Value::from(strip(s, chars.as_deref(), l, r))
        }
        "split" => {
            let (sep, maxsplit): (Option<Value>, Option<i64>) = from_args(args)?;
            let sep = opt_str(sep)?;
            Value::from(split(s, sep.as_deref(), maxsplit.unwrap_or(-1))?)
        }
        "find" => {
            let (sub,): (&str,) = from_args(args)?;
            Value::from(char_index(s.find(sub)))
        }
        "rfind" => {
            let (sub,): (&str,) = from_args(args)?;
            Value::from(char_index(s.rfind(sub)))
        }
        "removeprefix" => {
            let (p,): (&str,) = from_args(args)?;
            Value::from(s.strip_prefix(p).unwrap_or(s))
        }
        "removesuffix" => {
            let (p,): (&str,) = from_args(args)?;
            Value::from(s.strip_suffix(p).unwrap_or(s))
        }
        "isspace" => {
            let () = from_args(args)?;
            Value::from(!s.is_empty() && s.chars().all(is_space))
        }
        _ => {
            return minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
        }
    })
}

/// `strftime_now(fmt)`: the local time formatted by the C library, as Python's would.
fn strftime_now(fmt: &str) -> Result<String, Error> {
    let cfmt = std::ffi::CString::new(fmt)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "strftime_now: NUL in format"))?;
    let mut buf = vec![0u8; 256];
    // SAFETY: `time` and `localtime_r` write into the locals we pass; `strftime` writes at
    // most `buf.len()` bytes into `buf` and returns how many it wrote.
    let n = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "strftime_now: no local time",
            ));
        }
        libc::strftime(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            cfmt.as_ptr(),
            &tm,
        )
    };
    buf.truncate(n);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_render_their_body() {
        let src = "a {%- generation -%} b {%+ endgeneration %}{% if x %}generation{% endif %}";
        assert_eq!(
            rewrite_generation_tags(src),
            "a {%- if true -%} b {%+ endif %}{% if x %}generation{% endif %}"
        );
        assert_eq!(
            rewrite_generation_tags("{% generations %}"),
            "{% generations %}"
        );
    }

    #[test]
    fn split_follows_python() {
        assert_eq!(split("  a b\u{1c}c  ", None, -1).unwrap(), ["a", "b", "c"]);
        assert_eq!(split(" a b  c ", None, 1).unwrap(), ["a", "b  c "]);
        assert_eq!(split("a,,b", Some(","), -1).unwrap(), ["a", "", "b"]);
        assert_eq!(split("a,b,c", Some(","), 1).unwrap(), ["a", "b,c"]);
        assert!(split("", None, -1).unwrap().is_empty());
        assert!(split("a", Some(""), -1).is_err());
    }

    #[test]
    fn strip_and_find_follow_python() {
        assert_eq!(strip("\u{1f} x \n", None, true, true), "x");
        assert_eq!(strip("xxhixx", Some("x"), true, false), "hixx");
        let env = environment();
        let out = env
            .render_str(
                "{{ 'São a'.find('a') }} {{ 'ab'.removeprefix('a') }} {{ none }} {{ [1.0, 'x'] }}",
                (),
            )
            .unwrap();
        assert_eq!(out, "4 b None [1.0, 'x']");
    }
}
