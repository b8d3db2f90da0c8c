//! The `atrium` binary: parse the command line and run it.

fn main() -> std::process::ExitCode {
    atrium::cli::main()
}
