"""Trains the test SentencePiece model on the training split of the corpus.

Usage: train_tokenizer.py [--out testdata/models/spm/tokenizer.model] [--vocab 1000]

Input: the training split of testdata/corpus/kjv.txt (data[:int(0.9*N)], as train.py splits it),
one sentence per line (a KJV verse). Unigram model, 1,000 pieces: <unk>, <s>, </s>, the 256
byte-fallback pieces <0x00>..<0xFF>, and 741 learned pieces. Normalization is the identity, with
no dummy prefix and no whitespace folding, so decode(encode(text)) == text for any UTF-8 text
(a character no piece spells, such as the newline, is spelled by its byte pieces), and each
piece covers a contiguous run of the text's bytes. One trainer thread, all sentences (no
sampling): the same corpus gives the same model.
"""
import argparse
import io
import os
import sys

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as tr  # noqa: E402

DEFAULT_OUT = os.path.join(tr.TESTDATA, "models", "spm", "tokenizer.model")


def train_model(vocab):
    train, _ = tr.load_data()
    lines = bytes(train).decode("utf-8").split("\n")
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=out,
        model_type="unigram",
        vocab_size=vocab,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=False,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=1,
    )
    return out.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--vocab", type=int, default=1000)
    args = ap.parse_args()
    model = train_model(args.vocab)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    sample = bytes(tr.load_data()[1][:4096]).decode("utf-8")
    ids = sp.encode(sample)
    assert sp.decode(ids) == sample, "decode(encode(text)) must give the text back"
    print(f"wrote {args.out}: {sp.get_piece_size()} pieces, {len(model)} bytes; "
          f"{len(sample.encode())} held-out bytes -> {len(ids)} tokens")


if __name__ == "__main__":
    main()
