//! Chat templates: the Jinja template shipped with the model (GGUF `tokenizer.chat_template`)
//! rendered with minijinja configured as Hugging Face configures Jinja2 (`trim_blocks`,
//! `lstrip_blocks`, Python string methods, `raise_exception`, `strftime_now`).

use minijinja::{context, Environment, ErrorKind, Value};
use serde::Serialize;

use crate::error::{Error, Result};

/// One chat message as templates see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// Extra template inputs from the request.
#[derive(Default)]
pub struct RenderOptions<'a> {
    pub add_generation_prompt: bool,
    pub reasoning_effort: Option<&'a str>,
}

impl ChatTemplate {
    /// Compiles `source`.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| Error::Template(format!("{e:#}")))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Renders `messages` into the prompt text.
    pub fn render(&self, messages: &[ChatMessage], opts: &RenderOptions) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => opts.add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
            reasoning_effort => opts.reasoning_effort,
        })
        .map_err(|e| Error::Template(format!("{e:#}")))
    }
}

/// `strftime_now(fmt)`: the local time formatted by the C library, as Python's would.
fn strftime_now(fmt: &str) -> std::result::Result<String, minijinja::Error> {
    let cfmt = std::ffi::CString::new(fmt).map_err(|_| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "strftime_now: NUL in format")
    })?;
    let mut buf = vec![0u8; 256];
    // SAFETY: `time` and `localtime_r` write into the locals we pass; `strftime` writes at
    // most `buf.len()` bytes into `buf` and returns how many it wrote.
    let n = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return Err(minijinja::Error::new(
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

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml() {
        let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        let msgs = vec![ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }];
        let out = t
            .render(
                &msgs,
                &RenderOptions {
                    add_generation_prompt: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(out, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn raise_exception_and_python_methods() {
        let t = ChatTemplate::new("{{ messages[0].content.strip().upper() }}{% if messages|length > 1 %}{{ raise_exception('too many') }}{% endif %}", "", "").unwrap();
        let one = vec![ChatMessage {
            role: "user".into(),
            content: "  hi ".into(),
        }];
        assert_eq!(t.render(&one, &RenderOptions::default()).unwrap(), "HI");
        let two = vec![one[0].clone(), one[0].clone()];
        assert!(t
            .render(&two, &RenderOptions::default())
            .unwrap_err()
            .to_string()
            .contains("too many"));
        let t = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "").unwrap();
        assert_eq!(t.render(&one, &RenderOptions::default()).unwrap().len(), 4);
    }
}
