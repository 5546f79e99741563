//! `switchhead inspect MODEL [--ir] [--set key=value ...]`: prints the detected layout, the
//! architecture and the parameter count, or with `--ir` the optimized IR in its text form.
//! On a `.shplan` file it verifies the plan and prints its summary, or with `--ir` its op list
//! (`inspect_plan`).

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
    if args.model.model.extension().is_some_and(|e| e == "shplan") {
        return crate::inspect_plan::run(&args.model.model, args.ir);
    }
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
