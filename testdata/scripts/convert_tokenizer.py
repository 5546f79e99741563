"""Writes the SentencePiece test model models/spm/tokenizer.model as a Hugging Face tokenizer.json.

Usage: convert_tokenizer.py [--model testdata/models/spm/tokenizer.model] [--out testdata/tokenizers/kjv1000.json]

The same Unigram pieces and scores with byte fallback, spaces as U+2581 split before each one (the
model's identity normalization, no dummy prefix), and a decoder that undoes both; <unk>, <s> and
</s> are special tokens. Checks that the result encodes heldout-eval.txt to the same ids as
SentencePiece and decodes them back to the text. (Over the whole corpus the two Unigram
implementations break ties between segmentations of equal score differently: about 0.1% of the
tokens differ, and the count is printed.) It is the fixture the Rust tests load
through `--tokenizer` (a tokenizer.json beside the model would take precedence over its .model).
"""
import argparse
import os
import sys

import sentencepiece as spm
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as tr  # noqa: E402

DEFAULT_MODEL = os.path.join(tr.TESTDATA, "models", "spm", "tokenizer.model")
DEFAULT_OUT = os.path.join(tr.TESTDATA, "tokenizers", "kjv1000.json")


def convert(sp):
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(sp.id_to_piece(i), special=True)
                            for i in (sp.unk_id(), sp.bos_id(), sp.eos_id())])
    return tok


def check(sp, tok, text, what):
    want = sp.encode(text)
    got = tok.encode(text, add_special_tokens=False).ids
    assert got == want, f"{what}: ids differ at {next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)}"
    assert tok.decode(got) == text, f"{what}: decode does not give the text back"
    print(f"{what}: {len(text.encode())} bytes -> {len(got)} tokens, same ids as SentencePiece")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    sp = spm.SentencePieceProcessor(model_file=args.model)
    tok = convert(sp)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tok.save(args.out, pretty=False)
    tok = Tokenizer.from_file(args.out)
    with open(tr.HELDOUT_EVAL, encoding="utf-8") as f:
        check(sp, tok, f.read(), "heldout-eval.txt")
    with open(tr.CORPUS, encoding="utf-8") as f:
        text = f.read()
    want, got = sp.encode(text), tok.encode(text, add_special_tokens=False).ids
    differ = len(want) != len(got) or sum(a != b for a, b in zip(want, got))
    print(f"kjv.txt: {len(want)} SentencePiece tokens, {len(got)} tokenizer.json tokens, {differ} differ (ties)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
