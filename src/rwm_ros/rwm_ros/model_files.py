"""Find the stack's model files: shipped models by name, each robot's own models, and reloadable versions.

A name is an existing path, else a file in share/rwm_bringup/models, else in ./models. Each robot has
its own models, `<robot>_ppo.onnx` (policy), `<robot>_rwmu.onnx` and `<robot>_rwmu.pt` (the world-model
ensemble, RWM-U: the monitor's model and the trainer's starting point);
a model carries the robot it was trained on in its metadata, and no node runs a model made for another
robot. Files named on a topic (a reload) are used only from inside the node's own versions directory.
"""

from __future__ import annotations

from pathlib import Path

from rwm.export.runtime import model_robot


def _search_dirs() -> list[Path]:
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("rwm_bringup")) / "models")
    except (ImportError, LookupError, OSError):
        pass
    dirs.append(Path.cwd() / "models")
    return dirs


def resolve_model(name: str) -> Path:
    """A model file (or a shipped dataset directory, such as the held-out set) by path or name."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    candidates = [d / path.name for d in _search_dirs()]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(
        f"model {name!r} not found (looked at {[str(path), *map(str, candidates)]}); "
        "pass an existing .onnx path or build the workspace so share/rwm_bringup/models holds it"
    )


def check_model_robot(path: str | Path, robot: str, metadata: dict | None = None) -> None:
    """Refuse a model made for another robot (its joint limits, masses and gait are not this robot's).
    `metadata` of a model already loaded saves opening the file again."""
    made_for = metadata.get("robot") if metadata is not None else model_robot(path)
    if made_for is not None and made_for != robot:
        raise ValueError(
            f"{path} was trained for {made_for}, not {robot}: give this robot a model of its own "
            f"(policy_file:=...), or run robot:={made_for}"
        )


def models_for_robot(
    robot: str,
    policy: str | None | bool = None,
    world_model: bool = False,
    world_model_file: str | None = None,
) -> dict:
    """The files a stack on `robot` runs: policy (None: `<robot>_ppo.onnx`; False: no policy) and, with
    `world_model`, the monitor's model (`world_model_file`, else `<robot>_rwmu.onnx`) and the
    checkpoint the trainer refines (`<robot>_rwmu.pt`). Raises a clear error when one is missing or
    was made for another robot."""
    found: dict[str, Path] = {}
    wanted = {}
    if policy is not False:
        wanted["policy"] = policy or f"{robot}_ppo.onnx"
    if world_model:
        wanted["world_model"] = world_model_file or f"{robot}_rwmu.onnx"
        wanted["checkpoint"] = f"{robot}_rwmu.pt"
    for role, name in wanted.items():
        try:
            found[role] = resolve_model(name)
        except FileNotFoundError as e:
            shipped = sorted({p.name for d in _search_dirs() if d.is_dir() for p in d.glob("*.onnx")})
            raise FileNotFoundError(
                f"robot:={robot} has no {role.replace('_', ' ')} {name!r}: {e}. Shipped models: {shipped}. "
                f"Train and export one for {robot}, pass policy_file:=PATH, or run without it "
                "(policy:=false runs the exploration controller; world_model:=false, trainer:=false)"
            ) from None
        if found[role].suffix == ".onnx":
            check_model_robot(found[role], robot)
    return found


def inside_directory(path: str | Path, directory: str | Path) -> Path:
    """`path` resolved, if it lies inside `directory` (symlinks followed); else ValueError."""
    resolved = Path(path).resolve()
    root = Path(directory).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{path} is outside {root}: only files in the versions directory are loaded")
    return resolved
