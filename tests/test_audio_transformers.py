"""CLAP and AST through transformers (soundclf.features.audio_transformers), their weights as
a Hub repository (soundclf.features.hub), and CLAP's zero-shot model
(soundclf.models.zeroshot).

Everything runs on tiny configurations of the real transformers classes with random
weights (tests/hub_models.py), served as a local copy of the repository: the embeddings
the stage computes must equal what transformers itself gives for the same audio, read at
the feature extractor's rate. Random weights classify by chance: the zero-shot tests check
the mechanics (prompts, similarities, probabilities, label order), not accuracy.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import librosa
import numpy as np
import pandas as pd
import pytest
import torch
import transformers
import yaml
from safetensors.torch import load_file, save_file

from soundclf.data.audio import load_clip
from soundclf.features.embeddings import embed, encoder_windows, network, pool, weights_identity
from soundclf.features.encoders import WeightsError
from soundclf.features.weights import fetch_weights
from soundclf.models import zeroshot
from soundclf.params import SCHEMA
from tests.conftest import REPO
from tests.hub_models import WRITERS

CPU = torch.device("cpu")
# float32 through a transformer of a few layers, batched differently: 1e-5 relative to the
# largest value is some 100 float32 ulps, far below what another network or input gives
RTOL = 1e-5


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, tuple]:
    """Each encoder's tiny repository (its folder and files' digests)."""
    base = tmp_path_factory.mktemp("hub")
    return {name: (base / name, write(base / name)) for name, write in WRITERS.items()}


def section(repos: dict, name: str, digests: bool = True) -> dict:
    folder, found = repos[name]
    return {"repo": f"test/{name}", "revision": None, "url": str(folder),
            "sha256": dict(found) if digests else None}


def base_params(**embeddings) -> dict:
    return {"embeddings": {"hop": 1.0, "blocks": [4], "peak_normalize": False,
                           "pooling": ["mean", "max"], "batch_size": 3, **embeddings}}


@pytest.fixture(scope="module")
def fetched(repos, tmp_path_factory) -> dict:
    """Each repository through the weights stage's code, as data/weights/<encoder>/."""
    out = tmp_path_factory.mktemp("weights")
    params = {"weights": {name: section(repos, name) for name in repos}}
    params["weights"]["ast"]["url"] = repos["ast"][0].as_uri()  # a file:// URL works the same
    for name in repos:
        url = params["weights"][name]["url"]
        assert fetch_weights(name, params, out / name, out / "cache") == url
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(repos[name][1])
    return {"folder": out, "params": params}


def stage_embeddings(name: str, fetched: dict, paths: list, precision: str = "fp32"
                     ) -> list[np.ndarray]:
    """Each clip's window embeddings as the embeddings stage computes them."""
    params = {**base_params(encoder=name, precision=precision),
              "weights": fetched["params"]["weights"]}
    folder = fetched["folder"] / name
    recipe = encoder_windows(params, CPU, folder, weights_identity(name, params, folder))
    net = network(recipe, folder, CPU)
    windows = [(i, recipe.compute([load_clip(p, recipe)])[0]) for i, p in enumerate(paths)]
    return [w for _, w in sorted(embed(iter(windows), net, batch_size=3))]


def transformers_embedding(name: str, folder, audio: list[np.ndarray]) -> np.ndarray:
    """What transformers gives for the same audio: the repository's own processor and model."""
    if name == "clap":
        model = transformers.ClapModel.from_pretrained(folder).eval()
        extractor = transformers.ClapFeatureExtractor.from_pretrained(folder,
                                                                      truncation="rand_trunc")
        inputs = extractor(audio, sampling_rate=48000, return_tensors="pt")
        with torch.no_grad():
            return model.get_audio_features(**inputs).pooler_output.numpy()
    model = transformers.ASTModel.from_pretrained(folder).eval()
    extractor = transformers.ASTFeatureExtractor.from_pretrained(folder)
    inputs = extractor(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).pooler_output.numpy()


