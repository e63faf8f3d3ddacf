//! The contract every fuzz target checks: a parser of an untrusted file returns `Ok`, or an error that
//! is an input error (`warpnet::error::is_input_error`) whose message is one non-empty line. Anything
//! else (a panic, another kind of error, a message with a line break) aborts the run as a finding.

use warpnet::error::is_input_error;

/// Panics unless `message` is one non-empty line (no `\n`, no `\r`).
pub fn assert_one_line(message: &str, what: &str) {
    assert!(!message.trim().is_empty(), "{what}: empty error message");
    assert!(!message.contains(['\n', '\r']), "{what}: error message is not one line: {message:?}");
}

/// The value of `Ok`; for `Err`, checks that it is a one-line input error and returns `None`.
pub fn check<T>(result: anyhow::Result<T>, what: &str) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(err) => {
            // `{:#}` is what the command line prints: the whole context chain.
            let message = format!("{err:#}");
            assert!(is_input_error(&err), "{what}: not an input error: {message:?}");
            assert_one_line(&message, what);
            None
        }
    }
}

/// Splits `data` in two at a point read from its first two bytes (little-endian, clamped), so that one
/// fuzz input can carry two files.
pub fn split_two(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return (data, &[]);
    };
    let at = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    rest.split_at(at)
}
