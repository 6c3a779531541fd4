"""Pipelines on skyplug's engines: steps declared apart from running them, worker helpers, tool bricks.

``Pipeline``/``Step`` (api.py) define and run; ``stage``/``publish``/``scratch`` (worker.py) are what
a step calls on its worker; ``dp3``/``wsclean`` (bricks.py) run the real tools, checking their exit.
"""

from __future__ import annotations

from skyplug.pipeline.api import Pipeline, Step, StepError
from skyplug.pipeline.bricks import Cancelled, ToolError, aoflagger_strategy, dp3, wsclean
from skyplug.pipeline.worker import Published, publish, scratch, stage

__all__ = [
    "Cancelled",
    "Pipeline",
    "Published",
    "Step",
    "StepError",
    "ToolError",
    "aoflagger_strategy",
    "dp3",
    "publish",
    "scratch",
    "stage",
    "wsclean",
]
