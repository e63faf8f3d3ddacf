//! A reader for NumPy `.npy` arrays (format versions 1.0, 2.0 and 3.0) of plain numeric dtypes.
//!
//! The file is the magic `\x93NUMPY`, a major and minor version byte, a little-endian header length (u16
//! for version 1, u32 for 2 and 3), and a header that is a Python dict literal such as
//! `{'descr': '<i8', 'fortran_order': False, 'shape': (10, 3072), }`, followed by the raw data.
//!
//! Errors are returned as a phrase about the array (e.g. `has dtype '<f4', expected '|u1'`) so that the
//! caller can prefix the file and array name.

use std::fmt;

/// The six bytes every `.npy` file starts with.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Bytes before the header length: magic + major + minor.
const PREAMBLE_BYTES: usize = NPY_MAGIC.len() + 2;

/// A problem with a `.npy` array, as a phrase completing "'NAME' ...".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyError(pub String);

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shorthand for an `Err(NpyError)` built with `format!`.
macro_rules! npy_bail {
    ($($arg:tt)*) => {
        return Err(NpyError(format!($($arg)*)))
    };
}

/// A parsed C-order array: its dtype string, shape and raw data bytes (length checked against both).
#[derive(Debug, Clone)]
pub struct NpyArray {
    /// The dtype as written in the header, e.g. `|u1` or `<i8`.
    pub descr: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Raw element bytes, `shape.product() * item_size(descr)` of them.
    pub data: Vec<u8>,
}

/// An integer element type: size in bytes, signedness and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntType {
    pub bytes: usize,
    pub signed: bool,
    pub big_endian: bool,
}

/// The integer type a dtype string names (`<i8`, `|u1`, `>u2`, ...), or `None` for anything else.
pub fn int_type(descr: &str) -> Option<IntType> {
    let mut chars = descr.chars();
    let order = chars.next()?;
    let kind = chars.next()?;
    let bytes: usize = chars.as_str().parse().ok()?;
    let signed = match kind {
        'i' => true,
        'u' => false,
        _ => return None,
    };
    let big_endian = match (order, bytes) {
        ('|', 1) | ('<', _) => false,
        ('>', _) => true,
        _ => return None,
    };
    matches!(bytes, 1 | 2 | 4 | 8).then_some(IntType { bytes, signed, big_endian })
}

impl NpyArray {
    /// The shape as Python writes it: `(5,)`, `(5, 3072)`.
    pub fn shape_text(&self) -> String {
        shape_text(&self.shape)
    }

    /// The elements as `i64`, when the dtype is an integer type no wider than 8 bytes.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        let ty = int_type(&self.descr)?;
        let values = self.data.chunks_exact(ty.bytes).map(|chunk| int_value(chunk, ty));
        Some(values.collect())
    }
}

/// Reads one integer element; values above `i64::MAX` saturate (they are out of any label range anyway).
fn int_value(chunk: &[u8], ty: IntType) -> i64 {
    let mut word = [0u8; 8];
    if ty.big_endian {
        word[8 - ty.bytes..].copy_from_slice(chunk);
    } else {
        word[..ty.bytes].copy_from_slice(chunk);
    }
    let raw = if ty.big_endian { u64::from_be_bytes(word) } else { u64::from_le_bytes(word) };
    if ty.signed {
        let shift = 64 - 8 * ty.bytes as u32;
        ((raw << shift) as i64) >> shift
    } else {
        i64::try_from(raw).unwrap_or(i64::MAX)
    }
}

