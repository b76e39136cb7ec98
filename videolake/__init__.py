"""videolake: batch video analytics into a lake you query with SQL.

The command line is ``videolake`` (``videolake.cli``); the same things from Python:

    import videolake

    summary = videolake.analyze(["videos/"], "lake")         # new or changed videos into the lake
    result = videolake.analyze_video("clip.mp4")             # one video in memory: result.clips, result.detections
    lake = videolake.open_lake("lake")                       # lake.sql(...).df(), lake.table("clips"), .render, .report

The library is ``videolake.pipeline`` (no Ray, no Prefect), the Ray workers ``videolake.workers``,
the Prefect flow ``videolake.flows``. Names below load on first use, so ``import videolake`` is cheap.

Importing videolake turns on Ultralytics' safe loading of weights and turns off its run-time pip
installs, in this process and the ones it starts (Ray workers import videolake too): Ultralytics
reads both settings once, when it is first imported. See ``videolake.pipeline.models``.
"""

from __future__ import annotations

import importlib
from typing import Any

from videolake.pipeline.models import set_ultralytics_env

set_ultralytics_env()

__all__ = [
    "analyze", "analyze_video", "open_lake", "LakeReader", "RunConfig", "RunSummary", "VideoResult",
    "VideolakeError", "ConfigError", "SourceError", "DecodeError", "ModelError", "LakeError", "StorageError",
]

_WHERE = {
    "analyze": "videolake.api", "analyze_video": "videolake.api", "open_lake": "videolake.api", "LakeReader": "videolake.api",
    "RunConfig": "videolake.pipeline.config", "RunSummary": "videolake.pipeline.runs",
    "VideoResult": "videolake.pipeline.analyze",
    **dict.fromkeys(["VideolakeError", "ConfigError", "SourceError", "DecodeError", "ModelError", "LakeError", "StorageError"],
                    "videolake.pipeline.errors"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'videolake' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
