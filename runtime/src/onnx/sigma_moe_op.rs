//! `ai.switchhead::SigmaMoE` as a tract op (see `moe_attention_op` for the pattern); `eval`
//! runs `switchhead_kernels::sigma_moe`. Inputs: x `[.., D]`, router `[N_E, D]`,
//! keys `[N_E, D, G]`, values `[N_E, G, D]`. Output like x, f32.

use switchhead_kernels::{SigmaMoeWeights, WeightRef, sigma_moe};
use switchhead_ops::op::SigmaMoeAttrs;
use tract_linalg::multithread::{Executor, current_tract_executor};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

/// The typed op.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SigmaMoeOp {
    pub attrs: SigmaMoeAttrs,
}

impl Op for SigmaMoeOp {
    fn name(&self) -> StaticName {
        "SigmaMoE".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        let a = &self.attrs;
        Ok(vec![format!(
            "experts {} expert_size {} k {}",
            a.experts, a.expert_size, a.k
        )])
    }
    op_as_typed_op!();
}

impl EvalOp for SigmaMoeOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let a = &self.attrs;
        let shape = inputs[0].shape().to_vec();
        let d = *shape
            .last()
            .ok_or_else(|| anyhow!("SigmaMoE: x must have rank >= 1"))?;
        let rows = shape.iter().product::<usize>() / d.max(1);
        let w = SigmaMoeWeights {
            router: WeightRef::row_major(f32_slice(&inputs[1])?),
            keys: WeightRef::row_major(f32_slice(&inputs[2])?),
            values: WeightRef::row_major(f32_slice(&inputs[3])?),
            experts: a.experts,
            expert_size: a.expert_size,
            k: a.k,
        };
        let y = sigma_moe(&w, f32_slice(&inputs[0])?, rows, d, executor_threads())
            .map_err(|e| anyhow!("SigmaMoE: {e}"))?;
        Ok(tvec!(Tensor::from_shape(&shape, &y)?.into_tvalue()))
    }
}

impl TypedOp for SigmaMoeOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 4, "SigmaMoE takes 4 inputs");
        ensure!(
            inputs.iter().all(|f| f.datum_type == f32::datum_type()),
            "SigmaMoE: every input must be f32"
        );
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }
    as_op!();
}

/// The inference-level wrapper the ONNX parser builds.
#[derive(Debug, Clone)]
pub(crate) struct SigmaMoeHir {
    pub attrs: SigmaMoeAttrs,
}

impl Expansion for SigmaMoeHir {
    fn name(&self) -> StaticName {
        "SigmaMoE".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::moe_attention_op::same_shape_f32_rules(s, inputs, outputs, 4)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, SigmaMoeOp { attrs: self.attrs }, inputs)
    }
}

/// The f32 elements of a tensor.
pub(crate) fn f32_slice(t: &TValue) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}

/// The three dimensions of a rank-3 tensor.
pub(crate) fn rank3(t: &TValue, what: &str) -> TractResult<[usize; 3]> {
    match *t.shape() {
        [a, b, c] => Ok([a, b, c]),
        ref s => bail!("{what} must be rank 3, got shape {s:?}"),
    }
}

/// Threads of the executor the session runs under (see `backend::cpu`).
pub(crate) fn executor_threads() -> usize {
    match current_tract_executor() {
        Executor::MultiThread(pool) => pool.current_num_threads(),
        _ => 1,
    }
}
