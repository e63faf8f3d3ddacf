//! The files under configs/: every one resolves through the binary (`train --config F --dry-run`) to
//! what its name promises and to the paper's recipe, and every row of the paper's Tables 2-5 has its
//! file. Broken config files give one `error:` line naming the file and exit code 2.
//! Also the source's layering (scripts/layers.py).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use warpnet::model::{ModelKind, Variant};
use warpnet::train::TrainConfig;

use crate::binary;
use binary::warpnet;

fn dry_run(config: &Path) -> Output {
    warpnet(&["train", "--config", config.to_str().expect("utf-8 path"), "--dry-run"])
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

/// Every configs/**/*.toml, as paths relative to configs/ ("cifar10/table2-...toml").
fn config_files() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("configs/ is readable") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, found);
            } else if path.extension().is_some_and(|e| e == "toml") {
                found.push(path.strip_prefix(root).unwrap().to_str().unwrap().replace('\\', "/"));
            }
        }
    }
    let mut found = Vec::new();
    walk(&configs_dir(), &configs_dir(), &mut found);
    found.sort();
    found
}

/// The files the paper's tables call for, one per row (and kw column), plus the CPU profiles.
fn expected_files() -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for (table, blocks) in [(2, [(2, 3), (2, 6)]), (3, [(3, 2), (3, 4)])] {
        for data in ["cifar10", "cifar100"] {
            for (k, nwarp) in blocks {
                for method in ["warpnet1", "warpnet2", "wrn"] {
                    for kw in [4, 6] {
                        files.insert(format!("{data}/table{table}-{method}-k{k}-n{nwarp}-kw{kw}.toml"));
                    }
                }
            }
        }
    }
    for name in [
        "wrn-k2-n6-kw4-1gpu",
        "wrn-k2-n6-kw4-2gpu",
        "wrn-k2-n6-kw4-4gpu",
        "warpnet1-k2-n6-kw4-2gpu",
        "warpnet1-k2-n6-kw4-3gpu",
        "warpnet1-k3-n4-kw4-3gpu",
        "warpnet1-k3-n4-kw4-4gpu",
    ] {
        files.insert(format!("cifar10/table5-{name}.toml"));
    }
    for name in [
        "wrn-k2-n6-kw2",
        "warpnet1-k2-n6-kw2",
        "warpnet1-k3-n4-kw2",
        "warpnet1-k3-n6-kw2",
        "warpnet1-k2-n6-kw4",
    ] {
        files.insert(format!("imagenet32/table4-{name}.toml"));
    }
    for name in ["demo", "table2-wrn-k2-n1-kw1", "table2-warpnet1-k2-n1-kw1", "table2-warpnet2-k2-n1-kw1"] {
        files.insert(format!("cpu/{name}.toml"));
    }
    files
}

/// What a file name says: configs/<data>/table<T>-<method>-k<K>-n<Nwarp>-kw<kw>[-<G>gpu].toml.
#[derive(Debug)]
struct Promise {
    folder: String,
    table: u32,
    method: String,
    k: usize,
    nwarp: usize,
    width: usize,
    gpus: Option<usize>,
}

fn promise(relative: &str) -> Result<Promise, String> {
    let (folder, file) = relative.split_once('/').ok_or("not in a folder of configs/")?;
    let stem = file.strip_suffix(".toml").unwrap();
    let parts: Vec<&str> = stem.split('-').collect();
    let field = |i: usize, prefix: &str, suffix: &str| -> Result<usize, String> {
        parts
            .get(i)
            .and_then(|p| p.strip_prefix(prefix))
            .and_then(|p| p.strip_suffix(suffix))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("part {} of the name is not {prefix}N{suffix}", i + 1))
    };
    if parts.len() != 5 && parts.len() != 6 {
        return Err("name is not table<T>-<method>-k<K>-n<Nwarp>-kw<kw>[-<G>gpu]".into());
    }
    Ok(Promise {
        folder: folder.to_string(),
        table: field(0, "table", "")? as u32,
        method: parts[1].to_string(),
        k: field(2, "k", "")?,
        nwarp: field(3, "n", "")?,
        width: field(4, "kw", "")?,
        gpus: if parts.len() == 6 { Some(field(5, "", "gpu")?) } else { None },
    })
}

