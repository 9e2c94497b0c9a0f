"""The autotuner: tasks and spaces, simulator measurement, an XGBoost cost model, the graph-level
allocation and the tuning database (see docs/tuning.md). MetaSchedule adapters live in
:mod:`tvm_aie.tune.metaschedule`, imported on demand (MetaSchedule's import is slow)."""

from .database import Database, DatabaseFormatError
from .graph import allocate, pareto_front
from .measure import executor, measure
from .search import TuneResult, tune_task
from .task import Task, extract_tasks
from .tuner import ModelTuneResult, tune_model

__all__ = ["Database", "DatabaseFormatError", "allocate", "pareto_front", "executor", "measure",
           "TuneResult", "tune_task", "Task", "extract_tasks", "ModelTuneResult", "tune_model"]
