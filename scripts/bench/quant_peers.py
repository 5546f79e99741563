"""The race's quantized cases (race.py): the peers' own quantized forms of a model, the kernel
path each engine takes, and the bytes a decode step of one of our plans reads.

  ort_quantize(src, dst, scheme, form)  ONNX Runtime's quantizers on a `--decompose` file:
                                        "int8" its dynamic quantization (`quantize_dynamic`,
                                        int8 weights per output channel; activations quantized
                                        at run time), "int4" its 4-bit MatMul (`MatMulNBits`,
                                        symmetric blocks of 32 along the reduction axis)
  ort_paths(path, threads)              the providers, optimization level and the weight ops
                                        of ORT's optimized graph for that file
  torch_paths(lm)                       PyTorch's quantized engine, CPU capability, BLAS and
                                        oneDNN, and what its dynamic quantization replaced
  plan_weights(path)                    the weight table of a `.shplan` (its JSON graph)
  plan_step_bytes(path, cfg, ctx)       bytes one single-token decode step of that plan reads
                                        once: the weights it touches as stored (int8/int4 values
                                        and scales, bf16, f32) and the f32 KV cache
"""
import collections
import json
import os
import struct
import tempfile

# ORT's 4-bit MatMul compute: 4 = int8 activations against the unpacked int4 blocks (VNNI on
# this CPU), the fastest CPU path ORT has for it; 0 (unset) = fp32 compute.
ORT_INT4_ACCURACY = 4
ORT_INT4_BLOCK = 32


def ort_quantize(src, dst, scheme, form):
    """Writes ONNX Runtime's quantized form `scheme` ("int8" or "int4") of the f32 ONNX file
    `src` to `dst`. `form` is its experts' decomposition ("dense": one MatMul over all
    experts, which both quantizers take; "gather": the routed experts' weights gathered per
    token, which only the Gather quantizers take, their MatMul staying fp32). First ORT's own
    pre-processing (`quant_pre_process`: its basic graph optimizations, which fold the
    `Reshape` of a weight that the dense output experts' MatMul reads, and ONNX shape
    inference), as ORT's quantization guide prescribes: a MatMul whose weight is not an
    initializer is not quantized."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre = dst.replace(".onnx", ".pre.onnx")
    quant_pre_process(src, pre, skip_symbolic_shape=True)
    try:
        if scheme == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic
            quantize_dynamic(pre, dst, per_channel=True, weight_type=QuantType.QInt8)
        elif scheme == "int4":
            ort_int4(pre, dst, form)
        else:
            raise ValueError(f"unknown ORT quantization scheme {scheme!r}")
    finally:
        os.remove(pre)


def ort_int4(src, dst, form):
    """MatMulNBits (4 bits, symmetric, blocks of ORT_INT4_BLOCK along the reduction axis) for
    every MatMul with a constant weight; in the gather form also GatherBlockQuantized for the
    gathered expert stacks (blocks along their last axis, the one its kernel takes)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    ops = ("MatMul", "Gather") if form == "gather" else ("MatMul",)
    q = MatMulNBitsQuantizer(onnx.load(src), bits=4, block_size=ORT_INT4_BLOCK, is_symmetric=True,
                             accuracy_level=ORT_INT4_ACCURACY, op_types_to_quantize=ops,
                             quant_axes=(("MatMul", 0), ("Gather", -1)))
    q.process()
    q.model.save_model_to_file(dst, use_external_data_format=False)


# the ops that read a weight (what a path is about); the rest of the graph is not listed
WEIGHT_OPS = ("MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "DynamicQuantizeMatMul",
              "MatMulIntegerToFloat", "MatMulNBits", "Gather", "GatherBlockQuantized",
              "DequantizeLinear", "QGemm", "QLinearMatMul")


def ort_paths(path, threads):
    """What ONNX Runtime runs for `path`: providers, graph optimization, and the counts of the
    weight-reading ops in its optimized graph (with MatMulNBits' accuracy level)."""
    import onnx
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as d:
        o.optimized_model_filepath = os.path.join(d, "opt.onnx")
        sess = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        providers = sess.get_providers()
        del sess
        g = onnx.load(o.optimized_model_filepath, load_external_data=False).graph
    counts = collections.Counter(n.op_type for n in g.node if n.op_type in WEIGHT_OPS)
    levels = {a.i for n in g.node if n.op_type == "MatMulNBits" for a in n.attribute
              if a.name == "accuracy_level"}
    ops = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
    acc = f"; MatMulNBits accuracy_level {sorted(levels) or [0]}" if "MatMulNBits" in counts else ""
    return (f"onnxruntime {ort.__version__}, {'/'.join(providers)}, ORT_ENABLE_ALL, {threads} intra-op "
            f"threads; weight ops after optimization: {ops}{acc}")


def torch_paths(lm):
    """What PyTorch runs for the torch_model.LM `lm`."""
    import torch
    cfg = torch.__config__.show().splitlines()
    libs = [line.strip(" -") for line in cfg if "Math Kernel Library" in line or "MKL-DNN" in line]
    libs = [line.split(" for ")[0].split(" (Git")[0] for line in libs]
    what = ", ".join(f"{k} x{v}" for k, v in sorted(lm.product_kinds().items()))
    return (f"torch {torch.__version__}, quantized engine {torch.backends.quantized.engine}, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {'; '.join(libs)}; {what}")


def plan_weights(path):
    """The `weights` list of a `.shplan`'s JSON graph (name, dtype, shape, nbytes, ...)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:8] != b"\x89SHPLAN\n":
            raise ValueError(f"{path}: not a .shplan file")
        goff, glen = struct.unpack_from("<QQ", head, 16)
        f.seek(goff)
        return json.loads(f.read(glen))["weights"]


def touched_fraction(w, cfg):
    """The share of weight `w` that one decode step at batch 1 reads: one embedding row, k of
    E experts of an attention expert stack, K_ff of N_E σ-MoE experts, all of the rest."""
    shape = w["shape"]
    if w["name"].startswith("embedding"):
        return 1 / shape[0]
    if len(shape) == 3 and shape[0] == cfg["n_heads"] * cfg["n_experts"]:
        return cfg["moe_k"] / cfg["n_experts"]
    if len(shape) == 3 and shape[0] == cfg.get("ffn_n_experts"):
        return cfg["ffn_k"] / cfg["ffn_n_experts"]
    return 1.0


def plan_step_bytes(path, cfg, ctx):
    """(weight bytes, KV-cache bytes) one single-token decode step of the plan at `path` reads
    at batch 1 with `ctx` cached positions: its stored weights as `touched_fraction` says, and
    an f32 key and value per layer, head and position."""
    weights = sum(w["nbytes"] * touched_fraction(w, cfg) for w in plan_weights(path))
    kv = 4 * 2 * cfg["n_layers"] * cfg["n_heads"] * cfg["d_head"] * ctx
    return weights, kv
