
import numpy as np
import pytest

from videolake.pipeline.decode import DecodeStats, PtsSampler, iter_frames, probe
from videolake.pipeline.errors import DecodeError, SourceError


@pytest.mark.parametrize(
    "video_fps, analysis_fps, duration_s, expected",
    [
        (25, 8, 10, 80),    # down-sampling keeps one frame per tick
        (25, 0, 10, 250),   # 0 keeps every frame
        (25, 25, 10, 250),
        (10, 30, 3, 30),    # asking for more than the video has keeps every frame
        (29.97, 1, 4, 4),
    ],
)
def test_pts_sampler_keeps_one_frame_per_tick(video_fps, analysis_fps, duration_s, expected):
    sampler = PtsSampler(analysis_fps)
    times = np.arange(0, duration_s, 1 / video_fps)
    kept = [t for t in times if sampler.take(float(t))]
    assert abs(len(kept) - expected) <= 1
    if analysis_fps and analysis_fps < video_fps:
        assert np.all(np.diff(kept) >= 1 / analysis_fps - 1 / video_fps - 1e-9)


def test_pts_sampler_follows_time_not_frame_count_under_variable_frame_rate():
    # 2 s of 50 fps then 2 s of 5 fps: sampling at 4 fps keeps ~8 frames from each half
    times = list(np.arange(0, 2, 0.02)) + list(np.arange(2, 4, 0.2))
    sampler = PtsSampler(4)
    kept = [t for t in times if sampler.take(float(t))]
    first, second = sum(t < 2 for t in kept), sum(t >= 2 for t in kept)
    assert first == 8 and second == 8


def test_probe_reads_the_real_samples(samples_dir):
    bikes = probe(samples_dir / "bikes.mp4")
    assert (bikes.width, bikes.height, bikes.codec) == (640, 272, "h264")
    assert bikes.fps == pytest.approx(25) and bikes.duration_s == pytest.approx(10, abs=0.1)
    carphone = probe(samples_dir / "carphone_pristine.mp4")
    assert (carphone.width, carphone.height) == (176, 144) and carphone.fps == pytest.approx(29.97, abs=0.01)


def test_iter_frames_samples_by_pts_with_timestamps_in_seconds(samples_dir):
    stats = DecodeStats()
    frames = list(iter_frames(samples_dir / "bikes.mp4", analysis_fps=5, stats=stats))
    assert stats.frames_decoded == 250
    assert len(frames) == stats.frames_sampled == 50
    assert frames[0].t_s == 0.0 and frames[-1].t_s == pytest.approx(9.8, abs=0.05)
    assert all(b.t_s - a.t_s == pytest.approx(0.2, abs=0.041) for a, b in zip(frames, frames[1:]))
    assert [f.frame_index for f in frames[:3]] == [0, 5, 10]
    assert frames[0].image.shape == (272, 640, 3) and frames[0].image.dtype == np.uint8


def test_iter_frames_over_a_range_between_keyframes_keeps_the_whole_decodes_frames_and_timestamps(samples_dir):
    uri = samples_dir / "bikes.mp4"
    expected = [f.t_s for f in iter_frames(uri) if 8.0 <= f.t_s < 9.0]
    got = list(iter_frames(uri, start_s=8.0, end_s=9.0))  # what a render of 8-9 s decodes
    assert [f.t_s for f in got] == expected and len(got) == 25  # 25 fps
    assert got[0].image.shape == (272, 640, 3)


def test_variable_frame_rate_timestamps_come_from_pts(corpus):
    asset = corpus["vfr"]
    frames = list(iter_frames(asset.path, analysis_fps=0))
    times = np.array([f.t_s for f in frames])
    assert len(frames) == asset.n_frames
    gaps = np.diff(times)
    assert gaps.min() >= 0.019 and gaps.max() <= 0.121  # the generated 20-120 ms gaps, not a constant 40 ms
    assert gaps.std() > 0.01


@pytest.mark.parametrize("name", ["odd_size", "mjpeg_avi"])
def test_odd_sizes_and_mjpeg_decode_completely(corpus, name):
    asset = corpus[name]
    info = probe(asset.path)
    assert (info.width, info.height) == (asset.width, asset.height)
    frames = list(iter_frames(asset.path))
    assert len(frames) == asset.n_frames
    assert frames[0].image.shape == (asset.height, asset.width, 3)


def test_truncated_video_yields_its_decodable_part_with_a_warning(corpus):
    stats = DecodeStats()
    frames = list(iter_frames(corpus["truncated"].path, stats=stats))
    assert 10 < len(frames) < 60
    assert frames[-1].t_s < 60 / 25
    assert any("truncated" in w for w in stats.warnings), stats.warnings


