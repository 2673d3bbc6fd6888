"""The exported models under onnxruntime, with no torch import: what the ROS nodes load.

Policy: raw actions from observations (normalization inside the graph). World-model step:
(state, action, hidden) -> (mean, std, contact logits, next hidden, spread) in physical units; std is
the total uncertainty, spread the ensemble members' disagreement (epistemic; zeros for one model);
`hidden_size` in the metadata is the whole width of `hidden` (an ensemble of RWMs: its members'). Each file
carries its contract in ONNX metadata (written by `rwm.export.policy_onnx` / `world_model_onnx`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

POLICY_INPUT = "obs"
POLICY_OUTPUT = "actions"
POLICY_METADATA_KEY = "rwm_policy"
WM_INPUTS = ("state", "action", "hidden")
WM_OUTPUTS = ("mean", "std", "contact_logits", "next_hidden", "spread")
WM_METADATA_KEY = "rwm_world_model"


def _session(path: str | Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def model_robot(path: str | Path) -> str | None:
    """The robot an exported policy or world model was trained on (None: the file does not say)."""
    meta = _session(path, 1).get_modelmeta().custom_metadata_map
    for key in (POLICY_METADATA_KEY, WM_METADATA_KEY):
        if key in meta:
            return json.loads(meta[key]).get("robot")
    return None


class OnnxPolicy:
    """An exported policy under onnxruntime: raw actions from observations (batched)."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.session = _session(path, threads)
        props = self.session.get_modelmeta().custom_metadata_map
        if POLICY_METADATA_KEY not in props:
            raise ValueError(f"{path} is not an RWM policy export (no '{POLICY_METADATA_KEY}' metadata)")
        self.metadata = json.loads(props[POLICY_METADATA_KEY])
        self.obs_dim = int(self.metadata["obs_dim"])
        self.real_transitions = int(self.metadata.get("real_transitions") or 0)
        """Real transitions behind this policy, as its export recorded them (0: not recorded); a policy
        trained on from it adds them to its own."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"observation must have shape (N, {self.obs_dim}), got {obs.shape}")
        return self.session.run([POLICY_OUTPUT], {POLICY_INPUT: obs})[0]


class OnnxWorldModel:
    """An exported world-model step under onnxruntime."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.session = _session(path, threads)
        props = self.session.get_modelmeta().custom_metadata_map
        if WM_METADATA_KEY not in props:
            raise ValueError(f"{path} is not an RWM world-model export (no '{WM_METADATA_KEY}' metadata)")
        self.metadata = json.loads(props[WM_METADATA_KEY])
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs != list(WM_OUTPUTS):
            raise ValueError(
                f"{path} has outputs {outputs}, not {list(WM_OUTPUTS)}: exported by an older rwm; "
                "re-export it with `rwm export-wm`"
            )

    def initial_hidden(self, batch: int = 1) -> np.ndarray:
        return np.zeros(
            (batch, self.metadata["hidden_layers"], self.metadata["hidden_size"]), dtype=np.float32
        )

    def __call__(self, state: np.ndarray, action: np.ndarray, hidden: np.ndarray):
        feeds = {
            "state": np.asarray(state, np.float32),
            "action": np.asarray(action, np.float32),
            "hidden": np.asarray(hidden, np.float32),
        }
        return self.session.run(list(WM_OUTPUTS), feeds)
