"""Find a robot's URDF at run time; the description is never copied into this repository.

ANYmal D search order (CONTRACT.md): explicit path, environment variable
`ANYMAL_D_DESCRIPTION`, the ament index (`anymal_d_simple_description`), then a `shared/robots/`
folder beside the checkout. ANYmal C comes from the PyPI package `example-robot-data`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROBOTS = ("anymal_d", "anymal_c")
ANYMAL_D_PACKAGE = "anymal_d_simple_description"
ANYMAL_D_ENV = "ANYMAL_D_DESCRIPTION"


class DescriptionNotFoundError(FileNotFoundError):
    """No URDF for the requested robot could be found; the message says where to get one."""


def _urdf_in(package_dir: Path) -> Path | None:
    urdf = package_dir / "urdf" / "anymal.urdf"
    return urdf if urdf.is_file() else None


def _from_ament_index() -> Path | None:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return _urdf_in(Path(get_package_share_directory(ANYMAL_D_PACKAGE)))
    except (PackageNotFoundError, LookupError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        return None


def _shared_candidates() -> list[Path]:
    """`shared/robots/<pkg>` beside any parent of the working directory or of this file."""
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    seen: list[Path] = []
    for start in starts:
        for parent in [start, *start.parents]:
            for base in (parent / "shared", parent.parent / "shared"):
                cand = base / "robots" / ANYMAL_D_PACKAGE
                if cand not in seen:
                    seen.append(cand)
    return seen


def find_anymal_d_urdf(path: str | os.PathLike | None = None) -> Path:
    """Return the ANYmal D URDF, searched in the contract's order."""
    tried: list[str] = []
    if path:
        p = Path(path)
        found = p if p.is_file() else _urdf_in(p)
        if found:
            return found
        raise DescriptionNotFoundError(f"ANYmal D description not found at the given path {p}")
    env = os.environ.get(ANYMAL_D_ENV)
    if env:
        p = Path(env)
        found = p if p.is_file() else _urdf_in(p)
        if found:
            return found
        tried.append(f"${ANYMAL_D_ENV}={env}")
    found = _from_ament_index()
    if found:
        return found
    tried.append(f"ament index package '{ANYMAL_D_PACKAGE}'")
    for cand in _shared_candidates():
        found = _urdf_in(cand)
        if found:
            return found
    tried.append("shared/robots/ beside the working directory and the installed package")
    raise DescriptionNotFoundError(
        "ANYmal D description (anymal_d_simple_description/urdf/anymal.urdf) not found; tried "
        + "; ".join(tried)
        + ". Get it from https://github.com/ANYbotics/anymal_d_simple_description (BSD-3) and set "
        f"{ANYMAL_D_ENV}=<its folder>, or select ANYmal C (robot=anymal_c, from pip "
        "'example-robot-data')."
    )


def find_anymal_c_urdf() -> Path:
    """Return ANYmal C's URDF from the `example-robot-data` wheel (a cmeel prefix in site-packages)."""
    rel = Path("share/example-robot-data/robots/anymal_c_simple_description/urdf/anymal.urdf")
    roots = [Path(p) / "cmeel.prefix" for p in sys.path if p]
    roots.append(Path(sys.prefix))
    for root in roots:
        if (root / rel).is_file():
            return root / rel
    raise DescriptionNotFoundError(
        "ANYmal C description not found: install it with 'pip install example-robot-data'"
    )


def find_urdf(robot: str = "anymal_d", path: str | os.PathLike | None = None) -> Path:
    """Return the URDF of `robot` ('anymal_d' or 'anymal_c')."""
    if robot == "anymal_d":
        return find_anymal_d_urdf(path)
    if robot == "anymal_c":
        return Path(path) if path else find_anymal_c_urdf()
    raise ValueError(f"unknown robot {robot!r}; choose one of {ROBOTS}")
