"""`world_model_trainer`: offline refinement of RWM and of the policy from the replay buffer (never in
the control process: its own process, started at nice 19 by the launch file).

Every `scan_interval_s` it looks for complete bags in the replay buffer that it has not used yet; when
there are at least `min_new_bags`, a worker thread runs two stages on them:
1. the world model: the current checkpoint refined on the bags mixed with the pretraining data
   (`rwm.runners.refinement.refine_from_bags`: load, train, validate on the new bags' held-out tail
   and on the held-out set shipped in models/, ONNX parity, atomic versioned files); an accepted
   version is announced on /rwm/world_model/reload for the world-model node;
2. the policy (`adapt_policy`): the deployed policy fine-tuned (`adapt.dynamics`) in the simulator
   of the robot the bags identify, or in the imagination of the current world model, its robots
   starting from the bags' histories, penalized by the ensemble's disagreement (MOPO-PPO,
   `rwm.runners.adaptation`), validated in simulation against the deployed one; a validated
   `policy_v<N>.onnx` appears in `policy_versions_dir` and is announced on /rwm/policy/reload,
   where the policy node swaps it in (and rolls it back if the robot falls, its watchdog holds or
   the monitor raises an anomaly soon after). The policy adapted is the one the
   policy node reports in service on /diagnostics (so never a version it rolled back), else `policy`.
A rejected version is reported and the current one stays. Bags are remembered with their signature in
`<model_dir>/trainer_state.json`: a restart does not train on them twice, and a bag that was
rejected or failed is not tried again until it changes. Bags a dead logger left in `.partial/` are
recovered first.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import String

from rwm.data.bag_recovery import TRUNCATED_SUFFIX, recover_orphans
from rwm.runners.adaptation import AdaptConfig, adapt_policy
from rwm.runners.refinement import RefineConfig, refine_from_bags
from rwm_ros.conversions import diagnostic_array
from rwm_ros.model_files import resolve_model
from rwm_ros.node_base import declare, declare_config
from rwm_ros.spin import spin_node
from rwm_ros.topics import TOPIC_POLICY_RELOAD, TOPIC_WM_RELOAD


def bag_signature(bag: Path) -> list | None:
    """What changes when a bag changes: its files' names, sizes and modification times (None: it is
    gone, or cannot be read now)."""
    try:
        return sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in bag.iterdir() if f.is_file())
    except OSError:
        return None


class TrainerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("world_model_trainer", **kwargs)

        self.replay_buffer = Path(
            declare(self, "replay_buffer", "replay_buffer", "directory of recorded bags")
        )
        self.model_dir = Path(
            declare(self, "model_dir", "model_versions", "where validated versions are written")
        )
        self.initial = declare(
            self, "checkpoint", "anymal_d_rwmu.pt", "starting checkpoint (path or name in models/)"
        )
        self.heldout = resolve_model(
            declare(self, "heldout", "anymal_d_heldout", "held-out set (shipped in models/, or a path)")
        )
        pretrain = declare(self, "pretrain", "data/pretrain", "pretraining data mixed in ('' : none)")
        self.pretrain = Path(pretrain) if pretrain and Path(pretrain).is_dir() else None
        if pretrain and self.pretrain is None:
            self.get_logger().warning(
                f"no pretraining data at {pretrain} (make pretrain-data): refining on the bags alone; "
                "the shipped held-out set still guards against forgetting"
            )
        self.min_new_bags = declare(self, "min_new_bags", 1, "refine once this many unused bags exist")
        scan = declare(self, "scan_interval_s", 10.0, "how often to look for new bags, s")
        self.cfg = declare_config(self, RefineConfig)
        self.adapt = declare(
            self,
            "adapt_policy",
            True,
            "after each refinement, fine-tune the policy in imagination (MOPO-PPO)",
        )
        policy = declare(self, "policy", "anymal_d_ppo.onnx", "the deployed policy (path or name in models/)")
        self.policy_versions = Path(
            declare(
                self,
                "policy_versions_dir",
                "policy_versions",
                "validated policies appear here: the policy node's versions_dir",
            )
        )
        self.adapt_cfg = declare_config(self, AdaptConfig, prefix="adapt.")
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.model_dir / "trainer_state.json"
        self.state = (
            json.loads(self.state_file.read_text()) if self.state_file.is_file() else {"used_bags": {}}
        )
        if isinstance(self.state["used_bags"], list):  # older state: no signatures, taken as unchanged
            self.state["used_bags"] = dict.fromkeys(self.state["used_bags"])
        self.state.setdefault("checkpoint", str(resolve_model(self.initial)))
        self.state["policy"] = str(resolve_model(policy))  # until the policy node reports its own
        self.results: list[dict] = []
        self._worker: threading.Thread | None = None
        self.pub_reload = self.create_publisher(String, TOPIC_WM_RELOAD, 10)
        self.pub_policy_reload = self.create_publisher(String, TOPIC_POLICY_RELOAD, 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.create_timer(scan, self._scan)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"watching {self.replay_buffer}/ ; current model {self.state['checkpoint']}")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Follow the policy in service (a swap or a rollback by the policy node)."""
        for status in msg.status:
            if status.name.endswith(": control loop"):
                version = next((kv.value for kv in status.values if kv.key == "policy_version"), None)
                if version:
                    self.state["policy"] = version

    def new_bags(self) -> list[Path]:
        """Complete bags not used yet, or changed since (not .partial/, not an original kept by a
        recovery). A bag that was used, rejected or failed is not tried again until it changes."""
        if not self.replay_buffer.is_dir():
            return []
        used = self.state["used_bags"]
        return sorted(
            p
            for p in self.replay_buffer.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and not p.name.endswith(TRUNCATED_SUFFIX)
            and (signature := bag_signature(p)) is not None
            and (str(p) not in used or used[str(p)] not in (None, signature))
        )

    def _recover_orphans(self) -> None:
        """Bags a dead logger left in .partial/ join the replay buffer, salvaged up to their last second."""
        try:
            recoveries = recover_orphans(self.replay_buffer)
        except OSError as e:  # the replay buffer changed under the scan: the next scan sees it again
            self.get_logger().error(f"recovering orphaned bags: {e}", throttle_duration_sec=60.0)
            return
        for recovery in recoveries:
            self.get_logger().warning(f"recovered a bag its recorder never closed: {recovery}")

    def _scan(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        self._recover_orphans()
        bags = self.new_bags()
        if len(bags) >= self.min_new_bags:
            self._worker = threading.Thread(target=self._train, args=(bags,), daemon=True)
            self._worker.start()

    def _train(self, bags: list[Path]) -> None:
        if self._refine(bags) and self.adapt:
            self._adapt(bags)
        # what each stage measured, accepted or not, for whoever reads the state file (make adapt-demo)
        self.state["results"] = [
            {k: v for k, v in r.items() if k != "load_report"} for r in self.results[-20:]
        ]
        self._save_state()

    def _refine(self, bags: list[Path]) -> bool:
        """Stage 1; False if it failed (its bags then wait until they change)."""
        log = self.get_logger()
        log.info(f"refining {self.state['checkpoint']} on {len(bags)} new bag(s)")
        self.state["used_bags"].update({str(b): bag_signature(b) for b in bags})  # never retried unchanged
        try:
            result = refine_from_bags(
                self.state["checkpoint"], bags, self.heldout, self.model_dir, self.cfg, self.pretrain
            )
        except Exception as e:  # noqa: BLE001 - reported; the node keeps serving
            log.error(f"refinement failed: {type(e).__name__}: {e}; these bags wait until they change")
            self.results.append(
                {"stage": "world_model", "accepted": False, "reason": f"{type(e).__name__}: {e}"}
            )
            self._save_state()
            return False
        if result.load_report:
            log.warning(f"bag loading: {result.load_report}", throttle_duration_sec=1.0)
        if result.accepted:
            self.state["checkpoint"] = result.checkpoint
            log.info(
                f"version {result.version} accepted: AR error on the new bags' tail "
                f"{result.new_error_before:.4f} -> {result.new_error_after:.4f}, on the shipped held-out set "
                f"{result.error_before:.4f} -> "
                f"{result.error_after:.4f}, ONNX parity {result.parity:.1e}; announcing {result.onnx}"
            )
            self.pub_reload.publish(String(data=result.onnx))
        else:
            log.warning(f"refinement rejected: {result.reason}")
        self.results.append({"stage": "world_model", **asdict(result)})
        self._save_state()  # the new checkpoint and the used bags survive a stop during stage 2
        return True

    def _adapt(self, bags: list[Path]) -> None:
        """Stage 2: in the current world model (refined or not: the bags' histories tell it the robot),
        or in the simulator of the robot the bags identify (`adapt.dynamics`)."""
        log = self.get_logger()
        where = (
            "the simulator of the robot identified in the bags"
            if self.adapt_cfg.dynamics == "identified"
            else f"the imagination of {self.state['checkpoint']}"
        )
        log.info(f"adapting {self.state['policy']} in {where}")
        try:
            result = adapt_policy(
                self.state["policy"],
                self.state["checkpoint"],
                bags,
                self.policy_versions,
                self.adapt_cfg,
                self.pretrain,
            )
        except Exception as e:  # noqa: BLE001 - reported; the node keeps serving
            log.error(f"policy adaptation failed: {type(e).__name__}: {e}; these bags wait until they change")
            self.results.append({"stage": "policy", "accepted": False, "reason": f"{type(e).__name__}: {e}"})
            return
        self.results.append({"stage": "policy", **asdict(result)})
        if not result.accepted:
            log.warning(f"policy adaptation rejected: {result.reason}")
            return
        before, after = result.deployed["nominal"], result.candidate["nominal"]
        onnx = str(Path(result.onnx).resolve())
        log.info(
            f"policy version {result.version} validated on the nominal robot: falls {before['falls']} -> "
            f"{after['falls']}, tracking {before['tracking_reward_normalized']:.3f} -> "
            f"{after['tracking_reward_normalized']:.3f}; announcing {onnx}"
        )
        self.state["policy"] = onnx
        self.pub_policy_reload.publish(String(data=onnx))

    def _save_state(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.state_file)

    def _publish_diagnostics(self) -> None:
        last = self.results[-1] if self.results else {}
        by_stage = {
            stage: [r for r in self.results if r["stage"] == stage] for stage in ("world_model", "policy")
        }
        values = {
            "checkpoint": self.state["checkpoint"],
            "policy": self.state["policy"],
            "used_bags": len(self.state["used_bags"]),
            "refinements": len(by_stage["world_model"]),
            "accepted": sum(r.get("accepted", False) for r in by_stage["world_model"]),
            "adaptations": len(by_stage["policy"]),
            "policies_accepted": sum(r.get("accepted", False) for r in by_stage["policy"]),
            "busy": bool(self._worker and self._worker.is_alive()),
            "last_reason": last.get("reason", ""),
        }
        status = DiagnosticStatus(name=f"{self.get_name()}: trainer", hardware_id=str(self.model_dir))
        status.level = DiagnosticStatus.OK
        status.message = "training" if values["busy"] else "idle"
        self.pub_diag.publish(diagnostic_array(status, values, self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> None:
    spin_node(TrainerNode, args)


if __name__ == "__main__":
    main()
