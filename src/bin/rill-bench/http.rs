//! A minimal HTTP/1.1 client over `std::net::TcpStream` for talking to llama-server on
//! loopback: one request per connection (`Connection: close`), response bodies framed by
//! `Content-Length`, `Transfer-Encoding: chunked` (RFC 9112 §7.1) or connection close, and
//! a Server-Sent Events line parser (WHATWG HTML §9.2 "event stream interpretation",
//! `data:` fields only). No TLS, no redirects, no keep-alive: all rill-bench needs.
//! Public operations: [`get`], [`post`] (a [`Response`] whose body is read line by line),
//! [`SseParser`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::workloads::TIMED_OUT;

/// A response whose body has not been read yet.
pub struct Response {
    pub status: u16,
    body: BufReader<Body<BufReader<TcpStream>>>,
}

impl Response {
    /// The next body line without its line ending; `None` at the end of the body.
    pub fn next_line(&mut self) -> Result<Option<String>, String> {
        let mut line = String::new();
        match self.body.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => {
                let trimmed = line.trim_end_matches(['\n', '\r']).len();
                line.truncate(trimmed);
                Ok(Some(line))
            }
            Err(e) => Err(io_error("reading response body", &e)),
        }
    }

    /// The whole remaining body as text.
    pub fn text(mut self) -> Result<String, String> {
        let mut s = String::new();
        self.body
            .read_to_string(&mut s)
            .map_err(|e| io_error("reading response body", &e))?;
        Ok(s)
    }
}

/// An I/O error as text after `context`; the socket's timeout is marked [`TIMED_OUT`].
fn io_error(context: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    match e.kind() {
        TimedOut | WouldBlock => format!("{TIMED_OUT} {context}: {e}"),
        _ => format!("{context}: {e}"),
    }
}

/// `GET path`; returns the status and the body.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let r = request(addr, "GET", path, None, timeout)?;
    let status = r.status;
    Ok((status, r.text()?))
}

/// `POST path` with a JSON body; the response body is left to the caller.
pub fn post(
    addr: SocketAddr,
    path: &str,
    json: &str,
    timeout: Duration,
) -> Result<Response, String> {
    request(addr, "POST", path, Some(json), timeout)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    timeout: Duration,
) -> Result<Response, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| io_error(&format!("connecting to {addr}"), &e))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .and_then(|()| s.set_nodelay(true))
        .map_err(|e| format!("configuring the socket to {addr}: {e}"))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = json {
        head += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    head += "\r\n";
    let mut out = head.into_bytes();
    out.extend_from_slice(json.unwrap_or("").as_bytes());
    s.write_all(&out)
        .map_err(|e| format!("sending {method} {path} to {addr}: {e}"))?;
    let mut r = BufReader::new(s);
    let (status, framing) = read_head(&mut r).map_err(|e| format!("{method} {path}: {e}"))?;
    Ok(Response {
        status,
        body: BufReader::new(Body::new(r, framing)),
    })
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(u64),
    Close,
}

/// Reads the status line and headers; returns the status code and the body framing.
pub fn read_head(r: &mut impl BufRead) -> Result<(u16, Framing), String> {
    let mut line = String::new();
    let read = |r: &mut dyn BufRead, line: &mut String| -> Result<(), String> {
        line.clear();
        match r.read_line(line) {
            Ok(0) => Err("connection closed inside the response head".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(io_error("reading the response head", &e)),
        }
    };
    read(r, &mut line)?;
    let status = parse_status_line(line.trim_end())?;
    let mut framing = Framing::Close;
    loop {
        read(r, &mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            return Ok((status, framing));
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(format!("malformed header line {l:?}"));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
            framing = Framing::Chunked;
        } else if name == "content-length" && framing != Framing::Chunked {
            let n = value
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            framing = Framing::Length(n);
        }
    }
}

/// The status code of `HTTP/1.x NNN reason`.
pub fn parse_status_line(line: &str) -> Result<u16, String> {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code
            .parse()
            .map_err(|_| format!("bad status code in {line:?}")),
        _ => Err(format!("not an HTTP/1.x status line: {line:?}")),
    }
}

/// A response body decoded from its framing; reads return 0 at its end.
pub struct Body<R> {
    inner: R,
    framing: Framing,
    /// Bytes left in the current chunk (chunked) or in the body (length).
    left: u64,
    /// A chunked body has read its first chunk-size line.
    chunk_seen: bool,
    done: bool,
}

