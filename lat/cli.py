"""The ``lat`` console script.

Subcommands are registered in :data:`COMMANDS` (name -> (configure parser, handler)). A user error
(:class:`lat.core.errors.UserError`, a bad argument) prints one line and exits 2; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from lat.core.errors import RunStopped, UserError
from lat.core.paths import check_local_folder, parent_folder
from lat.core.quiet import quiet_libraries
from lat.core.ranks import is_primary


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage block) and exits 2."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def load_tokenizer(path: str):
    """Load a tokenizer by folder, hub id, or ``embedded`` (the shipped SmolLM2 tokenizer)."""
    check_local_folder(path, f"tokenizer {path!r}")
    from transformers import AutoTokenizer

    if path == "embedded":
        from lat.models.embedded import embedded_model_dir

        path = str(embedded_model_dir())
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - any failure to load is the user's tokenizer path
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"tokenizer {path!r}: cannot load ({first})") from None


# ---------------------------------------------------------------- lat preview
def _preview_args(p: argparse.ArgumentParser) -> None:
    def opt(name: str, **kw):
        # The paper's script spells options with underscores; accept hyphens too.
        names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        p.add_argument(*names, **kw)

    opt("input_file", required=True, help="records to transform (json list or jsonl)")
    opt("output_file", required=True, help="where to write the transformed records (atomically)")
    opt("input_format", choices=["json", "jsonl", "csv"], default=None, help="default: from the extension")
    opt("output_format", choices=["json", "jsonl", "csv"], default=None, help="default: from the extension")
    opt("input_field", default="input", help="instruction field (default: input)")
    opt("output_field", default="output", help="answer field (default: output)")
    opt("mode", required=True, help="real | virtual | vanilla | real_range | virtual_pool")
    opt("m", type=int, default=6, help="real: preview length in tokens (default 6)")
    opt("P", dest="P", default="Let's solve this problem. ", help="virtual: the prefix P")
    opt("connector", default=" The answer begins with: ", help="connector C")
    opt("tokenizer_path", default=None, help="tokenizer folder or hub id, or 'embedded' (real modes)")
    opt("m_min", type=int, default=1, help="real_range: smallest m")
    opt("m_max", type=int, default=12, help="real_range: largest m")
    opt("prefix_pool", nargs="+", default=None, help="virtual_pool: prefixes to draw from")
    opt("seed", type=int, default=0, help="seed of per-example draws")


def _preview(args: argparse.Namespace) -> int:
    from lat.config import PreviewConfig
    from lat.data.preview import preview_records, validate
    from lat.data.records import read_records, write_records

    cfg = PreviewConfig(
        mode=args.mode,
        m=args.m,
        m_min=args.m_min,
        m_max=args.m_max,
        prefix=args.P,
        connector=args.connector,
        seed=args.seed,
    )
    if args.prefix_pool:
        cfg.prefix_pool = list(args.prefix_pool)
    validate(cfg)
    needs_tokenizer = args.mode.startswith("real")
    if needs_tokenizer and not args.tokenizer_path:
        raise UserError(f"--tokenizer_path is required for --mode {args.mode}")
    if Path(args.output_file).resolve() == Path(args.input_file).resolve():
        raise UserError(f"--output_file: {args.output_file} is the input file; write the previewed records to another file")
    records = read_records(args.input_file, args.input_format or "auto")
    records.texts(args.input_field)
    records.texts(args.output_field)
    tokenizer = load_tokenizer(args.tokenizer_path) if needs_tokenizer else None
    start = time.perf_counter()
    out = preview_records(records.records, args.input_field, args.output_field, cfg, tokenizer)
    write_records(args.output_file, out, args.output_format or "auto")
    took = time.perf_counter() - start
    print(f"lat preview: {len(out)} records ({args.mode}) -> {args.output_file} in {took:.2f} s", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- lat config
def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help="key=value or --key=value; experiment=NAME; <group>=NAME")


def _config_list_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--list", action="store_true", help="list the config files that can be named, and the folders searched")


def _config(args: argparse.Namespace) -> int:
    from lat.config import available, config_dirs, to_yaml

    if args.list:
        if args.overrides:
            raise UserError(f"--list takes no overrides (got {' '.join(args.overrides)}); run lat config without --list to resolve them")
        print("searched, first match wins: " + ", ".join(str(d) for d in config_dirs()))
        for group in ("experiment", "method", "model", "data", "preview", "sweep"):
            print(f"{group}: {', '.join(available(group)) or '(none)'}")
        return 0
    from lat.workflows.check import resolve

    print(to_yaml(resolve(args.overrides, methods=True)), end="")
    return 0


# ---------------------------------------------------------------- lat train
AGENT_OVERRIDES = "LAT_AGENT_OVERRIDES"
"""Where rank 0 leaves a W&B agent's overrides for the DDP ranks it starts."""


