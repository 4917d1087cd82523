"""The log-mel CNN: its spectrograms, that it hears time structure, determinism, its stage."""

from __future__ import annotations

import copy
import zipfile

import librosa
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from soundclf.devices import autocast_dtype
from soundclf.evaluation.probabilities import TrainingError
from soundclf.evaluation.rounds import Round
from soundclf.features.spectrograms import LogMelSpectrogram, write_spectrograms
from soundclf.models import get
from soundclf.models.cnn import ConvNet, SpectrogramCNN
from soundclf.params import ParamError
from soundclf.table import load_inputs
from stages import train
from tests.conftest import REPO

FEATURES_EXEC = {"n_jobs": 1, "batch_size": 4, "backend": "local", "scheduler": None,
                 "on_error": "fail"}
SMALL = {"channels": [8, 16], "dropout": 0.0, "epochs": 12, "lr": 0.01, "batch_size": 16,
         "wd": None, "shift": 0.25, "freq_mask": 2, "time_mask": 4, "mixup": 0.0,
         "class_weights": "none", "grad_clip": None, "early_stopping": None,
         "early_stopping_valid": 0.1, "device": "cpu",
         "precision": "fp32"}


def test_spectrograms_match_a_direct_librosa_computation(esc50_zip, tmp_path):
    with zipfile.ZipFile(esc50_zip) as zf:
        zf.extractall(tmp_path / "raw")
    csv = tmp_path / "raw/ESC-50-master/meta/esc50.csv"
    csv.write_text("\n".join(csv.read_text().splitlines()[:13]) + "\n")  # 12 clips
    section = {"sr": 22050, "duration": 5.0, "n_fft": 1024, "hop_length": 512, "n_mels": 64}
    params = {"spectrograms": section, "features": FEATURES_EXEC}
    assert write_spectrograms("esc50", tmp_path / "raw", params, tmp_path / "s.npz",
                              tmp_path / "c") == []
    rows, values = load_inputs(tmp_path / "s.npz")
    meta = pd.read_csv(tmp_path / "raw/ESC-50-master/meta/esc50.csv")
    assert list(rows) == list(meta["filename"]) and values.dtype == np.float16
    assert values.shape == (12, 64, 1 + 5 * 22050 // 512)
    for name in meta["filename"][:3]:
        y, _ = librosa.load(tmp_path / "raw/ESC-50-master/audio" / name, sr=22050, duration=5)
        y = np.pad(y, (0, 5 * 22050 - len(y)))
        direct = librosa.power_to_db(librosa.feature.melspectrogram(
            y=y, sr=22050, n_fft=1024, hop_length=512, n_mels=64), ref=np.max)
        # float16 keeps 11 significant bits: 0.03 dB at -64 to -128 dB, half a step
        np.testing.assert_allclose(values[rows[name]], direct, atol=0.05, rtol=1e-3)
    assert LogMelSpectrogram.from_params(section).n_samples == 110250


def rhythm_set(n_per_class: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel-like clips (16 bands x 64 frames) of two classes with the same clicks, in
    the same number and with the same spectrum: class "single" has four isolated clicks,
    class "double" two pairs (two frames apart). Per band, their mean and standard
    deviation over time are the same; only the time structure differs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (2 * n_per_class, 16, 64)).astype(np.float32)
    shape = rng.uniform(4, 8, 16).astype(np.float32)  # the clicks' spectrum, shared
    labels = np.repeat(["single", "double"], n_per_class)
    for clip, label in zip(x, labels, strict=True):
        if label == "single":
            starts = rng.choice(np.arange(2, 62, 8), 4, replace=False)
        else:
            pairs = rng.choice(np.arange(2, 58, 14), 2, replace=False)
            starts = np.concatenate([pairs, pairs + 3])
        clip[:, starts] += shape[:, None]
    return x, labels


def test_the_cnn_hears_time_structure_that_summary_statistics_average_away():
    x, labels = rhythm_set()
    valid = np.arange(len(x)) % 4 == 0
    cnn = SpectrogramCNN(**SMALL, seed=0).fit(x[~valid], labels[~valid])
    cnn_accuracy = (cnn.predict(x[valid]) == labels[valid]).mean()

    summary = np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)  # per band, as the
    table = pd.DataFrame(summary, columns=[f"mel_mean_{i}" for i in range(32)])  # features
    svc = get("svc").build({"seed": 0, "svc": {"C": 0.1, "max_iter": 1000, "dual": True,
                                               "class_weight": "none",
                                               "block_weights": "none"}}, list(table))
    svc_accuracy = (svc.fit(summary[~valid], labels[~valid]).predict(summary[valid])
                    == labels[valid]).mean()
    assert cnn_accuracy >= 0.9, cnn_accuracy
    assert svc_accuracy <= 0.75, svc_accuracy  # chance is 0.5
    assert cnn_accuracy - svc_accuracy >= 0.25


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_relu_after_the_pool_gives_the_values_and_gradients_of_relu_before_it(dtype):
    """The blocks pool before their ReLU (a quarter of the values through it): max and
    relu commute, so the network is, to the bit, the textbook conv-BN-ReLU-pool one."""
    torch.manual_seed(0)
    net = ConvNet([8, 16], 5, 0.0, dtype).to(memory_format=torch.channels_last)
    textbook = copy.deepcopy(net)
    textbook.features = torch.nn.Sequential(*[textbook.features[i] for i in (0, 1, 3, 2,
                                                                             4, 5, 7, 6)])
    assert [type(m).__name__ for m in textbook.features[:4]] == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    x = torch.randn(6, 1, 16, 64)
    outputs = []
    for model in (net, textbook):
        out = model(x)
        out.square().sum().backward()
        outputs.append((out, [p.grad for p in model.parameters()]))
    assert torch.equal(outputs[0][0], outputs[1][0])
    for a, b in zip(outputs[0][1], outputs[1][1], strict=True):
        assert torch.equal(a, b)


