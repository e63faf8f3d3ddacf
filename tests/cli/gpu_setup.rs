//! A GPU user's set-up: which libtorch set scripts/setup.sh chooses (decided from `nvidia-smi`, faked
//! here on PATH), and the one line a GPU request gets where the CUDA libraries or the GPU are missing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first line `nvidia-smi -L` prints on a machine with a GPU, and what it prints without a driver.
const LISTS_A_GPU: &str = "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f1e2d3c)'";
const NO_DRIVER: &str =
    "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9";
const NO_DEVICES: &str = "echo 'No devices were found'; exit 6";

/// `scripts/setup.sh --dry-run ARGS` on a PATH that holds only a fake `nvidia-smi` running `script`
/// (none where `script` is None); the set it chooses, "cpu" or "cuda".
fn chosen_set(script: Option<&str>, args: &[&str]) -> String {
    let bin = tempfile::tempdir().unwrap();
    if let Some(script) = script {
        let fake = bin.path().join("nvidia-smi");
        std::fs::write(&fake, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh");
    let out = Command::new("/bin/bash")
        .arg(&setup)
        .arg("--dry-run")
        .args(args)
        .env("PATH", bin.path())
        .output()
        .expect("bash runs setup.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script:?} {args:?}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find_map(|l| l.strip_prefix("libtorch set: ")).expect("the choice is printed");
    line.split(':').next().unwrap().to_string()
}

#[test]
fn setup_installs_the_cuda_libraries_where_a_gpu_is_listed_or_asked_for() {
    assert_eq!(chosen_set(Some(LISTS_A_GPU), &[]), "cuda");
    assert_eq!(chosen_set(None, &["--cuda"]), "cuda");
    assert_eq!(chosen_set(Some(NO_DRIVER), &["--cuda"]), "cuda");
    // Neither: the CPU set, whether nvidia-smi is absent, finds no driver or lists no device.
    assert_eq!(chosen_set(None, &[]), "cpu");
    assert_eq!(chosen_set(Some(NO_DRIVER), &[]), "cpu");
    assert_eq!(chosen_set(Some(NO_DEVICES), &[]), "cpu");
    assert_eq!(chosen_set(Some(LISTS_A_GPU), &["--cpu"]), "cpu");
}

/// libtorch's CUDA half beside the libtorch_cpu.so the binary loads, found with `ldd` (the loader's
/// own view, independent of the binary's code).
fn libtorch_cuda() -> PathBuf {
    let out = Command::new("ldd").arg(crate::binary::BIN).output().expect("ldd runs");
    let listing = String::from_utf8_lossy(&out.stdout);
    let cpu = listing
        .lines()
        .find_map(|l| l.split("=> ").nth(1).filter(|p| p.contains("libtorch_cpu.so")))
        .and_then(|p| p.split_whitespace().next())
        .expect("the binary links libtorch_cpu.so");
    Path::new(cpu).with_file_name("libtorch_cuda.so")
}

/// Whether every library libtorch's CUDA half needs resolves (`./scripts/setup.sh --cuda` was run).
fn cuda_libraries_installed() -> bool {
    let out = Command::new("ldd").arg(libtorch_cuda()).output().expect("ldd runs");
    out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("not found")
}

#[test]
fn a_gpu_asked_for_without_one_is_one_line_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let train = ["train", "--preset", "demo", "--epochs", "1", "--limit-train", "64", "--devices", "cuda:0"];
    let lm_out = dir.path().join("lm-run");
    let mut lm_train = crate::binary::lm_args(&crate::binary::tiny_corpus(dir.path(), 4096), 4, 2, &lm_out);
    lm_train.extend(["--devices".into(), "cuda:0".into()]);
    let requests: [(Vec<&str>, &str); 4] = [
        ([&train[..], &["--out", out.to_str().unwrap()]].concat(), "--devices"),
        (vec!["bench", "--nwarp", "1", "--device", "cuda:0"], "--device"),
        (vec!["plan", "--k", "2", "--nwarp", "1", "--device", "cuda:0"], "--device"),
        (lm_train.iter().map(String::as_str).collect(), "--devices"),
    ];
    // With the libraries, the line says that no GPU is present; without, which library is missing and
    // the command that installs them.
    let expected = match cuda_libraries_installed() {
        true => "cuda:0 asked for, but no GPU is present".to_string(),
        false => "libtorch's CUDA libraries are not installed (".to_string(),
    };
    for (args, flag) in requests {
        // CUDA_VISIBLE_DEVICES hides a GPU the machine may have, so both cases are the no-GPU one.
        let run =
            Command::new(crate::binary::BIN).args(&args).env("CUDA_VISIBLE_DEVICES", "").output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr:?}");
        assert!(lines[0].starts_with(&format!("error: {flag}: ")), "{stderr}");
        assert!(lines[0].contains(&expected), "{stderr} should say {expected}");
        if !cuda_libraries_installed() {
            assert!(
                lines[0].contains(".so") && lines[0].ends_with("install them with ./scripts/setup.sh --cuda")
            );
        }
    }
    assert!(!out.join("checkpoints").exists() && !lm_out.join("checkpoints").exists(), "nothing trained");
}
