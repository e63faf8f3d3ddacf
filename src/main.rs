//! `warpnet`: parse the command line, run it, turn errors into one line and an exit code.

use std::process::ExitCode;

use clap::Parser;
use warpnet::cli::{self, Cli};
use warpnet::error::is_input_error;

/// Exit code of a bad flag, config or data file.
const EXIT_INPUT: u8 = 2;
/// Exit code of any other failure.
const EXIT_FAILURE: u8 = 1;
/// Exit code of a run stopped by Ctrl-C (128 + SIGINT), after its checkpoint was saved.
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    warpnet::parallel::memory::keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help, --version
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let message = err.to_string();
            eprintln!("{}", message.lines().next().unwrap_or("error: bad command line"));
            return ExitCode::from(EXIT_INPUT);
        }
    };
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: libtorch's own messages carry a C++ backtrace after their first line.
            let message = format!("{err:#}");
            eprintln!("error: {}", message.lines().next().unwrap_or("unknown failure"));
            let interrupted = err.chain().any(|cause| cause.is::<warpnet::train::Interrupted>());
            ExitCode::from(if interrupted {
                EXIT_INTERRUPTED
            } else if is_input_error(&err) {
                EXIT_INPUT
            } else {
                EXIT_FAILURE
            })
        }
    }
}