def _train(args: argparse.Namespace) -> int:
    from lat.workflows.check import resolve
    from lat.workflows.train import train

    cfg = resolve(args.overrides + agent_overrides() + (["run.resume=true"] if args.resume else []))
    result = train(cfg)
    if is_primary():
        print(result.run_dir)
    return 0


def agent_overrides() -> list[str]:
    """Under ``wandb agent`` (``WANDB_SWEEP_ID`` set): the run's overrides from ``wandb.config``.

    They come after the command line's, so the sweep's exactly typed values win; the run logs to
    the agent's W&B run whatever the experiment's ``logging.wandb_mode`` says.
    """
    if not os.environ.get("WANDB_SWEEP_ID"):
        return []
    if not is_primary():  # a DDP rank Lightning started: rank 0's run, never a W&B run of its own
        if AGENT_OVERRIDES not in os.environ:
            raise UserError("under a W&B agent, start the DDP ranks with Lightning's launcher (train.devices=N), not torchrun or SLURM")
        return json.loads(os.environ[AGENT_OVERRIDES])
    import wandb

    from lat.config.sweep import agent_overrides as from_config

    run = wandb.run or wandb.init()
    found = [*from_config(dict(run.config)), "logging.wandb_mode=online"]
    os.environ[AGENT_OVERRIDES] = json.dumps(found)  # for the ranks Lightning starts from this process
    return found


def _train_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run folder from its last checkpoint")


# ---------------------------------------------------------------- lat eval
def _eval(args: argparse.Namespace) -> int:
    from lat.reporting.tables import judge_caption
    from lat.workflows.check import resolve
    from lat.workflows.evaluate import evaluate, format_metrics

    cfg = resolve(args.overrides)
    result = evaluate(cfg)
    print(format_metrics(result.metrics))
    print(judge_caption(cfg.eval.judge.name, cfg.eval.extra_judges).replace(" Rates in %.", ""))
    print(result.run_dir)
    return 0


# ---------------------------------------------------------------- lat align / lat run
def _align(args: argparse.Namespace) -> int:
    from lat.reporting.tables import judge_caption
    from lat.workflows.align import report_seed
    from lat.workflows.check import resolve
    from lat.workflows.evaluate import format_comparison

    cfg = resolve(args.overrides)
    folder, report = report_seed(cfg)
    print(format_comparison(report))
    print(judge_caption(cfg.eval.judge.name, cfg.eval.extra_judges).replace(" Rates in %.", ""))
    print(folder)
    return 0


def _run(args: argparse.Namespace) -> int:
    from lat.workflows.check import resolve
    from lat.workflows.experiment import run_experiment

    print(run_experiment(resolve(args.overrides, methods=True)))
    return 0


