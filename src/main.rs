//! The `atrium` binary: parse the command line and run it.

/// mimalloc instead of the system allocator: per-thread free lists without the arena lock
/// contention glibc's malloc showed under the gateway's load (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    atrium::cli::main()
}
