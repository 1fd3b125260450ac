//! A minimal HTTP/1.1 client for talking to a Hearth server on this machine (`hearth run` and
//! `hearth ps`). Plain HTTP only; it reads chunked and length-delimited bodies line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach Hearth at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to Hearth: {0}")]
    Io(#[from] std::io::Error),
    #[error("Hearth answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected answer from Hearth: {0}")]
    Protocol(String),
}

/// A response whose body is read incrementally.
pub struct Response {
    pub status: u16,
    reader: BufReader<TcpStream>,
    chunked: bool,
    /// Bytes left in the current chunk (chunked) or the body (length-delimited).
    left: Option<u64>,
    done: bool,
}

/// Whether something answers HTTP at `addr` within a short time.
pub fn is_up(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        Ok(s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            request_on(s, addr, "GET", "/api/version", None)
                .map(|r| r.status == 200)
                .unwrap_or(false)
        }
        Err(_) => false,
    }
}

/// Send a request; `body` is JSON.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Response, ClientError> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|source| ClientError::Connect { addr, source })?;
    request_on(stream, addr, method, path, body)
}

fn request_on(
    mut stream: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Response, ClientError> {
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: hearth-cli\r\nAccept: */*\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("status line `{}`", line.trim())))?;
    let mut chunked = false;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse().ok();
            }
        }
    }
    let mut resp = Response {
        status,
        reader,
        chunked,
        left: if chunked { Some(0) } else { length },
        done: false,
    };
    if !(200..300).contains(&status) {
        let body = resp.text().unwrap_or_default();
        return Err(ClientError::Status { status, body });
    }
    Ok(resp)
}

impl Response {
    /// Read up to `buf.len()` body bytes; 0 at the end.
    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, ClientError> {
        if self.done {
            return Ok(0);
        }
        if self.chunked && self.left == Some(0) {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            if line.trim().is_empty() {
                line.clear();
                self.reader.read_line(&mut line)?;
            }
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| ClientError::Protocol(format!("chunk size `{}`", line.trim())))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = Some(size);
        }
        let want = match self.left {
            Some(l) => (l as usize).min(buf.len()),
            None => buf.len(),
        };
        let n = self.reader.read(&mut buf[..want])?;
        if n == 0 {
            self.done = true;
            return Ok(0);
        }
        if let Some(l) = self.left.as_mut() {
            *l -= n as u64;
            if *l == 0 && !self.chunked {
                self.done = true;
            }
        }
        Ok(n)
    }

    /// The whole remaining body as text.
    pub fn text(&mut self) -> Result<String, ClientError> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = self.read_body(&mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).map_err(|_| ClientError::Protocol("body is not UTF-8".into()))
    }

    /// Call `f` for each line of the body as it arrives (NDJSON streams).
    pub fn for_each_line(
        &mut self,
        mut f: impl FnMut(&str) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.read_body(&mut buf)?;
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                if !text.trim().is_empty() {
                    f(text.trim())?;
                }
            }
        }
        let text = String::from_utf8_lossy(&pending);
        if !text.trim().is_empty() {
            f(text.trim())?;
        }
        Ok(())
    }
}
