"""`switchhead.compile` from a training script's tensors writes the same bytes as from the
checkpoint file, for ONNX (plain, decomposed, KV cache) and plans, RoPE and XL models; torch
tensors are taken by duck typing (torch is not needed)."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import switchhead
from conftest import model_dir


def state_dict(name):
    tensors = load_file(str(model_dir(name) / "model.safetensors"))
    config = json.loads((model_dir(name) / "config.json").read_text())
    return tensors, config


CASES = [
    ("rope", "m.onnx", {}),
    ("rope", "m.onnx", {"decompose": True}),
    ("rope", "m.onnx", {"kv_cache": True, "dtype": "f16"}),
    ("rope", "m.shplan", {}),
    ("xl", "m.onnx", {}),
    ("switchall", "m.shplan", {"format": "plan", "dtype": "bf16"}),
    ("spm", "m.onnx", {}),
]


@pytest.mark.parametrize("name,out,opts", CASES)
def test_state_dict_compiles_as_the_file(name, out, opts, tmp_path):
    tensors, config = state_dict(name)
    (tmp_path / "file").mkdir()
    (tmp_path / "dict").mkdir()
    from_file = tmp_path / "file" / out
    from_dict = tmp_path / "dict" / out
    switchhead.compile(str(model_dir(name)), from_file, **opts)
    switchhead.compile(tensors, from_dict, config=config, **opts)
    a, b = from_file.read_bytes(), from_dict.read_bytes()
    assert len(a) > 10_000
    assert a == b


class FakeTorchTensor:
    """What compile reads of a torch tensor: detach().cpu().float().numpy()."""

    def __init__(self, array):
        self.array = array.astype(np.float64)  # a float() is needed to get f32 back
        self.calls = []

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return self

    def float(self):
        self.calls.append("float")
        return FakeTorchTensor.Float(self.array.astype(np.float32))

    class Float:
        def __init__(self, array):
            self.array = array

        def numpy(self):
            return self.array


def test_torch_like_tensors_compile_as_the_file(tmp_path):
    tensors, config = state_dict("rope")
    fake = {k: FakeTorchTensor(v) for k, v in tensors.items()}
    switchhead.compile(fake, tmp_path / "dict.onnx", config=config)
    switchhead.compile(model_dir("rope"), tmp_path / "file.onnx")
    assert all(t.calls == ["detach", "cpu", "float"] for t in fake.values())
    assert (tmp_path / "dict.onnx").read_bytes() == (tmp_path / "file.onnx").read_bytes()


def test_path_config_overrides_as_set(tmp_path):
    # --set chunk_size=64 changes the output; the same override from a dict gives the same bytes.
    tensors, config = state_dict("rope")
    switchhead.compile(model_dir("rope"), tmp_path / "a.shplan", config={"chunk_size": 64})
    switchhead.compile(tensors, tmp_path / "b.shplan", config={**config, "chunk_size": 64})
    switchhead.compile(model_dir("rope"), tmp_path / "c.shplan")
    a = (tmp_path / "a.shplan").read_bytes()
    assert a == (tmp_path / "b.shplan").read_bytes()
    assert a != (tmp_path / "c.shplan").read_bytes()
