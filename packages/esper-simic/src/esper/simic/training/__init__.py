"""Simic training: the vectorized PPO loop, checkpoints, metrics, evaluation and run configuration.

Everything ``esper-train`` does is available from Python::

    from esper.simic.training import TrainConfig, train, evaluate
    result = train(TrainConfig(episodes=40, out_dir="runs/demo"))
    print(evaluate("runs/demo/checkpoint_last.pt").table())
    run_study(StudyConfig(TrainConfig(episodes=40), seeds=(1, 2, 3), out_dir="runs/study"))
"""

from esper.simic.training.checkpoint import (
    FORMAT_VERSION,
    LAST_CHECKPOINT,
    CheckpointError,
    encode_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from esper.simic.training.config import (
    DEFAULT_ROUNDS,
    RESUME_OVERRIDABLE,
    ConfigFileError,
    TrainConfig,
    build_config,
    load_config_file,
    merge_layers,
)
from esper.simic.training.dataclass_io import ConfigKeyError
from esper.simic.training.eval_report import EvalReport, EvalRow
from esper.simic.training.evaluation import EvalConfig, evaluate, evaluate_heuristic
from esper.simic.training.metrics import (
    EpisodeStats,
    FanOutSink,
    NullSink,
    PhaseTimings,
    RecordingSink,
    RoundRecord,
    RunStart,
    RunSummary,
    TrainingSink,
)
from esper.simic.training.progress import ConsoleProgress
from esper.simic.training.run_dir import RunDirectory, RunDirectoryError, read_metrics
from esper.simic.training.study import StudyConfig, StudyReport, run_study
from esper.simic.training.tensorboard import TensorBoardSink
from esper.simic.training.traces import EpisodeTrace, TraceRecorder
from esper.simic.training.vectorized import RunResult, train

__all__ = [
    "DEFAULT_ROUNDS",
    "FORMAT_VERSION",
    "LAST_CHECKPOINT",
    "RESUME_OVERRIDABLE",
    "CheckpointError",
    "ConfigFileError",
    "ConfigKeyError",
    "ConsoleProgress",
    "EpisodeStats",
    "EpisodeTrace",
    "EvalConfig",
    "EvalReport",
    "EvalRow",
    "FanOutSink",
    "NullSink",
    "PhaseTimings",
    "RecordingSink",
    "RoundRecord",
    "RunDirectory",
    "RunDirectoryError",
    "RunResult",
    "RunStart",
    "RunSummary",
    "StudyConfig",
    "StudyReport",
    "TensorBoardSink",
    "TraceRecorder",
    "TrainConfig",
    "TrainingSink",
    "build_config",
    "encode_checkpoint",
    "evaluate",
    "evaluate_heuristic",
    "load_config_file",
    "merge_layers",
    "read_checkpoint",
    "read_metrics",
    "run_study",
    "train",
    "write_checkpoint",
]
