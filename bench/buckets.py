"""Benchmark: videolake over a bucket (a real S3-compatible server, moto, on loopback) against local disk.

    python bench/buckets.py [--objects 2000] [--out bench/BUCKETS.md]

Measures, in one invocation:
1. listing: ``discover`` over a prefix of N videos the lake has not seen (one recursive listing plus
   two range reads per object for its content key), and over N it has seen (the listing alone);
2. lake state: ``read_lake_state`` over a bucket lake that holds N finished videos;
3. the empty incremental run: ``videolake run PREFIX --out LAKE`` end to end (a process, as a user
   runs it) when all N are done: it must list, skip and stop;
4. throughput: the three sample videos at the default settings from the bucket into a bucket lake,
   against the same videos from local disk into a local lake (flow wall time from the runs table).

For 1–3 the N objects are tiny stand-ins and the lake is seeded with the ``videos`` rows a finished
run publishes (one Delta transaction): what an empty run reads is real, the N analyses are not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.objectstore import moto_server, s3_env  # noqa: E402  (the same loopback server the tests use)


def _videolake(*args: str, env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "videolake"), *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return time.perf_counter() - started, done.stdout


def _seed(lake, sources, config_hash: str) -> None:  # noqa: ANN001 - a Lake
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    rows = [{"video_id": s.video_id, "content_key": s.content_key, "uri": s.uri, "status": "ok", "finished_at": now,
             "size_bytes": s.size_bytes, "source_version": s.version, "config_hash": config_hash} for s in sources]
    lake.write("videos", lambda: lake.rows("videos", rows), None, f"{len(rows)} seeded videos")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "BUCKETS.md"))
    args = parser.parse_args()

    import s3fs

    from videolake.pipeline.config import RunConfig
    from videolake.pipeline.ledger import known_sources, read_lake_state
    from videolake.pipeline.plan import plan_run
    from videolake.pipeline.samples import write_samples
    from videolake.pipeline.sources import discover

    lines = [f"# Buckets benchmark ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             "S3 = moto server on 127.0.0.1 (one process, in-memory).", ""]
    with moto_server() as server, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **s3_env(server.url), "PREFECT_LOGGING_LEVEL": "WARNING"}
        os.environ.update(s3_env(server.url))
        fs = s3fs.S3FileSystem()
        fs.mkdir("cams")
        fs.mkdir("lake")
        t0 = time.perf_counter()
        for i in range(args.objects):
            fs.pipe(f"cams/many/cam{i % 20:02d}/clip-{i:05d}.mp4", b"tiny stand-in %d" % i)
        upload_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        sources = discover(["s3://cams/many/"])
        first_list_s = time.perf_counter() - t0
        assert len(sources) == args.objects
        plan = plan_run([], "s3://lake/many", RunConfig())
        _seed(plan.lake, sources, plan.config_hash)
        t0 = time.perf_counter()
        known = known_sources(plan.lake)
        assert discover(["s3://cams/many/"], known=known) == sources
        list_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        state = read_lake_state(plan.lake, plan.config_hash, sources)
        state_s = time.perf_counter() - t0
        assert len(state.finished_ok) == args.objects
        empty_s, out = _videolake("run", "s3://cams/many/", "--out", "s3://lake/many", "-q", env=env)
        assert f"0 new, {args.objects} already done" in out, out
        flow_s = float(re.search(r"wall time: ([\d.]+) s", out).group(1))
        lines += ["| step | seconds |", "|---|---|",
                  f"| upload {args.objects} tiny objects (setup) | {upload_s:.1f} |",
                  f"| listing and identifying {args.objects} new objects (2 range reads each) | {first_list_s:.2f} |",
                  f"| listing {args.objects} objects the lake has seen (no reads) | {list_s:.2f} |",
                  f"| lake state over {args.objects} finished videos (the videos table, one listing) | {state_s:.2f} |",
                  f"| empty incremental run, inside the flow | {flow_s:.2f} |",
                  f"| empty incremental run, whole command (Python start, imports, Prefect) | {empty_s:.1f} |", ""]

        samples = Path(tmp) / "samples"
        write_samples(samples)
        for path in sorted(samples.glob("*.mp4")):
            fs.put_file(str(path), f"cams/samples/{path.name}")
        remote_s, remote_out = _videolake("run", "s3://cams/samples/", "--out", "s3://lake/samples", "-q", env=env)
        local_s, local_out = _videolake("run", str(samples), "--out", str(Path(tmp) / "lake"), "-q", env=env)
        rows = []
        for name, out, total in (("bucket → bucket lake", remote_out, remote_s), ("local disk → local lake", local_out, local_s)):
            frames = int(re.search(r"frames analysed: (\d+)", out).group(1))
            wall = float(re.search(r"wall time: ([\d.]+) s", out).group(1))
            rows.append(f"| {name} | {frames} | {wall:.1f} | {frames / wall:.2f} | {total:.1f} |")
        lines += ["The three sample videos (19.3 s of video), default settings:", "",
                  "| run | frames | flow wall s | frames/s | command wall s |", "|---|---|---|---|---|", *rows, ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    print(json.dumps({"list_s": list_s, "state_s": state_s, "empty_flow_s": flow_s, "empty_cmd_s": empty_s}))


if __name__ == "__main__":
    main()
