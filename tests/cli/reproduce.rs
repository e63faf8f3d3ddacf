//! `warpnet reproduce`: the paper's figures it carries, a quick end-to-end run of Table 2 at CPU scale,
//! and the paper scale refusing cleanly where there are no GPUs.

use warpnet::analysis::reproduce::{paper_rows, plan, DataChoice, PaperTable, Scale};
use warpnet::data::DataSpec;

use crate::binary;
use binary::warpnet;

#[test]
fn paper_figures_are_the_tables_rows() {
    // Tables 2 and 3: 2 data sets x 2 Nwarp x 3 methods x 2 widths; Table 5: 3 WRN + 3 WarpNet1 rows.
    assert_eq!(paper_rows(PaperTable::Table2).len(), 24);
    assert_eq!(paper_rows(PaperTable::Table3).len(), 24);
    assert_eq!(paper_rows(PaperTable::Table5).len(), 6);
    // Copied by hand from the paper: Table 2, CIFAR-10, K = 2, Nwarp = 3, WarpNet1-37-4: 5.18 (33%);
    // Table 3, CIFAR-100, Nwarp = 4, WarpNet2-73-6: 21.2 (35%); Table 5, WRN-73-4 on 4 GPUs: 4.67, 32.4%.
    let find = |t, data: &str, method: &str, nwarp, kw, devices| {
        paper_rows(t)
            .into_iter()
            .find(|r| {
                r.data == data && r.method == method && r.nwarp == nwarp && r.kw == kw && r.devices == devices
            })
            .unwrap()
    };
    let r = find(PaperTable::Table2, "cifar10", "warpnet1", 3, 4, 3);
    assert_eq!((r.error, r.rs, r.placement.as_deref()), (5.18, 33.0, Some("[F1],[F2],[F2'x1]")));
    let r = find(PaperTable::Table3, "cifar100", "warpnet2", 4, 6, 4);
    assert_eq!((r.error, r.rs), (21.2, 35.0));
    let r = find(PaperTable::Table5, "cifar10", "wrn", 6, 4, 4);
    assert_eq!((r.error, r.rs, r.placement), (4.67, 32.4, None));
}

