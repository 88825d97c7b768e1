//! The `--hello` exchange (issue #22) as both ends know it: the server (`serve/echo/hello.rs`
//! writes the line) and `send --hello` (reads it). Over TCP the server's first line is one
//! JSON object ending in `\n`; over UDP a datagram that starts with [`MARKER`] asks for it, and
//! gets it only when it fits in the request, so the client pads to [`UDP_REQUEST_SIZE`].

/// What a UDP datagram starts with to be answered with the hello line instead of its echo.
pub(crate) const MARKER: &[u8] = b"NETECHO-HELLO";

/// The size `send --udp --hello` pads its request to: QUIC's smallest Initial datagram, which
/// fits any path's MTU and is more than a hello line needs (some 200 bytes; the longest
/// `--id` and IPv6 addresses make it some 550).
pub(crate) const UDP_REQUEST_SIZE: usize = 1200;

/// The longest hello line a client waits for before it gives up: some eight times the longest
/// a server writes, so that a server that is not sending one is found out within a few KiB.
pub(crate) const MAX_LINE: usize = 4096;

/// A hello line's object, if `line` (without its newline) is one: a JSON object whose `event`
/// is `hello`.
pub(crate) fn parse(line: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(line).ok()? {
        serde_json::Value::Object(object) if object.get("event")? == "hello" => Some(object),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hello_object_is_one() {
        assert!(parse(br#"{"event":"hello","id":"b1"}"#).is_some());
        assert!(parse(br#"{"event":"connected"}"#).is_none());
        assert!(parse(b"hello").is_none());
        assert!(parse(b"[1]").is_none());
    }
}