/// The shape as Python writes it: `(5,)`, `(5, 3072)`, `()`.
pub fn shape_text(shape: &[usize]) -> String {
    match shape {
        [single] => format!("({single},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Parses a whole `.npy` file, taking ownership of the bytes so that the data needs no copy.
pub fn parse(mut bytes: Vec<u8>) -> Result<NpyArray, NpyError> {
    let (header, data_start) = split_header(&bytes)?;
    let header = Header::parse(header)?;
    if header.fortran_order {
        npy_bail!("is stored in Fortran order, expected C order (fortran_order False)");
    }
    let item = item_size(&header.descr)
        .ok_or_else(|| NpyError(format!("has unsupported dtype '{}'", header.descr.escape_default())))?;
    let expected = header
        .shape
        .iter()
        .try_fold(item, |acc, &dim| acc.checked_mul(dim))
        .ok_or_else(|| NpyError(format!("has shape {}, too large to hold", shape_text(&header.shape))))?;
    let found = bytes.len() - data_start;
    if found != expected {
        npy_bail!(
            "holds {found} data bytes, expected {expected} for shape {} and dtype '{}'",
            shape_text(&header.shape),
            header.descr
        );
    }
    bytes.drain(..data_start);
    Ok(NpyArray { descr: header.descr, shape: header.shape, data: bytes })
}

/// Checks magic and version and returns (the header text, where the data starts).
fn split_header(bytes: &[u8]) -> Result<(&str, usize), NpyError> {
    if !bytes.starts_with(NPY_MAGIC) {
        npy_bail!("is not a .npy array (no \\x93NUMPY magic)");
    }
    let (major, minor) = match bytes.get(NPY_MAGIC.len()..PREAMBLE_BYTES) {
        Some(&[major, minor]) => (major, minor),
        _ => npy_bail!("is truncated inside the .npy preamble"),
    };
    let length_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => npy_bail!("has unsupported .npy format version {major}.{minor}"),
    };
    let length_field = bytes
        .get(PREAMBLE_BYTES..PREAMBLE_BYTES + length_bytes)
        .ok_or_else(|| NpyError("is truncated inside the .npy header length".to_string()))?;
    let mut word = [0u8; 4];
    word[..length_bytes].copy_from_slice(length_field);
    let start = PREAMBLE_BYTES + length_bytes;
    let end = start.checked_add(u32::from_le_bytes(word) as usize);
    let header = end
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| NpyError("is truncated inside the .npy header".to_string()))?;
    let text = std::str::from_utf8(header)
        .map_err(|_| NpyError("has a .npy header that is not text".to_string()))?;
    Ok((text, start + header.len()))
}

/// Bytes per element of the dtypes we can read: integers, floats and `|b1`.
fn item_size(descr: &str) -> Option<usize> {
    if let Some(ty) = int_type(descr) {
        return Some(ty.bytes);
    }
    match descr {
        "|b1" => Some(1),
        "<f2" | ">f2" => Some(2),
        "<f4" | ">f4" => Some(4),
        "<f8" | ">f8" => Some(8),
        _ => None,
    }
}

/// The three header fields we need.
#[derive(Debug, Default)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value in the header dict.
enum Value {
    Text(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

impl Header {
    /// Parses the dict literal; every one of 'descr', 'fortran_order' and 'shape' must be present.
    fn parse(text: &str) -> Result<Header, NpyError> {
        let bad = |what: &str| NpyError(format!("has an unreadable .npy header ({what}): {}", snippet(text)));
        let mut cursor = Cursor { rest: text.trim_start() };
        cursor.expect('{').map_err(|_| bad("no '{'"))?;
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        while !cursor.eat('}') {
            let key = cursor.string().ok_or_else(|| bad("expected a quoted key"))?;
            cursor.expect(':').map_err(|_| bad("expected ':'"))?;
            let value = cursor.value().ok_or_else(|| bad("unreadable value"))?;
            match (key.as_str(), value) {
                ("descr", Value::Text(text)) => descr = Some(text),
                ("fortran_order", Value::Bool(flag)) => fortran = Some(flag),
                ("shape", Value::Tuple(dims)) => shape = Some(dims),
                ("descr" | "fortran_order" | "shape", _) => return Err(bad("a value of the wrong kind")),
                _ => {}
            }
            if !cursor.eat(',') {
                cursor.expect('}').map_err(|_| bad("expected ',' or '}'"))?;
                break;
            }
        }
        match (descr, fortran, shape) {
            (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header { descr, fortran_order, shape }),
            _ => Err(bad("missing 'descr', 'fortran_order' or 'shape'")),
        }
    }
}

/// At most 80 characters of the header, with control characters escaped, for an error message.
fn snippet(text: &str) -> String {
    const LIMIT: usize = 80;
    let trimmed = text.trim();
    let mut out = String::new();
    for c in trimmed.chars().take(LIMIT) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if trimmed.chars().count() > LIMIT {
        out.push_str("...");
    }
    out
}

/// A tiny scanner over the header text.
struct Cursor<'a> {
    rest: &'a str,
}

impl Cursor<'_> {
    /// Skips whitespace, then consumes `c` if it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.rest = self.rest.trim_start();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// Like [`Cursor::eat`], but not finding `c` is an error.
    fn expect(&mut self, c: char) -> Result<(), ()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(())
        }
    }

    /// A string in single or double quotes (no escapes: dtype strings and keys never need them).
    fn string(&mut self) -> Option<String> {
        self.rest = self.rest.trim_start();
        let quote = self.rest.chars().next().filter(|&c| c == '\'' || c == '"')?;
        let body = &self.rest[1..];
        let end = body.find(quote)?;
        self.rest = &body[end + 1..];
        Some(body[..end].to_string())
    }

    /// A non-negative integer, with the optional `L` suffix that Python 2 wrote.
    fn integer(&mut self) -> Option<usize> {
        self.rest = self.rest.trim_start();
        let digits = self.rest.len() - self.rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let value = self.rest[..digits].parse().ok()?;
        self.rest = &self.rest[digits..];
        self.rest = self.rest.strip_prefix('L').unwrap_or(self.rest);
        Some(value)
    }

    /// A tuple of integers: `()`, `(5,)`, `(5, 3072)`, `(5, 3072,)`.
    fn tuple(&mut self) -> Option<Vec<usize>> {
        let mut dims = Vec::new();
        while !self.eat(')') {
            dims.push(self.integer()?);
            if !self.eat(',') {
                self.expect(')').ok()?;
                break;
            }
        }
        Some(dims)
    }

    /// A string, `True`/`False` or a tuple of integers.
    fn value(&mut self) -> Option<Value> {
        self.rest = self.rest.trim_start();
        if self.eat('(') {
            return self.tuple().map(Value::Tuple);
        }
        for (word, flag) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Some(Value::Bool(flag));
            }
        }
        self.string().map(Value::Text)
    }
}
