#!/usr/bin/env bash
# On a leased CUDA GPU (issue 18): the PPO and MBPO-PPO commands with --device cuda, a few iterations
# each, as a check that the same commands train there (rsl-rl on the device; MBPO's world model,
# imagination and PPO on the device, its real robots on the CPU). Needs .gpu/ from prepare.sh, with
# rsl-rl's wheels in .gpu/wheels_rl. Writes its log to $OUT.
set -uo pipefail
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
OUT=${OUT:-runs/gpu_lease_rl}
mkdir -p "$OUT"
exec > >(tee "$OUT/rl_log.txt") 2>&1
export PYTHONUNBUFFERED=1
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpu/wheels/*.whl .gpu/wheels_rl/*.whl || exit 1
export PYTHONPATH="$PWD/.gpu/site:/tmp/site:$PWD/src/rwm"
export ANYMAL_D_DESCRIPTION="$PWD/.gpu/robot"
RWM="$PY -m rwm.cli"
W=/tmp/rwm_rl
rm -rf $W && mkdir -p $W
echo "== PPO, domain randomization, 256 robots, 3 iterations, --device $DEVICE"
/usr/bin/time -f "ppo wall %e s" $RWM train-ppo --device "$DEVICE" --num-envs 256 --iterations 3 --domain-randomization \
    --log-dir $W/ppo --export $W/ppo.onnx || exit 2
echo "== MBPO-PPO from the shipped RWM, 1 iteration, --device $DEVICE"
/usr/bin/time -f "mbpo wall %e s" $RWM train-mbpo --device "$DEVICE" --world-model models/anymal_d_rwm.pt \
    --pretrain .gpu/heldout --out $W/mbpo --export $W/mbpo.onnx --iterations 1 --real-envs 16 --real-steps 50 \
    --wm-iterations 20 --ppo-iterations 3 --imagined-envs 512 --init-from models/anymal_d_ppo.onnx || exit 3
ls -la $W/*.onnx
echo "== done"
