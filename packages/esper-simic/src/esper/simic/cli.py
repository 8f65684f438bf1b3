"""``esper-train``: a thin shell over :mod:`esper.simic.training` (no training logic lives here).

Subcommands: ``ppo`` (train), ``heuristic`` (run the rule-based policy), ``eval`` (checkpoint vs
the baselines), ``policies`` (what the registry knows, broken plugins included). Options
are generated from the config dataclasses and their field docstrings, so ``--help`` is the config's
documentation. Input errors print one ``esper-train: error: ...`` line and exit with status 2;
``--traceback`` shows the full stack instead (for bug reports).

``study`` trains several seeds of one configuration, evaluates each and reports learned − baseline
with bootstrap intervals (:mod:`esper.simic.training.study`).

``plot`` and ``report`` draw a run directory (:mod:`esper.simic.report`, optional extra ``plot``).

``presets`` lists the named bundles of settings that ``--preset`` layers under the config file and
the flags (:mod:`esper.simic.training.presets`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from esper.simic.env import EnvConfig
from esper.simic.extras import MissingExtraError
from esper.simic.launch import (
    NPROC_FLAG,
    die_with_launcher,
    is_main_process,
    launch_workers,
    report_error,
    under_torchrun,
)
from esper.simic.report import PLOTS_DIR, REPORT_FILE, RunFilesError, write_plots, write_report
from esper.simic.training import (
    CheckpointError,
    ConfigFileError,
    ConfigKeyError,
    ConsoleProgress,
    EvalConfig,
    FanOutSink,
    RunDirectoryError,
    TrainConfig,
    TrainingSink,
    build_config,
    evaluate,
    evaluate_heuristic,
    load_config_file,
    merge_layers,
    read_checkpoint,
    train,
)
from esper.simic.training.checkpoint import confirm_data_dir
from esper.simic.training.dataclass_io import from_plain
from esper.simic.training.distributed import DistributedError, split_envs
from esper.simic.training.options import Option, add_option_groups, add_options, collect_options, given_values
from esper.simic.training.presets import DEFAULT_PRESET, PRESETS, get_preset
from esper.simic.training.run_dir import RESUME_AUTO, claim_new_run_directory, resolve_resume, strict_json
from esper.simic.training.study import (
    DEFAULT_SEEDS,
    STUDY_JSON,
    STUDY_MARKDOWN,
    StudyConfig,
    consecutive_seeds,
    run_study,
)
from esper.simic.training.tensorboard import TENSORBOARD_DIR, TensorBoardSink, summary_writer_class, write_eval_report
from esper.simic.training.traces import TRACES_FILE, write_traces
from esper.tamiyo.policy import PolicyRegistryError, list_policies

PROG = "esper-train"
#: Flag stems that differ from the derived ones, by dotted field path (the reference's and the spec's names).
RENAMES = {"out_dir": "out", "env.slot_ids": "slots"}
#: Additional spellings accepted for the same option, by dotted field path: the reference's names
#: and the flags of the flat environment config that preceded its sections.
ALIASES = {
    "num_envs": ("--envs",),
    "out_dir": ("--out-dir",),
    "env.slot_ids": ("--slot-ids",),
    "env.lifecycle.training_dwell": ("--training-dwell",),
    "env.lifecycle.min_prune_age": ("--min-prune-age",),
    "env.lifecycle.embargo_epochs": ("--embargo-epochs",),
    "env.lifecycle.max_seeds": ("--max-seeds",),
    "env.lifecycle.auto_advance": ("--auto-advance",),
    "env.host_training.lr": ("--host-lr",),
    "env.host_training.momentum": ("--host-momentum",),
    "env.host_training.weight_decay": ("--host-weight-decay",),
    "env.host_training.max_grad_norm": ("--host-max-grad-norm",),
    "env.host_training.batch_size": ("--batch-size",),
    "env.host_training.val_batch_size": ("--val-batch-size",),
    "env.seed_training.lr": ("--seed-lr",),
    "env.seed_training.momentum": ("--seed-momentum",),
    "env.seed_training.max_grad_norm": ("--seed-max-grad-norm",),
    "env.governor.snapshot_interval": ("--snapshot-interval",),
}
#: Exceptions that mean "bad input", reported in one line (anything else is a bug and keeps its traceback).
#: ``OSError`` covers paths the user named that cannot be read or written (missing, a directory,
#: no permission).
INPUT_ERRORS = (
    CheckpointError,
    ConfigFileError,
    ConfigKeyError,
    RunDirectoryError,
    PolicyRegistryError,
    DistributedError,
    MissingExtraError,
    RunFilesError,
    ValueError,
    TypeError,
    OSError,
)


class UsageError(Exception):
    """A command-line parsing error (unknown flag, bad value); reported like any input error."""


class _Parser(argparse.ArgumentParser):
    """``ArgumentParser`` that raises instead of printing the usage block and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


