//! `switchhead inspect MODEL [--ir] [--set key=value ...]`: prints the detected layout, the
//! architecture and the parameter count, or with `--ir` the optimized IR in its text form.

use switchhead_compiler::ir::{lower, text::print};
use switchhead_compiler::passes::{PassManager, RunOptions};

use crate::model_arg::ModelArg;

/// Arguments of `switchhead inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    /// Print the IR text form (after the compiler's pass pipeline) instead of the summary.
    #[arg(long)]
    pub ir: bool,
}

/// Loads the model and prints its summary or its IR.
pub fn run(args: Args) -> anyhow::Result<()> {
    let model = args.model.load()?;
    if !args.ir {
        print!("{}", model.describe());
        return Ok(());
    }
    let mut graph = lower(&model);
    PassManager::default().run(&mut graph, RunOptions::default())?;
    print!("{}", print(&graph));
    Ok(())
}
