#!/usr/bin/env bash
# Runs `attnd tokenize` over the test vectors of every vocabulary in a directory
# (llama.cpp's models/ggml-vocab-*.gguf with their .inp/.out), as the suite does for
# the four in ../shared/vocab. The other vocabularies are not in ../shared, so this
# is run by hand; docs and closing notes quote its output.
#
# usage: tests/ref/check-vocabs.sh DIR    (e.g. /tmp/llama.cpp/models)
# needs: a Release build of attnd, python3
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:?usage: $0 DIR}
attnd=$PWD/build/release/cli/attnd
status=0
for v in "$dir"/ggml-vocab-*.gguf; do
  [ -f "$v.inp" ] && [ -f "$v.out" ] || continue
  python3 - "$attnd" "$v" <<'PY' || status=1
import subprocess, sys
attnd, vocab = sys.argv[1:]
texts = open(vocab + ".inp", "rb").read().split(b"\n__ggml_vocab_test__\n")[:-1]
want = open(vocab + ".out").read().split("\n")
run = subprocess.run([attnd, "info", vocab], capture_output=True, text=True)
if run.returncode != 0:
    print(f"{vocab.split('/')[-1]}: not supported: {run.stderr.strip().splitlines()[-1]}")
    sys.exit(0)
ok = 0
for i, t in enumerate(texts):
    got = subprocess.run([attnd, "tokenize", "-m", vocab, "--no-special"], input=t,
                         capture_output=True).stdout.decode().split()
    if got == want[i].split():
        ok += 1
    else:
        print(f"  text {i} {t[:40]!r}: expected {want[i].strip()}, got {' '.join(got)}")
print(f"{vocab.split('/')[-1]}: {ok}/{len(texts)}")
sys.exit(0 if ok == len(texts) else 1)
PY
done
exit $status