def _train_options() -> list[Option]:
    return collect_options(TrainConfig, renames=RENAMES, aliases=ALIASES)


def _eval_options() -> list[Option]:
    return collect_options(EvalConfig, aliases=ALIASES)


def _env_options() -> list[Option]:
    return collect_options(EnvConfig, renames=RENAMES, aliases=ALIASES, prefix=("env",))


def build_parser() -> argparse.ArgumentParser:
    """The full ``esper-train`` parser (exposed for documentation and tests)."""
    parser = _Parser(prog=PROG, description="Train and evaluate Tamiyo, the morphogenetic controller of Esper.")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors (bug reports)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    ppo = commands.add_parser("ppo", help="train a policy with PPO", description="Train a policy with recurrent PPO.")
    ppo.add_argument("--config", metavar="FILE", help="TOML or JSON config file (flags given here override it)")
    _add_preset_flag(ppo, "the config file and the flags override it; a resumed checkpoint keeps its own settings")
    ppo.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help=f"continue the run of this checkpoint up to --rounds/--episodes; '{RESUME_AUTO}': continue the "
        "--out directory's latest checkpoint if it has one, else start the run",
    )
    ppo.add_argument("--quiet", action="store_true", help="no progress display (notes about the run still print)")
    _add_tensorboard_flag(ppo)
    ppo.add_argument(
        NPROC_FLAG,
        type=int,
        metavar="N",
        help="data-parallel training in N local worker processes started through torchrun (--num-envs is the "
        "total, split evenly over them); several machines: run torchrun yourself (README, 'Scaling out')",
    )
    add_option_groups(ppo, _train_options(), top_title="run")

    heuristic = commands.add_parser(
        "heuristic",
        help="run the rule-based policy and report",
        description="Run the heuristic (rule-based) policy on the vector environment and report its results.",
    )
    heuristic.add_argument("--out", metavar="FILE", help="also write the report as JSON to FILE")
    _add_preset_flag(heuristic, "its environment settings; the flags override them")
    add_option_groups(heuristic, [*_eval_options(), *_env_options()], top_title="evaluation")

    evaluation = commands.add_parser(
        "eval",
        help="compare a checkpoint with the baselines",
        description="Play the same episodes with the checkpoint's policy (greedy and sampled) and the baselines: "
        "the heuristic, no growth (always WAIT), a random valid policy and, unless --no-costly-baselines, the best "
        "fixed schedule, the learned final network trained statically from epoch 0 and the host widened to the "
        "same parameter count; print a table of the objective and write it as JSON.",
    )
    evaluation.add_argument("checkpoint", help="checkpoint file (e.g. runs/ppo-.../checkpoint_last.pt)")
    evaluation.add_argument(
        "--out", metavar="FILE", help="JSON report path (default: eval.json next to the checkpoint)"
    )
    evaluation.add_argument(
        "--traces",
        metavar="FILE",
        help=f"JSON-lines file of every step of every episode (default: {TRACES_FILE} next to the JSON report)",
    )
    evaluation.add_argument(
        "--data-dir",
        help="the data directory or text corpus to evaluate on; needed for a checkpoint whose task reads files "
        "(cifar10, text on a corpus): a path the checkpoint names is never read unless given here",
    )
    evaluation.add_argument(
        "--tensorboard",
        action="store_true",
        help=f"also write the table into the run's TensorBoard events ({TENSORBOARD_DIR}/ next to the checkpoint, "
        "at the checkpoint's round): every number of every row as eval/<policy>/<field>, and the table as text; "
        "needs the optional extra esper-simic[tensorboard]",
    )
    add_options(evaluation.add_argument_group("evaluation"), _eval_options())

    commands.add_parser(
        "policies",
        help="list registered policies (plugins included)",
        description="List registered policies, including plugins and broken plugins with their error.",
    )
    commands.add_parser(
        "presets",
        help="list the presets of --preset and the settings each one changes",
        description="List the named bundles of environment and PPO settings that --preset NAME applies under "
        "the config file and the flags, with the settings each one changes (config-file paths).",
    )
    add_study_parser(commands)
    add_report_parsers(commands)
    return parser


