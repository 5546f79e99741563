"""SwitchHead (mixture-of-experts attention) language models from Python.

``compile`` writes a checkpoint, or a training script's ``state_dict``, as ONNX or a native
plan; ``Session`` loads a checkpoint, ONNX file or plan and runs it: logits, a stateful
decoder, and streamed generation::

    import switchhead
    session = switchhead.Session("testdata/models/rope")
    for text in session.generate("In the beginning", max_tokens=40):
        print(text, end="", flush=True)

Everything runs in the package's own Rust runtime (no PyTorch, no ONNX Runtime); calls that
compute release the GIL, so threads can share one ``Session``. Errors are Python exceptions
(``FileNotFoundError``, ``ValueError``, ...) with the messages of the ``switchhead`` CLI.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Union

import numpy as np

from ._native import Decoder, Generator, Session, __version__
from ._native import compile as _compile

__all__ = ["compile", "Session", "Decoder", "Generator", "__version__"]


def compile(
    model: Union[str, "os.PathLike[str]", Mapping[str, Any]],
    output: Union[str, "os.PathLike[str]"],
    *,
    format: Optional[str] = None,
    decompose: bool = False,
    kv_cache: bool = False,
    dtype: str = "f32",
    config: Optional[Mapping[str, Any]] = None,
) -> None:
    """Compile a SwitchHead model to ONNX or a native plan, as ``switchhead-compile`` does.

    ``model`` is a checkpoint path (a ``.safetensors`` or ``.pth`` file, or a directory holding
    one with its ``config.json``), or the tensors themselves: a PyTorch ``state_dict`` or a
    dict of numpy arrays, with the model's ``config`` (the keys of ``config.json``). Torch
    tensors are read as ``t.detach().cpu().float().numpy()`` (torch is not imported); anything
    else through ``numpy.asarray``. For a path, ``config`` overrides keys of the checkpoint's
    config, as ``--set`` does.

    ``format``: ``"onnx"`` or ``"plan"`` (default: ``"plan"`` for an output ending in
    ``.shplan``, else ``"onnx"``). ``decompose``: standard ONNX ops only. ``kv_cache``: the
    KV-cache interface for incremental decoding (ONNX, RoPE models). ``dtype``: weight storage,
    ``"f32"``, ``"f16"`` or ``"bf16"`` (compute stays f32). The output is written atomically and
    is byte-identical whether the weights came from a file or from memory.
    """
    config_json = None if config is None else json.dumps(dict(config))
    if isinstance(model, Mapping):
        model = {str(name): _as_f32(value) for name, value in model.items()}
    else:
        model = os.fspath(model)
    _compile(
        model,
        os.fspath(output),
        format=format,
        decompose=decompose,
        kv_cache=kv_cache,
        dtype=dtype,
        config=config_json,
    )


def _as_f32(value: Any) -> np.ndarray:
    """A tensor as a C-contiguous float32 numpy array (torch tensors by duck typing)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(value), dtype=np.float32)