/// The paper's GPU assignment for a WarpNet1/2 with warp factor K on `devices` devices (Tables 2, 3 and
/// section 4.3; the 2-device one is the 3-device K = 3 assignment cut to K = 2).
fn paper_placement(method: &str, k: usize, devices: usize) -> Option<&'static str> {
    Some(match (method, k, devices) {
        ("warpnet1", 2, 3) => "[F1],[F2],[F2'x1]",
        ("warpnet2", 2, 3) => "[F1],[F2],[F2'F1]",
        ("warpnet1", 2, 2) => "[F1],[F2,F2'x1]",
        ("warpnet2", 2, 2) => "[F1],[F2,F2'F1]",
        ("warpnet1", 3, 4) => "[F1],[F2],[F3],[F2'x1,F3'x1]",
        ("warpnet2", 3, 4) => "[F1],[F2],[F3],[F2'F1,F3'F1,F3'F2]",
        ("warpnet1", 3, 3) => "[F1],[F2,F2'x1],[F3,F3'x1]",
        _ => return None,
    })
}

fn cuda(n: usize) -> String {
    (0..n).map(|i| format!("cuda:{i}")).collect::<Vec<_>>().join(",")
}

/// Training settings: (epochs, batch, lr, milestones, gamma, wd, momentum).
type Recipe = (usize, usize, f64, &'static [usize], f64, f64, f64);
/// Section 4.1: 80,000 iterations = 204 epochs of batch 128, lr 0.1 x0.1 at 60, 120, 160, wd 5e-4.
const CIFAR: Recipe = (204, 128, 0.1, &[60, 120, 160], 0.1, 5e-4, 0.9);
/// Section 4.2: batch 512, lr 0.4 / 10 every 30 epochs, wd 1e-4; about 120 epochs (Figure 2).
const IMAGENET: Recipe = (120, 512, 0.4, &[30, 60, 90], 0.1, 1e-4, 0.9);
/// The small CPU rows: 15 epochs on the embedded Fashion-MNIST subset.
const CPU: Recipe = (15, 128, 0.1, &[9, 13], 0.1, 5e-4, 0.9);

/// Why `resolved` (the dry run's config of configs/`relative`) breaks the file name's promise, if it does.
fn check_promise(relative: &str, header: &str, resolved: &TrainConfig) -> Result<(), String> {
    let p = promise(relative)?;
    let mut wrong = Findings::default();
    check_network(&p, resolved, &mut wrong)?;
    check_devices(&p, resolved, &mut wrong)?;
    check_recipe(&p, resolved, &mut wrong)?;
    check_header(&p, relative, header, &mut wrong);
    if wrong.0.is_empty() {
        Ok(())
    } else {
        Err(wrong.0.join("; "))
    }
}

/// What a config gets wrong against its name, one entry per setting.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn expect(&mut self, what: &str, ok: bool, detail: String) {
        if !ok {
            self.0.push(format!("{what}: {detail}"));
        }
    }
}

/// The network and the data the name promises.
fn check_network(p: &Promise, c: &TrainConfig, wrong: &mut Findings) -> Result<(), String> {
    let model = if p.method == "wrn" { ModelKind::Wrn } else { ModelKind::Warp };
    wrong.expect("model", c.model == model, format!("{:?}", c.model));
    let variant = match p.method.as_str() {
        "wrn" => None,
        "warpnet1" => Some(Variant::Warpnet1),
        "warpnet2" => Some(Variant::Warpnet2),
        other => return Err(format!("unknown method '{other}' in the name")),
    };
    wrong.expect("variant", c.variant == variant, format!("{:?}", c.variant));
    wrong.expect("k", c.k == p.k, c.k.to_string());
    wrong.expect("nwarp", c.nwarp == p.nwarp, c.nwarp.to_string());
    wrong.expect("width", c.width == p.width, c.width.to_string());
    wrong.expect("max_order", c.max_order.is_none(), format!("{:?}", c.max_order));
    wrong.expect("derivative_bn", c.derivative_bn.is_none(), format!("{:?}", c.derivative_bn));
    let data = match p.folder.as_str() {
        "cifar10" => "cifar10:data/cifar-10-batches-bin",
        "cifar100" => "cifar100:data/cifar-100-binary",
        "imagenet32" => "imagenet32:data/imagenet32",
        "cpu" => "fashion-mnist",
        other => return Err(format!("unknown folder '{other}'")),
    };
    wrong.expect("data", c.data.to_string() == data, c.data.to_string());
    Ok(())
}

