#!/usr/bin/env bash
# Prepare the folder .gpu/ (ignored by git) that travels to a leased GPU machine for wm_table_gpu.sh
# and rl_cuda_check.sh: MuJoCo's and rsl-rl's wheels for its Python 3.12 (torch, onnx, numpy are there),
# the ANYmal D URDF, the held-out set of `make pretrain-data`, the stance targets pinocchio computes here
# (site/sitecustomize.py says why) and the hashes of a short collection, to compare there.
# Run in the repository root with the dev environment (make setup; data/heldout from make pretrain-data).
set -euo pipefail
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/wheels_rl .gpu/site
WHEELS=(python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64)
"${WHEELS[@]}" -d .gpu/wheels mujoco==4.0.0 mujoco-core==4.0.0
"${WHEELS[@]}" -d .gpu/wheels_rl rsl-rl-lib==5.5.1 tensordict==0.15.3 GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3 \
    pyvers==0.2.3
cp -r "$(python -c 'from rwm.robot.description import find_anymal_d_urdf as f; print(f().parent.parent)')" .gpu/robot
cp -r data/heldout .gpu/heldout
cp tools/gpu_lease/site/sitecustomize.py .gpu/site/
python - <<'PY'
import hashlib, json
from rwm.robot.description import find_anymal_d_urdf
from rwm.robot.kinematics import AnymalKinematics
urdf = find_anymal_d_urdf(".gpu/robot")
json.dump({"robot": "anymal_d", "urdf_sha256": hashlib.sha256(urdf.read_bytes()).hexdigest(),
           "stance_targets": AnymalKinematics("anymal_d", urdf).standing_targets().tolist()},
          open(".gpu/site/stance_targets.json", "w"), indent=1)
PY
rm -rf /tmp/rwm_hashcheck
rwm collect --dataset --policy models/anymal_d_ppo_nominal.onnx --action-noise 0.3 --steps 10 --num-envs 64 \
    --threads 1 --seed 100 --out /tmp/rwm_hashcheck > /dev/null
(cd /tmp/rwm_hashcheck && sha256sum ./*.f32 ./*.u8 ./*.i64 ./*.f64) > .gpu/hashcheck.sha256
du -sh .gpu
