"""The pretrained encoder (soundclf/features/encoders.py), its weights (stage weights) and the
embeddings stage's pieces.

tests/data/aisfx_reference.npz holds what the original aisfx 0.1.2 code computes with its
real weights (scripts/aisfx_reference.py says how it was made); the real checkpoint is the
pipeline's own (data/weights/aisfx/checkpoint.pth) or fetched once by the stage's code into pytest's
cache. Everything else runs on a checkpoint of the same network with random weights.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from scripts.aisfx_reference import reference_clip, write_wav
from scripts.make_demo_data import write_demo_weights
from soundclf.data.archive import DownloadError, sha256sum
from soundclf.data.audio import load_clip
from soundclf.features.embeddings import EncoderWindows, embed, pool
from soundclf.features.encoders import (
    CHECKPOINT,
    ENCODERS,
    AisfxFrontEnd,
    Cnn9,
    WeightsError,
    embed_windows,
    load_network,
    verify_checkpoint,
)
from soundclf.features.weights import fetch_weights
from soundclf.params import ENCODERS as ENCODER_NAMES
from soundclf.params import SCHEMA, load_params
from tests.conftest import REPO

REFERENCE = REPO / "tests/data/aisfx_reference.npz"
CPU = torch.device("cpu")
AISFX = ENCODERS["aisfx"]
# float32 convolutions sum in an order that depends on the machine and the library's
# algorithm: 1e-4 relative (with an absolute floor of 1e-4 of the largest value, about
# 1e-3) is some 1,000 float32 ulps and far below any difference between two networks.
RTOL = 1e-4


def assert_embeddings_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=RTOL,
                               atol=RTOL * float(np.abs(expected).max()))


@pytest.fixture(scope="session")
def aisfx_checkpoint(pytestconfig, tmp_path_factory) -> Path:
    """The real checkpoint, verified by the stage's code, from params.yaml's URL (kept in
    pytest's cache between runs, where there is one)."""
    params = load_params(REPO / "params.yaml")
    expected = params["weights"]["aisfx"]["sha256"]
    pipeline = REPO / "data/weights/aisfx" / CHECKPOINT
    if pipeline.is_file() and sha256sum(pipeline) == expected:
        return pipeline
    cache = getattr(pytestconfig, "cache", None)  # none with -p no:cacheprovider
    folder = Path(cache.mkdir("aisfx")) if cache else tmp_path_factory.mktemp("aisfx")
    out = folder / "aisfx" / CHECKPOINT
    if not (out.is_file() and sha256sum(out) == expected):
        try:
            fetch_weights("aisfx", params, out.parent, folder / "downloads")
        except DownloadError as exc:  # offline: nothing to compare against
            pytest.skip(f"the real aisfx weights could not be fetched: {exc}")
    return out


@pytest.fixture(scope="module")
def demo_net(tmp_path_factory) -> torch.nn.Module:
    path = tmp_path_factory.mktemp("net") / "checkpoint.pth"
    write_demo_weights(path, seed=3)
    return load_network(AISFX, path, CPU)


def clip_windows(path: Path, hop: float = 0.5, peak_normalize: bool = False) -> np.ndarray:
    recipe = EncoderWindows(sr=AisfxFrontEnd().sr, hop=hop, peak_normalize=peak_normalize)
    return recipe.compute([load_clip(path, recipe)])[0]


def test_the_network_matches_the_original_with_the_real_weights(aisfx_checkpoint, tmp_path):
    reference = np.load(REFERENCE)
    assert sha256sum(aisfx_checkpoint) == str(reference["checkpoint_sha256"])
    net = load_network(AISFX, aisfx_checkpoint, CPU)
    assert sum(p.numel() for p in net.parameters()) == 4_686_144  # and 3,848 BN buffers
    assert_embeddings_close(embed_windows(net, reference["windows"], 2, CPU),
                            reference["windows_embedding"])
    # the whole front end too, the package's way: audio file -> windows -> embeddings
    for name, seconds, count in (("clip_embedding", 6.0, 4), ("short_embedding", 1.5, 1)):
        write_wav(tmp_path / f"{name}.wav", reference_clip(seconds))
        windows = clip_windows(tmp_path / f"{name}.wav", peak_normalize=True)
        assert windows.shape == (count, 100, 96)
        assert_embeddings_close(embed_windows(net, windows, 3, CPU), reference[name])


def aisfx_format(net: torch.nn.Module, path: Path) -> Path:
    torch.save(({f"embedding_net.{k}": v for k, v in net.state_dict().items()},
                {"demo": (np.int64(0), 2)}), path)
    return path


def test_a_checkpoint_of_another_network_or_no_checkpoint_is_refused(tmp_path):
    narrow = aisfx_format(Cnn9(width=32), tmp_path / "narrow.pth")
    with pytest.raises(WeightsError, match=r"narrow.pth does not hold aisfx's network.*"
                                           r"size mismatch"):
        load_network(AISFX, narrow, CPU)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"junk.pth is not an aisfx checkpoint"):
        load_network(AISFX, junk, CPU)


