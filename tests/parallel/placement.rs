//! Placements of a warp layer's terms on devices: the paper's Tables 2, 3 and 5, the default
//! assignments, the units each device holds, and every way a `--placement` value can be wrong.

use std::collections::{BTreeSet, HashSet};

use warpnet::error::is_input_error;
use warpnet::model::terms::{self, Term, Vector};
use warpnet::model::Variant;
use warpnet::runtime::placement::{parse_term, Placement};

const VARIANTS: [Variant; 4] = [Variant::Exact, Variant::Warpnet1, Variant::Warpnet2, Variant::Released];

fn warpnet1(k: usize) -> Vec<Term> {
    terms::build(Variant::Warpnet1, k, None)
}

/// The message of a placement that must fail as an input error, checked to be one line.
fn input_error_message(text: &str, terms: &[Term]) -> String {
    let err = Placement::parse(text, terms).expect_err(text);
    assert!(is_input_error(&err), "{text}: not an input error: {err:#}");
    let message = err.to_string();
    assert!(!message.contains('\n'), "{text}: message is not one line: {message}");
    assert!(message.starts_with("--placement:"), "{text}: {message}");
    message
}

/// Each term is on exactly one device and every term of the layer is somewhere.
fn assert_covers_once(placement: &Placement, terms: &[Term]) {
    let placed: Vec<&Term> = placement.groups.iter().flatten().collect();
    assert_eq!(placed.len(), terms.len(), "{placement}");
    let distinct: HashSet<&Term> = placed.iter().copied().collect();
    assert_eq!(distinct.len(), placed.len(), "{placement} repeats a term");
    assert!(terms.iter().all(|t| distinct.contains(t)), "{placement} misses a term");
}

#[test]
fn parse_term_reads_the_papers_notation() {
    assert_eq!(parse_term("F1").unwrap(), Term::primal(0));
    assert_eq!(parse_term("F2'F1").unwrap(), Term::of_subset(&[0, 1]));
    assert_eq!(parse_term("F3'F2'F1").unwrap(), Term::of_subset(&[0, 1, 2]));
    assert_eq!(parse_term("F2'x1").unwrap(), Term { vector: Vector::Input, chain: vec![1] });
    assert_eq!(parse_term("F3′F1").unwrap(), Term::of_subset(&[0, 2]));
    assert_eq!(parse_term("  F12'F10 ").unwrap(), Term::of_subset(&[9, 11]));
    for text in ["F1", "F2'F1", "F3'F2'F1", "F2'x1", "F5'F3'x1"] {
        assert_eq!(parse_term(text).unwrap().to_string(), text);
    }
}

#[test]
fn parse_term_rejects_what_is_not_a_term() {
    let cases = [
        ("F0", "F0"),
        ("F2'F3", "F2'F3"),
        ("F2'F2'F1", "F2'F2'F1"),
        ("G1", "G1"),
        ("F", "F"),
        ("F1'", "F1'"),
        ("x1'F1", "x1'F1"),
        ("", "empty"),
    ];
    for (text, quoted) in cases {
        let message = parse_term(text).expect_err(text);
        assert!(message.contains(quoted), "{text}: {message}");
        assert!(!message.contains('\n'), "{text}: {message}");
    }
    assert!(parse_term("F2'F3").unwrap_err().contains("not a term"));
    assert!(parse_term("F2'F2'F1").unwrap_err().contains("not a term"));
}

#[test]
fn papers_placements_parse_validate_and_round_trip() {
    let cases: [(&str, Variant, usize); 6] = [
        ("[F1],[F2],[F2'x1]", Variant::Warpnet1, 2),
        ("[F1],[F2],[F3],[F2'x1,F3'x1]", Variant::Warpnet1, 3),
        ("[F1],[F2,F2'x1],[F3,F3'x1]", Variant::Warpnet1, 3),
        ("[F1],[F2],[F2'F1]", Variant::Warpnet2, 2),
        ("[F1,F2,F2'x1]", Variant::Released, 2),
        ("[F1],[F2],[F3],[F2'F1,F3'F1,F3'F2,F3'F2'F1]", Variant::Exact, 3),
    ];
    for (text, variant, k) in cases {
        let terms = terms::build(variant, k, None);
        let placement = Placement::parse(text, &terms).unwrap_or_else(|e| panic!("{text}: {e:#}"));
        assert_covers_once(&placement, &terms);
        assert_eq!(placement.to_string(), text);
        assert_eq!(Placement::parse(&placement.to_string(), &terms).unwrap(), placement);
    }
    let table5 = Placement::parse("[F1],[F2,F2'x1],[F3,F3'x1]", &warpnet1(3)).unwrap();
    assert_eq!(table5.devices(), 3);
    assert_eq!(table5.groups[1], vec![Term::primal(1), Term { vector: Vector::Input, chain: vec![1] }]);
}