/// Devices: one GPU per bracket of the paper's assignment; a WRN on one GPU unless the name says more.
fn check_devices(p: &Promise, c: &TrainConfig, wrong: &mut Findings) -> Result<(), String> {
    let wrn = p.method == "wrn";
    let device_count = match (p.folder.as_str(), wrn) {
        ("cpu", true) => 1,
        ("cpu", false) => 2,
        _ => p.gpus.unwrap_or(if wrn { 1 } else { p.k + 1 }),
    };
    let devices = match p.folder.as_str() {
        "cpu" if wrn => None,
        "cpu" => Some(format!("cpu:{device_count}")),
        _ => Some(cuda(device_count)),
    };
    wrong.expect("devices", c.devices.as_ref().map(|d| d.to_string()) == devices, format!("{:?}", c.devices));
    wrong.expect(
        "devices count",
        c.devices.as_ref().map_or(1, |d| d.len()) == device_count,
        format!("{:?}", c.devices),
    );
    let placement = if wrn { None } else { paper_placement(&p.method, p.k, device_count) };
    if !wrn && placement.is_none() {
        return Err(format!("no paper assignment for {} K = {} on {device_count} devices", p.method, p.k));
    }
    let unspaced = |s: &str| s.chars().filter(|ch| !ch.is_whitespace()).collect::<String>();
    wrong.expect(
        "placement",
        c.placement.as_ref().map(|p| unspaced(&p.to_string())) == placement.map(unspaced),
        format!("{:?}, expected {placement:?}", c.placement),
    );
    if let Some(text) = c.placement.as_ref().map(ToString::to_string) {
        let brackets = text.matches('[').count();
        wrong.expect("one bracket per device", brackets == device_count, format!("{brackets} brackets"));
    }
    Ok(())
}

/// The training recipe of the paper's section for the name's data.
fn check_recipe(p: &Promise, c: &TrainConfig, wrong: &mut Findings) -> Result<(), String> {
    let recipe = match (p.folder.as_str(), p.table) {
        ("cpu", _) => CPU,
        (_, 2 | 3 | 5) => CIFAR,
        (_, 4) => IMAGENET,
        (_, t) => return Err(format!("no Table {t} in the paper's experiments")),
    };
    let (epochs, batch, lr, milestones, gamma, wd, momentum) = recipe;
    let iters = c.iters;
    wrong.expect("epochs", c.epochs == epochs && iters.is_none(), format!("{} / iters {iters:?}", c.epochs));
    wrong.expect("batch", c.batch == batch, c.batch.to_string());
    wrong.expect("lr", c.lr == lr, c.lr.to_string());
    wrong.expect("milestones", c.milestones == milestones, format!("{:?}", c.milestones));
    wrong.expect("gamma", c.gamma == gamma, c.gamma.to_string());
    wrong.expect("wd", c.wd == wd, c.wd.to_string());
    wrong.expect("momentum", c.momentum == momentum, c.momentum.to_string());
    Ok(())
}

/// The header names the table, the network as the paper labels it, and the command that runs it.
fn check_header(p: &Promise, relative: &str, header: &str, wrong: &mut Findings) {
    let method = match p.method.as_str() {
        "wrn" => "WRN",
        "warpnet1" => "WarpNet1",
        _ => "WarpNet2",
    };
    let label = format!("{method}-{}-{}", 6 * p.k * p.nwarp + 1, p.width);
    for needle in [
        format!("Table {}", p.table),
        label,
        "Paper:".to_string(),
        format!("warpnet train --config configs/{relative}"),
    ] {
        wrong.expect("header", header.contains(&needle), format!("does not mention {needle:?}"));
    }
}

