"""videolake's library: decode, detect, track, actions, lake, query. No Ray, no Prefect.

The public names below are imported on first use, so ``import videolake.pipeline`` stays cheap
(the CLI starts without loading torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "RunConfig", "VideolakeError", "ConfigError", "SourceError", "DecodeError", "ModelError", "LakeError",
    "NotALakeError", "StorageError", "TimedOut", "ShardTimeout", "WorkerLost", "PrefectServerError", "VideoInfo", "Frame", "PtsSampler", "probe", "iter_frames",
    "Detections", "Detector", "Tracker", "MotionGate", "GatedDetection", "track_features", "ActionModel", "ACTIONS",
    "ClipAccumulator", "VideoAnalyzer", "ShardJob", "ShardResult", "Shard", "plan_shards", "VideoSource", "discover",
    "run_sql", "connect", "Lake", "SCHEMAS", "resolve_detector", "resolve_actions", "write_samples",
]

_WHERE = {
    "RunConfig": "config",
    **dict.fromkeys(["VideolakeError", "ConfigError", "SourceError", "DecodeError", "ModelError", "LakeError",
                     "NotALakeError", "StorageError", "TimedOut", "ShardTimeout", "WorkerLost", "PrefectServerError"], "errors"),
    **dict.fromkeys(["VideoInfo", "Frame", "PtsSampler", "probe", "iter_frames"], "decode"),
    **dict.fromkeys(["Detections", "Detector"], "detect"),
    "Tracker": "track",
    **dict.fromkeys(["MotionGate", "GatedDetection"], "gating"),
    "track_features": "features",
    **dict.fromkeys(["ActionModel", "ACTIONS"], "actions"),
    "ClipAccumulator": "clips",
    **dict.fromkeys(["VideoAnalyzer", "ShardJob", "ShardResult"], "analyze"),
    **dict.fromkeys(["Shard", "plan_shards"], "shards"),
    **dict.fromkeys(["VideoSource", "discover"], "sources"),
    **dict.fromkeys(["run_sql", "connect"], "query"),
    **dict.fromkeys(["Lake", "SCHEMAS"], "lake"),
    **dict.fromkeys(["resolve_detector", "resolve_actions"], "models"),
    "write_samples": "samples",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'videolake.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(f"videolake.pipeline.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
