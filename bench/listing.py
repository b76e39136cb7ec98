"""What listing a folder of videos costs the driver, per video: ``discover`` over a generated listing.

    python bench/listing.py [--videos 20000] [--baseline REF]

Writes ``--videos`` distinct tiny videos (``bench/scale.py``'s listing: 1,000 per folder, each a
copy of one real MP4 with a ``free`` box naming it), then, each in a fresh process:

- ``rss``: the process's resident memory after ``discover`` returned, above what it held before
  (what a run's driver keeps for the whole run: the allocator rarely gives freed memory back);
- ``traced``: with ``tracemalloc``, the bytes still allocated after ``discover`` (the sources it
  returned and anything it keeps), and the peak while it worked.

With ``--baseline REF`` the same is measured on the git revision REF (checked out into a temporary
worktree) and printed beside.

With ``--lake-videos M``, what a run reads of a lake that already holds M other finished videos
(synthetic ``videos`` rows, seeded in one Delta transaction) and the listed ones (an incremental
run with nothing new, as a scheduled run over today's folder): the lake's identities of the
sources (``known_sources``) and its state (``read_lake_state``), read whole (as before ``plan_run``
asked only for the listed paths and contents) and as a run reads them now, bytes per listed video
and seconds. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = r"""
import gc, json, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
n, folder, traced = int(sys.argv[2]), sys.argv[3], sys.argv[4] == "traced"
import importlib.util
# The code under test is the checkout in argv[1], whatever the installed package maps videolake to.
modules = {}
for name, part in (("videolake", "videolake"), ("videolake.pipeline", "pipeline")):
    spec = importlib.util.spec_from_file_location(name, f"{sys.argv[1]}/{part}/__init__.py",
                                                  submodule_search_locations=[f"{sys.argv[1]}/{part}"])
    modules[name] = sys.modules[name] = importlib.util.module_from_spec(spec)
for name in ("videolake.pipeline", "videolake"):
    modules[name].__spec__.loader.exec_module(modules[name])
from videolake.pipeline import sources
assert sources.__file__.startswith(sys.argv[1]), sources.__file__

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

gc.collect()
if traced:
    tracemalloc.start()
before = rss()
t0 = time.perf_counter()
found = sources.discover([folder])
seconds = time.perf_counter() - t0
gc.collect()
assert len(found) == n, (len(found), n)
if traced:
    kept, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"traced_kept_b": kept / n, "traced_peak_b": peak / n, "discover_s": seconds}))
else:
    print(json.dumps({"rss_kept_b": (rss() - before) / n, "discover_s": seconds}))
"""


_LAKE_PROBE = r"""
import gc, json, sys, time, tracemalloc
from functools import partial
n, folder, lake_url, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
from videolake.pipeline.lake import Lake
from videolake.pipeline.ledger import known_sources, read_lake_state
from videolake.pipeline.sources import discover

lake = Lake(lake_url)
gc.collect()
tracemalloc.start()
t0 = time.perf_counter()
if mode == "whole":
    found = discover([folder], known=known_sources(lake))
    state = read_lake_state(lake, "bench", None)
else:
    found = discover([folder], known=partial(known_sources, lake))
    state = read_lake_state(lake, "bench", found)
