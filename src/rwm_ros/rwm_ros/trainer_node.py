"""`world_model_trainer`: offline refinement of RWM from the replay buffer (never in the control process).

Every `scan_interval_s` it looks for complete bags in the replay buffer that it has not used yet; when
there are at least `min_new_bags`, a worker thread refines the current checkpoint on them
(`rwm.runners.refinement.refine_from_bags`: load, train, validate on held-out data, ONNX parity, atomic
versioned files). An accepted version is announced on /rwm/world_model/reload for the world-model
node; a rejected one is reported and the current model stays. Used bags are remembered in
`<model_dir>/trainer_state.json`, so a restart does not train on them twice.
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
from rwm.runners.refinement import RefineConfig, refine_from_bags
from rwm_ros.conversions import diagnostic_array
from rwm_ros.model_files import resolve_model
from rwm_ros.node_base import declare, declare_config
from rwm_ros.spin import spin_node
from rwm_ros.topics import TOPIC_WM_RELOAD


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
            self, "checkpoint", "anymal_d_rwm.pt", "starting checkpoint (path or name in models/)"
        )
        self.heldout = declare(self, "heldout", "data/heldout", "held-out array dataset for validation")
        self.min_new_bags = declare(self, "min_new_bags", 1, "refine once this many unused bags exist")
        scan = declare(self, "scan_interval_s", 10.0, "how often to look for new bags, s")
        self.cfg = declare_config(self, RefineConfig)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.model_dir / "trainer_state.json"
        self.state = (
            json.loads(self.state_file.read_text()) if self.state_file.is_file() else {"used_bags": []}
        )
        self.state.setdefault("checkpoint", str(resolve_model(self.initial)))
        self.results: list[dict] = []
        self._worker: threading.Thread | None = None
        self.pub_reload = self.create_publisher(String, TOPIC_WM_RELOAD, 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(scan, self._scan)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"watching {self.replay_buffer}/ ; current model {self.state['checkpoint']}")

    def new_bags(self) -> list[Path]:
        """Complete bags not used yet (not .partial/, not an original kept by a recovery)."""
        if not self.replay_buffer.is_dir():
            return []
        used = set(self.state["used_bags"])
        return sorted(
            p
            for p in self.replay_buffer.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and not p.name.endswith(TRUNCATED_SUFFIX)
            and str(p) not in used
        )

    def _recover_orphans(self) -> None:
        """Bags a dead logger left in .partial/ join the replay buffer, salvaged up to their last second."""
        for recovery in recover_orphans(self.replay_buffer):
            self.get_logger().warning(f"recovered a bag its recorder never closed: {recovery}")

    def _scan(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        self._recover_orphans()
        bags = self.new_bags()
        if len(bags) >= self.min_new_bags:
            self._worker = threading.Thread(target=self._refine, args=(bags,), daemon=True)
            self._worker.start()

    def _refine(self, bags: list[Path]) -> None:
        log = self.get_logger()
        log.info(f"refining {self.state['checkpoint']} on {len(bags)} new bag(s)")
        try:
            result = refine_from_bags(self.state["checkpoint"], bags, self.heldout, self.model_dir, self.cfg)
        except Exception as e:  # noqa: BLE001 - reported; the node keeps serving
            log.error(f"refinement failed: {type(e).__name__}: {e}")
            self.results.append({"accepted": False, "reason": f"{type(e).__name__}: {e}"})
            return
        if result.load_report:
            log.warning(f"bag loading: {result.load_report}", throttle_duration_sec=1.0)
        self.state["used_bags"] += [str(b) for b in bags]
        if result.accepted:
            self.state["checkpoint"] = result.checkpoint
            log.info(
                f"version {result.version} accepted: held-out AR error {result.error_before:.4f} -> "
                f"{result.error_after:.4f}, ONNX parity {result.parity:.1e}; announcing {result.onnx}"
            )
            self.pub_reload.publish(String(data=result.onnx))
        else:
            log.warning(f"refinement rejected: {result.reason}")
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.state_file)
        self.results.append(asdict(result))

    def _publish_diagnostics(self) -> None:
        last = self.results[-1] if self.results else {}
        values = {
            "checkpoint": self.state["checkpoint"],
            "used_bags": len(self.state["used_bags"]),
            "refinements": len(self.results),
            "accepted": sum(r.get("accepted", False) for r in self.results),
            "busy": bool(self._worker and self._worker.is_alive()),
            "last_reason": last.get("reason", ""),
        }
        status = DiagnosticStatus(name=f"{self.get_name()}: trainer", hardware_id=str(self.model_dir))
        status.level = DiagnosticStatus.OK
        status.message = "refining" if values["busy"] else "idle"
        self.pub_diag.publish(diagnostic_array(status, values, self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> None:
    spin_node(TrainerNode, args)


if __name__ == "__main__":
    main()
