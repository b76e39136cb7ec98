"""The wheel installs one top-level name, ``videolake``; the repository's folders are its subpackages."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_has_only_videolake_at_top_level(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("videolake-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"videolake"}
    for module in ("videolake/pipeline/decode.py", "videolake/flows/analyze.py", "videolake/workers/actor.py",
                   "videolake/pipeline/models/actions_lstm.safetensors"):
        assert module in names


def test_no_module_imports_the_old_top_level_names():
    """Run from the repository root, ``import pipeline`` would still resolve: only the source can tell."""
    import ast

    offenders = []
    for folder in ("pipeline", "flows", "workers", "videolake", "tests", "bench", "deploy"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("pipeline", "flows", "workers")]
    assert not offenders