@pytest.mark.parametrize(
    "name, error, message",
    [
        ("zero_bytes", SourceError, "file is empty"),
        ("text", DecodeError, "not a readable video container"),
        ("audio_only", DecodeError, "no video stream"),
        ("truncated_mp4", DecodeError, "not a readable video container"),
    ],
)
def test_unreadable_inputs_raise_typed_errors_that_say_why(corpus, name, error, message):
    path = corpus[name].path
    with pytest.raises(error, match=message):
        probe(path)
    with pytest.raises(error, match=message):
        list(iter_frames(path))


def test_declared_size_over_the_limit_is_refused(samples_dir):
    with pytest.raises(DecodeError, match="exceeds the limit"):
        probe(samples_dir / "bikes.mp4", max_pixels=640 * 200)


def test_memory_stays_bounded_frames_stream_one_at_a_time(samples_dir):
    import gc
    import weakref

    refs = []
    for frame in iter_frames(samples_dir / "bikes.mp4", analysis_fps=0):
        refs.append(weakref.ref(frame))
        del frame
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert len(refs) == 250 and alive <= 1


def test_hardware_decoding_where_the_device_cannot_open_falls_back_to_the_same_frames(samples_dir):
    """On CUDA nodes frames decode on NVDEC; where no device opens (here: no GPU), the same frames in software."""
    import torch
    from av.codec.hwaccel import hwdevices_available

    from videolake.pipeline.decode import use_hardware_decoding

    path = samples_dir / "bikes.mp4"
    software = [(f.frame_index, f.t_s, f.image) for f in iter_frames(path, 4.0, start_s=2.0)]
    try:
        assert use_hardware_decoding("no-such-device") is False
        assert use_hardware_decoding("cuda") is ("cuda" in hwdevices_available())  # then tried at each open
        hardware = [(f.frame_index, f.t_s, f.image) for f in iter_frames(path, 4.0, start_s=2.0)]
    finally:
        use_hardware_decoding(None)
    assert [h[:2] for h in hardware] == [s[:2] for s in software] and len(software) > 10
    if not torch.cuda.is_available():  # software both times: identical pixels (NVDEC may round differently)
        assert all(np.array_equal(h[2], s[2]) for h, s in zip(hardware, software))


def test_a_stream_that_switches_to_frames_over_the_limit_never_decodes_them_at_full_size(tmp_path):
    from tests.media import resolution_switching_ts

    asset = resolution_switching_ts(tmp_path / "switch.ts")
    info = probe(asset.path, max_pixels=64 * 64)  # the header declares 64x64: it passes
    assert (info.width, info.height) == (64, 64)
    unlimited = {f.image.shape for f in iter_frames(asset.path)}
    assert (1088, 1920, 3) in unlimited  # the file really switches to 1920x1088
    stats = DecodeStats()
    frames = list(iter_frames(asset.path, stats=stats, max_pixels=64 * 64))
    assert {f.image.shape for f in frames} == {(64, 64, 3)} and len(frames) >= 20
    assert stats.packet_errors >= 1 and any("over the limit of 4096 pixels" in w for w in stats.warnings), stats.warnings


def test_a_raw_h264_stream_named_mp4_is_held_to_the_duration_limit(tmp_path):
    from tests.media import raw_h264

    asset = raw_h264(tmp_path / "camera.mp4", seconds=4)
    info = probe(asset.path)
    assert info.duration_s == pytest.approx(4.0, abs=0.1)  # from its packets: the stream declares none
    with pytest.raises(DecodeError, match="duration 4 s exceeds the limit of 1 s"):
        probe(asset.path, max_duration_s=1)
    with pytest.raises(DecodeError, match="decoded past 1 s"):  # and while decoding, whatever a probe said
        list(iter_frames(asset.path, max_duration_s=1))
    assert len(list(iter_frames(asset.path, max_duration_s=5))) == asset.n_frames


def test_the_keyframe_index_is_bounded_and_shards_carry_none_of_it(tmp_path):
    import pickle

    from tests.media import all_intra

    asset = all_intra(tmp_path / "intra.mkv", seconds=6)
    info = probe(asset.path)
    assert len(info.keyframes_s) == 6 and np.all(np.diff(info.keyframes_s) >= 1.0)  # not 150: one a second
    assert info.keyframe_frame_indices[:2] == (0, 25)
    shipped = info.without_keyframes()
    assert shipped.keyframes_s == () and len(pickle.dumps(shipped)) < 1000
    frames = list(iter_frames(asset.path, start_s=info.keyframes_s[3], first_frame_index=info.keyframe_frame_indices[3]))
    assert frames[0].frame_index == 75 and frames[0].t_s == pytest.approx(3.0)
