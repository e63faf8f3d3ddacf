//! The placement notation read from text: one bracket of terms per device (grammar in the parent
//! module's docs). Every error is one line that starts with the flag.

use crate::bail_input;
use crate::model::terms::{Term, Vector};

use super::Entry;

/// The flag whose value a placement is; every parse error starts with it.
pub(super) const FLAG: &str = "--placement";
/// Opens one device's group of terms.
pub(super) const OPEN: char = '[';
/// Closes one device's group of terms.
pub(super) const CLOSE: char = ']';
/// Separates the terms in a group, and the groups.
pub(super) const SEPARATOR: char = ',';
/// Separates a term from its share of the batch: `F2'x1:0.45`.
const SHARE: char = ':';
/// Marks a Jacobian: `F2'` is F'_2(x1).
const PRIME: char = '\'';
/// The Unicode prime, accepted in place of [`PRIME`].
const UNICODE_PRIME: char = '\u{2032}';
/// The letter of a unit: `F2` is unit 2 (1-based).
const UNIT_LETTER: char = 'F';
/// The layer's input, the innermost vector of WarpNet1's F'_j x1.
const INPUT: &str = "x1";
/// An example in error messages.
const EXAMPLE: &str = "[F1],[F2],[F2'x1]";
/// Longest stretch of the user's text quoted in an error message, in characters.
const MAX_QUOTE: usize = 40;

/// Parses one term in the paper's notation, 1-based: `F1`, `F2'F1`, `F3'F2'F1`, `F2'x1` (`'` or `′`).
///
/// The units of the Jacobian chain must increase strictly from right to left (`F3'F2'F1`); `F2'F3` and
/// `F2'F2'F1` are not terms of any warp layer. Surrounding whitespace is ignored.
pub fn parse_term(text: &str) -> Result<Term, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty term; write one like F1, F2'F1 or F2'x1".to_string());
    }
    let factors: Vec<&str> = text.split([PRIME, UNICODE_PRIME]).collect();
    let (innermost, jacobians) = factors.split_last().expect("split yields at least one piece");
    if innermost.is_empty() {
        return Err(format!(
            "\"{}\" ends in a prime: a Jacobian needs a vector to act on, e.g. F2'F1 or F2'x1",
            quote(text)
        ));
    }
    let mut units = Vec::with_capacity(jacobians.len());
    for factor in jacobians {
        if factor.trim() == INPUT {
            return Err(format!(
                "in \"{}\", {INPUT} is the layer's input and can only be the rightmost factor, as in F2'x1",
                quote(text)
            ));
        }
        units.push(parse_unit(factor, text)?);
    }
    let vector =
        if innermost.trim() == INPUT { Vector::Input } else { Vector::Primal(parse_unit(innermost, text)?) };
    // Written outermost first; the chain is innermost first.
    units.reverse();
    let vector_unit = match vector {
        Vector::Primal(c) => Some(c),
        Vector::Input => None,
    };
    let mut previous = vector_unit;
    for &unit in &units {
        if let Some(inner) = previous.filter(|&inner| unit <= inner) {
            let why = if unit == inner {
                format!("F{} appears twice", unit + 1)
            } else {
                format!("F{}' is applied on top of the later unit F{}", unit + 1, inner + 1)
            };
            return Err(format!(
                "{} is not a term: its units must increase strictly from right to left, as in F3'F2'F1 \
                 (here {why})",
                quote(text)
            ));
        }
        previous = Some(unit);
    }
    Ok(Term { vector, chain: units })
}

/// `F<n>` with n >= 1, as the 0-based unit n - 1; `whole` is the term, for the message.
fn parse_unit(factor: &str, whole: &str) -> Result<usize, String> {
    let factor = factor.trim();
    let context = || if factor == whole { String::new() } else { format!(" in \"{}\"", quote(whole)) };
    let Some(digits) = factor.strip_prefix(UNIT_LETTER) else {
        return Err(format!(
            "\"{}\"{}: expected a unit F1, F2, ... or the input {INPUT}",
            quote(factor),
            context()
        ));
    };
    if digits.is_empty() {
        return Err(format!("\"{}\"{}: F needs a unit number, as in F1 or F2", quote(factor), context()));
    }
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "\"{}\"{}: expected a unit number after F, as in F1 or F2",
            quote(factor),
            context()
        ));
    }
    match digits.parse::<usize>() {
        Ok(0) => Err(format!("\"{}\"{}: units are numbered from F1", quote(factor), context())),
        Ok(unit) => Ok(unit - 1),
        Err(_) => Err(format!("\"{}\"{}: unit number too large", quote(factor), context())),
    }
}