def add_report_parsers(commands: Any) -> None:
    """``plot`` and ``report``: figures of a run directory (matplotlib, optional extra ``esper-simic[plot]``)."""
    plot = commands.add_parser(
        "plot",
        help="draw a run directory's learning curves and episode timelines as PNGs",
        description=f"Write RUN_DIR/{PLOTS_DIR}/*.png: the learning curves of metrics.jsonl and, once eval ran on "
        "the run's checkpoint, the seed-lifecycle timelines of the learned policy, the heuristic and no growth "
        "on one evaluation episode, above their validation accuracies. Needs: pip install 'esper-simic[plot]'.",
    )
    report = commands.add_parser(
        "report",
        help="write one self-contained HTML page of a run directory",
        description=f"Write RUN_DIR/{REPORT_FILE}: the figures of 'plot' embedded, the summary, the evaluation "
        "table (if eval ran on the run's checkpoint) and the resolved config, in one page that opens offline in "
        "any browser. Needs: pip install 'esper-simic[plot]'.",
    )
    for command in (plot, report):
        command.add_argument("run_dir", metavar="RUN_DIR", help="run directory (the --out of esper-train ppo)")
        command.add_argument(
            "--episode",
            type=int,
            default=0,
            metavar="N",
            help="evaluation episode whose timelines to draw (default: 0, the first)",
        )


def _study_eval_options() -> list[Option]:
    """The evaluation options of ``study``, prefixed ``--eval-`` (``--seed``, ``--num-envs`` are the training's)."""
    renames = {f"eval.{f.name}": f"eval_{f.name}" for f in dataclasses.fields(EvalConfig)}
    return collect_options(EvalConfig, renames=renames, prefix=("eval",))


def add_study_parser(commands: Any) -> None:
    """The ``study`` subcommand: the training options (``--out`` is the study directory), seeds, evaluation."""
    study = commands.add_parser(
        "study",
        help="train several seeds of one configuration and compare each with the baselines",
        description="Train K seeds of one configuration one after another (each in --out/seed-<s>), evaluate "
        "each against the baselines on the same held-out episodes, and write study.json and study.md: per-seed "
        "values, their means and a bootstrap interval of learned − baseline on the objective. Run it again "
        "with the same --out to continue an interrupted study.",
    )
    study.add_argument("--config", metavar="FILE", help="TOML or JSON config file (flags given here override it)")
    _add_preset_flag(study, "the config file and the flags override it")
    seeds = study.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds", type=int, metavar="K", help=f"train K seeds: --seed, --seed + 1, ... (default: {DEFAULT_SEEDS})"
    )
    seeds.add_argument("--seed-list", type=int, nargs="+", metavar="SEED", help="train exactly these seeds")
    study.add_argument("--quiet", action="store_true", help="no progress display (notes about the runs still print)")
    _add_tensorboard_flag(study)
    add_option_groups(study, _train_options(), top_title="run (--out is the study directory)")
    add_options(study.add_argument_group("evaluation of each seed"), _study_eval_options())


def _add_preset_flag(parser: argparse.ArgumentParser, layering: str) -> None:
    parser.add_argument(
        "--preset",
        metavar="NAME",
        help=f"named bundle of settings: {', '.join(PRESETS)} (default: {DEFAULT_PRESET}, the built-in "
        f"defaults; '{PROG} presets' lists what each changes); {layering}",
    )