def test_weights_stage_takes_the_checkpoint_out_of_the_wheel_and_verifies_it(tmp_path):
    checkpoint = tmp_path / "checkpoint.pth"
    sha256 = write_demo_weights(checkpoint)
    wheel = tmp_path / "aisfx-0.1.2-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(checkpoint, "aisfx/models/checkpoint.pth")
        zf.writestr("aisfx/__init__.py", "")
    params = {"weights": {"aisfx": {"url": wheel.as_uri(), "sha256": sha256}}}
    out = tmp_path / "out/aisfx"
    fetch_weights("aisfx", params, out, tmp_path / "cache")
    assert (out / CHECKPOINT).read_bytes() == checkpoint.read_bytes()
    verify_checkpoint(out / CHECKPOINT, sha256.upper(), "aisfx")

    other = "0" * 64
    params["weights"]["aisfx"]["sha256"] = other
    shutil.rmtree(out)
    with pytest.raises(WeightsError) as caught:
        fetch_weights("aisfx", params, out, tmp_path / "cache")
    message = str(caught.value)
    assert wheel.name in message and "aisfx/models/checkpoint.pth" in message
    assert f"has sha256 {sha256}, not the {other} of 'weights.aisfx.sha256'" in message
    assert "pip download --no-deps aisfx==0.1.2" in message
    assert not out.exists() and list(out.parent.iterdir()) == []  # nothing half-written

    other_zip = tmp_path / "other.whl"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("aisfx/__init__.py", "")
    params["weights"]["aisfx"]["url"] = str(other_zip)
    with pytest.raises(WeightsError, match=r"other.whl is an archive without "
                                           r"aisfx/models/checkpoint.pth"):
        fetch_weights("aisfx", params, out, tmp_path / "cache")

    params["weights"]["aisfx"]["url"] = str(tmp_path / "nowhere.whl")
    with pytest.raises(DownloadError, match=r"weights.aisfx.url: .*nowhere.whl does not exist"):
        fetch_weights("aisfx", params, out, tmp_path / "cache")


def test_the_embeddings_stage_refuses_missing_or_changed_weights(tmp_path):
    path = tmp_path / "aisfx.pth"
    with pytest.raises(WeightsError, match=r"aisfx.pth does not exist: the stage `weights` "
                                           r"fetches it from 'weights.aisfx.url'"):
        verify_checkpoint(path, "0" * 64, "aisfx")
    sha256 = write_demo_weights(path)
    with pytest.raises(WeightsError, match=rf"has sha256 {sha256}, not the 0{{64}} of "
                                           r"'weights.aisfx.sha256': rerun"):
        verify_checkpoint(path, "0" * 64, "aisfx")


def test_clips_of_any_length_and_silence_give_finite_embeddings(demo_net, tmp_path, wav):
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(int(44100 * 2.0), np.float32))
    clips = {wav("short.wav", target=1, seconds=0.3): 1, wav("five.wav", target=2): 3,
             wav("long.wav", target=3, seconds=12.0): 9, silent: 1}
    for path, count in clips.items():
        windows = clip_windows(path)
        assert windows.shape == (count, 100, 96), path.name
        values = embed_windows(demo_net, windows, 4, CPU)
        assert values.shape == (count, 512) and np.isfinite(values).all(), path.name
        pooled = pool(values, ["mean", "max", "std"])
        assert pooled.shape == (1536,) and np.isfinite(pooled).all()
        np.testing.assert_array_equal(pooled[512:1024], values.max(axis=0))
    assert len(clip_windows(wav("five.wav", target=2), hop=1.0)) == 2


def test_embedding_a_stream_of_clips_equals_embedding_each(demo_net, wav):
    windows = [clip_windows(wav(f"{k}.wav", target=k, seconds=s))
               for k, s in enumerate([5.0, 0.3, 7.0])]
    results = [(0, windows[0]), (1, "AudioError: unreadable"), (2, windows[1]), (3, windows[2])]
    streamed = dict(embed(iter(results), demo_net, batch_size=4, device=CPU))
    assert streamed[1] == "AudioError: unreadable"
    for i, w in zip((0, 2, 3), windows, strict=True):
        assert_embeddings_close(streamed[i], embed_windows(demo_net, w, 1, CPU))


def test_more_blocks_add_their_outputs_before_the_last_ones(demo_net, wav):
    windows = clip_windows(wav("five.wav", target=4))
    last = embed_windows(demo_net, windows, 4, CPU)
    both = embed_windows(demo_net, windows, 4, CPU, blocks=(3, 4))
    assert both.shape == (3, 256 + 512) and demo_net.width((3, 4)) == 768
    assert_embeddings_close(both[:, 256:], last)


def test_every_encoder_is_a_valid_param_with_its_weights_section():
    assert set(ENCODERS) == set(ENCODER_NAMES)  # one registry entry per weights section
    for name in ENCODERS:
        assert SCHEMA["embeddings.encoders"]([name]) is None
        assert {f"weights.{name}.url", f"weights.{name}.sha256"} <= set(SCHEMA)
    assert SCHEMA["embeddings.encoders"](["panns"]) is not None
    assert SCHEMA["embeddings.encoders"](["aisfx", "aisfx"]) is not None
    assert SCHEMA["embeddings.encoders"]([]) is not None
    assert SCHEMA["embeddings.hop"](0.001) and SCHEMA["embeddings.blocks"]([True])
