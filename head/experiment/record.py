"""An experiment's directory: its plan, one CSV row per finished run, one per node of it.

::

    DIR/plan.json     the plan (a resumed experiment must be the same one)
    DIR/runs.csv      one row per finished run: the fields of ExperimentRun
    DIR/nodes.csv     one row per node of each finished run: run, node, busy_s, temp_max_c,
                      throttled
    DIR/report.txt, DIR/report.png   written by head.experiment.report

Each run's rows are written, flushed and synced as the run ends, so an experiment killed
at any moment resumes from the runs on disk, and no finished run is done again.
"""

import csv
import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from head.experiment.plan import Plan, PlanError
from piswarm.protocol.experiments import ExperimentRun

RUN_FIELDS = [f.name for f in dataclasses.fields(ExperimentRun)]
NODE_FIELDS = ["run", "node", "busy_s", "temp_max_c", "throttled"]


@dataclass(frozen=True)
class NodeRow:
    """One node's share of one run."""

    run: int
    node: str
    busy_s: float | None
    temp_max_c: float | None
    throttled: bool


class RecordError(ValueError):
    """A directory that holds something else, or a damaged file (the message says where)."""


class Record:
    """An experiment's directory, opened for a plan: the runs already done, and appending."""

    def __init__(self, directory: Path, plan: Plan) -> None:
        self.dir = directory
        self.plan = plan
        directory.mkdir(parents=True, exist_ok=True)
        plan_file = directory / "plan.json"
        if plan_file.exists():
            try:
                stored = Plan.from_json(plan_file.read_text())
            except (ValueError, TypeError, KeyError, PlanError) as exc:
                raise RecordError(f"{plan_file}: not an experiment's plan ({exc})") from None
            if stored != plan:
                raise RecordError(
                    f"{directory} holds another experiment ({stored.name}, {stored.kind}, "
                    f"{stored.scaling}, nodes {list(stored.nodes)}): resume it with the same "
                    "options, or give another --out"
                )
        else:
            _write_synced(plan_file, plan.to_json() + "\n")
        for name in ("runs.csv", "nodes.csv"):
            _cut_torn_line(directory / name)
        self.runs = read_runs(directory)

    @property
    def done(self) -> set[int]:
        return {r.run for r in self.runs}

    def add(self, run: ExperimentRun, nodes: list[NodeRow]) -> None:
        """Store a finished run (and its nodes) before anything else happens."""
        _append(self.dir / "nodes.csv", NODE_FIELDS, [_node_cells(n) for n in nodes])
        _append(self.dir / "runs.csv", RUN_FIELDS, [_run_cells(run)])
        self.runs.append(run)


def read_plan(directory: Path) -> Plan:
    path = directory / "plan.json"
    try:
        return Plan.from_json(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{directory}: no plan.json (not an experiment's directory)") from None
    except (ValueError, TypeError, KeyError, PlanError) as exc:
        raise RecordError(f"{path}: not an experiment's plan ({exc})") from None


def read_runs(directory: Path) -> list[ExperimentRun]:
    """The finished runs on disk, in the order they ended (a torn last line, from a
    machine that lost power mid-write, is left out)."""
    path = directory / "runs.csv"
    if not path.exists():
        return []
    hints = typing.get_type_hints(ExperimentRun)
    runs: list[ExperimentRun] = []
    with path.open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            if None in row.values() or set(row) != set(RUN_FIELDS):
                continue  # torn
            try:
                runs.append(ExperimentRun(**{k: _parse(hints[k], v) for k, v in row.items()}))
            except (ValueError, TypeError) as exc:
                raise RecordError(f"{path}, line {i}: {exc}") from None
    return runs


def read_nodes(directory: Path) -> list[NodeRow]:
    path = directory / "nodes.csv"
    if not path.exists():
        return []
    rows: list[NodeRow] = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if None in row.values():
                continue
            rows.append(
                NodeRow(
                    run=int(row["run"]),
                    node=row["node"],
                    busy_s=float(row["busy_s"]) if row["busy_s"] else None,
                    temp_max_c=float(row["temp_max_c"]) if row["temp_max_c"] else None,
                    throttled=row["throttled"] == "1",
                )
            )
    return rows


def _parse(hint: Any, text: str) -> Any:
    if get_origin(hint) in (types.UnionType, typing.Union):
        if text == "":
            return None
        (hint,) = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) is tuple:
        return tuple(text.split())
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    return text  # str, and the Literal fields


def _run_cells(run: ExperimentRun) -> list[str]:
    cells = []
    for name in RUN_FIELDS:
        value = getattr(run, name)
        cells.append(
            ""
            if value is None
            else " ".join(value)
            if isinstance(value, tuple)
            else repr(value)
            if isinstance(value, float)
            else str(value)
        )
    return cells


def _node_cells(n: NodeRow) -> list[str]:
    return [
        str(n.run),
        n.node,
        "" if n.busy_s is None else repr(round(n.busy_s, 6)),
        "" if n.temp_max_c is None else repr(n.temp_max_c),
        "1" if n.throttled else "0",
    ]


def _append(path: Path, header: list[str], rows: list[list[str]]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(header)
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def _cut_torn_line(path: Path) -> None:
    """A line cut short by a crash mid-write goes, so the next row starts on its own."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _write_synced(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