#[test]
fn whitespace_and_unicode_primes_are_accepted() {
    let spaced = Placement::parse(" [ F1 ] ,\n[F2] , [ F2′x1 , F3' x1 ] , [F3]  ", &warpnet1(3)).unwrap();
    assert_eq!(spaced.to_string(), "[F1],[F2],[F2'x1,F3'x1],[F3]");
    assert_eq!(spaced.devices(), 4);
}

#[test]
fn default_for_gives_the_papers_assignments() {
    let cases: [(Variant, usize, Option<usize>, &str); 9] = [
        (Variant::Warpnet1, 2, None, "[F1],[F2],[F2'x1]"),
        (Variant::Warpnet1, 3, None, "[F1],[F2],[F3],[F2'x1,F3'x1]"),
        (Variant::Released, 3, None, "[F1],[F2],[F3],[F2'x1,F3'x1]"),
        (Variant::Warpnet2, 2, None, "[F1],[F2],[F2'F1]"),
        (Variant::Exact, 2, None, "[F1],[F2],[F2'F1]"),
        (Variant::Warpnet2, 3, None, "[F1],[F2],[F3],[F2'F1,F3'F1,F3'F2]"),
        (Variant::Exact, 3, None, "[F1],[F2],[F3],[F2'F1,F3'F1,F3'F2,F3'F2'F1]"),
        (Variant::Exact, 3, Some(1), "[F1],[F2],[F3]"),
        (Variant::Warpnet1, 1, None, "[F1]"),
    ];
    for (variant, k, max_order, expected) in cases {
        let placement = Placement::default_for(variant, k, max_order);
        assert_eq!(placement.to_string(), expected, "{variant:?} K = {k} max order {max_order:?}");
    }
}

#[test]
fn every_default_placement_validates() {
    for variant in VARIANTS {
        for k in 1..=5 {
            for max_order in [None, Some(1), Some(2)] {
                let terms = terms::build(variant, k, max_order);
                let placement = Placement::default_for(variant, k, max_order);
                assert_covers_once(&placement, &terms);
                let reparsed = Placement::parse(&placement.to_string(), &terms)
                    .unwrap_or_else(|e| panic!("{variant:?} K = {k}: {e:#}"));
                assert_eq!(reparsed, placement);
                let higher_order = terms.iter().any(|t| !t.chain.is_empty());
                assert_eq!(placement.devices(), k + usize::from(higher_order), "{placement}");
            }
        }
    }
}

#[test]
fn single_device_holds_every_term() {
    let terms = warpnet1(2);
    let placement = Placement::single_device(&terms);
    assert_eq!(placement.to_string(), "[F1,F2,F2'x1]");
    assert_eq!(placement.devices(), 1);
    assert_eq!(placement.units_on(0), BTreeSet::from([0, 1]));
    assert!(placement.replicated_units().is_empty());
    assert_eq!(Placement::parse("[F1,F2,F2'x1]", &terms).unwrap(), placement);
}

#[test]
fn units_on_and_replicated_units() {
    let three = Placement::parse("[F1],[F2],[F2'x1]", &warpnet1(2)).unwrap();
    assert_eq!(three.units_on(0), BTreeSet::from([0]));
    assert_eq!(three.units_on(1), BTreeSet::from([1]));
    assert_eq!(three.units_on(2), BTreeSet::from([1]));
    assert_eq!(three.replicated_units(), vec![1]);

    let two = Placement::parse("[F1],[F2,F2'x1]", &warpnet1(2)).unwrap();
    assert_eq!(two.units_on(0), BTreeSet::from([0]));
    assert_eq!(two.units_on(1), BTreeSet::from([1]));
    assert!(two.replicated_units().is_empty());

    // The higher-order terms' device applies F2' and F3'; F1(x1) and F2(x1) it receives from the
    // devices of F1 and F2 (imported outputs), so unit 1 is not held there.
    let exact = Placement::default_for(Variant::Exact, 3, None);
    assert_eq!(exact.units_on(3), BTreeSet::from([1, 2]));
    assert_eq!(exact.imported_outputs(3), BTreeSet::from([0, 1]));
    assert_eq!(exact.replicated_units(), vec![1, 2]);
    assert!(three.imported_outputs(2).is_empty(), "F2'x1 starts from x1");
}

