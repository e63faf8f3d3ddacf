//! `warpnet`: parse the command line, run it, turn errors into one line and an exit code.
//!
//! Under an MPI launcher every rank runs this: rank 0 runs the command, the other ranks serve the
//! devices it places on them (runtime/mpi/) until it is done. Only rank 0 prints.

use std::process::ExitCode;

use clap::Parser;
use warpnet::cli::{self, Cli};
use warpnet::error::is_input_error;
use warpnet::runtime::mpi::{self, session};

/// Exit code of a bad flag, config or data file.
const EXIT_INPUT: u8 = 2;
/// Exit code of any other failure.
const EXIT_FAILURE: u8 = 1;
/// Exit codes of a run stopped by a signal after its checkpoint was saved: this added to the signal's
/// number (130 for Ctrl-C, 143 for SIGTERM), what a shell reports for a process the signal killed, so
/// that scripts and batch schedulers read the stop as they would without the checkpoint.
const EXIT_SIGNALLED: i32 = 128;

fn main() -> ExitCode {
    warpnet::runtime::memory::keep_freed_memory();
    // MPI starts before the command line is read: `--devices mpi` means as many workers as ranks.
    let mpi_session = match session::start() {
        Ok(s) => s,
        // Every rank fails alike; one says so.
        Err(err) if session::launcher_rank() == 0 => return fail(&err),
        Err(_) => return ExitCode::from(EXIT_INPUT),
    };
    let rank = mpi_session.as_ref().map_or(0, |s| s.rank);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help, --version
            if rank == 0 {
                let _ = err.print();
            }
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let message = err.to_string();
            if rank == 0 {
                eprintln!("{}", message.lines().next().unwrap_or("error: bad command line"));
            }
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let Some(mut mpi_session) = mpi_session else {
        return exit_code(cli::run(cli));
    };
    mpi::set_timeout(cli.mpi_timeout);
    if let Err(err) = mpi_session.check_same_job(&cli.fingerprint()) {
        return if rank == 0 { fail(&err) } else { ExitCode::from(EXIT_INPUT) };
    }
    if rank != 0 {
        warpnet::runtime::serve::serve();
        return ExitCode::SUCCESS;
    }
    mpi_session.start_heartbeat();
    let result = cli::run(cli);
    mpi_session.finish();
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// Prints the error's one line and gives its exit code.
fn fail(err: &anyhow::Error) -> ExitCode {
    // One line: libtorch's own messages carry a C++ backtrace after their first line.
    let message = format!("{err:#}");
    eprintln!("error: {}", message.lines().next().unwrap_or("unknown failure"));
    let signal = err.chain().find_map(|cause| cause.downcast_ref::<warpnet::train::Interrupted>());
    ExitCode::from(if let Some(stopped) = signal {
        u8::try_from(EXIT_SIGNALLED + stopped.signal).unwrap_or(EXIT_FAILURE)
    } else if is_input_error(err) {
        EXIT_INPUT
    } else {
        EXIT_FAILURE
    })
}