/// Dry-runs configs/`relative` and checks it; `Err` says what is wrong.
fn check_file(relative: &str) -> Result<(), String> {
    let path = configs_dir().join(relative);
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let out = dry_run(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(0) {
        return Err(format!("exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    let resolved: TrainConfig =
        toml::from_str(&stdout).map_err(|e| format!("dry run printed no TrainConfig: {e}\n{stdout}"))?;
    // Every key of the file comes out of the dry run unchanged.
    let file: toml::Table = toml::from_str(&text).map_err(|e| e.to_string())?;
    let printed: toml::Table = toml::from_str(&stdout).unwrap();
    for (key, value) in &file {
        if printed.get(key) != Some(value) {
            return Err(format!("{key} = {value} came out as {:?}", printed.get(key)));
        }
    }
    if relative == "cpu/demo.toml" {
        return Ok(()); // compared with --preset demo below
    }
    let header: String = text.lines().take_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
    check_promise(relative, &header, &resolved)
}

#[test]
fn every_config_file_resolves_to_what_its_name_promises() {
    let files = config_files();
    let expected = expected_files();
    let missing: Vec<&String> = expected.iter().filter(|f| !files.contains(f)).collect();
    let extra: Vec<&String> = files.iter().filter(|f| !expected.contains(*f)).collect();
    assert!(missing.is_empty(), "rows of the paper's tables without a config file: {missing:?}");
    assert!(extra.is_empty(), "config files no table row calls for (add them to this test): {extra:?}");

    // The dry runs are independent processes; a few at a time keeps this test short.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8) * 2;
    let chunk = files.len().div_ceil(workers);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|f| check_file(f).err().map(|why| format!("configs/{f}: {why}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("checker thread")).collect()
    });
    assert!(failures.is_empty(), "{} of {} files:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn cpu_demo_profile_is_the_demo_preset() {
    let file = dry_run(&configs_dir().join("cpu/demo.toml"));
    let preset = warpnet(&["train", "--preset", "demo", "--dry-run"]);
    assert_eq!(file.status.code(), Some(0), "{}", String::from_utf8_lossy(&file.stderr));
    assert_eq!(preset.status.code(), Some(0), "{}", String::from_utf8_lossy(&preset.stderr));
    let from_file: TrainConfig = toml::from_str(&String::from_utf8_lossy(&file.stdout)).unwrap();
    let from_preset: TrainConfig = toml::from_str(&String::from_utf8_lossy(&preset.stdout)).unwrap();
    assert_eq!(from_file, TrainConfig::demo());
    assert_eq!(from_preset, TrainConfig::demo());
    assert_eq!(file.stdout, preset.stdout);
}

/// Writes `text` to `name` in a temp dir and asserts that `--config` on it fails with exit code 2 and
/// one stderr line that starts with "error:", names the file and contains `needle`.
fn assert_config_rejected(name: &str, text: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = dry_run(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name}: stderr {stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{name}: expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("error:"), "{name}: {stderr:?}");
    assert!(lines[0].contains(name), "{name}: the error should name the file: {stderr:?}");
    assert!(lines[0].contains(needle), "{name}: {stderr:?} should mention {needle:?}");
    assert!(
        out.stdout.is_empty(),
        "{name}: printed a config anyway: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn malformed_config_files_are_one_error_line_naming_the_file() {
    assert_config_rejected("unknown-key.toml", "model = \"wrn\"\nbatch_size = 64\n", "batch_size");
    assert_config_rejected("wrong-type.toml", "batch = \"big\"\n", "big");
    assert_config_rejected("bad-syntax.toml", "model = \"wrn\"\nk = [2\n", "line");
}

#[test]
fn warp_settings_for_a_wrn_in_a_config_file_are_one_error_line_naming_the_file() {
    assert_config_rejected(
        "wrn-with-variant.toml",
        "model = \"wrn\"\nk = 2\nnwarp = 3\nvariant = \"warpnet1\"\n",
        "variant",
    );
}

#[test]
fn a_placement_term_the_variant_lacks_in_a_config_file_is_one_error_line_naming_the_file() {
    // WarpNet1 has F2'x1, not WarpNet2's F2'F1.
    assert_config_rejected(
        "foreign-term.toml",
        "model = \"warp\"\nk = 2\nvariant = \"warpnet1\"\ndevices = \"cpu:3\"\nplacement = \"[F1],[F2],[F2'F1]\"\n",
        "F2'F1",
    );
}

/// Flags override the config file, key by key: a file with lr 0.05 and wd 0.001 under `--lr 0.2`
/// resolves to lr 0.2 and keeps the file's wd (a key the command line does not give). Without the flag
/// the file's lr holds, which shows the file was read; both differ from every preset's values.
#[test]
fn flags_override_the_config_file_and_keep_its_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lr.toml");
    std::fs::write(&path, "lr = 0.05\nwd = 0.001\n").unwrap();
    let resolve = |flags: &[&str]| {
        let mut args = vec!["train", "--config", path.to_str().unwrap(), "--dry-run"];
        args.extend(flags);
        let out = warpnet(&args);
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {}", String::from_utf8_lossy(&out.stderr));
        toml::from_str::<TrainConfig>(&String::from_utf8_lossy(&out.stdout)).unwrap()
    };
    let file_only = resolve(&[]);
    assert_eq!((file_only.lr, file_only.wd), (0.05, 0.001));
    let overridden = resolve(&["--lr", "0.2"]);
    assert_eq!(overridden.lr, 0.2, "the flag wins over the file");
    assert_eq!(overridden.wd, 0.001, "a key only in the file keeps the file's value");
    assert_eq!(TrainConfig { lr: 0.05, ..overridden }, file_only, "nothing else changes");
}

/// The source's layering (scripts/layers.py): no module refers to one above it, so the module graph
/// has no cycle. The script prints the graph and names every upward reference.
#[test]
fn modules_refer_only_to_layers_below_them() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/layers.py");
    let out = std::process::Command::new("python3").arg(script).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("cli -> ") && stdout.contains("ok: no cycle"), "{stdout}");
}