def test_cpu_training_is_deterministic():
    x, labels = rhythm_set(n_per_class=20, seed=1)
    probs = [SpectrogramCNN(**{**SMALL, "epochs": 3, "mixup": 0.4}, seed=3).fit(
        x, labels).predict_proba(x) for _ in range(2)]
    np.testing.assert_array_equal(probs[0], probs[1])


def test_bf16_training_hears_the_rhythm_too_and_is_deterministic():
    """bf16 autocast (the default where the CPU has it natively, else emulated): the
    logits stay float32 and the same seed gives the same model."""
    x, labels = rhythm_set()
    valid = np.arange(len(x)) % 4 == 0
    runs = [SpectrogramCNN(**{**SMALL, "precision": "bf16"}, seed=0).fit(x[~valid], labels[~valid])
            for _ in range(2)]
    logits = [r.decision_function(x[valid]) for r in runs]
    assert logits[0].dtype == np.float32
    np.testing.assert_array_equal(logits[0], logits[1])
    assert (runs[0].predict(x[valid]) == labels[valid]).mean() >= 0.9


def test_precision_auto_is_bf16_only_where_the_device_has_it():
    cpu = torch.device("cpu")
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert autocast_dtype("auto", cpu, "k") is (torch.bfloat16 if native else None)
    assert autocast_dtype("bf16", cpu, "k") is torch.bfloat16
    assert autocast_dtype("fp32", cpu, "k") is None
    with pytest.raises(ParamError, match=r"'cnn.training.precision' is 'fp16': use one of"):
        autocast_dtype("fp16", cpu, "cnn.training.precision")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_refused_naming_the_param():
    x, labels = rhythm_set(n_per_class=4)
    with pytest.raises(ParamError, match=r"'cnn.training.device' is cuda, but torch sees no GPU"):
        SpectrogramCNN(**{**SMALL, "device": "cuda"}).fit(x, labels)


def test_the_stage_reads_spectrograms_by_clip_for_every_round(tmp_path, monkeypatch):
    x, labels = rhythm_set(n_per_class=24, seed=2)
    names = [f"{i}.wav" for i in range(len(x))]
    order = np.random.default_rng(0).permutation(len(x))  # the file's order is its own
    with open(tmp_path / "s.npz", "wb") as f:
        np.savez(f, filename=np.array(names)[order], values=x[order].astype(np.float16))
    table = pd.DataFrame({"filename": names, "label": labels, "stft_mean_0": 0.0})
    rounds = [table.assign(round=f"r{k}", split=np.where(np.arange(len(x)) % 2 == k,
                                                           "valid", "train")) for k in (0, 1)]
    pd.concat(rounds).to_parquet(tmp_path / "normalized.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["cnn"]["training"] = SMALL
    params["tune"]["n_jobs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    args = ["normalized.parquet", "m.joblib", "m.json", "p.csv"]
    train.main(["cnn", *args, "--inputs", "s.npz", "--curves", "curves"])
    metrics = yaml.safe_load((tmp_path / "m.json").read_text())
    assert list(metrics["rounds"]) == ["r0", "r1"] and metrics["accuracy"] >= 0.8
    assert (tmp_path / "curves/eval/loss.tsv").is_file()
    with pytest.raises(SystemExit, match="model cnn reads spectrograms: give them with "
                                         "--inputs"):
        train.main(["cnn", *args])
    with pytest.raises(SystemExit, match="s.npz has no entry for 1 clip"):
        with open(tmp_path / "s.npz", "wb") as f:
            np.savez(f, filename=np.array(names[1:]), values=x[1:].astype(np.float16))
        train.main(["cnn", *args, "--inputs", "s.npz"])


def test_a_round_cut_for_tune_keeps_its_inputs_aligned():
    x, labels = rhythm_set(n_per_class=5)
    table = pd.DataFrame({"filename": [f"{i}" for i in range(10)], "label": labels,
                          "split": ["train", "valid"] * 5})
    rnd = Round("r", table, [], x)
    inner = rnd.part("train", "r/inner1", np.array([True, False, False, True, False]))
    train_rows = np.flatnonzero(table["split"] == "train")
    np.testing.assert_array_equal(inner.xy("valid")[0], x[train_rows[[0, 3]]])
    np.testing.assert_array_equal(inner.xy("train")[1], labels[train_rows[[1, 2, 4]]])


def test_a_diverging_cnn_names_its_own_learning_rate():
    x, labels = rhythm_set(n_per_class=8)
    with pytest.raises(TrainingError, match=r"loss became nan in epoch \d+; lower "
                                            r"cnn\.training\.lr$"):
        SpectrogramCNN(**{**SMALL, "lr": 1e30, "epochs": 2}).fit(x, labels)
