//! The pass manager: runs passes in order, verifying the graph before the first and after
//! every pass, with `print_after` / `stop_after` by pass name.

use super::{Changed, Pass, PassError, default_pipeline};
use crate::ir::graph::Graph;
use crate::ir::text::print;
use crate::ir::verify::{VerifyError, verify};

/// Why a pipeline run failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    /// `print_after` / `stop_after` named no pass of the pipeline.
    #[error("unknown pass `{name}`; valid passes: {}", valid.join(", "))]
    UnknownPass {
        name: String,
        valid: Vec<&'static str>,
    },
    /// The graph given to the pipeline does not verify.
    #[error("input graph: {0}")]
    InvalidInput(Box<VerifyError>),
    /// A pass failed.
    #[error("pass {pass}: {source}")]
    Pass {
        pass: &'static str,
        source: Box<PassError>,
    },
    /// A pass left a graph that does not verify.
    #[error("after pass {pass}: {source}")]
    Verify {
        pass: &'static str,
        source: Box<VerifyError>,
    },
}

/// Receives `(pass name, graph text)`.
pub type Printer<'a> = dyn FnMut(&str, &str) + 'a;

/// Options of one pipeline run.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Print the text form after this pass to `printer` (or stderr without one).
    pub print_after: Option<String>,
    /// Run the pipeline up to and including this pass.
    pub stop_after: Option<String>,
    /// Receives `(pass name, graph text)` for `print_after`.
    pub printer: Option<&'a mut Printer<'a>>,
}

/// An ordered list of passes.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
}

impl Default for PassManager {
    fn default() -> Self {
        PassManager::new(default_pipeline())
    }
}

impl PassManager {
    /// A manager running `passes` in order.
    pub fn new(passes: Vec<Box<dyn Pass>>) -> Self {
        PassManager { passes }
    }

    /// The names of the passes, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs the passes on `g`; returns each run pass's name and whether it changed the graph.
    pub fn run(
        &self,
        g: &mut Graph,
        mut opts: RunOptions<'_>,
    ) -> Result<Vec<(&'static str, Changed)>, PipelineError> {
        self.check_name(opts.print_after.as_deref())?;
        self.check_name(opts.stop_after.as_deref())?;
        verify(g).map_err(|e| PipelineError::InvalidInput(Box::new(e)))?;
        let mut ran = Vec::new();
        for pass in &self.passes {
            let name = pass.name();
            let changed = pass.run(g).map_err(|source| PipelineError::Pass {
                pass: name,
                source: Box::new(source),
            })?;
            verify(g).map_err(|source| PipelineError::Verify {
                pass: name,
                source: Box::new(source),
            })?;
            ran.push((name, changed));
            if opts.print_after.as_deref() == Some(name) {
                emit(&mut opts, name, &print(g));
            }
            if opts.stop_after.as_deref() == Some(name) {
                break;
            }
        }
        Ok(ran)
    }

    fn check_name(&self, name: Option<&str>) -> Result<(), PipelineError> {
        match name {
            Some(n) if !self.names().contains(&n) => Err(PipelineError::UnknownPass {
                name: n.to_string(),
                valid: self.names(),
            }),
            _ => Ok(()),
        }
    }
}

fn emit(opts: &mut RunOptions<'_>, pass: &str, text: &str) {
    match opts.printer.as_mut() {
        Some(p) => p(pass, text),
        None => eprintln!("// after {pass}\n{text}"),
    }
}
