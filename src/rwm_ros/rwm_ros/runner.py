"""Start the stack's nodes from a YAML file: pip-only stand-in for `ros2 launch rwm_bringup anymal.launch.py`.

launch_ros is not on PyPI, so machines without a ROS 2 install use this. The YAML mirrors the launch
file: `arguments` (robot, sim, policy, record, namespace, ...) with defaults, and `nodes`, each a
module of rwm_ros started as its own process:

    python -m rwm_ros.<module> --ros-args -r __node:=<name> [-r __ns:=/ns] --params-file config/<f> [-p k:=v]

`enabled` is a bool or a condition on the arguments ("sim", "not policy", "sim and not policy");
"$(name)" in a parameter value is replaced by the argument's value. `--set name=value` overrides an
argument, `--set node.param=value` a node's parameter. SIGINT/SIGTERM are forwarded to every node;
all stop when one exits, when --duration has passed, or on a signal; a summary follows.

    python -m rwm_ros.runner --config config/anymal.yaml --duration 20 --report --set controller=gait
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rwm_ros.realtime import set_realtime_priority

_SUBST = re.compile(r"\$\((\w+)\)")


@dataclass
class NodeSpec:
    """One node process of the stack."""

    name: str
    """Node name (remaps __node)."""
    module: str
    """Module in rwm_ros that has main(), e.g. sim_node."""
    enabled: bool = True
    """Whether it starts, after evaluating its condition on the arguments."""
    namespace: str = ""
    """Node namespace ('' for the root)."""
    params_files: list[Path] = field(default_factory=list)
    """ROS 2 parameter files, absolute."""
    parameters: dict = field(default_factory=dict)
    """Parameter overrides passed as -p name:=value."""
    args: list[str] = field(default_factory=list)
    """Extra command-line arguments before --ros-args."""
    nice: int = 0
    """Scheduling niceness added to the process (e.g. 10 for the logger, so the control loop wins the CPU)."""


@dataclass
class RunConfig:
    """A parsed runner file."""

    arguments: dict
    """Launch arguments after --set overrides."""
    nodes: list[NodeSpec]
    """All nodes, enabled or not, in start order."""


def _parse_value(text: str):
    """'true' -> True, '0.5' -> 0.5, 'gait' -> 'gait': YAML scalars, as ROS parses -p values."""
    return yaml.safe_load(text) if text != "" else ""


def _eval_condition(cond, arguments: dict, where: str) -> bool:
    """A bool, or 'arg', 'not arg' and such terms joined by 'and'."""
    if isinstance(cond, bool):
        return cond
    if not isinstance(cond, str) or not cond.strip():
        raise ValueError(f"{where}: enabled must be true/false or a condition like 'sim and not policy'")
    result = True
    for term in cond.split(" and "):
        words = term.split()
        negate = words[:1] == ["not"]
        name = words[-1] if words else ""
        if len(words) != 1 + negate or name not in arguments:
            raise ValueError(
                f"{where}: cannot read condition term {term!r}; arguments are {sorted(arguments)}"
            )
        value = arguments[name]
        if not isinstance(value, bool):
            raise ValueError(
                f"{where}: argument {name!r} used as a condition must be true/false, got {value!r}"
            )
        result = result and (value != negate)
    return result


def _substitute(value, arguments: dict, where: str):
    if not isinstance(value, str):
        return value
    whole = _SUBST.fullmatch(value)
    if whole:  # "$(robot)" alone keeps the argument's type
        name = whole.group(1)
        if name not in arguments:
            raise ValueError(f"{where}: unknown argument $({name}); arguments are {sorted(arguments)}")
        return arguments[name]

    def repl(m: re.Match) -> str:
        if m.group(1) not in arguments:
            raise ValueError(f"{where}: unknown argument $({m.group(1)}); arguments are {sorted(arguments)}")
        return str(arguments[m.group(1)])

    return _SUBST.sub(repl, value)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a runner YAML and apply `overrides` ('arg=value' or 'node.param=value')."""
    path = Path(path)
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw.get("nodes"), list) or not raw["nodes"]:
        raise ValueError(f"{path}: needs a non-empty list 'nodes'")
    arguments = dict(raw.get("arguments") or {})
    node_overrides: dict[str, dict] = {}
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected name=value or node.param=value")
        if "." in key:
            node, param = key.split(".", 1)
            node_overrides.setdefault(node, {})[param] = _parse_value(text)
        elif key in arguments:
            arguments[key] = _parse_value(text)
        else:
            raise ValueError(f"--set {item!r}: unknown argument {key!r}; arguments are {sorted(arguments)}")
    namespace = str(arguments.get("namespace") or "")
    nodes: list[NodeSpec] = []
    for i, entry in enumerate(raw["nodes"]):
        where = f"{path}: nodes[{i}]"
        if not isinstance(entry, dict) or "module" not in entry or "name" not in entry:
            raise ValueError(f"{where}: each node needs 'name' and 'module'")
        params = {
            k: _substitute(v, arguments, f"{where}.parameters.{k}")
            for k, v in (entry.get("parameters") or {}).items()
        }
        params.update(node_overrides.pop(entry["name"], {}))
        files = [(path.parent / f).resolve() for f in entry.get("params_files") or []]
        for f in files:
            if not f.is_file():
                raise ValueError(f"{where}: parameter file {f} not found")
        nodes.append(
            NodeSpec(
                name=str(entry["name"]),
                module=str(entry["module"]),
                enabled=_eval_condition(entry.get("enabled", True), arguments, where),
                namespace=str(_substitute(entry.get("namespace", namespace), arguments, where) or ""),
                params_files=files,
                parameters=params,
                args=[str(_substitute(a, arguments, where)) for a in entry.get("args") or []],
                nice=int(entry.get("nice", 0)),
            )
        )
    if node_overrides:
        raise ValueError(
            f"--set names unknown nodes {sorted(node_overrides)}; nodes are {[n.name for n in nodes]}"
        )
    return RunConfig(arguments=arguments, nodes=nodes)


