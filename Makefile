# One entry point for setup, tests, the main job and the benchmarks. Idempotent: re-running skips
# what is already done (the venv is rebuilt only when the pins change).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_ARGS ?= duration:=25 report:=true report_dir:=runs/run
ROS_ENV := source install/setup.bash && export PATH=$(CURDIR)/$(VENV)/bin:$$PATH
# Upstream launch, launch_ros, ros2cli and composition_interfaces for pip-only machines (their SOURCE.md);
# without the folder, a ROS 2 install provides them.
VENDOR ?= $(abspath ../shared/vendor/ros2)
LAUNCH_STAMP := $(VENV)/.launch-installed
COMPOSITION := $(wildcard $(VENDOR)/rcl_interfaces/composition_interfaces)
# tf2's TFMessage (not on PyPI): built here only where no ROS 2 install provides tf2_msgs.
TF2_MSGS := $(if $(wildcard $(addsuffix /share/tf2_msgs,$(filter-out $(CURDIR)/install/%,$(subst :, ,$(AMENT_PREFIX_PATH))))),,interfaces/tf2_msgs)

.PHONY: setup build test run bench lint clean ppo-model ppo-dr wm-heldout pretrain-data wm-model wm-ensemble wm-apart adapt-offline wm-seeds wm-sweep mbpo-model mbpo-dr adapt-demo wm-table-gpu

# cyclictest for bench/bench_machine_latency.py only: a failed install does not fail the setup.
setup: build
	@bash tools/setup_rt_tests.sh || echo "setup: rt-tests not installed (bench/bench_machine_latency.py skips)"

$(STAMP): requirements.txt constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $(STAMP)

$(LAUNCH_STAMP): $(STAMP) requirements-launch.txt tools/setup_ros2_launch.sh tools/setup_render.sh
	bash tools/setup_ros2_launch.sh $(VENV) $(VENDOR)
	bash tools/setup_render.sh
	touch $(LAUNCH_STAMP)

