"""Storage against a real S3-compatible server on loopback (moto): listing, atomic writes, errors, secrets."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from videolake.pipeline import storage
from videolake.pipeline.errors import ConfigError, LakeError, SourceError
from videolake.pipeline.lake import Lake, ParquetSink, check_writable, table_path
from videolake.pipeline.ledger import read_lake_state
from videolake.pipeline.sources import discover
from tests.objectstore import SECRET


def test_redact_blanks_secrets_from_the_environment_and_the_options(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret123")
    monkeypatch.delenv(storage.STORAGE_OPTIONS_ENV, raising=False)  # restored to absent after the test
    storage.set_storage_options({"key": "AKIA-public", "secret": "optsecret456", "client_kwargs": {"region_name": "eu"}})
    text = storage.redact("failed with envsecret123 and optsecret456 for AKIA-public in eu")
    assert text == "failed with *** and *** for *** in eu"  # access key ids too: conservative


def test_bad_storage_options_fail_as_config_errors_without_echoing_them(monkeypatch):
    monkeypatch.delenv(storage.STORAGE_OPTIONS_ENV, raising=False)
    with pytest.raises(ConfigError) as info:
        storage.set_storage_options('{"secret": "s3cr3t-value",')
    assert "s3cr3t-value" not in str(info.value) and storage.STORAGE_OPTIONS_ENV not in os.environ
    with pytest.raises(ConfigError, match="unknown storage protocol"):
        storage.filesystem("nosuchproto://bucket/x")
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:  # the [gcs] extra is not installed here: the message says how to get it
        with pytest.raises(ConfigError, match=r"pip install 'videolake\[gcs\]'"):
            storage.filesystem("gs://bucket/x")


def test_discover_lists_a_prefix_and_a_glob_and_identifies_videos_by_content(s3, samples_dir):
    bucket = f"{s3.prefix}-cams"
    s3.mkdir(bucket)
    s3.put_file(str(samples_dir / "bikes.mp4"), f"{bucket}/2026-11-27/cam1/bikes.mp4")
    s3.put_file(str(samples_dir / "carphone_pristine.mp4"), f"{bucket}/2026-11-28/cam2/carphone.mp4")
    s3.pipe(f"{bucket}/2026-11-28/cam2/notes.txt", b"not a video")
    everything = discover([f"s3://{bucket}"])
    assert [v.uri for v in everything] == [f"s3://{bucket}/2026-11-27/cam1/bikes.mp4", f"s3://{bucket}/2026-11-28/cam2/carphone.mp4"]
    assert everything[0].size_bytes == (samples_dir / "bikes.mp4").stat().st_size
    assert [v.uri for v in discover([f"s3://{bucket}/2026-11-28*/**/*.mp4"])] == [f"s3://{bucket}/2026-11-28/cam2/carphone.mp4"]
    assert discover([f"s3://{bucket}/2025/"]) == []  # an empty prefix is not an error: a schedule may find nothing yet
    assert [v.camera_id for v in everything] == ["cam1", "cam2"]
    assert [v.content_key for v in discover([samples_dir / "bikes.mp4", samples_dir / "carphone_pristine.mp4"])] == [
        v.content_key for v in everything]  # the same bytes have the same key wherever they lie
    before = everything[0]
    s3.put_file(str(samples_dir / "carphone_pristine.mp4"), f"{bucket}/2026-11-27/cam1/bikes.mp4")  # replaced content
    (replaced,) = discover([f"s3://{bucket}/2026-11-27"])
    assert replaced.content_key == everything[1].content_key != before.content_key and replaced.video_id != before.video_id


def test_a_missing_bucket_fails_fast_naming_the_url_and_never_the_secret(s3):
    with pytest.raises(SourceError) as info:
        discover([f"s3://{s3.prefix}-no-such-bucket/videos"])
    assert f"s3://{s3.prefix}-no-such-bucket/videos" in str(info.value) and "not found" in str(info.value)
    with pytest.raises(LakeError) as info:
        check_writable(f"s3://{s3.prefix}-no-such-lake/lake")
    assert f"s3://{s3.prefix}-no-such-lake/lake" in str(info.value)
    assert SECRET not in str(info.value) and os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET


def test_a_parquet_sink_to_a_bucket_shows_nothing_until_it_closes(s3):
    bucket = f"{s3.prefix}-lake"
    s3.mkdir(bucket)
    path = table_path(f"s3://{bucket}/lake", "ledger", config_hash="h", video_id="v", content_key="c", shard_key="s0")
    assert path == f"s3://{bucket}/lake/_staging/ledger/config_hash=h/v/c-s0.parquet"
    with ParquetSink(path, "ledger", row_group_rows=2) as sink:
        for i in range(5):
            sink.write({"video_id": ["v"], "content_key": ["c"], "shard_index": [i]} | {
                f: [None] for f in ("t_start_s", "t_end_s", "frames_analyzed", "n_detections", "n_clips",
                                    "clips_by_action", "warning", "run_id", "committed_at")})
            assert not s3.exists(path)
    assert pq.read_table(path.removeprefix("s3://"), filesystem=s3).column("shard_index").to_pylist() == [0, 1, 2, 3, 4]
    state = read_lake_state(Lake.open_or_create(f"s3://{bucket}/lake"), "h")
    assert state.committed == {("v", "c", "s0")}
    with pytest.raises(RuntimeError), ParquetSink(path.replace("s0", "s1"), "ledger") as sink:
        raise RuntimeError("the shard failed")
    from videolake.pipeline.scratch import scratch_dir

    assert not s3.exists(path.replace("s0", "s1")) and not [f for f in os.listdir(scratch_dir()) if f.startswith("_tmp-") and "c-s1" in f]


def test_a_video_streams_from_the_bucket_without_a_local_copy(s3, samples_dir):
    from videolake.pipeline.decode import iter_frames, probe

    bucket = f"{s3.prefix}-cams"
    s3.mkdir(bucket)
    s3.put_file(str(samples_dir / "bikes.mp4"), f"{bucket}/bikes.mp4")
    local, remote = probe(samples_dir / "bikes.mp4"), probe(f"s3://{bucket}/bikes.mp4")
    assert (remote.width, remote.height, remote.fps, remote.keyframes_s) == (local.width, local.height, local.fps, local.keyframes_s)
    a = [(f.frame_index, f.t_s, int(f.image.sum())) for f in iter_frames(str(samples_dir / "bikes.mp4"), 4, start_s=4.0, end_s=6.0)]
    b = [(f.frame_index, f.t_s, int(f.image.sum())) for f in iter_frames(f"s3://{bucket}/bikes.mp4", 4, start_s=4.0, end_s=6.0)]
    assert a == b and len(a) == 8


def test_compaction_on_a_bucket_lake_keeps_query_results(s3):
    from videolake.pipeline.compact import compact, small_file_count
    from tests.synthetic_lake import write_sharded_video

    bucket = f"{s3.prefix}-lake"
    s3.mkdir(bucket)
    lake = Lake.open_or_create(f"s3://{bucket}/lake")
    for v in range(2):
        write_sharded_video(lake, f"v{v}", n_shards=3)
    query = "SELECT video_id, count(*) AS n, sum(frame_index) AS f FROM detections GROUP BY 1 ORDER BY 1"
    before = lake.sql(query).to_pylist()
    assert before == [{"video_id": "v0", "n": 30, "f": 435}, {"video_id": "v1", "n": 30, "f": 435}]
    assert small_file_count(lake) == 2
    report = compact(lake, retention_hours=0)
    assert small_file_count(lake) == 1 and report.files_vacuumed >= 2
    assert lake.sql(query).to_pylist() == before
    assert not s3.find(f"{bucket}/lake/_staging", withdirs=False)


PLANTED = {
    "env": "planted-env-secret-1",
    "option": "planted-option-secret-2",
    "account_key": "cGxhbnRlZC1hY2NvdW50LWtleQ+/x==",
    "url_password": "planted-url-password-3",
    "bearer": "planted.bearer-token_4",
    "sas": "planted%2Bsas%2Fsig5",
}


@pytest.fixture
def planted(monkeypatch):
    """Secrets planted where videolake's processes find them: the environment and the storage options."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED["env"])
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={PLANTED['account_key']};EndpointSuffix=core.windows.net")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://minio-user:{PLANTED['url_password']}@127.0.0.1:9000")
    monkeypatch.delenv(storage.STORAGE_OPTIONS_ENV, raising=False)
    storage.set_storage_options({"secret": PLANTED["option"], "client_kwargs": {"headers": {"Authorization": f"Bearer {PLANTED['bearer']}"}}})
    return PLANTED


