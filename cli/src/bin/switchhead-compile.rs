//! `switchhead-compile`: lowers a SwitchHead checkpoint to ONNX.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = switchhead_cli::compile::Args::parse();
    switchhead_cli::exit_code(switchhead_cli::compile::run(args))
}