# composition_interfaces is generated with the venv's rosidl wheels (AMENT_PREFIX_PATH finds them).
install/.built: $(LAUNCH_STAMP) $(shell find src -name '*.py' -o -name '*.xml' -o -name '*.cfg' | sort) $(wildcard launch/*.py config/*.yaml interfaces/*/*.* interfaces/*/msg/*) $(wildcard models/*.onnx models/*.json)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH AMENT_PREFIX_PATH=$(CURDIR)/$(VENV)$${AMENT_PREFIX_PATH:+:$$AMENT_PREFIX_PATH} \
		$(VENV)/bin/colcon --log-base log build --base-paths src $(COMPOSITION) $(TF2_MSGS) --build-base build \
		--install-base install --event-handlers console_cohesion- summary- \
		--cmake-args -DCMAKE_PREFIX_PATH=$(CURDIR)/$(VENV) -DPython3_EXECUTABLE=$(CURDIR)/$(PY) -DBUILD_TESTING=OFF
	touch install/.built

build: install/.built

test: setup lint
	$(ROS_ENV) && $(PY) -m pytest -q $(PYTEST_ARGS)

# The main job: the stack as users start it, plus the stack probe's report (tracking, latency, rates, CPU).
run: setup
	$(ROS_ENV) && ros2 launch rwm_bringup anymal.launch.py $(RUN_ARGS)

bench: setup
	$(ROS_ENV) && for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The shipped PPO policy (models/README.md), from scratch. Stage 1 trains 1500 iterations; stage 2
# continues from stage 1's iteration 1400 with a command change every 4 s and a fall penalty (the
# falls were all right after command changes); then pick the checkpoint with the fewest falls on a
# validation seed (777) and evaluate on the fixed seed (12345). About 2 h on 2 cores.
PPO_ARGS := --log-dir runs/ppo --iterations 1500 --num-envs 512 --seed 1
PPO_STAGE2_ARGS := --log-dir runs/ppo_ft --init-from runs/ppo/model_1400.pt --iterations 1600 --num-envs 512 \
	--seed 2 --resample-time 4 --termination-penalty 2
ppo-model: setup
	$(ROS_ENV) && rwm train-ppo $(PPO_ARGS)
	$(ROS_ENV) && rwm train-ppo $(PPO_STAGE2_ARGS)
	$(ROS_ENV) && rwm select-policy --log-dir runs/ppo_ft --first 1450 --seed 777 --out models/anymal_d_ppo_nominal.onnx
	$(ROS_ENV) && rwm eval-policy models/anymal_d_ppo_nominal.onnx --json models/anymal_d_ppo_nominal_eval.json

# PPO with domain randomization (issue 16): a new robot every episode (rwm.sim.variants.TRAINING_RANGES)
# and sensor noise, the ranges widening from the nominal robot over the first 150 iterations. From
# scratch under the full ranges PPO only learned to stand (runs/ppo_dr_scratch: tracking 0.33, no gait
# after 588 iterations), so this stage starts from the shipped nominal policy's actor (critic fresh).
# Resumable (`--resume`), checkpoints every 50 iterations, selected on validation variants and seed 777.
PPO_DR_ARGS := --log-dir runs/ppo_dr --init-from models/anymal_d_ppo_nominal.onnx --init-std 0.4 --iterations 400 \
	--randomization-ramp 150 --num-envs 512 --seed 11 --resample-time 4 --termination-penalty 2 \
	--domain-randomization --resume
VALIDATION_VARIANTS := nominal payload_15kg friction_0.4 motors_75 delay_20ms sensor_noise
# Stage 2 (issue 19's drift): that policy wandered about 5 m per minute at zero command, never having
# seen one; from it, under the full ranges, a tenth of the commands are zero (Isaac Lab's standing
# robots). Selected as stage 1, and a checkpoint drifting beyond 0.5 m per minute ranks last.
PPO_DR_STAND_ARGS := --log-dir runs/ppo_dr2 --init-from runs/ppo_dr/selected.onnx --init-std 0.3 --iterations 500 \
	--num-envs 512 --seed 13 --resample-time 4 --termination-penalty 2 --domain-randomization \
	--standing-fraction 0.1 --resume
# Stage 3 (issue 19's drift, still 2.4 m in 10 min): at zero command that policy kept shuffling (mean
# joint speed ~0.1 rad/s after 10 s). A quarter of the commands zero, and legged_gym's stand-still
# term (the joints' L1 distance from the standing pose while told to stand: its minimum is one still
# pose); a checkpoint drifting beyond 0.05 m per minute (issue 19: 0.5 m in 10 min) ranks last.
PPO_DR_STILL_ARGS := --log-dir runs/ppo_dr3 --init-from runs/ppo_dr2/selected.onnx --init-std 0.2 --iterations 300 \
	--num-envs 512 --seed 17 --resample-time 4 --termination-penalty 2 --domain-randomization \
	--standing-fraction 0.25 --stand-still-weight -0.75 --resume
ppo-dr: setup
	$(ROS_ENV) && rwm train-ppo $(PPO_DR_ARGS)
	$(ROS_ENV) && rwm select-policy --log-dir runs/ppo_dr --first 150 --seed 777 --episodes 50 \
		--prior-transitions 17829888 \
		--variants $(VALIDATION_VARIANTS) --out runs/ppo_dr/selected.onnx
	$(ROS_ENV) && rwm train-ppo $(PPO_DR_STAND_ARGS)
	$(ROS_ENV) && rwm select-policy --log-dir runs/ppo_dr2 --first 200 --seed 777 --episodes 50 \
		--prior-transitions 21528576 --max-drift 0.5 \
		--variants $(VALIDATION_VARIANTS) --out runs/ppo_dr2/selected.onnx
	$(ROS_ENV) && rwm train-ppo $(PPO_DR_STILL_ARGS)
	$(ROS_ENV) && rwm select-policy --log-dir runs/ppo_dr3 --first 150 --seed 777 --episodes 50 \
		--prior-transitions 24612864 --max-drift 0.05 \
		--variants $(VALIDATION_VARIANTS) --out runs/ppo_dr3/selected.onnx
	$(ROS_ENV) && rwm eval-policy runs/ppo_dr3/selected.onnx --variants all --json runs/ppo_dr3/suite.json
	$(ROS_ENV) && rwm eval-policy runs/ppo_dr3/selected.onnx --standing --episodes 20 --episode-length 600 \
		--json runs/ppo_dr3/standing.json
	cp runs/ppo_dr3/selected.onnx models/anymal_d_ppo.onnx
	cp runs/ppo_dr3/suite.json models/anymal_d_ppo_eval.json
	cp runs/ppo_dr3/standing.json models/anymal_d_ppo_standing.json
	for e in json md png; do cp runs/ppo_dr3/suite.$$e docs/variants/anymal_d_ppo.$$e; done

# World-model data recorded with the shipped PPO policy (noise and pushes for coverage): 2.05 M
# pretraining transitions, 100 held-out trajectories of 400 steps (other seed), a small bag.
pretrain-data: setup data/pretrain/meta.json data/heldout/meta.json
	rm -rf tests/data/anymal_d_ppo_sample
	$(ROS_ENV) && rwm collect --policy models/anymal_d_ppo_nominal.onnx --duration 5 --seed 300 \
		--out tests/data/anymal_d_ppo_sample
data/pretrain/meta.json: | setup
	rm -rf data/pretrain
	$(ROS_ENV) && rwm collect --dataset --policy models/anymal_d_ppo_nominal.onnx --action-noise 0.3 \
		--steps 4000 --num-envs 512 --seed 100 --out data/pretrain
data/heldout/meta.json: | setup
	rm -rf data/heldout
	$(ROS_ENV) && rwm collect --dataset --policy models/anymal_d_ppo_nominal.onnx --action-noise 0.3 \
		--steps 400 --num-envs 110 --episode-length 8 --seed 200 --out data/heldout

# The held-out set shipped with the models (validation (b) of the offline trainer, so that a fresh
# clone refines without make pretrain-data): 16 trajectories of 8 s with the shipped PPO policy, action
# noise 0.3, a seed used for nothing else.
wm-heldout: setup
	rm -rf models/anymal_d_heldout
	$(ROS_ENV) && rwm collect --dataset --policy models/anymal_d_ppo_nominal.onnx --action-noise 0.3 \
		--steps 400 --num-envs 16 --episode-length 8 --seed 210 --out models/anymal_d_heldout

# The world-model comparison (models/README.md, docs/world_model/) and the shipped RWM (the RWM-AR
# row of that table), from the data of pretrain-data. Each run is scored with the mean weights of its
# last three checkpoints (iterations 1200-2000). About 80 min on 2 cores.
WM_ARGS := --data data/pretrain --heldout data/heldout --batch-size 256 --lr 1e-3
WM_TABLE := $(WM_ARGS) --iterations 2000 --eval-interval 400 --average-last 3
wm-model: setup
	$(ROS_ENV) && rwm wm-table $(WM_TABLE) --out runs/wm_table
	$(ROS_ENV) && rwm export-wm runs/wm_table/rwm-ar/scored.pt --out models/anymal_d_rwm.onnx --heldout data/heldout \
		--source "rwm wm-table: RWM-AR"
	cp runs/wm_table/rwm-ar/scored.pt models/anymal_d_rwm.pt
	mkdir -p docs/world_model && cp runs/wm_table/table.md runs/wm_table/results.json runs/wm_table/*.png docs/world_model/

# The table at the paper's budget (issue 18: batch 1024, learning rate 1e-4) on a CUDA GPU, the rows in
# turn; on a leased GPU of 15 minutes they ran at once through tools/gpu_lease/wm_table_gpu.sh (4 500
# iterations fitted), scored on the CPU by this command without --device cuda over the returned run
# folders (trained rows are reused) (docs/gpu/README.md). After pretrain-data.
WM_GPU_ITERATIONS ?= 4500
WM_TABLE_GPU := --data data/pretrain --heldout data/heldout --batch-size 1024 --lr 1e-4 --seed 0 --threads 2 \
	--iterations $(WM_GPU_ITERATIONS) --eval-interval $$(( $(WM_GPU_ITERATIONS) / 5 )) --average-last 3 \
	--variants RWM-TF RWM-AR Transformer-AR MLP-AR
wm-table-gpu: setup
	$(ROS_ENV) && rwm wm-table $(WM_TABLE_GPU) --device cuda --out runs/wm_table_gpu
	mkdir -p docs/gpu/train_logs && cp runs/wm_table_gpu/table.md runs/wm_table_gpu/results.json \
		runs/wm_table_gpu/error_vs_step.png docs/gpu/
	for r in rwm-tf rwm-ar transformer-ar mlp-ar; do cp runs/wm_table_gpu/$$r/train_log.jsonl docs/gpu/train_logs/$$r.jsonl; \
		cp runs/wm_table_gpu/$$r/train_config.json docs/gpu/train_logs/$$r.config.json; done

# RWM-U (issue 17): the shipped RWM grown into an ensemble of 5 state heads on its GRU (member 0 is
# RWM's own head), trained on the pretraining data with per-member bootstrap weights; then trained on
# to the deployed policy's own walking and standing (the robots it monitors: a new command every 8 s,
# 40 % of them zero); its monitor threshold calibrated on that policy driving 100 nominal robots as
# deployed (no action noise, a new command every 4 s, a quarter of them zero, 30 s each); the
# evaluation suite with the uncertainty's calibration, and the monitor on the robot variants. After
# pretrain-data.
MONITOR_DATA := --dataset --policy models/anymal_d_ppo.onnx --action-noise 0.15 --standing-fraction 0.4
data/monitor_pretrain/meta.json: | setup
	rm -rf data/monitor_pretrain
	$(ROS_ENV) && rwm collect $(MONITOR_DATA) --steps 2000 --num-envs 512 --episode-length 60 --resample-time 8 \
		--seed 500 --out data/monitor_pretrain
data/monitor_heldout/meta.json: | setup
	rm -rf data/monitor_heldout
	$(ROS_ENV) && rwm collect $(MONITOR_DATA) --steps 400 --num-envs 110 --episode-length 8 --resample-time 4 \
		--seed 510 --out data/monitor_heldout
data/monitor_calibration/meta.json: | setup
	rm -rf data/monitor_calibration
	$(ROS_ENV) && rwm collect --dataset --policy models/anymal_d_ppo.onnx --standing-fraction 0.25 --no-pushes \
		--steps 1500 --num-envs 100 --episode-length 31 --resample-time 4 --seed 520 --out data/monitor_calibration
wm-ensemble: setup data/monitor_pretrain/meta.json data/monitor_heldout/meta.json data/monitor_calibration/meta.json
	$(ROS_ENV) && rwm train-wm --data data/pretrain --heldout data/heldout --init models/anymal_d_rwm.pt \
		--ensemble-size 5 --batch-size 256 --lr 3e-4 --iterations 1000 --eval-interval 250 --seed 5 \
		--out runs/wm_ensemble
	$(ROS_ENV) && rwm train-wm --data data/monitor_pretrain --heldout data/monitor_heldout \
		--init runs/wm_ensemble/model.pt --batch-size 256 --lr 3e-4 --iterations 1000 --eval-interval 250 \
		--seed 6 --out runs/wm_monitor
	cp runs/wm_monitor/model.pt models/anymal_d_rwmu.pt
	$(ROS_ENV) && rwm export-wm models/anymal_d_rwmu.pt --out models/anymal_d_rwmu.onnx \
		--heldout data/monitor_calibration --length 1500 \
		--source "RWM-U: anymal_d_rwm grown to 5 members, trained on to the deployed policy (make wm-ensemble)"
	$(ROS_ENV) && rwm eval --heldout data/heldout --model RWM=models/anymal_d_rwm.pt \
		--model RWM-U=models/anymal_d_rwmu.pt --out docs/world_model_ensemble
	$(ROS_ENV) && rwm eval-monitor models/anymal_d_rwmu.onnx --json docs/monitor/anymal_d_rwmu_ppo.json

# An ensemble of five RWMs trained apart (issue 17; rwm.models.ensemble): each member its own GRU,
# trained from its own seed on the nominal PPO's and the deployed policy's data (pretraining data and
# data/monitor_pretrain merged), one thread each (`make -j2 wm-apart`: two at a time, about 62 min on
# 2 cores), then composed (rwm ensemble-wm) and scored beside RWM-U (models/README.md, "RWMs trained
# apart"). After pretrain-data.
APART_SEEDS := 11 12 13 14 15
data/pretrain_deployed/meta.json: data/pretrain/meta.json data/monitor_pretrain/meta.json
	rm -rf data/pretrain_deployed
	$(ROS_ENV) && rwm merge-datasets data/pretrain data/monitor_pretrain --out data/pretrain_deployed
runs/wm_member_%/model.pt: data/pretrain_deployed/meta.json data/heldout/meta.json
	$(ROS_ENV) && rwm train-wm --data data/pretrain_deployed --heldout data/heldout --batch-size 256 --lr 1e-3 \
		--iterations 2000 --eval-interval 1000 --seed $* --threads 1 --out runs/wm_member_$*
runs/wm_apart/model.pt: $(foreach s,$(APART_SEEDS),runs/wm_member_$(s)/model.pt)
	$(ROS_ENV) && rwm ensemble-wm $^ --out $@
wm-apart: setup runs/wm_apart/model.pt
	$(ROS_ENV) && rwm eval --heldout data/heldout --model RWM-U=models/anymal_d_rwmu.pt \
		--model apart=runs/wm_apart/model.pt --out runs/wm_apart/eval

# Adaptation from a shifted robot's own bags, offline (issue 17, items 1-3; the same through ROS with a
# live swap: adapt-demo): 10 minutes of bags of a robot beyond the training family driven by the
# shipped policy, RWM-U refined on them (validated on their held-out tail, and on the shipped held-out
# set of the nominal robot within 30 %), the policy fine-tuned and validated on the nominal robot;
# the result JSON gives both policies on the nominal and the shifted robot; make fails when the
# candidate is refused (rwm adapt-policy's exit status). ADAPT_DYNAMICS=identified (the default)
# fine-tunes in the simulator of the robot the bags identify (rwm identify-robot), mixed with the
# training family; ADAPT_DYNAMICS=imagination in the refined model's imagination (MOPO-PPO), which
# has not yet made a better policy (models/README.md). The default robot walks on ice (friction 0.2):
# of the three robots tools/adaptation_oracle.py tried, the only one where PPO in the robot's own
# simulator leaves room for issue 17's shifted-robot clauses. Needs data/pretrain (made when absent).
ADAPT_VARIANT ?= friction_0.2
ADAPT_DYNAMICS ?= identified
ADAPT_ARGS_identified := --iterations 30
ADAPT_ARGS_imagination := --world-model runs/adapt/model_versions/rwm_v1.pt --pretrain data/pretrain
adapt-offline: setup data/pretrain/meta.json
	rm -rf runs/adapt
	$(ROS_ENV) && rwm collect --policy models/anymal_d_ppo.onnx --variant $(ADAPT_VARIANT) --duration 600 \
		--seed 901 --out runs/adapt/bags/$(ADAPT_VARIANT)
	$(ROS_ENV) && rwm refine-wm models/anymal_d_rwmu.pt --bags runs/adapt/bags --pretrain data/pretrain \
		--model-dir runs/adapt/model_versions --tolerance 0.3
	$(ROS_ENV) && rwm adapt-policy --dynamics $(ADAPT_DYNAMICS) $(ADAPT_ARGS_$(ADAPT_DYNAMICS)) --bags runs/adapt/bags \
		--check-variant $(ADAPT_VARIANT) --versions-dir runs/adapt/policy_versions --json runs/adapt/adapt_policy.json
	$(ROS_ENV) && rwm eval-policy runs/adapt/policy_versions/policy_v1.onnx --variants nominal $(ADAPT_VARIANT) \
		--nominal-seeds 1 --episodes 100 --seed 5151 --json runs/adapt/heldout_seed5151.json

# MBPO-PPO on a family of robots (issue 16, item 5). Started from scratch in a family world model the
# loop never learned to walk (models/README.md), so it starts from the nominal MBPO-PPO policy, itself
# trained only in imagination, and only that lineage touches the real robots: pretraining data from
# randomized robots (a new robot at every reset, rwm.sim.variants.TRAINING_RANGES) driven by it with
# action noise 0.5; a world model of that family (it tells the robots apart only by what its GRU reads
# in their 32-step history); the loop collecting from randomized robots, with sensor noise on the
# imagined observations and a critic warm-up before the actor moves; then the variant suite. Each step
# is skipped once its output exists (delete it to redo that step). Real data: the starting policy's
# 750 k, 256 k pretraining and 80 k collected transitions.
MBPO_DR_ARGS := --iterations 20 --ppo-iterations 25 --real-envs 40 --real-steps 100 --imagined-envs 1024 \
	--init-from models/anymal_d_mbpo.onnx --init-std 0.3 --critic-warmup 20 --termination-penalty 2 \
	--fall-tilt-deg 20 --real-resample-time 4 --seed 0 --domain-randomization
data/family_pretrain/meta.json: | setup
	rm -rf data/family_pretrain
	$(ROS_ENV) && rwm collect --dataset --domain-randomization --policy models/anymal_d_mbpo.onnx --action-noise 0.5 \
		--steps 1000 --num-envs 256 --seed 410 --out data/family_pretrain
data/family_heldout/meta.json: | setup
	rm -rf data/family_heldout
	$(ROS_ENV) && rwm collect --dataset --domain-randomization --policy models/anymal_d_mbpo.onnx --action-noise 0.3 \
		--steps 400 --num-envs 110 --episode-length 8 --seed 420 --out data/family_heldout
runs/mbpo_dr_wm/model.pt: data/family_pretrain/meta.json data/family_heldout/meta.json
	$(ROS_ENV) && rwm train-wm --data data/family_pretrain --heldout data/family_heldout --out runs/mbpo_dr_wm \
		--lr 1e-3 --batch-size 256 --iterations 1500 --eval-interval 500 --jacobian-weight 1e-3 --seed 0
runs/mbpo_dr/policy.onnx: runs/mbpo_dr_wm/model.pt
	rm -rf runs/mbpo_dr
	$(ROS_ENV) && rwm train-mbpo --world-model runs/mbpo_dr_wm/model.pt --pretrain data/family_pretrain \
		--out runs/mbpo_dr $(MBPO_DR_ARGS) --export runs/mbpo_dr/policy.onnx
mbpo-dr: setup runs/mbpo_dr/policy.onnx
	$(ROS_ENV) && rwm eval-policy runs/mbpo_dr/policy.onnx --variants all --json runs/mbpo_dr/suite.json

# The loop of issue 17 through `ros2 launch` (tools/adapt_demo.py): the shipped stack walks a robot
# beyond the training family for ADAPT_RECORD_S and records its bags; then the stack runs again with
# the trainer on, which refines the world model and fine-tunes the policy on those bags (in the
# simulator of the robot they identify: config/trainer.yaml's adapt.dynamics), validates both and
# announces them; the nodes swap them in live; ADAPT_AFTER_S of walking after
# the swap. Before/after figures (tracking, falls, the monitor's uncertainty): runs/adapt_demo/.
# The robot walks on ice (friction 0.2, the family's 0.3-1.2), as for adapt-offline: of the three
# robots tools/adaptation_oracle.py tried, the only one where even PPO in the robot's own simulator
# meets issue 17's shifted-robot clauses (worn_heavy, the demo's robot until 12-05, misses tracking).
ADAPT_DEMO_VARIANT ?= friction_0.2
ADAPT_RECORD_S ?= 300
ADAPT_AFTER_S ?= 180
adapt-demo: setup data/pretrain/meta.json
	rm -rf runs/adapt_demo
	$(ROS_ENV) && $(PY) tools/adapt_demo.py --variant $(ADAPT_DEMO_VARIANT) --record-s $(ADAPT_RECORD_S) \
		--after-s $(ADAPT_AFTER_S) --out runs/adapt_demo

# How firm the table's ranking is: a second seed of the RWM rows and the AR baselines that come close,
# then the mean over the two seeds (docs/world_model/seeds.md). After wm-model; about 50 min.
wm-seeds: setup
	$(ROS_ENV) && rwm wm-table $(WM_TABLE) --out runs/wm_table_seed1 --seed 1 \
		--variants MLP-AR Transformer-AR RWM-TF RWM-AR
	$(ROS_ENV) && rwm wm-seeds runs/wm_table runs/wm_table_seed1 --out runs/wm_seeds
	mkdir -p docs/world_model && cp runs/wm_seeds/seeds.md runs/wm_seeds/seeds.json docs/world_model/

# History x forecast sweep of RWM (paper Fig. 5): error and training time per cell, heatmaps.
wm-sweep: setup
	$(ROS_ENV) && rwm wm-sweep $(WM_ARGS) --out runs/wm_sweep --iterations 100 --histories 8 16 32 --horizons 1 4 8
	mkdir -p docs/world_model && cp runs/wm_sweep/sweep.json runs/wm_sweep/heatmaps.png docs/world_model/

# The shipped MBPO-PPO policy (models/README.md): a policy trained only in RWM imagination, from one
# command. Real data: 512 k pretraining transitions recorded with the PPO policy (action noise 0.5) plus
# what the loop collects (60 x 40 robots x 100 steps), 4.2 % of PPO's 17.8 M. RWM-AR+JR is pretrained
# on that set, then refined online. An imagined tilt beyond 20 degrees is a fall (`rwm fall-tilt`);
# the collecting robots get a new command every 4 s. About 1 h on 2 cores.
MBPO_ARGS := --iterations 60 --ppo-iterations 25 --real-envs 40 --real-steps 100 --imagined-envs 1024 \
	--init-std 0.5 --termination-penalty 2 --fall-tilt-deg 20 --real-resample-time 4 --seed 0
mbpo-model: setup
	rm -rf data/mbpo_pretrain runs/mbpo_wm runs/mbpo
	$(ROS_ENV) && rwm collect --dataset --policy models/anymal_d_ppo_nominal.onnx --action-noise 0.5 \
		--steps 1000 --num-envs 512 --seed 400 --out data/mbpo_pretrain
	$(ROS_ENV) && rwm train-wm --data data/mbpo_pretrain --out runs/mbpo_wm --lr 1e-3 --batch-size 256 \
		--iterations 1500 --eval-interval 500 --jacobian-weight 1e-3 --seed 0
	$(ROS_ENV) && rwm train-mbpo --world-model runs/mbpo_wm/model.pt --pretrain data/mbpo_pretrain \
		--out runs/mbpo $(MBPO_ARGS) --export models/anymal_d_mbpo.onnx
	$(ROS_ENV) && rwm eval-policy models/anymal_d_mbpo.onnx --json models/anymal_d_mbpo_eval.json

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench launch tools
	$(VENV)/bin/ruff format --check src tests bench launch tools

clean:
	rm -rf build install log