/// The groups of `text`, each term parsed but not yet checked against a layer.
pub(super) fn parse_groups(text: &str) -> anyhow::Result<Vec<Vec<Entry>>> {
    if text.trim().is_empty() {
        bail_input!("{FLAG}: empty; write one bracket of terms per device, e.g. {EXAMPLE}");
    }
    let mut groups = Vec::new();
    let mut rest = text.trim_start();
    loop {
        let Some(inside) = rest.strip_prefix(OPEN) else {
            if rest.is_empty() {
                bail_input!(
                    "{FLAG}: \"{}\" ends in '{SEPARATOR}'; a bracket of terms must follow it",
                    quote(text)
                );
            }
            if rest.starts_with(CLOSE) {
                bail_input!("{FLAG}: unmatched '{CLOSE}' at \"{}\"", quote(rest));
            }
            bail_input!(
                "{FLAG}: expected '{OPEN}' at \"{}\"; write one bracket of terms per device, e.g. {EXAMPLE}",
                quote(rest)
            );
        };
        let Some(end) = inside.find([OPEN, CLOSE]) else {
            bail_input!("{FLAG}: unclosed '{OPEN}' in \"{}\"", quote(rest));
        };
        let bracket = &rest[..OPEN.len_utf8() + end + 1];
        if inside[end..].starts_with(OPEN) {
            bail_input!(
                "{FLAG}: '{OPEN}' inside another bracket in \"{}\"; brackets do not nest",
                quote(bracket)
            );
        }
        groups.push(parse_group(&inside[..end], bracket, groups.len() + 1)?);
        rest = inside[end + CLOSE.len_utf8()..].trim_start();
        if rest.is_empty() {
            return Ok(groups);
        }
        match rest.strip_prefix(SEPARATOR) {
            Some(next) => rest = next.trim_start(),
            None if rest.starts_with(CLOSE) => {
                bail_input!("{FLAG}: unmatched '{CLOSE}' after \"{}\"", quote(bracket))
            }
            None => bail_input!(
                "{FLAG}: expected '{SEPARATOR}' between brackets after \"{}\", found \"{}\"",
                quote(bracket),
                quote(rest)
            ),
        }
    }
}

/// The terms of one bracket; `bracket` is its text with the brackets and `device` its 1-based number,
/// for messages.
fn parse_group(inside: &str, bracket: &str, device: usize) -> anyhow::Result<Vec<Entry>> {
    if inside.trim().is_empty() {
        bail_input!(
            "{FLAG}: empty bracket \"{}\" (device {device}); every device needs a term",
            quote(bracket)
        );
    }
    let mut group = Vec::new();
    for piece in inside.split(SEPARATOR) {
        if piece.trim().is_empty() {
            bail_input!("{FLAG}: an empty term in \"{}\"", quote(bracket));
        }
        let (term, share) = match piece.split_once(SHARE) {
            Some((term, share)) => (term, Some(share.trim())),
            None => (piece, None),
        };
        let share = match share.map(str::parse::<f64>) {
            None => None,
            Some(Ok(share)) => Some(share),
            Some(Err(_)) => bail_input!(
                "{FLAG}: in \"{}\": a share after '{SHARE}' is a decimal fraction of the batch, as in F2'x1:0.45",
                quote(bracket)
            ),
        };
        match parse_term(term) {
            Ok(term) => group.push((term, share)),
            Err(reason) => bail_input!("{FLAG}: in \"{}\": {reason}", quote(bracket)),
        }
    }
    Ok(group)
}

/// `text` for a one-line message: whitespace runs as one space, at most [`MAX_QUOTE`] characters.
fn quote(text: &str) -> String {
    let single_spaced = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if single_spaced.chars().count() <= MAX_QUOTE {
        single_spaced
    } else {
        let mut cut: String = single_spaced.chars().take(MAX_QUOTE).collect();
        cut.push('…');
        cut
    }
}
