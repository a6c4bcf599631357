//! A minimal HTTP/1.1 GET, enough for the operator's probes and metrics and the media nodes'
//! admin API.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::error::{Error, Result};

/// A response: status code and body (chunked bodies are returned as received).
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Response headers, `name: value`, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

/// `GET path` on `addr`, within `timeout` for the whole exchange.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response> {
    get_as(addr, path, None, timeout).await
}

/// [`get`] with `Authorization: Bearer <token>`.
pub async fn get_authorized(
    addr: SocketAddr,
    path: &str,
    token: &str,
    timeout: Duration,
) -> Result<Response> {
    get_as(addr, path, Some(token), timeout).await
}

async fn get_as(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Response> {
    let authorization =
        token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| Error::io(format!("connect to {addr}"), e))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n{authorization}Connection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| Error::io(format!("write to {addr}"), e))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| Error::io(format!("read from {addr}"), e))?;
        parse(&raw).ok_or_else(|| {
            Error::Setup(format!(
                "GET http://{addr}{path}: not an HTTP response: {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            ))
        })
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        Error::Setup(format!(
            "GET http://{addr}{path}: no answer within {timeout:?}"
        ))
    })?
}

fn parse(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body; returns what it could when the body is malformed.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..size), rest.get(size..)) else {
            out.push_str(rest);
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(chunk);
        body = after.strip_prefix("\r\n").unwrap_or(after);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let r = parse(plain).map(|r| (r.status, r.body));
        assert_eq!(r, Some((200, "ok".to_string())));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n5\r\nready\r\n0\r\n\r\n";
        let r = parse(chunked).map(|r| (r.status, r.body));
        assert_eq!(r, Some((503, "not ready".to_string())));
        assert!(parse(b"garbage").is_none());
    }
}
