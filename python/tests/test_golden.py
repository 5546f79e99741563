"""Every testdata model's golden logits from Python, within 1e-4: a checkpoint directory
(compiled in memory, ONNX on the CPU backend), and a plan written by `switchhead.compile`
(the native executor); XL models over two chunks with memory carried by `logits(memory=)`."""

import numpy as np
import pytest

import switchhead
from conftest import GOLDEN_MODELS, TOL, golden_files, max_rel_err, model_dir


def check_goldens(name, session):
    checked = 0
    for stem, chunks in golden_files(name):
        memory = []
        for i, (tokens, want) in enumerate(chunks):
            if session.is_xl:
                logits, memory = session.logits(tokens, memory=memory)
                assert len(memory) > 0
            else:
                assert len(chunks) == 1
                logits = session.logits(tokens)
            assert logits.dtype == np.float32
            err = max_rel_err(logits, want)
            assert err <= TOL, f"{name} {stem} chunk {i}: max rel err {err}"
            checked += 1
    assert checked >= 2, f"{name}: golden chunks"


@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_checkpoint_matches_golden(name, sessions):
    check_goldens(name, sessions(name))


@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_plan_matches_golden(name, tmp_path):
    plan = tmp_path / f"{name}.shplan"
    switchhead.compile(model_dir(name), plan)
    session = switchhead.Session(plan, executor="cpu")
    assert session.backend != ""
    check_goldens(name, session)


def test_xl_without_memory_is_the_first_chunk(sessions):
    session = sessions("xl")
    (_, chunks), *_ = [g for g in golden_files("xl") if g[0] == "golden_mem"]
    tokens, want = chunks[0]
    assert max_rel_err(session.logits(tokens), want) <= TOL
