#!/usr/bin/env bash
# Weight-update GRPO on a lent GPU (H100/H200): train SmolLM2-135M (from its GGUF) with TRL on
# "What is a + b?" (task `jsonl`, numeric reward), then `tfgrpo compare` baseline vs weight-update on
# held-out items, all on the GPU. Results come back in $OUT (grpo.log, compare.md/json, metadata).
#
# Why three phases: the GPU machine has no internet and no TRL, and at most 64 MiB travels per call
# (the working tree included). So, HERE (online), `prepare` downloads the few missing wheels and cuts
# the 98 MB GGUF into two halves; THERE, two calls made back to back (the machine stays warm ~30 s and
# keeps /tmp while warm) bring one half each:
#
#   1. here:      bash bench/gpu_grpo.sh prepare
#   2. device:    run(command="bash bench/gpu_grpo.sh part1", carry=[".whl", ".gguf-parts/a"], timeout_s=120)
#   3. device:    run(command="bash bench/gpu_grpo.sh part2", carry=[".gguf-parts/b"], timeout_s=560)
#                 -- immediately after 2 (if the machine went back in between, part2 says so: redo 2 and 3)
#   4. here:      read files_at/compare.md, grpo_meta.json (steps, s/step, GPU-s, peak GPU memory)
#   5. give_back (unless rerunning at once), then: rm -rf .whl .gguf-parts
#
# Budget (15 device-minutes per session, start included): start ~1-2 min, part1 ~20 s, part2 ~6-8 min
# (GGUF load ~30 s, 150 steps x ~1.3 s, compare 2 rows x 60 items x k=4). Shrink with env vars
# STEPS, TEST_LIMIT, K passed in the command: `STEPS=80 bash bench/gpu_grpo.sh part2`.
# Dry run of part2 here on CPU (no GPU, no wheels needed):
#   mkdir -p /tmp/tfgrpo-gpu /tmp/site && cp .gguf-parts/a/smollm2.part /tmp/tfgrpo-gpu/smollm2.a &&
#   OUT=/tmp/gpu-dry PY=.venv/bin/python DEVICE=cpu STEPS=1 BATCH=2 GROUP=2 MAXLEN=16 TEST_LIMIT=2 K=1 \
#     THREADS=1 TRAIN_TIMEOUT=600 COMPARE_TIMEOUT=600 bash bench/gpu_grpo.sh part2
# Known from an earlier session on an H100: TRL GRPO on this model and task shape, G=8, 64
# completions/step, lr 2e-6, fp32: 1.26 s/step, 10.5 GB; bf16 autocast crashed (device-side assert in
# sampling), so training stays fp32 (tfgrpo never enables bf16).
set -euo pipefail
cd "$(dirname "$0")/.."

PY312_WHEELS=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0
              pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
              typing-extensions==4.16.0)
WORK=/tmp/tfgrpo-gpu
PY=${PY:-python3}             # the device's python3 (3.12, holds torch); override only for a dry run here
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-150}
BATCH=${BATCH:-8}             # prompts per step
GROUP=${GROUP:-8}             # completions per prompt (G); BATCH x GROUP completions per step
MAXLEN=${MAXLEN:-64}          # max completion tokens, in training and in the comparison
TEST_LIMIT=${TEST_LIMIT:-60}  # held-out items in the comparison
K=${K:-4}
THREADS=${THREADS:-}          # CPU threads for torch (dry runs on a busy CPU: 1)
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-330}
COMPARE_TIMEOUT=${COMPARE_TIMEOUT:-200}

fail() { echo "gpu_grpo.sh: $*" >&2; exit 1; }

prepare() {  # here, online: wheels for the device's Python 3.12 + the GGUF in two halves
  local py=${PYTHON:-.venv/bin/python}
  for ignored in /.whl/ /.gguf-parts/; do
    grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> .git/info/exclude
  done
  rm -rf .whl .gguf-parts && mkdir -p .whl .gguf-parts/a .gguf-parts/b
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${PY312_WHEELS[@]}"
  local gguf size half
  gguf=$("$py" -c 'from tfgrpo.llm.fetch import resolve_gguf; print(resolve_gguf("local:smollm2"))')
  size=$(stat -c %s "$gguf"); half=$(( (size + 1) / 2 ))
  head -c "$half" "$gguf" > .gguf-parts/a/smollm2.part
  tail -c +"$((half + 1))" "$gguf" > .gguf-parts/b/smollm2.part
  (cd "$(dirname "$gguf")" && sha256sum "$(basename "$gguf")") | awk '{print $1}' > .gguf-parts/b/SHA256
  du -sh .whl .gguf-parts/a .gguf-parts/b
  echo "next: device run part1 with carry [.whl, .gguf-parts/a], then at once part2 with carry [.gguf-parts/b]"
}