@pytest.mark.parametrize("name, sr, dim", [("clap", 48000, 8), ("ast", 16000, 16)])
def test_the_embeddings_are_what_transformers_gives(name, sr, dim, fetched, wav):
    paths = [wav("five.wav", target=1), wav("short.wav", target=2, seconds=0.4),
             wav("long.wav", target=3, seconds=13.0)]
    found = stage_embeddings(name, fetched, paths)
    assert [len(w) for w in found] == [1, 1, 2]  # 13 s: two windows, the last ending with it
    folder = fetched["folder"] / name
    for path, windows in zip(paths, found, strict=True):
        y = librosa.load(path, sr=sr)[0]
        window = 480000 if name == "clap" else 163840
        parts = [y] if len(y) <= window else [y[:window], y[-window:]]
        expected = transformers_embedding(name, folder, parts)
        assert windows.shape == (len(parts), dim) and np.isfinite(windows).all()
        np.testing.assert_allclose(windows, expected, rtol=RTOL,
                                   atol=RTOL * float(np.abs(expected).max()))
        pooled = pool(windows, ["mean", "max"])
        np.testing.assert_allclose(pooled[:dim], expected.mean(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["clap", "ast"])
def test_bf16_autocast_gives_the_fp32_embeddings_to_its_rounding(name, fetched, wav):
    paths = [wav("five.wav", target=1)]
    fp32 = stage_embeddings(name, fetched, paths)[0]
    bf16 = stage_embeddings(name, fetched, paths, "bf16")[0]
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)
    # bf16 keeps 8 bits of mantissa: a few 1e-3 relative through a few layers
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * float(np.abs(fp32).max()))


def test_a_local_copy_is_checked_file_by_file(repos, tmp_path):
    folder, found = repos["clap"]
    params = {"weights": {"clap": section(repos, "clap")}}
    wrong = {**found, "config.json": "0" * 64}
    params["weights"]["clap"]["sha256"] = wrong
    out = tmp_path / "weights/clap"
    with pytest.raises(WeightsError, match=rf"config.json of {folder} has sha256 "
                                           rf"{found['config.json']}, not the 0{{64}} of "
                                           r"'weights.clap.sha256'"):
        fetch_weights("clap", params, out, tmp_path / "cache")
    assert not out.exists() and list(out.parent.iterdir()) == []  # nothing half-written
    params["weights"]["clap"]["sha256"] = {**found, "pytorch_model.bin": "0" * 64}
    with pytest.raises(WeightsError, match=r"has no file pytorch_model.bin, which "
                                           r"'weights.clap.sha256' lists"):
        fetch_weights("clap", params, out, tmp_path / "cache")
    params["weights"]["clap"].update(url=str(tmp_path / "nowhere"), sha256=None)
    with pytest.raises(WeightsError, match=r"'weights.clap.url': .*nowhere does not exist"):
        fetch_weights("clap", params, out, tmp_path / "cache")
    # the copy of another model (AST's files where CLAP's should be) is refused too, and
    # so is a CLAP with weights missing (transformers alone would start them at random)
    params["weights"]["clap"].update(url=str(repos["ast"][0]))
    with pytest.raises(WeightsError, match=r"config.json is of a "
                                           r"'audio-spectrogram-transformer' model, not clap's"):
        fetch_weights("clap", params, out, tmp_path / "cache")
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    state = load_file(partial / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("text_projection.")},
              partial / "model.safetensors", metadata={"format": "pt"})
    params["weights"]["clap"].update(url=str(partial))
    with pytest.raises(WeightsError, match=r"partial does not hold clap's ClapModel: its "
                                           r"weights lack or mismatch 4 of the model's, e.g. "
                                           r"text_projection.linear1.bias"):
        fetch_weights("clap", params, out, tmp_path / "cache")
    assert not out.exists()


