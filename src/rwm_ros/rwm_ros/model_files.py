"""Find a shipped model by name: an existing path, else share/rwm_bringup/models, else ./models."""

from __future__ import annotations

from pathlib import Path


def resolve_model(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("rwm_bringup")) / "models" / path.name)
    except (ImportError, LookupError, OSError):
        pass
    candidates.append(Path.cwd() / "models" / path.name)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"model {name!r} not found (looked at {[str(path), *map(str, candidates)]}); "
        "pass an existing .onnx path or build the workspace so share/rwm_bringup/models holds it"
    )
