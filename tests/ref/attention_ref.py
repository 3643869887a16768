#!/usr/bin/python3
"""attention_ref.py - expected /v1/attention rows from the float64 reference.

Feeds PROMPT_IDS to ref_forward.forward, continues greedily for N tokens (the
argmax of each last row), then runs the whole sequence once more keeping every
layer and head's attention probabilities, and prints JSON: the ids, the prompt
length and probs[layer][head] = one row per position, the weights it gives
positions 0..p. tests/test_server.c holds attnd's answer to it (1e-5).

usage: attention_ref.py MODEL.gguf N ID... > OUT.json   (needs python3-numpy)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_forward  # noqa: E402


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    meta, t = ref_forward.load_gguf(sys.argv[1])
    n, ids = int(sys.argv[2]), [int(a) for a in sys.argv[3:]]
    n_prompt = len(ids)
    for _ in range(n):
        ids.append(int(ref_forward.forward(meta, t, ids)[-1].argmax()))
    probs = {}
    ref_forward.forward(meta, t, ids, probs)
    layers = sorted({l for l, _ in probs})
    heads = sorted({h for _, h in probs})
    out = {"model": os.path.basename(sys.argv[1]), "ids": ids, "n_prompt": n_prompt,
           "probs": [[[[float(x) for x in probs[(l, h)][p, :p + 1]] for p in range(len(ids))]
                      for h in heads] for l in layers]}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