def _ros_value(value) -> str:
    """A -p value that ROS reads back as the same YAML scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and (value == "" or _parse_value(value) != value):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def command_line(spec: NodeSpec, python: str = sys.executable) -> list[str]:
    """The argv that starts `spec`."""
    cmd = [python, "-m", f"rwm_ros.{spec.module}", *spec.args, "--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        cmd += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    for f in spec.params_files:
        cmd += ["--params-file", str(f)]
    for k, v in spec.parameters.items():
        cmd += ["-p", f"{k}:={_ros_value(v)}"]
    return cmd


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all threads), s; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_env() -> dict[str, str]:
    """This environment, with the folders holding rwm and rwm_ros first on PYTHONPATH (source checkouts)."""
    import rwm  # noqa: PLC0415 - only to locate it
    import rwm_ros  # noqa: PLC0415

    roots = [str(Path(m.__file__).resolve().parent.parent) for m in (rwm, rwm_ros)]
    old = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*roots, *filter(None, old.split(os.pathsep))]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class Child:
    """A started node process."""

    spec: NodeSpec
    proc: subprocess.Popen
    started: float
    ended: float | None = None
    how: str = "running"
    cpu_s: float | None = None
    """CPU time (user + system, all threads) used until the stop began, s."""


class Runner:
    """Starts the enabled nodes, watches them and stops them all together."""

    def __init__(self, config: RunConfig, stop_timeout_s: float = 5.0) -> None:
        self.config = config
        self.stop_timeout_s = stop_timeout_s
        self.children: list[Child] = []
        self.stop_reason = ""
        """Why the run ended: duration, signal, or which node exited."""

    def start(self) -> None:
        env = child_env()
        for spec in self.config.nodes:
            if not spec.enabled:
                print(f"[runner] {spec.name}: disabled", flush=True)
                continue
            cmd = command_line(spec)
            # Own process group: a terminal's Ctrl-C reaches the runner only, which forwards it once.
            proc = subprocess.Popen(
                cmd,
                env=env,
                start_new_session=True,
                preexec_fn=functools.partial(os.nice, spec.nice) if spec.nice else None,
            )
            self.children.append(Child(spec, proc, time.monotonic()))
            print(f"[runner] {spec.name}: pid {proc.pid}: {' '.join(cmd[1:])}", flush=True)

    def poll(self) -> bool:
        """True while every node runs; else note which one ended."""
        for c in self.children:
            rc = c.proc.poll()
            if rc is not None and c.ended is None:
                c.ended, c.how = time.monotonic(), "exited"
                self.stop_reason = self.stop_reason or f"{c.spec.name} exited with code {rc}"
        return not self.stop_reason

    def stop(self) -> None:
        """SIGINT to all (reverse order), then SIGTERM, then SIGKILL, each after a grace period."""
        for c in self.children:
            if c.proc.poll() is None:
                c.cpu_s = cpu_seconds(c.proc.pid)
                c.ended = time.monotonic()
        for sig, how, grace in (
            (signal.SIGINT, "stopped", self.stop_timeout_s),
            (signal.SIGTERM, "terminated", 2.0),
            (signal.SIGKILL, "killed", 2.0),
        ):
            alive = [c for c in reversed(self.children) if c.proc.poll() is None]
            if not alive:
                break
            for c in alive:
                c.how = how
                try:
                    c.proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            for c in alive:
                try:
                    c.proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:
                    pass
        for c in self.children:
            if c.ended is None and c.proc.poll() is not None:
                c.ended = time.monotonic()

    def cpu_shares(self) -> dict[str, float]:
        """CPU use of each node while the stack ran, % of one core."""
        return {
            c.spec.name: round(100.0 * c.cpu_s / max(c.ended - c.started, 1e-9), 1)
            for c in self.children
            if c.cpu_s is not None and c.ended is not None
        }

    def summary(self) -> str:
        lines = [f"[runner] stopped: {self.stop_reason}"]
        shares = self.cpu_shares()
        for c in self.children:
            run_s = (c.ended or time.monotonic()) - c.started
            cpu = f", cpu {shares[c.spec.name]:5.1f}% of a core" if c.spec.name in shares else ""
            lines.append(
                f"[runner]   {c.spec.name:<24} pid {c.proc.pid:<7} {c.how:<10} after {run_s:7.1f} s, "
                f"exit code {c.proc.returncode}{cpu}"
            )
        return "\n".join(lines)

    def failed(self) -> bool:
        """A node ended with an error code (0, or death by the forwarded SIGINT, is success)."""
        return any(c.proc.returncode not in (0, -signal.SIGINT) for c in self.children)


class _Probe:
    """The stack probe spun in a thread of the runner (no rclpy signal handlers: the runner owns signals)."""

    def __init__(self) -> None:
        import threading  # noqa: PLC0415

        import rclpy  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
        from rclpy.signals import SignalHandlerOptions  # noqa: PLC0415

        from rwm_ros.stack_probe import StackProbe  # noqa: PLC0415

        self._rclpy = rclpy
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        self.node = StackProbe()
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - shutdown while spinning
            pass

    def finish(self) -> dict:
        report = self.node.summary()
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown()
        return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rwm_ros.runner", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/anymal.yaml", help="runner YAML (default config/anymal.yaml)")
    ap.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: run until ^C)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an argument (robot=anymal_c) or a node parameter (anymal_sim.rate_hz=200)",
    )
    ap.add_argument(
        "--report", action="store_true", help="listen to the robot topics and print figures at the end"
    )
    ap.add_argument(
        "--probe-priority",
        type=int,
        default=0,
        help="with --report: SCHED_FIFO priority of the probe, which stands in for the robot's command "
        "receiver (0: niceness 10, yielding to the stack)",
    )
    ap.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    a = ap.parse_args(argv)
    try:
        config = load_config(a.config, a.set)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"[runner] error: {e}", file=sys.stderr)
        return 2
    if a.dry_run:
        for spec in config.nodes:
            print(("" if spec.enabled else "# disabled: ") + " ".join(command_line(spec)))
        return 0

    runner = Runner(config)
    got: list[int] = []

    def on_signal(signum: int, _frame) -> None:
        got.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    probe = _Probe() if a.report else None
    report: dict | None = None
    start = time.monotonic()
    try:
        runner.start()
        if probe is not None:  # after the nodes started, which must not inherit the probe's schedule
            if a.probe_priority:
                print(f"[runner] probe: {set_realtime_priority(a.probe_priority)}", flush=True)
            else:
                os.nice(10)  # measuring yields to the stack
        while runner.poll():
            if got:
                runner.stop_reason = f"signal {signal.Signals(got[0]).name}"
                break
            if a.duration and time.monotonic() - start >= a.duration:
                runner.stop_reason = f"duration {a.duration:g} s reached"
                break
            time.sleep(0.1)
    finally:
        if probe is not None:
            report = probe.finish()  # before stopping: figures of the running stack only
        runner.stop()
    print(runner.summary(), flush=True)
    if report is not None:
        report["cpu_percent_of_a_core"] = runner.cpu_shares()
        print("[runner] report: " + json.dumps(report, indent=1), flush=True)
    return 1 if runner.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
