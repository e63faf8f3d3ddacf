//! The JSON sidecar of a checkpoint (`parse_sidecar`) is an untrusted file: a valid one parses, and 500
//! seeded mutations of it (bytes flipped, cut, inserted; numbers replaced by huge, negative, fractional
//! or non-finite values and by other types; fields deleted and unknown fields added) each give `Ok` or a
//! one-line input error naming the file, never a panic. Specific inconsistencies must be refused.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use warpnet::data::augment::Standardizer;
use warpnet::error::is_input_error;
use warpnet::train::checkpoint::{parse_sidecar, EpochProgress, Position, Sidecar, CHECKPOINT_FORMAT};
use warpnet::train::TrainConfig;

/// How the errors name the sidecar.
const PATH: &str = "run/checkpoints/step-00000755.json";
/// Mutations per run (all seeded: a failure names the mutation that caused it).
const MUTATIONS: usize = 500;
const SEED: u64 = 0x5eed_51de;

/// A sidecar as a run writes it in the middle of its third epoch.
fn valid_sidecar() -> Sidecar {
    let config = TrainConfig::demo();
    Sidecar {
        format: CHECKPOINT_FORMAT,
        seed: config.seed,
        config,
        classes: 10,
        class_names: (0..10).map(|i| format!("class {i}")).collect(),
        standardizer: Standardizer { mean: [0.2860, 0.2860, 0.2860], std: [0.3530, 0.3530, 0.3530] },
        position: Position { epoch: 2, batch: 5, step: 755 },
        progress: EpochProgress {
            loss_sum: 11.25,
            correct: 40,
            seen: 80,
            seconds: 3.5,
            data_wait_seconds: 0.25,
        },
        train_seconds: 120.5,
        checksums: Some([("stem.conv.weight".to_string(), 0xdead_beef_u32)].into_iter().collect()),
    }
}

/// An edit of the sidecar's JSON value.
type Edit = fn(&mut Value);

fn valid_value() -> Value {
    serde_json::to_value(valid_sidecar()).unwrap()
}

/// `parse_sidecar` on `text`, checked against its contract: `Ok` with a sidecar that keeps the promised
/// invariants, or an input error of one non-empty line that names the file. A panic or any other
/// outcome fails the test, naming `what` and showing the input.
fn parse_checked(text: &str, what: &str) -> Result<Sidecar, String> {
    let parsed = catch_unwind(AssertUnwindSafe(|| parse_sidecar(text, Path::new(PATH))));
    let result = match parsed {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: parse_sidecar panicked ({message}) on:\n{text}");
        }
    };
    match result {
        Ok(sidecar) => {
            assert_eq!(sidecar.format, CHECKPOINT_FORMAT, "{what}: accepted format");
            assert!(sidecar.config.validate().is_ok(), "{what}: accepted a config that does not validate");
            assert_eq!(sidecar.class_names.len(), sidecar.classes, "{what}: accepted class names");
            assert!(sidecar.classes >= 2, "{what}: accepted {} classes", sidecar.classes);
            let (p, progress) = (sidecar.position, sidecar.progress);
            assert!(p.batch <= p.step, "{what}: accepted position {p:?}");
            assert_eq!(p.batch == 0, progress.seen == 0, "{what}: accepted {p:?} with {progress:?}");
            for sum in [progress.loss_sum, progress.seconds, sidecar.train_seconds] {
                assert!(sum.is_finite() && sum >= 0.0, "{what}: accepted the sum {sum}");
            }
            Ok(sidecar)
        }
        Err(err) => {
            let message = format!("{err:#}");
            assert!(is_input_error(&err), "{what}: not an input error: {message:?}\non:\n{text}");
            assert!(!message.contains(['\n', '\r']), "{what}: not one line: {message:?}\non:\n{text}");
            let rest = message.strip_prefix(&format!("{PATH}: ")).unwrap_or_else(|| {
                panic!("{what}: the message does not start with the file: {message:?}\non:\n{text}")
            });
            assert!(!rest.trim().is_empty(), "{what}: the message says nothing beyond the file");
            Err(message)
        }
    }
}

