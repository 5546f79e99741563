//! Reading our ops' attributes off an ONNX node into the ops crate's attribute structs.

use switchhead_ops::op::{AttentionVariant, Merge, MoeAttentionAttrs, PosEncoding, SigmaMoeAttrs};
use tract_onnx::pb;

use super::names::{MOE_ATTENTION, SIGMA_MOE, attn, sigma};
use crate::RuntimeError;

struct Node<'a> {
    node: &'a pb::NodeProto,
    op: &'static str,
}

impl Node<'_> {
    fn err(&self, attr: &'static str, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::InvalidAttribute {
            node: self.node.name.clone(),
            op_type: self.op,
            attr,
            reason: reason.into(),
        }
    }

    fn find(&self, name: &'static str) -> Option<&pb::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn int(&self, name: &'static str) -> Result<i64, RuntimeError> {
        use pb::attribute_proto::AttributeType;
        match self.find(name) {
            Some(a) if a.r#type == AttributeType::Int as i32 => Ok(a.i),
            Some(_) => Err(self.err(name, "expected an int attribute")),
            None => Err(self.err(name, "missing")),
        }
    }

    fn count(&self, name: &'static str) -> Result<usize, RuntimeError> {
        let v = self.int(name)?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| self.err(name, format!("must be a positive count, got {v}")))
    }

    fn float(&self, name: &'static str, default: f32) -> Result<f64, RuntimeError> {
        use pb::attribute_proto::AttributeType;
        match self.find(name) {
            Some(a) if a.r#type == AttributeType::Float as i32 => Ok(a.f as f64),
            Some(_) => Err(self.err(name, "expected a float attribute")),
            None => Ok(default as f64),
        }
    }

    fn string(&self, name: &'static str) -> Result<String, RuntimeError> {
        use pb::attribute_proto::AttributeType;
        match self.find(name) {
            Some(a) if a.r#type == AttributeType::String as i32 => {
                String::from_utf8(a.s.clone()).map_err(|_| self.err(name, "not UTF-8"))
            }
            Some(_) => Err(self.err(name, "expected a string attribute")),
            None => Err(self.err(name, "missing")),
        }
    }
}

/// The attributes of a `MoEAttention` node.
pub fn moe_attention_attrs(node: &pb::NodeProto) -> Result<MoeAttentionAttrs, RuntimeError> {
    let n = Node {
        node,
        op: MOE_ATTENTION,
    };
    let variant = match n.string(attn::VARIANT)?.as_str() {
        "experts_vo" => AttentionVariant::ExpertsVO,
        "gated" => AttentionVariant::Gated,
        "dense" => AttentionVariant::Dense,
        other => {
            return Err(n.err(
                attn::VARIANT,
                format!("{other:?} is not experts_vo, gated or dense"),
            ));
        }
    };
    let pos = match n.string(attn::POS)?.as_str() {
        "rope" => PosEncoding::Rope {
            rotate_fraction: n.float(attn::ROTATE_FRACTION, 0.5)?,
            base: n.float(attn::ROPE_BASE, 10000.0)?,
        },
        "xl" => PosEncoding::Xl,
        other => return Err(n.err(attn::POS, format!("{other:?} is not rope or xl"))),
    };
    let causal = match n.int(attn::CAUSAL)? {
        1 => true,
        c => {
            return Err(n.err(
                attn::CAUSAL,
                format!("only causal = 1 is supported, got {c}"),
            ));
        }
    };
    let (heads, experts, k, d_head) = (
        n.count(attn::HEADS)?,
        n.count(attn::EXPERTS)?,
        n.count(attn::K)?,
        n.count(attn::D_HEAD)?,
    );
    if k > experts {
        return Err(n.err(attn::K, format!("k = {k} exceeds experts = {experts}")));
    }
    if variant != AttentionVariant::ExpertsVO && (experts, k) != (1, 1) {
        return Err(n.err(
            attn::EXPERTS,
            "gated and dense attention take experts = k = 1",
        ));
    }
    if let PosEncoding::Rope {
        rotate_fraction,
        base,
    } = pos
    {
        switchhead_ops::rope::Rope::new(d_head, rotate_fraction, base)
            .map_err(|e| n.err(attn::ROTATE_FRACTION, e.to_string()))?;
    }
    let merged = match n
        .find(attn::MERGED)
        .map(|_| n.int(attn::MERGED))
        .transpose()?
    {
        None | Some(0) => Merge::None,
        Some(1) if node.input.first() == node.input.get(1) => Merge::All,
        Some(1) => {
            let reason = "1 (all in one) needs xq and xkv to be the same input";
            return Err(n.err(attn::MERGED, reason));
        }
        Some(2) => Merge::Sides,
        Some(f) => return Err(n.err(attn::MERGED, format!("must be 0, 1 or 2, got {f}"))),
    };
    Ok(MoeAttentionAttrs {
        heads,
        experts,
        k,
        d_head,
        pos,
        causal,
        variant,
        merged,
    })
}

/// The `kv_cache` attribute of a `MoEAttention` node (0 when absent); 1 needs RoPE.
pub fn moe_attention_kv_cache(
    node: &pb::NodeProto,
    attrs: &MoeAttentionAttrs,
) -> Result<bool, RuntimeError> {
    let n = Node {
        node,
        op: MOE_ATTENTION,
    };
    let flag = match n.find(attn::KV_CACHE) {
        None => 0,
        Some(_) => n.int(attn::KV_CACHE)?,
    };
    match (flag, attrs.pos) {
        (0, _) => Ok(false),
        (1, PosEncoding::Rope { .. }) => Ok(true),
        (1, PosEncoding::Xl) => Err(n.err(attn::KV_CACHE, "a KV cache needs pos = rope")),
        (f, _) => Err(n.err(attn::KV_CACHE, format!("must be 0 or 1, got {f}"))),
    }
}

/// The attributes of a `SigmaMoE` node.
pub fn sigma_moe_attrs(node: &pb::NodeProto) -> Result<SigmaMoeAttrs, RuntimeError> {
    let n = Node {
        node,
        op: SIGMA_MOE,
    };
    let (experts, expert_size, k) = (
        n.count(sigma::EXPERTS)?,
        n.count(sigma::EXPERT_SIZE)?,
        n.count(sigma::K)?,
    );
    if k > experts {
        return Err(n.err(sigma::K, format!("k = {k} exceeds experts = {experts}")));
    }
    Ok(SigmaMoeAttrs {
        experts,
        expert_size,
        k,
    })
}

/// Inputs a `MoEAttention` node with these attributes takes.
pub(crate) fn moe_attention_arity(a: &MoeAttentionAttrs) -> usize {
    switchhead_ops::op::Op::MoEAttention(*a).arity()
}