def test_the_embeddings_stage_refuses_weights_changed_since(fetched, tmp_path):
    params = {"weights": {"clap": {**fetched["params"]["weights"]["clap"]}}}
    params["weights"]["clap"]["sha256"] = {"model.safetensors": "1" * 64}
    with pytest.raises(WeightsError, match=r"model.safetensors of .*clap has sha256 "
                                           r"[0-9a-f]{64}, not the 1{64}"):
        weights_identity("clap", params, fetched["folder"] / "clap")
    with pytest.raises(WeightsError, match=r"missing does not exist: the stage `weights` "
                                           r"fetches it from 'weights.clap'"):
        weights_identity("clap", params, tmp_path / "missing")


def test_with_no_network_the_error_names_the_repository_and_the_param(tmp_path):
    """The Hub unreachable (a closed port stands for no network): the stage exits naming
    the repository and the param that takes a local copy, and writes nothing."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["embeddings"]["encoders"] = ["clap"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
           "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2",
           "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    result = subprocess.run([sys.executable, "-m", "stages.weights", "clap", "data/weights/clap",
                             "--cache", "data/downloads"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "weights clap: could not fetch https://huggingface.co/laion/clap-htsat-unfused" \
        in result.stderr, result.stderr
    assert "set 'weights.clap.url' to that folder" in result.stderr
    assert "is fetched as it is now, not at a pinned commit" in result.stderr  # revision null
    assert not (tmp_path / "data/weights/clap").exists()


def test_hub_params_are_checked():
    assert SCHEMA["weights.clap.repo"]("laion/clap-htsat-unfused") is None
    assert SCHEMA["weights.clap.repo"]("clap") is not None
    assert SCHEMA["weights.clap.revision"]("a" * 40) is None
    assert SCHEMA["weights.clap.revision"]("main") is not None
    assert SCHEMA["weights.ast.sha256"]({"config.json": "a" * 64}) is None
    assert SCHEMA["weights.ast.sha256"]({"config.json": "xyz"}) is not None
    assert SCHEMA["weights.ast.url"](None) is None


# zero-shot

def test_prompts_are_the_class_names_as_words():
    assert zeroshot.prompt("chirping_birds") == "This is a sound of chirping birds."
    assert zeroshot.prompt("Accelerating_and_revving_and_vroom", "a {} noise") == \
        "a Accelerating and revving and vroom noise"
    assert zeroshot.prompt(" dog  bark ") == "This is a sound of dog bark."


def test_zero_shot_scores_by_cosine_similarity_with_the_model_logit_scale(fetched):
    folder = fetched["folder"] / "clap"
    params = {"zeroshot": {"template": "This is a sound of {}."},
              "embeddings": {"pooling": ["max", "mean"]}}
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 16))  # max then mean of 8 values
    model = zeroshot.build(params, None, weights=folder)
    model.fit(X, np.array(["rain", "dog", "chirping_birds", "dog"]))
    assert list(model.classes_) == ["chirping_birds", "dog", "rain"]  # sorted, as sklearn
    assert model.prompts_[0] == "This is a sound of chirping birds."
    # the text embeddings are transformers' own, for those prompts
    clap = transformers.ClapModel.from_pretrained(folder).eval()
    tokens = transformers.AutoTokenizer.from_pretrained(folder)(
        model.prompts_, padding=True, return_tensors="pt")
    with torch.no_grad():
        text = clap.get_text_features(**tokens).pooler_output.numpy()
        scale = float(clap.logit_scale_a.exp())
    np.testing.assert_allclose(model.text_, text / np.linalg.norm(text, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    audio = X[:, 8:] / np.linalg.norm(X[:, 8:], axis=1, keepdims=True)  # the mean part
    cosine = audio @ model.text_.T
    np.testing.assert_allclose(model.similarity(X), cosine, rtol=1e-6)
    probs = model.predict_proba(X)
    expected = np.exp(scale * cosine)
    np.testing.assert_allclose(probs, expected / expected.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert list(model.predict(X)) == list(model.classes_[cosine.argmax(axis=1)])
    # labels in the order given, for typed labels
    typed = zeroshot.build(params, None, weights=folder).fit(None, None, ["siren", "dog bark"])
    assert list(typed.classes_) == ["siren", "dog bark"]
    with pytest.raises(ValueError, match=r"expected 8 values per pooling statistic"):
        model.predict_proba(X[:, :8])


def test_the_zero_shot_model_needs_the_weights_folder():
    params = {"zeroshot": {"template": "{}"}, "embeddings": {"pooling": ["mean"]}}
    with pytest.raises(ValueError, match=r"needs CLAP's weights folder"):
        zeroshot.build(params).fit(None, ["a", "b"])
    with pytest.raises(ValueError, match=r"add mean to 'embeddings.pooling'"):
        zeroshot.build({**params, "embeddings": {"pooling": ["std"]}})
    assert SCHEMA["zeroshot.template"]("no slot") is not None


def test_params_refuse_zero_shot_without_clap():
    from soundclf.params import problems
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["zeroshot"]["datasets"] = ["esc50"]
    assert "'zeroshot.datasets' needs clap's embeddings: add clap to 'embeddings.encoders'" \
        in problems(params)
    params["embeddings"]["encoders"] = ["aisfx", "clap"]
    assert problems(params) == []
    params["embeddings"]["encoder"] = "aisfx"  # the old key
    assert any("now 'embeddings.encoders'" in p for p in problems(params))
    assert json.dumps(params)  # (plain data)


def test_predict_labels_classifies_into_typed_labels_with_no_training(fetched, wav, tmp_path,
                                                                      monkeypatch, capsys):
    """No model trained (no file for it): params.yaml's settings, CLAP's weights folder,
    and the labels as typed, in their order."""
    from soundclf import predict

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["embeddings"]["encoders"] = ["aisfx", "clap"]
    params["weights"]["clap"] = fetched["params"]["weights"]["clap"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    clips = [wav("a.wav", target=1, seconds=2.0), wav("b.wav", target=2, seconds=12.0)]
    out = tmp_path / "labels.csv"
    common = ["--weights", str(fetched["folder"]), "--models", str(tmp_path / "models")]
    predict.main(["esc50", "zeroshot-clap", *map(str, clips), "--labels",
                  " siren, dog bark,rain ", "--csv", str(out), *common])
    table = pd.read_csv(out)
    assert list(table.columns) == ["filename", "predicted", "p_siren", "p_dog bark", "p_rain"]
    probs = table.filter(like="p_").to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    # what the zero-shot model gives the clips' CLAP embeddings, pooled as params.yaml says
    embedded = stage_embeddings("clap", fetched, clips)
    X = np.stack([pool(w, params["embeddings"]["pooling"]) for w in embedded])
    model = zeroshot.build(params, None, weights=fetched["folder"] / "clap").fit(
        None, None, ["siren", "dog bark", "rain"])
    np.testing.assert_allclose(probs, model.predict_proba(X), rtol=1e-5, atol=1e-7)
    assert list(table["predicted"]) == list(model.predict(X))

    predict.main(["esc50", "zeroshot-clap", str(clips[0]), "--labels", "siren, rain",
                  "--top", "1", *common])
    shown = capsys.readouterr().out.splitlines()[-1]
    assert shown.startswith(f"{clips[0]}: ") and shown.count(" 0.") + shown.count(" 1.") == 1
    for model_name, labels, message in (("pretrained-aisfx", "siren, rain",
                                         "--labels needs a zero-shot model (zeroshot-clap), "
                                         "not pretrained-aisfx"),
                                        ("zeroshot-clap", "siren",
                                         "--labels needs two or more distinct labels")):
        with pytest.raises(SystemExit, match=re.escape(message)):
            predict.main(["esc50", model_name, str(clips[0]), "--labels", labels, *common])
