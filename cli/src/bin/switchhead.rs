//! `switchhead`: inspect, synthesize, run and time SwitchHead models.

use clap::{Parser, Subcommand};
use switchhead_cli::{bench, eval, inspect, logits, run, serve, synth};

#[derive(Parser)]
#[command(
    name = "switchhead",
    version,
    about = "Inspect, synthesize, run and time SwitchHead models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's detected architecture and parameter count.
    Inspect(inspect::Args),
    /// Write a random-weight checkpoint for a paper configuration or a custom size.
    Synth(synth::Args),
    /// Compute logits for tokens read from a safetensors file.
    Logits(logits::Args),
    /// Generate text from a prompt (byte-level models), streamed to stdout.
    Run(run::Args),
    /// Bits per byte (and perplexity) of a model over a text file.
    Eval(eval::Args),
    /// Time the runtime on a model: forward passes or decode steps on random tokens.
    Bench(bench::Args),
    /// Serve the model over HTTP (OpenAI-style completions, continuous batching).
    Serve(serve::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Large activation buffers stay in the heap between ops (see the function's doc).
    switchhead_runtime::tune_allocator();
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Logits(a) => logits::run(a),
        Command::Run(a) => run::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
    };
    switchhead_cli::exit_code(result)
}
