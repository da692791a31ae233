"""Result files with provenance: ``results/<name>.csv`` and ``results/<name>.md``.

Every markdown result states what produced it (preset, model, seeds, device,
commit, wall time, command) and puts the paper's numbers beside ours, so a
reader never mistakes the small preset for the paper's 7B run.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import paper

REPO_ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """Short commit of the working tree, with ``+dirty`` when its code has changes (result files that
    earlier runs rewrote in ``results/`` and ``figures/`` do not count: they are outputs, not code)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!figures"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


@dataclass
class Provenance:
    """What produced a result. Create it when the run starts; wall time is taken at write."""

    name: str
    preset: str
    model: str
    seeds: list
    device: str
    extra: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    # 1-minute load average when the run started: above the core count, other jobs shared the CPU.
    load: float | None = field(default_factory=lambda: os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    command: str = field(default_factory=lambda: "python -m " + " ".join(shlex.quote(a) for a in _argv()))

    def as_rows(self) -> list[tuple[str, str]]:
        import torch

        rows = [
            ("preset", self.preset),
            ("model", self.model),
            ("seeds", ", ".join(str(s) for s in self.seeds)),
            ("device", self.device),
            ("commit", git_commit()),
            ("wall time", f"{time.perf_counter() - self.started:.1f} s"),
            ("CPU load at start", "n/a" if self.load is None else f"{self.load:.1f} (1-min load average; {os.cpu_count()} cores)"),
            ("command", f"`{self.command}`"),
            ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
            ("software", f"python {platform.python_version()}, torch {torch.__version__}"),
        ]
        rows += [(k, str(v)) for k, v in self.extra.items()]
        return rows


def _argv() -> list[str]:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = [spec.name] if spec is not None and spec.name else [Path(sys.argv[0]).name]
    return head + sys.argv[1:]


def save_figure(fig, path: Path) -> None:
    """Lay out ``fig``, write it as a PNG at ``path`` (creating its folder) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_result(
    table: pd.DataFrame,
    provenance: Provenance,
    *,
    out_dir: str | Path,
    title: str,
    paper_section: str,
    findings: list[str],
    figures: list[str] = (),
    data: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.csv`` and ``<out_dir>/<name>.md``.

    Parameters
    ----------
    table : DataFrame
        Our numbers (written whole to CSV, and as a markdown table).
    provenance : Provenance
    out_dir : path
        Usually ``results/``.
    title : str
        Heading of the markdown file.
    paper_section : str
        Markdown with the paper's own numbers for this table/figure.
    findings : list of str
        Plain statements of what our numbers show, including claims that do
        not hold at this scale.
    figures : list of str
        Paths of the figures to link from the markdown.
    data : DataFrame, optional
        Per-step / per-seed rows behind ``table``, written to ``<name>.data.csv``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{provenance.name}.csv"
    md_path = out / f"{provenance.name}.md"
    table.to_csv(csv_path, index=False)
    if data is not None:
        data.to_csv(out / f"{provenance.name}.data.csv", index=False)
    lines = [f"# {title}", "", "## Provenance", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in provenance.as_rows()]
    lines += ["", "## Our numbers", "", table.to_markdown(index=False, floatfmt=".4g"), ""]
    if findings:
        lines += ["## What they show", ""] + [f"- {f}" for f in findings] + [""]
    lines += ["## The paper's numbers", "", paper_section, "", f"_{paper.CAVEAT}_", ""]
    for fig in figures:
        rel = os.path.relpath(Path(fig).resolve(), out.resolve())
        lines += [f"![{Path(fig).stem}]({Path(rel).as_posix()})", ""]
    md_path.write_text("\n".join(lines))
    return csv_path, md_path


# ----------------------------------------------------------------------------- entry-point plumbing
def entry_parser(name: str, description: str):
    """The argument parser every ``python -m reproduce.<name>`` shares.

    ``--set FIELD=VALUE`` overrides any :class:`reproduce.presets.Config` field
    (value parsed as JSON), which is how the tests run each entry point at toy size.
    """
    import argparse

    from .presets import DEVICES, PRESETS

    p = argparse.ArgumentParser(prog=f"python -m reproduce.{name}", description=description)
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="small (CPU, minutes) or paper (GPU)")
    p.add_argument("--device", default="auto", choices=list(DEVICES))
    p.add_argument("--seeds", type=int_at_least(0), nargs="+", default=None, help="run seeds (default: the preset's)")
    p.add_argument("--out", default="results", help="directory for <name>.csv and <name>.md (default ./results)")
    p.add_argument("--figures", default="figures", help="directory for PNG figures (default ./figures)")
    p.add_argument("--model", default=None, help="paper preset: local path or hub id of the weights")
    p.add_argument("--data-path", default=None, help="paper preset: GSM8K directory or file (default ../shared/data/gsm8k)")
    p.add_argument("--cache-dir", default=None, help="warm-start cache (default $KERNELVALUE_CACHE or ~/.cache)")
    # One thread by default: the tiny model gains little from intra-op threads, and on a small machine
    # shared with other jobs two threads oversubscribed the cores (20-50x slower sampling, measured).
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch CPU threads (default 1)")
    p.add_argument("--workers", type=int_at_least(1), default=None,
                   help="parallel run processes, one thread each (default: min(2, CPU cores)); results do not "
                   "depend on it")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a Config field")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def int_at_least(minimum: int):
    """An argparse ``type``: an int >= ``minimum``, so ``--threads 0`` fails at parse time naming the flag.

    Examples
    --------
    >>> int_at_least(1)("3")
    3
    """
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {value}")
        return value

    return parse


def parse_sets(items) -> dict:
    """``["n_layer=1", "arch=gpt2"]`` -> ``{"n_layer": 1, "arch": "gpt2"}`` (JSON values, bare strings allowed)."""
    import json

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def entry_config(name: str, args, **fixed):
    """``(Config, options)`` for entry point ``name``: its preset block, CLI flags, ``--set`` pairs, ``fixed``."""
    import torch

    from .presets import experiment

    torch.set_num_threads(args.threads)
    flags = {"device": args.device, "model": args.model, "data_path": args.data_path, "cache_dir": args.cache_dir}
    overrides = {k: v for k, v in flags.items() if v is not None}
    return experiment(name, args.preset, seeds=args.seeds, **{**overrides, **parse_sets(args.set), **fixed})


def model_label(cfg) -> str:
    """What the policy is, for provenance lines."""
    if cfg.model is not None:
        return cfg.model
    return f"tiny {cfg.arch} ({cfg.n_layer} layers, d={cfg.d_model}, char tokenizer), SFT warm start {cfg.sft_steps} steps"


def device_label(cfg) -> str:
    import os

    import torch

    from .trainer import resolve_device

    dev = resolve_device(cfg.device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores)"