def _preset_layers(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The ``--preset`` config layer (none without the flag); an unknown name raises ``PresetError``."""
    return [] if args.preset is None else [get_preset(args.preset).layer()]


def _add_tensorboard_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help=f"also write every number of metrics.jsonl as TensorBoard scalars into the run directory's "
        f"{TENSORBOARD_DIR}/ (by round, and by env steps under by_env_steps/); needs the optional extra "
        "esper-simic[tensorboard]",
    )


def _train_sink(args: argparse.Namespace, progress: ConsoleProgress) -> TrainingSink:
    """``progress``, plus TensorBoard event files with ``--tensorboard``; built before anything is
    written, so a missing extra stops the command with nothing created."""
    return FanOutSink(progress, TensorBoardSink()) if args.tensorboard else progress


def _study(args: argparse.Namespace) -> int:
    progress = ConsoleProgress(notices_only=args.quiet)
    sink = _train_sink(args, progress)
    requested = _preset_layers(args)
    if args.config is not None:
        requested.append(load_config_file(args.config))
    requested.append(given_values(args, _train_options()))  # preset < file < flags
    train_config = build_config(*requested)
    eval_config = from_plain(EvalConfig, given_values(args, _study_eval_options()).get("eval", {}), where="eval")
    seeds = args.seed_list or consecutive_seeds(train_config.seed, DEFAULT_SEEDS if args.seeds is None else args.seeds)
    config = StudyConfig(train_config, tuple(seeds), train_config.out_dir or "", eval_config)
    if train_config.out_dir is None:  # claimed only once the study's config is known to be valid
        created = claim_new_run_directory(Path("runs"), time.strftime("study-%Y%m%d-%H%M%S"))
        config = dataclasses.replace(config, out_dir=str(created))
    out = Path(config.out_dir)
    print(f"study directory: {out} (to continue it after an interruption: the same command with --out {_quoted(out)})")
    with progress:
        report = run_study(config, sink=sink, notify=print)
    print(report.markdown())
    print(f"wrote {out / STUDY_JSON} and {out / STUDY_MARKDOWN}")
    return 0


def _ppo(args: argparse.Namespace) -> int:
    progress = ConsoleProgress(notices_only=args.quiet)
    sink = _train_sink(args, progress)
    preset = _preset_layers(args)
    requested = [load_config_file(args.config)] if args.config is not None else []
    requested.append(given_values(args, _train_options()))  # flags override the file
    resume = resolve_resume(args.resume, merge_layers(*requested).get("out_dir"))
    # under the file and the flags: the preset when starting, else the checkpoint's resolved config
    # (a resumed run's preset is not applied again)
    layers = preset if resume is None else _resumed_layers(resume, requested)
    config = build_config(*layers, *requested)
    if args.nproc_per_node is not None:
        return _launch(args, config)
    if under_torchrun() and config.out_dir is None:
        raise ValueError("under torchrun give --out DIR: every worker must use the same run directory")
    created = None
    if config.out_dir is None:
        created = claim_new_run_directory(Path("runs"), time.strftime("ppo-%Y%m%d-%H%M%S"))
        config = build_config(config.to_dict(), {"out_dir": str(created)})
    try:
        with progress:
            result = train(config, resume=resume, sink=sink)
    except BaseException:
        if created is not None:  # the run failed before writing anything: leave no empty directory
            with contextlib.suppress(OSError):
                created.rmdir()
        raise
    if not is_main_process():
        return 0
    print(f"run directory: {config.out_dir}")
    if result.checkpoint is not None:
        print(f"compare with the heuristic: {PROG} eval {_quoted(result.checkpoint)}")
    return 0


def _resumed_layers(resume: Path, requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checkpoint's resolved config and run directory, the layers a resume builds on. A data path the
    checkpoint names is used only if the file or the flags name it too (``confirm_data_dir``)."""
    saved = read_checkpoint(resume)["config"]
    env = merge_layers(*requested).get("env")
    confirm_data_dir(saved, env.get("data_dir") if isinstance(env, dict) else None, checkpoint=resume)
    return [saved, {"out_dir": str(resume.parent)}]


def _launch(args: argparse.Namespace, config: TrainConfig) -> int:
    """``--nproc-per-node N``: claim the run directory here, then start the workers through torchrun."""
    if args.nproc_per_node < 1:
        raise ValueError(f"{NPROC_FLAG} must be >= 1, got {args.nproc_per_node}")
    if under_torchrun():
        raise ValueError(f"{NPROC_FLAG} starts workers; leave it out when torchrun already started this one")
    split_envs(config.num_envs, args.nproc_per_node)  # refused here, in one line, before any worker starts
    argv = list(args.argv)
    if config.out_dir is None:
        created = claim_new_run_directory(Path("runs"), time.strftime("ppo-%Y%m%d-%H%M%S"))
        argv += ["--out", str(created)]
    return launch_workers(argv, args.nproc_per_node, prog=PROG)


def _heuristic(args: argparse.Namespace) -> int:
    given = given_values(args, [*_eval_options(), *_env_options()])
    env_layers = [layer.get("env", {}) for layer in _preset_layers(args)]  # its PPO settings play no part here
    env_config = from_plain(EnvConfig, merge_layers(*env_layers, given.pop("env", {})), where="env")
    report = evaluate_heuristic(env_config, from_plain(EvalConfig, given))
    print(report.table())
    if args.out is not None:
        _write_json(Path(args.out), report.to_json())
    return 0


def _eval(args: argparse.Namespace) -> int:
    config = from_plain(EvalConfig, given_values(args, _eval_options()))
    if args.tensorboard:
        summary_writer_class()  # a missing extra stops the command before the evaluation, not after it
    out = Path(args.out) if args.out is not None else Path(args.checkpoint).parent / "eval.json"
    traces_path = Path(args.traces) if args.traces is not None else out.parent / TRACES_FILE
    for output in (out, traces_path):  # checked before playing every episode, not after
        _check_writable(output)
    if args.tensorboard:
        _check_writable(Path(args.checkpoint).parent / TENSORBOARD_DIR, directory=True)
    report = evaluate(args.checkpoint, config, data_dir=args.data_dir)
    print(report.table())
    traces = write_traces(traces_path, ((row.policy, row.traces) for row in report.rows))
    print(f"wrote {traces}")
    _write_json(out, report.to_json())
    print(f"wrote {out}")
    if args.tensorboard:
        step = int(read_checkpoint(args.checkpoint)["counters"]["rounds_completed"])
        events = write_eval_report(Path(args.checkpoint).parent / TENSORBOARD_DIR, report, step=step)
        print(f"wrote TensorBoard events to {events}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    for path in write_plots(args.run_dir, episode=args.episode):
        print(f"wrote {path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    print(f"wrote {write_report(args.run_dir, episode=args.episode)}")
    return 0


def _policies(args: argparse.Namespace) -> int:
    del args
    infos = list_policies()
    name_width = max((len(info.name) for info in infos), default=0)
    source_width = max((len(info.source) for info in infos), default=0)
    for info in infos:
        status = "ok" if info.ok else f"BROKEN: {info.error}"
        print(f"{info.name.ljust(name_width)}  {info.source.ljust(source_width)}  {info.target}  [{status}]")
    return 0


def _presets(args: argparse.Namespace) -> int:
    del args
    labels = {name: f"{name} (default)" if name == DEFAULT_PRESET else name for name in PRESETS}
    width = max(len(label) for label in labels.values())
    for preset in PRESETS.values():
        print(f"{labels[preset.name].ljust(width)}  {preset.summary}")
        for line in preset.setting_lines():
            print(f"    {line}")
    return 0


def _quoted(path: str | os.PathLike[str]) -> str:
    """``path`` as one shell word, for the commands the CLI suggests (a space or quote in it stays pasteable)."""
    return shlex.quote(str(path))


def _check_writable(path: Path, *, directory: bool = False) -> None:
    """Raise ``ValueError`` unless the file (or with ``directory``, the folder) ``path`` can be written,
    its missing parent directories created.

    A best-effort check (``os.access``; root passes every permission test) that catches what a user
    mistypes: a file path that is a directory, a parent that is a file, a directory without write permission.
    """
    reason = None
    parent = next(p for p in path.absolute().parents if p.exists())  # the nearest existing ancestor
    if path.exists() and path.is_dir() != directory:
        reason = "it is a directory" if path.is_dir() else "it is not a directory"
    elif not parent.is_dir():
        reason = f"{str(parent)!r} is not a directory"
    elif not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        reason = "permission denied"
    if reason is not None:
        raise ValueError(f"cannot write {str(path)!r}: {reason} (nothing was evaluated)")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(strict_json(data, indent=2) + "\n", encoding="utf-8")


COMMANDS = {
    "ppo": _ppo,
    "heuristic": _heuristic,
    "eval": _eval,
    "study": _study,
    "plot": _plot,
    "report": _report,
    "policies": _policies,
    "presets": _presets,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``esper-train``; returns the process exit status."""
    die_with_launcher()  # a worker of --nproc-per-node: no training on alone once the launcher is gone
    parser = build_parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(arguments)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    args.argv = arguments
    try:
        return COMMANDS[args.command](args)
    except INPUT_ERRORS as exc:
        if args.traceback:
            raise
        report_error(f"{PROG}: error: {' '.join(str(exc).split()) or type(exc).__name__}")
        return 2
    except KeyboardInterrupt:
        report_error(f"{PROG}: interrupted", lead="\n")  # a launched worker's goes to its launcher
        return 130


if __name__ == "__main__":
    sys.exit(main())