/// The text of `value` must be refused, with a message containing `phrase`.
fn assert_refused(value: &Value, phrase: &str, what: &str) {
    let text = serde_json::to_string_pretty(value).unwrap();
    match parse_checked(&text, what) {
        Ok(_) => panic!("{what}: accepted:\n{text}"),
        Err(message) => assert!(message.contains(phrase), "{what}: {message:?} does not say {phrase:?}"),
    }
}

#[test]
fn the_valid_sidecar_parses_back_to_itself() {
    let sidecar = valid_sidecar();
    for text in [serde_json::to_string_pretty(&sidecar).unwrap(), serde_json::to_string(&sidecar).unwrap()] {
        let parsed = parse_checked(&text, "valid sidecar").expect("the valid sidecar is refused");
        assert_eq!(parsed.config, sidecar.config);
        assert_eq!(parsed.class_names, sidecar.class_names);
        assert_eq!(parsed.standardizer, sidecar.standardizer);
        assert_eq!(parsed.position, sidecar.position);
        assert_eq!(parsed.progress, sidecar.progress);
        assert_eq!((parsed.classes, parsed.seed), (sidecar.classes, sidecar.seed));
        assert_eq!(parsed.train_seconds, sidecar.train_seconds);
    }
    // A checkpoint at an epoch boundary (batch 0, nothing seen) is valid too.
    let mut boundary = valid_value();
    boundary["position"] = json!({ "epoch": 3, "batch": 0, "step": 750 });
    boundary["progress"] = json!({ "loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0 });
    assert!(parse_checked(&boundary.to_string(), "epoch boundary").is_ok());
}

#[test]
fn specific_inconsistencies_are_refused() {
    let cases: [(&str, &str, Edit); 10] = [
        ("format 2", "checkpoint format 2", |v| v["format"] = json!(2)),
        ("format 0", "checkpoint format 0", |v| v["format"] = json!(0)),
        ("negative train_seconds", "negative or non-finite", |v| v["train_seconds"] = json!(-1.0)),
        ("negative loss sum", "negative or non-finite", |v| v["progress"]["loss_sum"] = json!(-0.5)),
        ("class names short of classes", "9 class names for 10 classes", |v| {
            v["class_names"].as_array_mut().unwrap().pop();
        }),
        ("one class", "1 class names for 1 classes", |v| {
            v["classes"] = json!(1);
            v["class_names"] = json!(["only"]);
        }),
        ("batch beyond step", "disagrees with its progress", |v| v["position"]["batch"] = json!(756)),
        ("batch 0 with images seen", "disagrees with its progress", |v| v["position"]["batch"] = json!(0)),
        ("unknown top-level field", "unknown field `extra`", |v| v["extra"] = json!(1)),
        ("config with batch 1", "--batch must be at least 2", |v| v["config"]["batch"] = json!(1)),
    ];
    for (what, phrase, edit) in cases {
        let mut value = valid_value();
        edit(&mut value);
        assert_refused(&value, phrase, what);
    }
    // Structural cases, as text.
    for (what, text) in [
        ("empty file", ""),
        ("JSON null", "null"),
        ("JSON array", "[]"),
        ("not JSON", "step 755 of run 3"),
        ("unknown config field", &valid_value().to_string().replacen("\"k\":", "\"kk\":", 1)),
    ] {
        assert!(parse_checked(text, what).is_err(), "{what}: accepted");
    }
}

// ---- mutations --------------------------------------------------------------------------------------

/// JSON pointers to every node under `value` (the root is "").
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn nodes_where(value: &Value, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    all.into_iter().filter(|p| keep(value.pointer(p).unwrap())).collect()
}

/// Number tokens written into the JSON text in place of a number: out of every integer type's range,
/// negative, fractional, non-finite after parsing, or not JSON at all (NaN, Infinity).
const NUMBER_TOKENS: [&str; 18] = [
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "4294967296",
    "-1",
    "-0.0",
    "0.5",
    "1e308",
    "-1e308",
    "1e999",
    "-1e999",
    "1e-400",
    "3.4028236e38",
    "NaN",
    "Infinity",
    "-Infinity",
    "1.7976931348623157e309",
    "0",
];

/// JSON values put in place of a number (or of anything): other types, and numbers JSON can hold.
fn replacement(rng: &mut ChaCha8Rng) -> Value {
    let choices = [
        json!(u64::MAX),
        json!(i64::MIN),
        json!(f64::MAX),
        json!(-f64::MAX),
        json!(f64::MIN_POSITIVE),
        json!(-1),
        json!(0),
        json!(1),
        json!("NaN"),
        json!("inf"),
        json!(""),
        json!("cpu:2"),
        json!(null),
        json!(true),
        json!([]),
        json!([1, 2]),
        json!({}),
        json!({ "epoch": 1 }),
    ];
    choices.choose(rng).unwrap().clone()
}

/// Unknown field names added to an object.
const UNKNOWN_FIELDS: [&str; 5] = ["extra", "formats", "Config", "", "position "];

/// Bytes inserted into the text: JSON structure, a backslash (escapes), digits, letters, a space, a
/// tab, a raw newline, a byte that is not UTF-8 on its own.
const INSERTED: &[u8] = b"{}[]\\\":,-+.0123456789eEaz \t\n\xff";

/// One mutation of the valid sidecar: its text, its kind (0..8) and a description.
fn mutate(rng: &mut ChaCha8Rng) -> (String, usize, String) {
    let value = valid_value();
    let text =
        if rng.gen_bool(0.5) { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) };
    let mut bytes = text.unwrap().into_bytes();
    let kind = rng.gen_range(0..8);
    let described = match kind {
        0..=3 => mutate_bytes(rng, kind, &mut bytes),
        _ => {
            let (edited, described) = mutate_structure(rng, kind, &value);
            bytes = edited;
            described
        }
    };
    // parse_sidecar takes text: bytes that are no longer UTF-8 arrive as replacement characters.
    (String::from_utf8_lossy(&bytes).into_owned(), kind, described)
}

/// Mutations 0..4 of the text as bytes: a byte flipped, the text cut, bytes inserted or deleted.
fn mutate_bytes(rng: &mut ChaCha8Rng, kind: usize, bytes: &mut Vec<u8>) -> String {
    match kind {
        0 => {
            let at = rng.gen_range(0..bytes.len());
            let mask = rng.gen_range(1..=255u8);
            bytes[at] ^= mask;
            format!("byte {at} xor 0x{mask:02x}")
        }
        1 => {
            let at = rng.gen_range(0..bytes.len());
            bytes.truncate(at);
            format!("truncated to {at} bytes")
        }
        2 => {
            let at = rng.gen_range(0..=bytes.len());
            let n = rng.gen_range(1..=4);
            let inserted: Vec<u8> = (0..n).map(|_| *INSERTED.choose(rng).unwrap()).collect();
            bytes.splice(at..at, inserted.iter().copied());
            format!("inserted {:?} at byte {at}", String::from_utf8_lossy(&inserted))
        }
        3 => {
            let start = rng.gen_range(0..bytes.len());
            let end = (start + rng.gen_range(1..=16)).min(bytes.len());
            bytes.drain(start..end);
            format!("deleted bytes {start}..{end}")
        }
        _ => unreachable!("byte mutations are kinds 0..4"),
    }
}

/// Mutations 4..8 of the JSON value, written back as text: a number, a node or a field changed.
fn mutate_structure(rng: &mut ChaCha8Rng, kind: usize, value: &Value) -> (Vec<u8>, String) {
    match kind {
        4 => {
            // A number replaced by a token written straight into the text.
            let numbers = nodes_where(value, Value::is_number);
            let pointer = numbers.choose(rng).unwrap();
            let token = NUMBER_TOKENS.choose(rng).unwrap();
            let mut marked = value.clone();
            *marked.pointer_mut(pointer).unwrap() = json!("@NUMBER@");
            let bytes = marked.to_string().replace("\"@NUMBER@\"", token).into_bytes();
            (bytes, format!("number at {pointer} written as {token}"))
        }
        5 => {
            // A number (or, one time in four, any node) replaced by another JSON value.
            let any = rng.gen_bool(0.25);
            let targets = nodes_where(value, |v| any || v.is_number());
            let pointer = targets.choose(rng).unwrap();
            let new = replacement(rng);
            let mut edited = value.clone();
            *edited.pointer_mut(pointer).unwrap() = new.clone();
            let bytes = edited.to_string().into_bytes();
            (bytes, format!("{pointer:?} replaced by {new}"))
        }
        6 => {
            // A field deleted from any object.
            let fields: Vec<String> = nodes_where(value, |_| true)
                .into_iter()
                .filter(|p| !p.is_empty() && parent_is_object(value, p))
                .collect();
            let pointer = fields.choose(rng).unwrap();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let mut edited = value.clone();
            edited.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
            let bytes = edited.to_string().into_bytes();
            (bytes, format!("field {pointer} deleted"))
        }
        _ => {
            // An unknown field added to any object.
            let objects = nodes_where(value, Value::is_object);
            let pointer = objects.choose(rng).unwrap();
            let name = UNKNOWN_FIELDS.choose(rng).unwrap();
            let new = replacement(rng);
            let mut edited = value.clone();
            edited
                .pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert(name.to_string(), new.clone());
            let bytes = edited.to_string().into_bytes();
            (bytes, format!("field {name:?}: {new} added to {pointer:?}"))
        }
    }
}

fn parent_is_object(value: &Value, pointer: &str) -> bool {
    let parent = pointer.rsplit_once('/').map_or("", |(parent, _)| parent);
    value.pointer(parent).is_some_and(Value::is_object)
}

#[test]
fn mutated_sidecars_give_ok_or_one_line_input_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let (mut accepted, mut refused) = (0, 0);
    let mut kinds = [0usize; 8];
    for i in 0..MUTATIONS {
        let (text, kind, described) = mutate(&mut rng);
        kinds[kind] += 1;
        match parse_checked(&text, &format!("mutation {i} (kind {kind}: {described})")) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert_eq!(accepted + refused, MUTATIONS);
    assert!(kinds.iter().all(|&n| n > 20), "every kind of mutation runs: {kinds:?}");
    // Most mutations break the sidecar, but not all: whitespace, unknown fields of the inner records,
    // and numbers that stay in range leave a valid one.
    assert!(refused > MUTATIONS / 2, "only {refused} of {MUTATIONS} mutations refused");
    assert!(accepted > 0, "no mutation left a valid sidecar");
}

// ---- problems found while fuzzing (fuzz/README.md), fixed: these guard against their return ----------

#[test]
fn escaped_newlines_stay_on_one_line() {
    let cases: [(&str, Edit); 4] = [
        ("unknown field with a newline", |v| v["form\nat"] = json!(1)),
        ("model with a newline", |v| v["config"]["model"] = json!("wrn\n")),
        ("data set with a newline", |v| v["config"]["data"] = json!("fashion\nmnist")),
        ("devices with a newline", |v| v["config"]["devices"] = json!("gpu\n0")),
    ];
    for (what, edit) in cases {
        let mut value = valid_value();
        edit(&mut value);
        assert!(parse_checked(&value.to_string(), what).is_err(), "{what}: accepted");
    }
}

#[test]
fn a_huge_worker_count_is_an_input_error() {
    // cpu:1000000000000 aborts the process (a 16 TB allocation), which no test can catch; usize::MAX
    // panics with "capacity overflow" instead.
    let mut value = valid_value();
    value["config"]["devices"] = json!(format!("cpu:{}", usize::MAX));
    assert!(parse_checked(&value.to_string(), "cpu:usize::MAX").is_err(), "accepted cpu:usize::MAX");
}
