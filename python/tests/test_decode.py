"""Decoding equals the full pass: `Decoder.step` token by token (KV cache for RoPE models,
memory for XL) gives the logits of one pass over the sequence; `generate` is greedy argmax
over them, and its text is the tokenizer's decoding of its ids."""

import numpy as np
import pytest

import subprocess

from conftest import GOLDEN_MODELS, REPO, TOL, golden_files, max_rel_err, model_dir


def first_golden(name):
    _, chunks = next(golden_files(name))  # golden_long: [2, 37]
    return chunks[0]


@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_stepping_equals_the_full_pass(name, sessions):
    session = sessions(name)
    tokens, _ = first_golden(name)
    full = session.logits(tokens)
    decoder = session.decoder(batch=tokens.shape[0])
    steps = [decoder.step(tokens[:, :3])]
    steps += [decoder.step(tokens[:, t : t + 1]) for t in range(3, tokens.shape[1])]
    assert decoder.position == tokens.shape[1]
    stepped = np.concatenate(steps, axis=1)
    assert max_rel_err(stepped, full) <= TOL


@pytest.mark.parametrize("name", ["rope", "xl", "spm"])
def test_greedy_generation_is_the_argmax_of_the_full_pass(name, sessions):
    session = sessions(name)
    prompt = [int(t) for t in first_golden(name)[0][0, :6]]
    made = list(session.generate(prompt, max_tokens=8))
    assert len(made) == 8 and all(isinstance(t, int) for t in made)
    logits = session.logits(np.array([prompt + made], dtype=np.int64))
    want = logits[0, len(prompt) - 1 : -1].argmax(axis=-1)
    assert made == [int(t) for t in want]


def test_byte_level_text_is_the_generated_bytes(sessions):
    session = sessions("rope")
    prompt = "And God said"
    pieces = list(session.generate(prompt, 12))
    assert len(pieces) == 12 and all(isinstance(p, str) for p in pieces)
    ids = list(session.generate(list(prompt.encode()), 12))
    assert "".join(pieces) == bytes(ids).decode("utf-8", "replace")


@pytest.mark.parametrize("name", ["rope", "spm", "xl"])
def test_text_generation_prints_what_switchhead_run_prints(name, sessions):
    cli = REPO / "target" / "debug" / "switchhead"
    if not cli.exists():
        pytest.skip(f"{cli} is not built (scripts/test.sh builds it first)")
    prompt = "And God said"
    run = [str(cli), "run", str(model_dir(name)), "--prompt", prompt, "--max-tokens", "20",
           "--executor", "cpu", "--quiet"]
    printed = subprocess.run(run, check=True, capture_output=True, text=True).stdout
    text = "".join(sessions(name).generate(prompt, 20))
    assert printed == prompt + text + "\n"


def test_sampling_follows_the_seed(sessions):
    session = sessions("rope")
    run = lambda seed: list(session.generate([65, 110, 100], 16, 1.0, 0.9, seed))
    assert run(7) == run(7)
    assert run(7) != run(8)