part1() {  # device call 1: install the wheels, park the first half under /tmp (survives while warm)
  nvidia-smi -L
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  mkdir -p "$WORK" && cp .gguf-parts/a/smollm2.part "$WORK/smollm2.a"
  PYTHONPATH=/tmp/site:$PWD python3 -c 'import torch, transformers, trl, datasets, gguf, pydantic, peft
print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__,
      "cuda", torch.cuda.is_available())
import tfgrpo.cli.grpo, tfgrpo.cli.compare  # the entry points import without duckdb/litellm'
}

make_data() {  # "What is a + b?", a, b in 2..20: 260 train pairs, the other 101 pairs are the test set
  "$PY" - "$WORK/ab" <<'EOF'
import json, random, sys
from pathlib import Path
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
pairs = [(a, b) for a in range(2, 21) for b in range(2, 21)]
random.Random(0).shuffle(pairs)
for split, chunk in (("train", pairs[:260]), ("test", pairs[260:])):
    with open(out / f"{split}.jsonl", "w") as fh:
        for i, (a, b) in enumerate(chunk):
            fh.write(json.dumps({"id": f"ab-{split}-{i}", "question": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n")
EOF
}

part2() {  # device call 2: assemble + verify the GGUF, train, compare; everything worth keeping -> $OUT
  if [[ ! -f "$WORK/smollm2.a" || ! -d /tmp/site ]]; then
    echo "part1's files are gone (the machine went back between calls): run part1 and part2 again, back to back" >&2
    exit 3
  fi
  cat "$WORK/smollm2.a" .gguf-parts/b/smollm2.part > "$WORK/smollm2.gguf"
  echo "$(cat .gguf-parts/b/SHA256)  $WORK/smollm2.gguf" | sha256sum -c -
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export TFGRPO_HOME=$WORK/home LITELLM_LOCAL_MODEL_COST_MAP=True
  make_data
  local common=(--task jsonl --data-file "$WORK/ab" --reward numeric --model local:smollm2
                --gguf "$WORK/smollm2.gguf" --device "$DEVICE")
  mkdir -p "$OUT"
  local threads=(); [[ -n "$THREADS" ]] && threads=(--threads "$THREADS")
  timeout "$TRAIN_TIMEOUT" "$PY" -m tfgrpo.cli.grpo "${common[@]}" "${threads[@]}" --out "$WORK/ck" \
    --max-steps "$STEPS" --group-size "$GROUP" --batch-size "$BATCH" --lr 2e-6 --max-completion-length "$MAXLEN" \
    --temperature 1.0 --seed 0 --no-record 2>&1 | grep -v -e 'de-quantizing' -e 'Loading weights' \
    | tee "$OUT/grpo.log" || fail "training failed or ran past ${TRAIN_TIMEOUT}s (exit 124 = timeout): lower STEPS"
  cp "$WORK/ck/tfgrpo_grpo.json" "$OUT/grpo_meta.json"
  cp "$WORK/ck/trl_metrics.jsonl" "$OUT/trl_metrics.jsonl"
  timeout "$COMPARE_TIMEOUT" "$PY" -m tfgrpo.cli.compare "${common[@]}" --engine hf --checkpoint "$WORK/ck" --split test \
    --limit "$TEST_LIMIT" --k "$K" --temperature 0.7 --max-tokens "$MAXLEN" --seed 0 \
    --json "$OUT/compare.json" --markdown "$OUT/compare.md" 2>&1 | grep -v -e 'de-quantizing' -e 'Loading weights' \
    | tee "$OUT/compare.log" || fail "compare failed or ran past ${COMPARE_TIMEOUT}s: lower TEST_LIMIT or K"
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv; fi
}

case "${1:-}" in
  prepare) prepare ;;
  part1) part1 ;;
  part2) part2 ;;
  *) echo "usage: bash bench/gpu_grpo.sh prepare|part1|part2 (see the comments at the top)" >&2; exit 2 ;;
esac
