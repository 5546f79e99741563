"""ONNX Runtime GenAI on a folder `switchhead-compile MODEL --genai -o DIR` wrote.

Loads DIR with onnxruntime-genai, unmodified, and prints one JSON object on stdout:
- "prompt_ids": og.Tokenizer's encoding of --prompt;
- "generated": the ids of greedy generation (the config's search options, max_length = prompt
  length + --max-tokens), one generate_next_token at a time;
- "stream_text": those ids through og.TokenizerStream, joined;
- "encoded" / "streamed": for each text of the JSON list in --texts (if given), og.Tokenizer's
  ids, and its ids (given under "ids" there, ours) decoded through a TokenizerStream.

The Rust test cli/tests/genai.rs compares all of it with our runtime and `switchhead run`.
"""

import argparse
import json
import sys

import onnxruntime_genai as og


def stream(tokenizer, ids):
    s = tokenizer.create_stream()
    return "".join(s.decode(int(i)) for i in ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-tokens", type=int, required=True)
    ap.add_argument("--texts", help="JSON file: {\"texts\": [...], \"ids\": [[...], ...]}")
    a = ap.parse_args()
    model = og.Model(a.dir)
    tokenizer = og.Tokenizer(model)
    prompt = [int(i) for i in tokenizer.encode(a.prompt)]
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + a.max_tokens)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    generated = []
    while not generator.is_done():
        generator.generate_next_token()
        generated.append(int(generator.get_next_tokens()[0]))
    out = {
        "prompt_ids": prompt,
        "generated": generated,
        "stream_text": stream(tokenizer, generated),
    }
    if a.texts:
        with open(a.texts, encoding="utf-8") as f:
            cases = json.load(f)
        out["encoded"] = [[int(i) for i in tokenizer.encode(t)] for t in cases["texts"]]
        out["streamed"] = [stream(tokenizer, ids) for ids in cases["ids"]]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
