//! Reading the admin API's HTTP/1.1 answers and writing its paths, for its
//! two clients (`ranvierctl` and the operator). Pure functions over bytes
//! and text: each client does its own I/O.

use crate::codes::ERROR_CODE_HEADER;

/// An HTTP answer: status, Axon error code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The `AxonIQ-ErrorCode` header, when sent.
    pub error_code: Option<String>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// Reads a whole HTTP/1.1 answer (identity or chunked body); `None` when
/// it is not one.
pub fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..split)?).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut error_code = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case(ERROR_CODE_HEADER) {
            error_code = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = raw.get(split + 4..)?;
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Some(Answer { status, error_code, body })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(raw.get(..line_end)?).ok()?.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        raw = raw.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// Percent-encodes a path segment or query value (context names may hold
/// `@`, which stays as it is).
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-decodes a path segment, or with `plus_is_space` a query key or
/// value (where `+` stands for a space), as a server reads it; `None` when
/// an escape is malformed or the bytes are not UTF-8.
pub fn decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_undoes_encoding_and_refuses_broken_escapes() {
        for text in ["orders", "a b/c?d=e&f#g", "ünï@x", "%"] {
            assert_eq!(decode(&encode(text), false).as_deref(), Some(text));
        }
        assert_eq!(decode("pr%6Fd", false).as_deref(), Some("prod"));
        assert_eq!(decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(decode("%6", false), None);
        assert_eq!(decode("%zz", false), None);
        assert_eq!(decode("%ff", false), None, "not UTF-8");
    }

    #[test]
    fn answers_are_read_with_their_error_code_plain_or_chunked() {
        let plain = b"HTTP/1.1 403 Forbidden\r\nAxonIQ-ErrorCode: AXONIQ-2307\r\ncontent-length: 2\r\n\r\n{}";
        let answer = Answer { status: 403, error_code: Some("AXONIQ-2307".into()), body: b"{}".to_vec() };
        assert_eq!(parse_answer(plain), Some(answer));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked), Some(Answer { status: 200, error_code: None, body: b"[1,2]".to_vec() }));
        assert_eq!(parse_answer(b"garbage"), None);
        assert_eq!(parse_answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab"), None);
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode("demo-node-0"), "demo-node-0");
        assert_eq!(encode("Billing@eu_1"), "Billing@eu_1");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
