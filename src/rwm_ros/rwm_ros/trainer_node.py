"""`world_model_trainer`: offline refinement of RWM from the replay buffer (never in the control process).

Every `scan_interval_s` it looks for complete bags in the replay buffer that it has not used yet; when
there are at least `min_new_bags`, a worker thread refines the current checkpoint on them, mixed with
the pretraining data (`rwm.runners.refinement.refine_from_bags`: load, train, validate on the new
bags' held-out tail and on the held-out set shipped in models/, ONNX parity, atomic versioned files).
An accepted version is announced on /rwm/world_model/reload for the world-model node; a rejected one
is reported and the current model stays. Bags are remembered with their signature in
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
from rwm.runners.refinement import RefineConfig, refine_from_bags
from rwm_ros.conversions import diagnostic_array
from rwm_ros.model_files import resolve_model
from rwm_ros.node_base import declare, declare_config
from rwm_ros.spin import spin_node
from rwm_ros.topics import TOPIC_WM_RELOAD


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
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.model_dir / "trainer_state.json"
        self.state = (
            json.loads(self.state_file.read_text()) if self.state_file.is_file() else {"used_bags": {}}
        )
        if isinstance(self.state["used_bags"], list):  # older state: no signatures, taken as unchanged
            self.state["used_bags"] = dict.fromkeys(self.state["used_bags"])
        self.state.setdefault("checkpoint", str(resolve_model(self.initial)))
        self.results: list[dict] = []
        self._worker: threading.Thread | None = None
        self.pub_reload = self.create_publisher(String, TOPIC_WM_RELOAD, 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(scan, self._scan)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"watching {self.replay_buffer}/ ; current model {self.state['checkpoint']}")

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
            self._worker = threading.Thread(target=self._refine, args=(bags,), daemon=True)
            self._worker.start()

    def _refine(self, bags: list[Path]) -> None:
        log = self.get_logger()
        log.info(f"refining {self.state['checkpoint']} on {len(bags)} new bag(s)")
        self.state["used_bags"].update({str(b): bag_signature(b) for b in bags})  # never retried unchanged
        try:
            result = refine_from_bags(
                self.state["checkpoint"], bags, self.heldout, self.model_dir, self.cfg, self.pretrain
            )
        except Exception as e:  # noqa: BLE001 - reported; the node keeps serving
            log.error(f"refinement failed: {type(e).__name__}: {e}; these bags wait until they change")
            self.results.append({"accepted": False, "reason": f"{type(e).__name__}: {e}"})
            self._save_state()
            return
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
        self._save_state()
        self.results.append(asdict(result))

    def _save_state(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.state_file)

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
