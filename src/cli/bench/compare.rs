//! `warpnet bench --run ... | --table | --devices`: runs timed side by side on the parallel executor
//! (planner/comparison.rs), with predictions where asked, as one table (printed, bench.md, bench.csv)
//! and `--json`.

use anyhow::Context;
use tch::Device;

use super::BenchArgs;
use crate::base::atomic_file::write_atomic;
use crate::model::NetConfig;
use crate::planner::auto_placement::AUTO;
use crate::planner::comparison::{default_runs, measure, Measured, RunSpec, StepTraffic};
use crate::planner::prediction::predict_runs;
use crate::report::Table;
use crate::runtime::Placement;

/// The comparison table: every run timed side by side.
pub(super) fn compare(base: &NetConfig, args: &BenchArgs) -> anyhow::Result<()> {
    let mut runs = comparison_runs(base, args)?;
    let devices: Vec<Device> = runs.iter().flat_map(|r| r.devices.workers()).collect();
    let precision = args.precision.decide(&devices);
    let predict = args.predict || runs.iter().any(|r| r.auto) || args.profile.is_some();
    let predicted = match predict {
        true => {
            let files = (args.profile.as_deref(), args.save_profile.as_deref());
            predict_runs(&mut runs, args.batch as i64, precision.precision, files)?
                .into_iter()
                .map(Some)
                .collect()
        }
        false => vec![None; runs.len()],
    };
    let mut measured =
        measure(&runs, args.batch as i64, args.warmup, args.rounds, args.steps, precision.precision)?;
    for (m, p) in measured.iter_mut().zip(predicted) {
        m.predicted_ms = p;
    }
    let table = comparison_table(&measured);
    println!(
        "batch {}, precision {precision}, {} rounds x {} steps after {} warm-up steps; RS = (t_first - t) / t_first; \
         per device (home first, replica 0): ms per step working rather than waiting, memory, activations for its \
         share of the batch",
        args.batch, args.rounds, args.steps, args.warmup
    );
    print!("{}", table.markdown());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create output folder", args.out.display()))?;
    write_atomic(&args.out.join("bench.md"), table.markdown().as_bytes())?;
    write_atomic(&args.out.join("bench.csv"), table.csv().as_bytes())?;
    println!("written: {}/bench.md, {}/bench.csv", args.out.display(), args.out.display());
    if args.json {
        let precision = precision.precision;
        crate::cli::print_json(
            &serde_json::json!({ "batch": args.batch, "precision": precision, "runs": measured }),
        )?;
    }
    Ok(())
}

/// The runs of a comparison: `--run`s, the default table's with `--table`, and with `--devices` the WRN
/// on one thread first and the network on those devices last.
fn comparison_runs(base: &NetConfig, args: &BenchArgs) -> anyhow::Result<Vec<RunSpec>> {
    let mut runs = args.runs.iter().map(|r| RunSpec::parse(r, base)).collect::<anyhow::Result<Vec<_>>>()?;
    if args.table {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        runs.extend(default_runs(base, cores)?);
    }
    if let Some(devices) = &args.devices {
        runs.insert(0, RunSpec::parse("wrn cpu:1", base)?);
        let auto = args.placement.as_deref() == Some(AUTO);
        let placement =
            args.placement.as_deref().filter(|_| !auto).map(str::parse::<Placement>).transpose()?;
        runs.push(RunSpec { auto, ..RunSpec::on(base.clone(), devices.clone(), placement)? });
    }
    Ok(runs)
}

/// One row per measured run; the traffic columns when any run went over MPI.
fn comparison_table(measured: &[Measured]) -> Table {
    let mut columns = vec![
        "method",
        "K",
        "placement",
        "devices",
        "threads per device",
        "ms/batch",
        "predicted ms",
        "RS",
        "busy ms per device",
        "weights+optimizer MB per device",
        "activations MB per device",
    ];
    let over_mpi = measured.iter().any(|m| m.traffic.is_some());
    if over_mpi {
        columns.extend(TRAFFIC_COLUMNS);
    }
    let mut table = Table::new(&columns);
    let megabytes = |bytes: usize| format!("{:.1}", bytes as f64 / 1e6);
    for m in measured {
        let weights: Vec<String> = m.memory.iter().map(|d| megabytes(d.weights + d.optimizer)).collect();
        let activations: Vec<String> =
            m.memory.iter().map(|d| d.activations.map_or("n/a".into(), megabytes)).collect();
        let mut row = vec![
            m.method.clone(),
            m.k.to_string(),
            m.layout.clone(),
            m.devices.clone(),
            m.threads_per_device.to_string(),
            format!("{:.1}", m.ms_per_batch),
            m.predicted_ms.map_or("-".into(), |p| format!("{p:.1}")),
            format!("{:.1}%", 100.0 * m.rs),
            m.busy_ms.iter().map(|(_, ms)| format!("{ms:.0}")).collect::<Vec<_>>().join(" / "),
            weights.join(" / "),
            activations.join(" / "),
        ];
        if over_mpi {
            row.extend(traffic_cells(m.traffic.as_ref()));
        }
        table.push(row);
    }
    table
}

/// Columns of runs over MPI ranks (runtime/mpi/stats.rs, volume.rs).
const TRAFFIC_COLUMNS: [&str; 7] = [
    "MB moved per step",
    "MB per rank per step (sent + received)",
    "MB per rank on the wire (by the algorithm)",
    "ms in MPI per rank per step",
    "MB predicted (tensors)",
    "messages per step",
    "rank 0 MPI share",
];

/// One figure per rank, scaled, rank 0 first: "1.085 / 0.888 / ...".
fn per_rank(figures: &[f64], scale: f64, decimals: usize) -> String {
    figures.iter().map(|f| format!("{:.decimals$}", f * scale)).collect::<Vec<_>>().join(" / ")
}

fn traffic_cells(traffic: Option<&StepTraffic>) -> Vec<String> {
    match traffic {
        None => vec!["-".into(); TRAFFIC_COLUMNS.len()],
        Some(t) => vec![
            format!("{:.3}", t.bytes / 1e6),
            per_rank(&t.rank_bytes, 1e-6, 3),
            per_rank(&t.rank_wire_bytes, 1e-6, 3),
            per_rank(&t.rank_mpi_ms, 1.0, 1),
            format!("{:.3}", t.predicted_bytes as f64 / 1e6),
            format!("{:.0}", t.messages),
            format!("{:.0}%", 100.0 * t.home_mpi_share),
        ],
    }
}
