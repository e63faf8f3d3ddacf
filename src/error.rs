//! Errors a user can cause (bad files, flags, configs) versus failures of the program itself.
//!
//! Anything wrapping an [`InputError`] exits with code 2 and one line; other errors exit with code 1.

/// A problem with what the user gave us: a data file, a flag, a config. The message names the file or
/// flag and says what is wrong, in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Shorthand: an `anyhow::Error` carrying an [`InputError`]. Line breaks and other control characters
/// quoted from the input (a file name, a JSON string) are escaped, so the message stays one line.
pub fn input_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(one_line(&message.into())))
}

/// `text` with its control characters escaped as `\n`, `\r`, `\u{1b}`, ...
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

/// Early return with an [`InputError`], formatted like `format!`.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => {
        return Err($crate::error::input_error(format!($($arg)*)))
    };
}

/// Whether an error (or anything in its context chain) is the user's input.
pub fn is_input_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<InputError>())
}