#[test]
fn wrong_terms_are_input_errors_naming_the_term() {
    let terms = warpnet1(2);
    let message = input_error_message("[F1],[F2],[F3'F1]", &terms);
    assert!(
        message.contains("F3'F1 is not a term of this warp layer (its terms: F1, F2, F2'x1)"),
        "{message}"
    );

    let message = input_error_message("[F1],[F2],[F2'x1],[F2]", &terms);
    assert!(message.contains("F2 appears twice"), "{message}");
    let message = input_error_message("[F1,F1],[F2],[F2'x1]", &terms);
    assert!(message.contains("F1 appears twice"), "{message}");

    let message = input_error_message("[F1],[F2]", &terms);
    assert!(message.contains("F2'x1 is on no device"), "{message}");
    let message = input_error_message("[F1],[F2]", &warpnet1(3));
    assert!(message.contains("F3") && message.contains("F2'x1") && message.contains("F3'x1"), "{message}");
    assert!(message.contains("on no device"), "{message}");

    let message = input_error_message("[F1],[F2],[F2'F3]", &terms);
    assert!(message.contains("F2'F3") && message.contains("not a term"), "{message}");
}

#[test]
fn malformed_text_is_an_input_error_quoting_it() {
    let terms = warpnet1(2);
    let cases = [
        ("[F1],[],[F2,F2'x1]", "[]"),
        ("[F1],[ ],[F2,F2'x1]", "[ ]"),
        ("[F1],[F2,F2'x1", "[F2,F2'x1"),
        ("[F1]],[F2,F2'x1]", "unmatched ']'"),
        ("[F1],[F2,[F2'x1]]", "[F2,["),
        ("[F1] [F2,F2'x1]", "[F2,F2'x1]"),
        ("[F1],F2,[F2'x1]", "F2,[F2'x1]"),
        ("[F1],[F2,F2'x1],", "ends in ','"),
        ("[F1],[F2,,F2'x1]", "[F2,,F2'x1]"),
        ("[F1],[F2,F2'x1] junk", "junk"),
        ("[F1],[G2],[F2'x1]", "G2"),
        ("", "empty"),
        ("   ", "empty"),
    ];
    for (text, quoted) in cases {
        let message = input_error_message(text, &terms);
        assert!(message.contains(quoted), "{text:?}: {message}");
    }
}

#[test]
fn long_and_multiline_garbage_stays_one_line() {
    let text = format!("[F1],[F2],\n[F2'x1]\n{}", "x ".repeat(100));
    let message = input_error_message(&text, &warpnet1(2));
    assert!(message.contains("x x x"), "{message}");
    assert!(message.len() < 200, "{message}");
}

/// Terms split by batch (parallel/placement/shares.rs): the notation round-trips, each piece covers its rows in
/// device order (rounded to the nearest row), and the last piece ends at the last row.
#[test]
fn split_terms_read_their_shares_and_cover_the_batch() {
    let terms = warpnet1(2);
    let text = "[F1,F2'x1:0.45],[F2,F2'x1:0.55]";
    let placement = Placement::parse(text, &terms).unwrap();
    assert_eq!(placement.to_string(), text);
    assert_eq!(Placement::parse(&placement.to_string(), &terms).unwrap(), placement);
    let f2x1 = Term { vector: Vector::Input, chain: vec![1] };
    assert_eq!(placement.units_on(0), BTreeSet::from([0, 1]), "the piece's device holds unit 2");
    assert_eq!(placement.span(0, &Term::primal(0)).rows(64), (0, 64), "a whole term: every row");
    // 0.45 x 64 = 28.8 -> rows 0..29 and 29..64.
    assert_eq!(placement.span(0, &f2x1).rows(64), (0, 29));
    assert_eq!(placement.span(1, &f2x1).rows(64), (29, 35));
    let three = Placement::parse("[F1,F2'x1:0.3],[F2,F2'x1:0.3],[F2'x1:0.4]", &terms).unwrap();
    let rows: Vec<(i64, i64)> = (0..3).map(|d| three.span(d, &f2x1).rows(10)).collect();
    assert_eq!(rows, vec![(0, 3), (3, 3), (6, 4)]);
}

#[test]
fn bad_shares_are_one_line_input_errors() {
    let terms = warpnet1(2);
    let cases = [
        ("[F1,F2'x1:0.5],[F2,F2'x1:0.4]", "sum to 0.9"),
        ("[F1,F2'x1:1],[F2]", "in (0, 1)"),
        ("[F1,F2'x1:0],[F2,F2'x1:1]", "in (0, 1)"),
        ("[F1,F2'x1:half],[F2,F2'x1:0.5]", "decimal fraction"),
        ("[F1:0.5,F2'x1],[F1:0.5,F2]", "only the F'_j x1 terms"),
        ("[F1,F2'x1:0.5],[F2,F2'x1]", "both whole and with a share"),
        ("[F1,F2'x1:0.5,F2'x1:0.5],[F2]", "appears twice on device 1"),
        ("[F1,F2'x1:0.5],[F2]", "sum to 0.5"),
    ];
    for (text, expected) in cases {
        let message = input_error_message(text, &terms);
        assert!(message.contains(expected), "{text}: {message}");
    }
}