@pytest.mark.parametrize("text", [
    "failed with {env} and {option}",                                                    # known values
    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={account_key};EndpointSuffix=x",  # connection_string
    "the key {account_key} was refused",                                                # a part of a known connection string
    'Could not connect to the endpoint URL: "http://minio-user:{url_password}@127.0.0.1:9000/cams"',
    "bare {url_password} from the endpoint",                                            # a known URL's password, alone
    "GET https://acct.blob.core.windows.net/c/cam.mp4?sv=2022-11-02&sig={sas}&se=2030 failed",
    "headers={{'Authorization': 'Bearer {bearer}'}}",
    "Authorization: Bearer {bearer}",
    "{{'secret': '{option}', \"password\": \"{env}\"}}",                                 # JSON and reprs
    "aws_secret_access_key={env} token={option}",
])
def test_redact_blanks_every_form_of_a_credential(planted, text):
    raw = text.format(**planted)
    clean = storage.redact(raw)
    assert not [name for name, value in planted.items() if value in clean], clean
    assert "***" in clean


def test_redact_keeps_what_is_not_a_credential(planted):
    text = "s3://cams/2026/cam1.mp4 content_key=0123abcd shard s00001 abfs://container@acct.dfs.core.windows.net/x"
    assert storage.redact(text) == text
    assert storage.has_credentials("https://user:pw@host/cam.mp4") and storage.has_credentials("https://h/v.mp4?sig=abc")
    assert not storage.has_credentials("s3://bucket/cams/") and not storage.has_credentials("/data/cam=1/x.mp4")


def test_log_records_and_their_tracebacks_are_redacted(planted):
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("videolake-test-redaction")
    logger.addHandler(handler)
    try:
        storage.redact_logs("videolake-test-redaction")
        try:
            raise RuntimeError(f"bucket said no to {planted['env']} at http://u:{planted['url_password']}@host/")
        except RuntimeError:
            logger.exception("shard failed with %s", planted["option"])
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "shard failed with ***" in text and "RuntimeError: bucket said no to *** at http://u:***@host/" in text
    assert not [value for value in planted.values() if value in text]