seconds = time.perf_counter() - t0
assert len(found) == n and all(state.is_done(s) for s in found)
gc.collect()
kept, peak = tracemalloc.get_traced_memory()
print(json.dumps({"kept_b": kept / n, "peak_b": peak / n, "seconds": seconds}))
"""


def seed_lake(lake_url: Path, folder: Path, others: int) -> None:
    """A lake whose ``videos`` table holds ``others`` finished videos at other paths and the listed ones."""
    from datetime import datetime, timezone

    from videolake.pipeline.lake import Lake
    from videolake.pipeline.sources import discover

    lake = Lake.open_or_create(lake_url)
    now = datetime.now(timezone.utc)
    listed = discover([folder])
    rows = [{"video_id": f"old{i:09d}-{i:012x}", "content_key": f"{i:032x}", "uri": f"/archive/cam{i % 500:03d}/old{i:09d}.mp4",
             "status": "ok", "finished_at": now, "size_bytes": 1000 + i, "source_version": str(i), "config_hash": "bench"}
            for i in range(others)]
    rows += [{"video_id": s.video_id, "content_key": s.content_key, "uri": s.uri, "status": "ok", "finished_at": now,
              "size_bytes": s.size_bytes, "source_version": s.version, "config_hash": "bench"} for s in listed]
    lake.write("videos", lambda: lake.rows("videos", rows), None, f"{len(rows)} seeded videos")


def measure_lake(folder: Path, videos: int, lake_url: Path) -> dict:
    out = {}
    for mode in ("whole", "listed"):
        done = subprocess.run([sys.executable, "-c", _LAKE_PROBE, str(videos), str(folder), str(lake_url), mode],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            sys.exit(f"lake reads ({mode}): {done.stderr.strip().splitlines()[-1]}")
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def measure(code_root: Path, folder: Path, videos: int) -> dict:
    """Per-video bytes of ``discover`` with the code at ``code_root`` (a fresh process per mode)."""
    out: dict = {}
    for mode in ("rss", "traced"):
        done = subprocess.run([sys.executable, "-c", _PROBE, str(code_root), str(videos), str(folder), mode],
                              capture_output=True, text=True, cwd=code_root)
        if done.returncode:
            sys.exit(f"{code_root} ({mode}): {done.stderr.strip().splitlines()[-1]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        out.update({k: v for k, v in figures.items() if k != "discover_s" or mode == "rss"})
    return out


def code_at(ref: str, where: Path) -> Path:
    """The repository at ``ref`` in a temporary worktree; its package imports as ``videolake`` from there."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), ref], check=True,
                   capture_output=True)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "videolake-listing-bench")
    parser.add_argument("--baseline", help="a git revision to measure beside this checkout")
    parser.add_argument("--lake-videos", type=int, default=0, help="also measure a run's reads of a lake of this many other videos")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.scale import make_listing, make_video

    folder = args.workdir / f"videos-{args.videos}"
    if not folder.exists():
        args.workdir.mkdir(parents=True, exist_ok=True)
        make_listing(folder, make_video(args.workdir / "one.mp4", 10.0), args.videos)
    rows = {"this checkout": measure(ROOT, folder, args.videos)}
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                rows[args.baseline] = measure(code_at(args.baseline, Path(tmp) / "base"), folder, args.videos)
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp) / "base")],
                               capture_output=True)
    print(f"{args.videos} videos, bytes per video")
    print(f"{'code':<16} {'RSS kept':>9} {'traced kept':>12} {'traced peak':>12} {'discover s':>11}")
    for name, r in rows.items():
        print(f"{name:<16} {r['rss_kept_b']:>9.0f} {r['traced_kept_b']:>12.0f} "
              f"{r['traced_peak_b']:>12.0f} {r['discover_s']:>11.1f}")
    lake = {}
    if args.lake_videos:
        lake_url = args.workdir / f"lake-{args.videos}-{args.lake_videos}"
        if not lake_url.exists():
            seed_lake(lake_url, folder, args.lake_videos)
        lake = measure_lake(folder, args.videos, lake_url)
        print(f"a run over the {args.videos} listed videos, all done, in a lake of {args.lake_videos} others: "
              "its reads of the lake (identities and state), bytes per listed video")
        print(f"{'reads':<34} {'allocated kept':>15} {'allocated peak':>15} {'seconds':>8}")
        for mode, name in (("whole", "the whole videos table (before)"), ("listed", "the listed paths and contents")):
            r = lake[mode]
            print(f"{name:<34} {r['kept_b']:>15.0f} {r['peak_b']:>15.0f} {r['seconds']:>8.1f}")
    print(json.dumps({"videos": args.videos, **{name: r for name, r in rows.items()},
                      **({"lake_videos": args.lake_videos, "lake_reads": lake} if lake else {})}))


if __name__ == "__main__":
    main()
