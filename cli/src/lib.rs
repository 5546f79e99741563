//! Shared pieces of the `switchhead` command-line tools: one module per subcommand.

pub mod inspect;
pub mod logits;
pub mod model_arg;
pub mod synth;

/// Prints an error chain as one line on stderr and maps the result to an exit code.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
