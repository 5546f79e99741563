"""Errors are Python exceptions of the fitting type carrying the CLI's one-line messages."""

import json
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file

import switchhead
from conftest import REPO, model_dir


def test_a_missing_model_is_file_not_found(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(FileNotFoundError) as e:
        switchhead.Session("testdata/models/nope")
    # what `switchhead run testdata/models/nope` prints after "error: "
    assert str(e.value) == "testdata/models/nope: cannot read: No such file or directory (os error 2)"
    with pytest.raises(FileNotFoundError):
        switchhead.Session("testdata/models/nope.onnx")
    with pytest.raises(FileNotFoundError):
        switchhead.compile("testdata/models/nope", "/tmp/never.onnx")


def test_a_file_that_is_not_onnx_is_a_value_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"bad\.onnx.*is not an ONNX model"):
        switchhead.Session(bad, executor="cpu")


def test_bad_tokens(sessions):
    session = sessions("rope")
    with pytest.raises(ValueError, match="outside the vocabulary of 256"):
        session.logits(np.array([[1, 2, 256]], dtype=np.int64))
    with pytest.raises(TypeError, match="int64"):
        session.logits(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="empty input"):
        session.logits(np.zeros((1, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="not an XL model"):
        session.logits(np.zeros((1, 3), dtype=np.int64), memory=[])
    with pytest.raises(ValueError, match="batch of 1"):
        session.decoder().step(np.zeros((2, 3), dtype=np.int64))


def test_bad_memory(sessions):
    session = sessions("xl")
    tokens = np.zeros((1, 4), dtype=np.int64)
    _, memory = session.logits(tokens, memory=[])
    with pytest.raises(ValueError, match="XL memory: expected shape"):
        session.logits(np.zeros((2, 4), dtype=np.int64), memory=memory)
    with pytest.raises(TypeError, match="memory must be"):
        session.logits(tokens, memory=[np.zeros((1, 4), dtype=np.float32)])


def test_bad_generation_arguments(sessions):
    session = sessions("rope")
    with pytest.raises(ValueError, match="^empty prompt: generation needs at least one token"):
        session.generate("", 4)
    with pytest.raises(ValueError, match="top_p must be in"):
        session.generate("a", 4, top_p=0.0)
    with pytest.raises(TypeError, match="prompt must be"):
        session.generate(3.5, 4)


def test_an_onnx_file_without_kv_cache_cannot_decode(tmp_path):
    out = tmp_path / "rope.onnx"
    switchhead.compile(model_dir("rope"), out)
    session = switchhead.Session(out, executor="cpu")
    with pytest.raises(ValueError, match="kv-cache"):
        session.decoder()


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="executor must be"):
        switchhead.Session(model_dir("rope"), executor="tpu")
    with pytest.raises(ValueError, match="format must be"):
        switchhead.compile(model_dir("rope"), tmp_path / "x", format="tflite")
    with pytest.raises(ValueError, match="apply to ONNX output only"):
        switchhead.compile(model_dir("rope"), tmp_path / "x.shplan", kv_cache=True)
    with pytest.raises(ValueError, match="needs a RoPE model"):
        switchhead.compile(model_dir("xl"), tmp_path / "x.onnx", kv_cache=True)
    assert not list(tmp_path.iterdir())


def test_bad_state_dicts(tmp_path):
    tensors = load_file(str(model_dir("rope") / "model.safetensors"))
    config = json.loads((model_dir("rope") / "config.json").read_text())
    with pytest.raises(ValueError, match="needs their config"):
        switchhead.compile(tensors, tmp_path / "x.onnx")
    dropped = sorted(tensors)[0]
    partial = {k: v for k, v in tensors.items() if k != dropped}
    with pytest.raises(ValueError) as e:
        switchhead.compile(partial, tmp_path / "x.onnx", config=config)
    assert str(e.value) == f"<state_dict>: missing tensor {dropped}"
    with pytest.raises(ValueError, match="bad config"):
        switchhead.compile(tensors, tmp_path / "x.onnx", config={**config, "n_heads": "two"})
    assert not list(tmp_path.iterdir())


def test_a_missing_device_is_a_runtime_error():
    try:
        switchhead.Session(model_dir("rope"), executor="cuda")
    except RuntimeError as e:  # no CUDA here: the CLI's line for --executor cuda
        assert "backend cuda is unavailable" in str(e), str(e)


def test_messages_are_the_clis(tmp_path):
    cli = REPO / "target" / "debug" / "switchhead"
    if not cli.exists():
        pytest.skip(f"{cli} is not built (scripts/test.sh builds it first)")
    onnx = tmp_path / "rope.onnx"
    switchhead.compile(model_dir("rope"), onnx)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    cases = [
        (onnx, lambda: switchhead.Session(onnx, executor="cpu").generate("a", 1)),
        (bad, lambda: switchhead.Session(bad, executor="cpu")),
        (tmp_path / "none", lambda: switchhead.Session(tmp_path / "none", executor="cpu")),
    ]
    for model, call in cases:
        run = [str(cli), "run", str(model), "--prompt", "a", "--executor", "cpu"]
        printed = subprocess.run(run, capture_output=True, text=True)
        assert printed.returncode != 0
        with pytest.raises(Exception) as e:
            call()
        assert printed.stderr.strip().splitlines()[-1] == f"error: {e.value}"
