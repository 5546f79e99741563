//! Shared pieces of the `switchhead` command-line tools: one module per subcommand.

pub mod bench;
pub mod compile;
pub mod eval;
pub mod inspect;
pub mod inspect_plan;
pub mod logits;
pub mod model_arg;
pub mod open;
pub mod run;
pub mod sample;
pub mod serve;
pub mod synth;

/// Prints an error chain as one line on stderr and maps the result to an exit code.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error chain as one line, skipping causes whose text the line already holds (our error
/// types print their sources inline).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}
