//! The `nemoclaw` (and `nemohermes`) binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    nemoclaw::cli::main_with_args(std::env::args_os().collect())
}
