use std::process::ExitCode;

fn main() -> ExitCode {
    importops::cli::main()
}
