#!/usr/bin/env bash
# The world-model table at the paper's budget (issue 18: batch 1024, learning rate 1e-4, as many
# iterations as fit) for RWM-TF, RWM-AR, Transformer-AR and MLP-AR, on one leased CUDA GPU in one call
# of at most BUDGET_S seconds. Needs .gpu/ from tools/gpu_lease/prepare.sh (carried) and the machine's
# own torch; writes to $OUT: the log, logs.tar.gz (the GPU's name, every run's log, the data's meta) and
# one tarball per row of its run folder (train_config.json, train_log.jsonl, the last three checkpoints,
# model.pt), scored afterwards on the CPU by
# `rwm wm-table` (docs/gpu/README.md).
#  1. the pretraining data: `make pretrain-data`'s recipe (the nominal PPO policy, action noise 0.3,
#     pushes, 512 robots x 4000 steps) as 16 shards of 32 robots, seeds 100-115, one per core, merged;
#     meanwhile a 20-iteration run of every row on the held-out set checks the CUDA path (fails fast),
#     and a short collection is compared byte for byte with the one prepare.sh made on the CPU;
#  2. 80 iterations of every row at once give the time per iteration; N is what fits the time left;
#  3. the four rows train at once, N iterations, a checkpoint every N/5 (the table averages the last 3).
set -uo pipefail
BUDGET_S=${BUDGET_S:-520}
DEVICE=${DEVICE:-cuda}  # cpu: a dry run of this script off the lease
STEPS=${STEPS:-4000}
ITERATIONS=${ITERATIONS:-}  # set: this many iterations, not what fits (a dry run)
PY=${PY:-python3}  # the machine's Python with torch
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
OUT=${OUT:-runs/gpu_lease}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl || exit 1
export PYTHONPATH="$PWD/.gpu/site:/tmp/site:$PWD/src/rwm"
export ANYMAL_D_DESCRIPTION="$PWD/.gpu/robot"
RWM="$PY -m rwm.cli"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch, mujoco, onnxruntime; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'mujoco', mujoco.__version__, 'cores', __import__('os').cpu_count())" | tee -a "$OUT/gpu.txt" || exit 1

DATA=/tmp/rwm_data
ROWS=("RWM-TF:--arch rwm --horizon 1" "RWM-AR:--arch rwm" "Transformer-AR:--arch transformer" "MLP-AR:--arch mlp")
COMMON=(--heldout .gpu/heldout --batch-size 1024 --lr 1e-4 --seed 0 --threads 2 --device "$DEVICE")
row_dir() { echo "$1" | tr 'A-Z+' 'a-z-'; }  # a row's folder, as rwm wm-table names it
train_rows() {  # DATA_DIR OUT_ROOT ITERATIONS EVAL_INTERVAL: every row at once, background; pids in PIDS
    PIDS=()
    for row in "${ROWS[@]}"; do
        name=${row%%:*}; dir=$(row_dir "$name")
        $RWM train-wm --data "$1" --out "$2/$dir" --iterations "$3" --eval-interval "$4" "${COMMON[@]}" ${row#*:} \
            > "$2.$dir.log" 2>&1 &
        PIDS+=($!)
    done
}
rows_ok() {  # OUT_ROOT: wait for PIDS; print each row's log tail on failure
    local ok=0 i=0
    for row in "${ROWS[@]}"; do
        name=${row%%:*}; dir=$(row_dir "$name")
        if ! wait "${PIDS[$i]}"; then ok=1; echo "== $name FAILED"; tail -25 "$1.$dir.log"; fi
        i=$((i + 1))
    done
    return $ok
}

echo "== [$(elapsed) s] collecting 16 shards; smoke-testing the rows on CUDA"
mkdir -p $DATA
SHARDS=()
for i in $(seq 0 15); do
    $RWM collect --dataset --policy models/anymal_d_ppo_nominal.onnx --action-noise 0.3 --steps "$STEPS" \
        --num-envs 32 --threads 1 --seed $((100 + i)) --out $DATA/shard$i > $DATA/shard$i.log 2>&1 &
    SHARDS+=($!)
done
$RWM collect --dataset --policy models/anymal_d_ppo_nominal.onnx --action-noise 0.3 --steps 10 --num-envs 64 \
    --threads 1 --seed 100 --out $DATA/hashcheck > /dev/null 2>&1 \
    && (cd $DATA/hashcheck && sha256sum -c "$OLDPWD/.gpu/hashcheck.sha256") | sed 's/^/same data as the CPU: /' \
    || echo "== the short collection failed or differs from the CPU's (see above): the data are not comparable"
mkdir -p $DATA/smoke
train_rows .gpu/heldout $DATA/smoke 20 10
if ! rows_ok $DATA/smoke; then kill "${SHARDS[@]}" 2>/dev/null; echo "smoke test failed"; exit 2; fi
grep -h '"iteration": 20' $DATA/smoke.*.log
for pid in "${SHARDS[@]}"; do wait "$pid" || { echo "a shard failed"; tail $DATA/shard*.log; exit 3; }; done
echo "== [$(elapsed) s] merging"
$RWM merge-datasets $(for i in $(seq 0 15); do echo $DATA/shard$i; done) --out $DATA/pretrain || exit 4
rm -rf $DATA/shard? $DATA/shard??

echo "== [$(elapsed) s] timing 80 iterations of every row at once"
mkdir -p $DATA/timing
train_rows $DATA/pretrain $DATA/timing 80 80
rows_ok $DATA/timing || exit 5
S_PER_IT=$("$PY" - "$DATA/timing" <<'PY'
import json, pathlib, sys
logs = [json.loads(p.read_text().splitlines()[-1]) for p in pathlib.Path(sys.argv[1]).glob("*/train_log.jsonl")]
print(max(entry["s_per_iteration"] for entry in logs))
PY
)
LEFT=$(( BUDGET_S - $(elapsed) - 60 ))
N=${ITERATIONS:-$("$PY" -c "print(max(500, int($LEFT / ($S_PER_IT * 1.08)) // 500 * 500))")}
echo "== [$(elapsed) s] slowest row ${S_PER_IT} s/iteration, ${LEFT} s left: ${N} iterations, a checkpoint every $((N / 5))"

ROOT=$DATA/wm_table_gpu
mkdir -p $ROOT
train_rows $DATA/pretrain $ROOT "$N" $((N / 5))
STOP_IN=$(( BUDGET_S - $(elapsed) - 20 )); [ "$STOP_IN" -gt 30 ] || STOP_IN=30
( sleep "$STOP_IN" >/dev/null 2>&1; echo "== deadline: stopping the rows"; kill "${PIDS[@]}" ) 2>/dev/null &
DEADLINE=$!
rows_ok $ROOT
STATUS=$?
kill $DEADLINE 2>/dev/null
echo "== [$(elapsed) s] packing"
cp "$OUT/gpu.txt" $DATA/pretrain/meta.json $DATA/
(cd $DATA && tar czf "$OUT/logs.tar.gz" gpu.txt meta.json smoke.*.log timing.*.log wm_table_gpu.*.log shard0.log)
rm "$OUT/gpu.txt"
for run in $ROOT/*/; do
    dir=$(basename "$run")
    keep=$(ls "$run" | grep -E '^model_[0-9]+\.pt$' | sort -t_ -k2 -n | tail -3)
    (cd "$run" && tar czf "$OUT/$dir.tar.gz" train_config.json train_log.jsonl $keep $(ls model.pt 2>/dev/null))
done
ls -la "$OUT"
echo "== [$(elapsed) s] done, status $STATUS"
exit $STATUS
