"""PANNs CNN14 (soundclf/features/panns.py): the published checkpoint's layout, its front end,
its embeddings as the authors' code computes them.

tests/data/panns_reference.npz holds what the authors' Cnn14 (qiuqiangkong/
audioset_tagging_cnn, with torchlibrosa) computes with the seeded stand-in checkpoint of
scripts/make_panns_checkpoint.py (tests/data/panns_reference.md says how it was made). The
real checkpoint cannot be downloaded here. The fast tests use a "cheap" checkpoint: the
real layout and front end, every other tensor a broadcast zero (a few MB on disk); the
encoder registry's entry (stage `weights`, the embeddings' batching) a randomly
initialized CNN14 saved in the published layout.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from scripts.make_panns_checkpoint import make_checkpoint, seeded_state, state_digest
from scripts.panns_reference import STFT_ROWS, reference_inputs
from soundclf.data.archive import sha256sum
from soundclf.features.embeddings import embed, network
from soundclf.features.encoders import CHECKPOINT, WeightsError, encoder
from soundclf.features.panns import (
    EMBEDDING,
    FRONT_END_KEYS,
    SR,
    Cnn14,
    FoldedCnn14,
    PannsFrontEnd,
    build_panns,
    embed_windows,
    expected_shapes,
    folded,
    load_embedder,
    load_panns,
    read_panns_state,
)
from soundclf.features.weights import fetch_weights
from tests.conftest import REPO

REFERENCE = REPO / "tests/data/panns_reference.npz"
CPU = torch.device("cpu")
FRONT = PannsFrontEnd()
# float32 convolutions sum in an order that depends on the machine, the batch and oneDNN's
# algorithm: the project's module and the original were seen to differ by at most 2.4e-5
# (embeddings up to 26); 1e-4 relative plus 1e-4 absolute is far below any difference
# between two networks or front ends.
RTOL = ATOL = 1e-4


def cheap_state() -> dict[str, torch.Tensor]:
    """CNN14's layout with the real front end and zeros elsewhere, stored as one-element
    broadcasts (torch.save writes the storage: a few bytes a key)."""
    front = FRONT.buffers()
    state = {}
    for key, shape in expected_shapes().items():
        if key in front:
            state[key] = torch.from_numpy(front[key])
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        else:
            state[key] = torch.ones(1).expand(shape) if key.endswith("running_var") \
                else torch.zeros(1).expand(shape)
    return state


def save(path: Path, state: dict, legacy: bool = False, **extra) -> Path:
    torch.save({"model": state, **extra}, path, _use_new_zipfile_serialization=not legacy)
    return path


# --- the front end ---------------------------------------------------------------------


def test_the_front_end_is_torchlibrosas():
    reference = np.load(REFERENCE)
    buffers = FRONT.buffers()
    np.testing.assert_allclose(buffers["logmel_extractor.melW"], reference["melW"],
                               rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        buffers["spectrogram_extractor.stft.conv_real.weight"][STFT_ROWS, 0],
        reference["stft_real_rows"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        buffers["spectrogram_extractor.stft.conv_imag.weight"][STFT_ROWS, 0],
        reference["stft_imag_rows"], rtol=0, atol=1e-6)
    assert [buffers[k].shape for k in FRONT_END_KEYS] == [(513, 1, 1024), (513, 1, 1024),
                                                          (513, 64)]


def test_the_log_mel_is_the_originals(tmp_path):
    net = load_panns(save(tmp_path / "cheap.pth", cheap_state()))
    with torch.inference_mode():
        logmel = net.logmel(torch.from_numpy(reference_inputs()["short"])[None])[0]
    expected = np.load(REFERENCE)["logmel"]
    assert logmel.shape == expected.shape == (51, 64)
    np.testing.assert_allclose(logmel.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_windows_whole_clips_and_windowed_long_ones():
    one = FRONT.windows(np.ones(5 * SR, np.float32))
    assert one.shape == (1, 5 * SR) and one.dtype == np.float32
    assert FRONT.windows(np.ones(10 * SR)).shape == (1, 10 * SR)  # up to the window: whole
    short = FRONT.windows(np.ones(1000, np.float32))  # padded to 32 frames
    assert short.shape == (1, FRONT.min_samples) and short[0, 1000:].max() == 0
    y = np.arange(int(10.5 * SR), dtype=np.float32)
    w = FRONT.windows(y, hop=0.5)  # 0-10 s and, ending at the end, 0.5-10.5 s
    assert w.shape == (2, 10 * SR) and w[0, 0] == 0 and w[1, -1] == y[-1]
    assert w[1, 0] == y[SR // 2]
    w = FRONT.windows(np.arange(25 * SR, dtype=np.float32), hop=0.5)
    assert [int(s) for s in w[:, 0] / SR] == [0, 5, 10, 15]
    resampled = FRONT.windows(np.zeros(44100, np.float32), sr=44100)
    assert resampled.shape == (1, SR)
    with pytest.raises(ValueError, match="hop"):
        FRONT.windows(y, hop=0)
    with pytest.raises(ValueError, match="mono"):
        FRONT.windows(np.zeros((2, SR)))


# --- the checkpoint -------------------------------------------------------------------


def test_the_layout_is_the_published_checkpoints():
    shapes = expected_shapes()
    assert len(shapes) == 84
    assert sum(int(np.prod(s)) for s in shapes.values()) == 81_853_340  # 327.4 MB float32
    assert shapes["conv_block6.conv2.weight"] == (2048, 2048, 3, 3)
    assert shapes["fc_audioset.weight"] == (527, 2048)
    assert shapes["bn0.running_var"] == (64,)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_checkpoint_of_the_layout_loads_strictly(tmp_path, legacy):
    # numpy arrays beside the state (the authors' training code saves its sampler's) are
    # fine, and so is torch's format before 1.6 (the published file's age: 2020)
    path = save(tmp_path / "cheap.pth", cheap_state(), legacy=legacy, iteration=660000,
                sampler={"indexes": np.arange(5)})
    net = load_panns(path)
    assert isinstance(net, Cnn14) and not net.training
    assert net.state_dict().keys() == expected_shapes().keys()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update({"conv_block3.conv2.weight": torch.zeros(256, 128, 3, 3)}),
     "'conv_block3.conv2.weight' has shape (256, 128, 3, 3), not CNN14's (256, 256, 3, 3)"),
    (lambda s: s.update({"fc_audioset.weight": torch.zeros(1).expand(10, 2048)}),
     "'fc_audioset.weight' has shape (10, 2048), not CNN14's (527, 2048)"),
    (lambda s: s.pop("fc1.bias"), "it lacks 'fc1.bias'"),
    (lambda s: s.update({"fc_extra.weight": torch.zeros(3)}), "it has 'fc_extra.weight'"),
    # another front end: the 16 kHz model's mel bands (up to 8 kHz), a Hamming window
    (lambda s: s.update({"logmel_extractor.melW": torch.from_numpy(
        PannsFrontEnd(fmax=8000).mel_matrix())}), "'logmel_extractor.melW' is not the front"),
    (lambda s: s["spectrogram_extractor.stft.conv_imag.weight"].mul_(1.001),
     "'spectrogram_extractor.stft.conv_imag.weight' is not the front end's"),
])
def test_a_checkpoint_of_another_network_is_refused_naming_the_key(tmp_path, change, message):
    state = cheap_state()
    change(state)
    path = save(tmp_path / "other.pth", state)
    with pytest.raises(WeightsError, match=re.escape(message)) as info:
        load_panns(path)
    assert str(path) in str(info.value)


def test_files_that_are_no_panns_checkpoint_are_refused(tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save(cheap_state(), bare)  # a state dict without the 'model' entry
    with pytest.raises(WeightsError, match="bare.pth is not a PANNs checkpoint: it holds a "
                                           "dict of 'spectrogram_extractor"):
        read_panns_state(bare)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth is not a PANNs checkpoint"):
        read_panns_state(junk)


# --- the network ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_net() -> Cnn14:
    """CNN14 with the seeded stand-in's weights (scripts/make_panns_checkpoint.py), built in
    memory: torch's default initialization would let activations fade to near zero over
    the 12 convolutions, so that every clip got about the same embedding."""
    return build_panns(seeded_state(0)).to(memory_format=torch.channels_last)


def test_embed_windows_batches_equal_lengths_and_keeps_the_order(random_net):
    inputs = reference_inputs()
    n = FRONT.min_samples  # the shortest: 0.31 s
    clips = [inputs["noise_1s"][:n], inputs["sine_5s"][:n], inputs["short"][:n + 2 * 320]]
    together = embed_windows(random_net, clips, batch_size=2, device=CPU)
    assert together.shape == (3, EMBEDDING) and together.dtype == np.float32
    alone = np.concatenate([embed_windows(random_net, [c], 1, CPU) for c in clips])
    scale = np.abs(alone).max()
    np.testing.assert_allclose(together, alone, rtol=RTOL, atol=ATOL * scale)
    for i in range(2):  # each clip has its own embedding
        assert np.abs(together[i] - together[i + 1]).max() > 1e-2 * scale
    assert embed_windows(random_net, np.zeros((0, SR), np.float32), 4, CPU).shape == (0, 2048)


def test_the_folded_network_computes_what_the_network_does(random_net):
    clip = torch.from_numpy(reference_inputs()["mix_10s"][None, :SR // 2])
    with torch.inference_mode():
        plain = random_net(clip).numpy()
        fast = folded(random_net)(clip).numpy()
    np.testing.assert_allclose(fast, plain, rtol=RTOL, atol=ATOL * np.abs(plain).max())
    assert folded(random_net) is folded(random_net)  # made once, kept beside the network
    assert "_folded" not in "".join(random_net.state_dict())
    with pytest.raises(ValueError, match="computes in torch.float32, not torch.bfloat16"):
        folded(folded(random_net), torch.bfloat16)


def test_bf16_is_close_and_returns_float32(random_net):
    clip = reference_inputs()["mix_10s"][None, :SR // 2]
    fp32 = embed_windows(random_net, clip, 1, CPU)
    bf16 = embed_windows(random_net, clip, 1, CPU, dtype=torch.bfloat16)
    assert bf16.dtype == np.float32 and folded(random_net, torch.bfloat16).convs[0].weight \
        .dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa: seen 0.4-0.5 % (relative L2) with the seeded weights
    assert np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32) < 0.03


# --- the full-size stand-in against the original ----------------------------------------


@pytest.mark.slow
def test_the_module_matches_the_original_with_the_seeded_checkpoint(tmp_path):
    reference = np.load(REFERENCE)
    state = seeded_state(0)
    assert state_digest(state) == str(reference["state_digest"])
    path = make_checkpoint(tmp_path / "Cnn14_seeded.pth")
    assert 327e6 < path.stat().st_size < 328e6  # the published file's 327 MB
    net = load_panns(path)
    inputs = reference_inputs()
    embedder = load_embedder(path)
    assert isinstance(embedder, FoldedCnn14)
    np.testing.assert_allclose(embed_windows(embedder, inputs["mix_10s"][None], 1, CPU)[0],
                               reference["mix_10s"], rtol=RTOL, atol=ATOL)
    for name, y in inputs.items():
        windows = FRONT.windows(y)
        assert windows.shape == (1, len(y))  # whole, at its own length
        embedding = embed_windows(net, windows, 2, CPU)[0]
        np.testing.assert_allclose(embedding, reference[name], rtol=RTOL, atol=ATOL,
                                   err_msg=name)
        with torch.inference_mode():
            tags = net.tags(torch.from_numpy(embedding)[None])[0].numpy()
        np.testing.assert_allclose(tags, reference[f"{name}_tags"], rtol=RTOL, atol=ATOL,
                                   err_msg=name)
    # batched as the pipeline does: two clips of one length at once
    both = embed_windows(net, [inputs["sine_5s"], inputs["sine_5s"]], 2, CPU)
    np.testing.assert_allclose(both, np.stack([reference["sine_5s"]] * 2), rtol=RTOL,
                               atol=ATOL)


# --- the encoder registry's entry ------------------------------------------------------


@pytest.fixture(scope="module")
def random_checkpoint(random_net, tmp_path_factory) -> Path:
    """random_net saved as the published file is (its state dict as ``model``)."""
    return save(tmp_path_factory.mktemp("panns") / "Cnn14_random.pth", random_net.state_dict())


def test_the_weights_stage_checks_the_checkpoint_and_warns_when_unpinned(
        random_checkpoint, tmp_path, capsys):
    params = {"weights": {"panns_cnn14": {"url": str(random_checkpoint), "sha256": None}}}
    fetch_weights("panns_cnn14", params, tmp_path / "weights", tmp_path / "cache")
    digest = sha256sum(random_checkpoint)
    assert sha256sum(tmp_path / "weights" / CHECKPOINT) == digest
    warned = capsys.readouterr().err
    assert "'weights.panns_cnn14.sha256' is null" in warned and f"sha256: {digest}" in warned
    params["weights"]["panns_cnn14"]["sha256"] = "0" * 64
    with pytest.raises(WeightsError, match=f"has sha256 {digest}, not the 0{{64}} of "
                                           "'weights.panns_cnn14.sha256'"):
        fetch_weights("panns_cnn14", params, tmp_path / "other", tmp_path / "cache")
    assert not (tmp_path / "other").exists()


def test_the_registry_entry_embeds_clips_of_several_lengths_as_the_module_does(
        random_net, random_checkpoint):
    folder = random_checkpoint.parent
    shutil.copy(random_checkpoint, folder / CHECKPOINT)
    params = {"embeddings": {"hop": 1.0, "precision": "fp32"}}
    recipe = encoder("panns_cnn14").windows(params, "digest", "cpu", folder)
    assert recipe.sr == SR and recipe.duration is None  # whole clips, read at 32 kHz
    rng = np.random.default_rng(0)
    # whole clips of three lengths, the 11 s one in two 10 s windows; a failure passes
    lengths = [SR // 2, SR, SR, 11 * SR, SR // 2]
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in lengths]
    windows = recipe.compute(clips)
    assert [w.shape for w in windows] == [(1, SR // 2), (1, SR), (1, SR), (2, 10 * SR),
                                          (1, SR // 2)]
    results = [(0, windows[0]), (1, windows[1]), (2, "unreadable"), (3, windows[2]),
               (4, windows[3]), (5, windows[4])]
    done = dict(embed(iter(results), network(recipe, folder, CPU), batch_size=4))
    assert done.pop(2) == "unreadable" and sorted(done) == [0, 1, 3, 4, 5]
    for i, w in zip([0, 1, 3, 4, 5], windows, strict=True):
        alone = embed_windows(random_net, w, 1, CPU)
        assert done[i].shape == (len(w), EMBEDDING)
        np.testing.assert_allclose(done[i], alone, rtol=RTOL,
                                   atol=ATOL * np.abs(alone).max(), err_msg=str(i))
