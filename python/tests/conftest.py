"""Shared fixtures: testdata paths, the logits error measure, golden chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Tuple

import numpy as np
import pytest
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "testdata" / "models"
# Every trained testdata model with golden logits.
GOLDEN_MODELS = ["rope", "xl", "switchall", "dense", "gated", "spm"]
# The fp32 logits tolerance (max relative error), as in the Rust tests.
TOL = 1e-4


def model_dir(name: str) -> Path:
    return MODELS / name


def max_rel_err(ours: np.ndarray, golden: np.ndarray) -> float:
    """max |ours - golden| / max |golden|."""
    assert ours.shape == golden.shape, (ours.shape, golden.shape)
    return float(np.max(np.abs(ours - golden)) / np.max(np.abs(golden)))


def golden_files(name: str) -> Iterator[Tuple[str, List[Tuple[np.ndarray, np.ndarray]]]]:
    """Each golden file of `name` with its (tokens, logits) chunks in order."""
    for stem in ["golden_long", "golden_short", "golden_mem"]:
        path = model_dir(name) / f"{stem}.safetensors"
        if not path.exists():
            continue
        st = load_file(str(path))
        if "tokens" in st:
            yield stem, [(st["tokens"], st["logits"])]
            continue
        chunks = []
        i = 0
        while f"tokens{i}" in st:
            chunks.append((st[f"tokens{i}"], st[f"logits{i}"]))
            i += 1
        assert chunks, f"{path}: no tokens"
        yield stem, chunks


@pytest.fixture(scope="session")
def sessions():
    """One CPU session per testdata model, opened on first use."""
    import switchhead

    cache = {}

    def get(name: str) -> "switchhead.Session":
        if name not in cache:
            cache[name] = switchhead.Session(model_dir(name), executor="cpu")
        return cache[name]

    return get