# ---------------------------------------------------------------- lat sweep / lat report
def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_file", help="a W&B sweep YAML: a path, or the name of a shipped one (lat/configs/sweep/NAME.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every point")
    p.add_argument("--workers", type=_positive, default=1, help="points run at the same time (local runner)")
    p.add_argument("--count", type=_positive, default=None, help="run at most this many points (random: how many to draw)")
    p.add_argument("--root", default=None, help="run root (default: run.root); points go to ROOT/<sweep name>/")
    p.add_argument("--dry-run", action="store_true", help="validate and list the points and their commands; run nothing")
    p.add_argument("--wandb", action="store_true", help="register the sweep with W&B and run `wandb agent` instead")
    p.add_argument("--project", default=None, help="W&B project (default: logging.project)")
    p.add_argument("--entity", default=None, help="W&B entity")


def _sweep(args: argparse.Namespace) -> int:
    from lat.config.sweep import command
    from lat.workflows.check import resolve
    from lat.workflows.sweep import SweepRun, fixed_overrides, run_wandb, sweep_file

    sweep = sweep_file(args.sweep_file)
    if args.wandb:
        project = args.project or resolve(fixed_overrides(sweep) + args.overrides).logging.project
        return run_wandb(sweep, project, args.entity, args.count)
    runner = SweepRun(sweep, args.overrides, Path(args.root) if args.root else None, args.workers, args.count)
    if args.dry_run:
        for p in runner.points:
            shown = f"same as {p.same_as}" if p.same_as else " ".join(command(sweep, runner.args(p)))
            print(f"{p.id}  {shown}")
        return 0
    points = runner.run()
    print((runner.folder / "sweep.md").read_text())
    print(runner.folder)
    failed = [p.id for p in points if p.status in ("failed", "interrupted")]
    if failed:
        print(f"lat sweep: {len(failed)} point(s) failed: {', '.join(failed)} (logs in {runner.folder})", file=sys.stderr)
    return 1 if failed else 0


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run folders, sweep folders or experiment folders (searched for finished runs)")
    p.add_argument("--out", default=None, help="output folder (default: reports/<name of the first argument>)")
    p.add_argument("--group-by", default=None, help="comma-separated dotted config keys that define a row (default: the keys that differ, minus run.seed)")
    p.add_argument(
        "--map",
        action="store_true",
        help="also write the map: each preview against Vanilla FT of the same learning rate, epochs, LoRA or full (map.md, map_deltas.png, map_kl.png)",
    )
    p.add_argument(
        "--worst-case",
        action="store_true",
        help="also write each method's lowest RSR / JSR over attacker settings (learning rate, epochs, poison share) above a utility floor (worst_case.md)",
    )
    p.add_argument("--floor-share", type=float, default=0.8, help="--worst-case: the utility floor as a share of Vanilla FT's best utility (default 0.8)")
    p.add_argument("--utility-floor", type=float, default=None, help="--worst-case: an absolute utility floor (a fraction) instead")


def _report(args: argparse.Namespace) -> int:
    from lat.reporting.runs import write_report

    paths, keys = [Path(r) for r in args.runs], args.group_by.split(",") if args.group_by else None
    if args.worst_case and not 0 < args.floor_share <= 1:
        raise UserError(f"--floor-share: must be in (0, 1], got {args.floor_share}")
    if args.worst_case and args.utility_floor is not None and not 0 <= args.utility_floor <= 1:
        raise UserError(f"--utility-floor: a utility is a fraction in [0, 1], got {args.utility_floor}")
    if args.out:
        parent_folder(args.out, "--out")
    out = write_report(paths, Path(args.out) if args.out else None, keys)
    print((out / "report.md").read_text())
    if args.map:
        from lat.reporting.map import write_map

        write_map(paths, out, keys)
        print((out / "map.md").read_text())
    if args.worst_case:
        from lat.reporting.worst import write_worst_case

        write_worst_case(paths, out, args.utility_floor, args.floor_share)
        print((out / "worst_case.md").read_text())
    print(out)
    return 0


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], bool]


def _judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="generations: a run's samples.jsonl, or any jsonl / json / csv with prompt, response (and prefix, metric)")
    p.add_argument("--out", required=True, help="where the records go, each with judge/<name> added")
    p.add_argument("--judge", action="append", default=[], help="a judge to run (repeat for more; default: eval.judge.name)")
    p.add_argument("overrides", nargs="*", help="key=value overrides (eval.judge.* configures the judges)")


def _judge(args: argparse.Namespace) -> int:
    from lat.workflows.check import resolve
    from lat.workflows.judge import agreement_table, judge_files

    result = judge_files(args.inputs, args.out, resolve(args.overrides), args.judge)
    print(agreement_table(result) or f"{len(result.records)} records judged (no human labels to compare with)")
    print(args.out)
    return 0


COMMANDS: dict[str, Command] = {
    "preview": ("apply a preview strategy to a record file (drop-in for the paper's script)", _preview_args, _preview, False),
    "config": ("print the resolved configuration (--list: the configs that can be named)", _config_list_args, _config, True),
    "train": ("fine-tune one model into runs/<name>/", _train_args, _train, True),
    "eval": ("evaluate a model (base, seed, or base + adapter) without training", _config_args, _eval, True),
    "align": ("build (once) and report the safety-aligned seed from the base model", _config_args, _align, True),
    "run": ("the main job: seed -> fine-tune each method -> evaluate -> table and plots", _config_args, _run, True),
    "sweep": ("run a W&B sweep YAML: locally (grid/random, N workers, resumable) or with --wandb", _sweep_args, _sweep, False),
    "report": ("aggregate runs: mean +- std over seeds, Pareto and KL plots, the paper's Table 1 layout", _report_args, _report, False),
    "judge": ("judge existing generations again with any judges; agreement with human labels where records carry them", _judge_args, _judge, True),
}
"""name -> (help, add arguments, handler, takes ``--key=value`` overrides)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``lat`` argument parser with every registered subcommand."""
    parser = _Parser(prog="lat", description="LookAhead Tuning: safety-preserving fine-tuning of chat LLMs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, add_args, handler, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 diverged, 2 user error, 128 + N stopped by signal N)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_libraries()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not COMMANDS[args.command][3] or any("=" not in a for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        return args.handler(args)
    except UserError as e:
        print(f"lat: {e}", file=sys.stderr)
        return 2
    except RunStopped as e:
        if e.code >= 128 and not is_primary():
            return 0  # a signal's stop: rank 0 says it and where the checkpoint is (an error exit here would have Lightning kill rank 0 first)
        print(f"lat: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("lat: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
