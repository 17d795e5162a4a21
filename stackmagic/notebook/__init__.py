"""Notebooks as pipelines: the ``%%step`` grammar, name analysis and the pipeline spec."""

from .spec import PipelineSpec, Step, load_pipeline
from .steps import StepSettings, parse_step_line

__all__ = ["PipelineSpec", "Step", "StepSettings", "load_pipeline", "parse_step_line"]
