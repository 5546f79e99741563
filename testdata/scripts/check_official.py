"""Checks reference.py against the logits computed by the official SwitchHead code.

Usage: check_official.py [--golden-dir ../shared/official-golden]
Asserts max|a-b| / max|b| < 1e-5 for every case and prints the errors.
"""
import argparse
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

TOL = 1e-5


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.environ.get("OFFICIAL_GOLDEN", os.path.join(here, "..", "..", "..", "shared", "official-golden"))
    ap.add_argument("--golden-dir", default=default)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    worst = 0.0
    for name in sorted(os.listdir(args.golden_dir)):
        d = os.path.join(args.golden_dir, name)
        if not os.path.isfile(os.path.join(d, "config.json")):
            continue
        cfg = ref.load_config(os.path.join(d, "config.json"))
        model = ref.load_state(ref.LM(cfg), load_file(os.path.join(d, "model.safetensors"))).eval()
        g = load_file(os.path.join(d, "golden.safetensors"))
        with torch.no_grad():
            if "tokens" in g:
                logits, _ = model(g["tokens"])
                e = ref.rel_err(logits, g["logits"])
                print(f"{name}: logits rel err {e:.3e}")
                worst = max(worst, e)
            else:
                l0, mems = model(g["tokens0"])
                l1, _ = model(g["tokens1"], mems=mems)
                e0 = ref.rel_err(l0, g["logits0"])
                e1 = ref.rel_err(l1, g["logits1"])
                print(f"{name}: chunk0 (empty memory) rel err {e0:.3e}, chunk1 (XL memory) rel err {e1:.3e}")
                worst = max(worst, e0, e1)
    print(f"worst rel err {worst:.3e} (tolerance {TOL:g})")
    assert worst < TOL, f"reference does not match the official logits: {worst}"
    print("OK")


if __name__ == "__main__":
    main()