impl<R: BufRead> Body<R> {
    pub fn new(inner: R, framing: Framing) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Body {
            inner,
            framing,
            left,
            chunk_seen: false,
            done: framing == Framing::Length(0),
        }
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.inner.read_line(&mut l)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            ));
        }
        Ok(l.trim_end().to_owned())
    }

    /// Reads the next chunk-size line (after the previous chunk's CRLF); at the last chunk
    /// skips the trailers and marks the body done.
    fn next_chunk(&mut self, first: bool) -> std::io::Result<()> {
        if !first {
            let crlf = self.line()?;
            if !crlf.is_empty() {
                return Err(bad_data(format!("chunk not followed by CRLF: {crlf:?}")));
            }
        }
        let size_line = self.line()?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let n = u64::from_str_radix(hex, 16)
            .map_err(|_| bad_data(format!("bad chunk size line {size_line:?}")))?;
        if n == 0 {
            while !self.line()?.is_empty() {}
            self.done = true;
        }
        self.left = n;
        Ok(())
    }
}

fn bad_data(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.framing == Framing::Close {
            return self.inner.read(buf);
        }
        if self.left == 0 {
            // Only chunked bodies get here (a finished length body is `done`).
            let first = !self.chunk_seen;
            self.chunk_seen = true;
            self.next_chunk(first)?;
            if self.done {
                return Ok(0);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside the body",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 && matches!(self.framing, Framing::Length(_)) {
            self.done = true;
        }
        Ok(n)
    }
}

/// Splits an event stream into the `data` of its events (one event per blank-line-ended
/// block; several `data:` lines are joined with `\n`; comments and other fields ignored).
#[derive(Default)]
pub struct SseParser {
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds one line (without its line ending); returns an event's data when the line
    /// completes one.
    pub fn line(&mut self, line: &str) -> Option<String> {
        if line.is_empty() {
            return self.flush();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        None
    }

    /// Ends the stream: returns a final event left without its blank line.
    pub fn flush(&mut self) -> Option<String> {
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(std::mem::take(&mut self.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn body(raw: &str) -> Result<(u16, String), String> {
        let mut r = Cursor::new(raw.as_bytes().to_vec());
        let (status, framing) = read_head(&mut r)?;
        let mut s = String::new();
        Body::new(r, framing)
            .read_to_string(&mut s)
            .map_err(|e| e.to_string())?;
        Ok((status, s))
    }

    #[test]
    fn socket_timeouts_are_marked() {
        use std::io::{Error, ErrorKind};
        let t = io_error("reading", &Error::from(ErrorKind::WouldBlock));
        assert!(t.starts_with(TIMED_OUT) && t.contains("reading: "), "{t}");
        let t = io_error("reading", &Error::from(ErrorKind::ConnectionReset));
        assert!(!t.contains(TIMED_OUT) && t.starts_with("reading: "), "{t}");
    }

    #[test]
    fn status_line() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(parse_status_line("HTTP/1.0 503"), Ok(503));
        assert!(parse_status_line("SSH-2.0 hello").is_err());
        assert!(parse_status_line("HTTP/1.1 abc OK").is_err());
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n\
                   5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(body(raw), Ok((200, "hello, world".into())));
    }

    #[test]
    fn length_and_close_bodies() {
        let raw = "HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nabcdef";
        assert_eq!(body(raw), Ok((404, "abc".into())));
        let raw = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil close";
        assert_eq!(body(raw), Ok((200, "until close".into())));
        let raw = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(body(raw), Ok((204, String::new())));
    }

    #[test]
    fn broken_bodies_are_errors() {
        // Truncated chunk, bad size line, missing CRLF after a chunk, truncated head.
        assert!(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nshort").is_err());
        assert!(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n")
                .is_err()
        );
        assert!(body("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(body("HTTP/1.1 200 OK\r\n").is_err());
        assert!(body("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n").is_err());
    }

    #[test]
    fn sse_events() {
        let mut p = SseParser::default();
        let lines = [
            ": comment",
            "data: {\"a\":1}",
            "",
            "event: x",
            "data:first",
            "data: second",
            "id: 7",
            "",
            "",
            "data: [DONE]",
        ];
        let got: Vec<String> = lines.iter().filter_map(|l| p.line(l)).collect();
        assert_eq!(
            got,
            vec!["{\"a\":1}".to_string(), "first\nsecond".to_string()]
        );
        assert_eq!(p.flush(), Some("[DONE]".to_string()));
        assert_eq!(p.flush(), None);
    }
}
