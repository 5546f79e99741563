//! `switchhead inspect MODEL [--set key=value ...]`: prints the detected layout, the
//! architecture and the parameter count.

use crate::model_arg::ModelArg;

/// Arguments of `switchhead inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
}

/// Loads the model and prints its summary.
pub fn run(args: Args) -> anyhow::Result<()> {
    let model = args.model.load()?;
    print!("{}", model.describe());
    Ok(())
}
