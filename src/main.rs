//! The `nemoclaw` (and `nemohermes`) binary: everything lives in the library's `cli` module.
//! Only the logging of the CLI is set up here (the supervisor sets up its own).

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if !nemoclaw::supervisor::is_supervise_invocation(&args) {
        nemoclaw::observe::logging::init_terminal();
    }
    nemoclaw::cli::main_with_args(args)
}