#[test]
fn cpu_scale_keeps_the_rows_shape_and_placement() {
    let data = DataChoice {
        cpu: DataSpec::FashionMnistEmbedded,
        cifar10: "cifar10:c10".parse().unwrap(),
        cifar100: "cifar100:c100".parse().unwrap(),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows = plan(PaperTable::Table3, Scale::Cpu, &data, Some(2), 0);
    assert_eq!(rows.len(), 3, "one block: WarpNet1, WarpNet2 and the WRN of K = 3");
    for row in &rows {
        let net = row.train.net(10);
        assert_eq!(net.units_per_stage(), 3, "{}: K = 3 units per stage", row.slug);
        // As many one-thread devices as the paper's GPUs and this machine's cores allow.
        let n = row.paper.devices.min(cores);
        assert_eq!(row.devices.len(), n);
        // Model-parallel rows train on one device (the same math); only data parallelism changes it.
        assert!(row.train.devices.is_none());
        if row.paper.method != "wrn" {
            assert!(row.bench.to_string().ends_with(&format!("cpu:{n} threads=1 auto")), "{}", row.bench);
        }
        let data_parallel = (n > 1).then(|| format!("wrn cpu:{n} threads=1"));
        assert_eq!(row.data_parallel_bench.as_ref().map(ToString::to_string), data_parallel);
    }
    let table5 = plan(PaperTable::Table5, Scale::Cpu, &data, Some(2), 0);
    let dp = table5.iter().find(|r| r.paper.method == "wrn" && r.paper.devices == 4).unwrap();
    let expected = format!("cpu:{}", 4.min(cores));
    assert_eq!(dp.train.devices.as_ref().map(|d| d.to_string()), Some(expected));
    assert!(table5.iter().all(|r| r.train.net(10).units_per_stage() == 6));
    let paper = plan(PaperTable::Table2, Scale::Paper, &data, None, 0);
    assert_eq!(paper.len(), 24);
    assert!(paper.iter().all(|r| r.train.epochs == 204 && r.train.devices.is_some()));
}

#[test]
fn cpu_scale_defaults_and_shared_runs() {
    let data = DataChoice {
        cpu: DataSpec::FashionMnistEmbedded,
        cifar10: "cifar10:c10".parse().unwrap(),
        cifar100: "cifar100:c100".parse().unwrap(),
    };
    // Default epochs at cpu scale: 15 for Tables 2-3, 5 for Table 5 (its 6-unit stages), lr drops at
    // 60% and 87%.
    for table in [PaperTable::Table2, PaperTable::Table3] {
        assert!(plan(table, Scale::Cpu, &data, None, 0).iter().all(|r| r.train.epochs == 15));
    }
    let table5 = plan(PaperTable::Table5, Scale::Cpu, &data, None, 0);
    assert!(table5.iter().all(|r| r.train.epochs == 5 && r.train.milestones == [3, 5]));
    // Table 5's two K = 3 WarpNet1 rows differ only in placement, which at cpu scale is `auto` for
    // both: the second reuses the first's run and its timing. So do the data-parallel WRN rows x2 and x4
    // where the cores make both cpu:2; no other row shares one.
    let k3: Vec<usize> = (0..table5.len()).filter(|&i| table5[i].paper.k == 3).collect();
    assert_eq!(k3.len(), 2);
    assert_ne!(table5[k3[0]].paper.placement, table5[k3[1]].paper.placement);
    assert_eq!(table5[k3[0]].same_run_as, None);
    assert_eq!(table5[k3[1]].same_run_as, Some(k3[0]));
    assert_eq!(table5[k3[1]].slug, table5[k3[0]].slug);
    assert_eq!(table5[k3[1]].bench, table5[k3[0]].bench, "both placed by auto");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shared = if cores <= 2 { 2 } else { 1 };
    assert_eq!(table5.iter().filter(|r| r.same_run_as.is_some()).count(), shared);
    let mut slugs: Vec<&str> = table5.iter().map(|r| r.slug.as_str()).collect();
    slugs.sort_unstable();
    slugs.dedup();
    assert_eq!(slugs.len(), 6 - shared, "distinct runs for six rows: {slugs:?}");
    // At paper scale the placement is what trains, so every row has its own run.
    let paper = plan(PaperTable::Table5, Scale::Paper, &data, None, 0);
    assert!(paper.iter().all(|r| r.same_run_as.is_none()));
}

#[test]
fn table2_at_cpu_scale_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t2");
    let args =
        ["reproduce", "table2", "--epochs", "1", "--limit-train", "256", "--rounds", "1", "--steps", "1"];
    let run = warpnet(&[&args[..], &["--warmup", "0", "--out", out.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let markdown = std::fs::read_to_string(out.join("table2.md")).unwrap();
    // One decimal of RS, as the paper prints Table 5's (29.6%, 44.1%).
    for paper in ["5.18 (33.0%)", "5.15 (23.0%)", "4.97 (0.0%)"] {
        assert!(markdown.contains(paper), "paper figure {paper} in\n{markdown}");
    }
    assert_eq!(markdown.lines().filter(|l| l.contains("WRN-13-1") || l.contains("WarpNet")).count(), 3);
    // The block's WRN row is the baseline itself: RS 0 by definition, not a second timing of it.
    let wrn_row = markdown.lines().find(|l| l.contains("| one device")).unwrap();
    let ours = wrn_row.split('|').nth(5).unwrap().trim();
    assert!(ours.ends_with("(0.0%)"), "the WRN row's RS: {ours}\n{markdown}");
    // The WarpNets' RS against the data-parallel WRN on their devices, beside it.
    for row in markdown.lines().filter(|l| l.contains("| WarpNet")) {
        let against_data_parallel = row.split('|').nth(6).unwrap().trim();
        assert!(against_data_parallel.ends_with('%'), "{row}");
    }
    // A second call reuses the finished runs rather than training again, and times them in the precision
    // it is given (the table says which; bf16's timing path is the bench's, tests/parallel/mpi.rs).
    let fp32 = ["--precision", "fp32", "--warmup", "0", "--out", out.to_str().unwrap()];
    let again = warpnet(&[&args[..], &fp32].concat());
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stdout).contains("reused"));
    let markdown = std::fs::read_to_string(out.join("table2.md")).unwrap();
    assert!(markdown.contains("epochs, fp32;"), "{markdown}");
}

/// On a machine without GPUs (a GPU host is made one by hiding its devices from libtorch), the paper's
/// scale is refused before anything is written.
#[test]
fn paper_scale_without_gpus_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(crate::binary::BIN)
        .args(["reproduce", "table3", "--scale", "paper", "--out", dir.path().to_str().unwrap()])
        .env("CUDA_VISIBLE_DEVICES", "") // no device visible: what a CPU-only machine sees
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--devices"), "{stderr}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");
}
