"""FreeSound (FSDKaggle2019 curated) through the real stage code, on the synthetic layout."""

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from soundclf.data.datasets import FreeSound, LayoutError
from soundclf.data.download import download
from soundclf.evaluation.rounds import load_rounds
from soundclf.evaluation.scores import classification_metrics
from soundclf.features.scaling import normalize
from soundclf.features.summary import SummaryFeatures, file_features, write_features
from soundclf.params import ParamError
from tests.test_train import fit_nn, predict

FREESOUND = {"valid_size": 0.2, "split_seed": 42, "repeats": 1}


def freesound_params(audio, meta):
    return {
        "data": {"freesound": {"audio_url": str(audio), "meta_url": meta.as_uri(),
                               "audio_sha256": None, "meta_sha256": None, **FREESOUND}},
        "features": {"sr": 44100, "duration": 5.0, "n_fft": 2048, "hop_length": 512,
                     "n_mels": 128, "cqt_bins": 84, "n_jobs": 2, "on_error": "fail",
                     "batch_size": 8, "backend": "local", "scheduler": None},
    }


@pytest.fixture(scope="module")
def raw(freesound_zips, tmp_path_factory):
    out = tmp_path_factory.mktemp("raw") / "freesound"
    counts = download("freesound", freesound_params(*freesound_zips), out,
                      tmp_path_factory.mktemp("cache"))
    return out, counts


@pytest.fixture(scope="module")
def features(raw, freesound_zips, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    skipped = write_features("freesound", raw[0], freesound_params(*freesound_zips),
                             out / "f.parquet", out / "f.json", out / "skipped.csv", out / "cache")
    assert skipped.empty
    return pd.read_parquet(out / "f.parquet")


def test_download_keeps_the_zenodo_layout_and_counts_multilabel_clips(raw):
    out, counts = raw
    assert counts == {"clips_listed": 49, "clips_used": 46, "clips_excluded": 3, "classes": 5}
    assert (out / "FSDKaggle2019.meta" / "train_curated_post_competition.csv").is_file()
    assert len(list((out / "FSDKaggle2019.audio_train_curated").glob("*.wav"))) == 49


def test_only_single_label_clips_with_class_names(raw):
    meta = FreeSound().metadata(raw[0])
    assert len(meta) == 46 and not meta["label"].str.contains(",").any()
    assert set(meta["label"]) == {"Bark", "Walk_and_footsteps", "Accordion", "Applause", "Bus"}


def test_short_and_long_clips_give_full_feature_rows(raw, features, freesound_zips):
    durations = [sf.info(p).duration
                 for p in (raw[0] / "FSDKaggle2019.audio_train_curated").glob("*.wav")]
    assert min(durations) == pytest.approx(0.3, abs=0.01)
    assert max(durations) == pytest.approx(30.0, abs=0.01)
    assert features.shape == (46, 2 + 2474)
    # the 0.3 s and 30 s clips go through the extractor whatever their labels
    audio_dir = raw[0] / "FSDKaggle2019.audio_train_curated"
    extremes = sorted(audio_dir.glob("*.wav"), key=lambda p: sf.info(p).duration)
    for path in (extremes[0], extremes[-1]):
        assert np.isfinite(file_features(path, SummaryFeatures())).all()
    assert np.isfinite(features.drop(columns=["filename", "label"]).to_numpy()).all()


def test_split_is_stratified_and_reproducible(features):
    params = {"data": {"freesound": FREESOUND}}
    mask = FreeSound().validation_mask(features, params)
    assert mask.sum() == 10  # ceil(0.2 * 46)
    per_class = features.groupby("label")["label"].size()
    in_valid = features[mask].groupby("label")["label"].size()
    assert set(in_valid.index) == set(per_class.index)  # every class on both sides
    assert (np.abs(in_valid / per_class - 0.2) < 0.15).all()
    assert (FreeSound().validation_mask(features, params) == mask).all()
    other = {"data": {"freesound": {**FREESOUND, "split_seed": 7}}}
    assert not (FreeSound().validation_mask(features, other) == mask).all()


def test_repeated_splits_use_consecutive_seeds_the_first_being_the_original(features):
    rounds = FreeSound().rounds(features, {"data": {"freesound": {**FREESOUND, "repeats": 3}}})
    assert list(rounds) == ["seed42", "seed43", "seed44"]
    original = FreeSound().validation_mask(features, {"data": {"freesound": FREESOUND}})
    assert (rounds["seed42"] == original).all()
    for seed, mask in rounds.items():
        alone = {**FREESOUND, "split_seed": int(seed.removeprefix("seed"))}
        assert (FreeSound().validation_mask(features, {"data": {"freesound": alone}}) == mask).all()
        assert mask.sum() == 10 and set(features.loc[mask, "label"]) == set(features["label"])
    assert len({m.tobytes() for m in rounds.values()}) == 3  # three different splits


def test_class_with_one_clip_goes_to_training_with_a_message(features, capsys):
    table = pd.concat([features, features.iloc[[0]].assign(label="Gong")], ignore_index=True)
    mask = FreeSound().validation_mask(table, {"data": {"freesound": FREESOUND}})
    assert not mask[-1]
    assert "single clip kept in training only" in capsys.readouterr().out


def test_too_small_valid_size_names_the_param(features):
    params = {"data": {"freesound": {**FREESOUND, "valid_size": 0.02}}}
    with pytest.raises(ParamError, match=r"'data\.freesound\.valid_size' = 0\.02 cannot give"):
        FreeSound().validation_mask(features, params)


def test_kaggle_train_curated_csv_is_accepted(freesound_zips, tmp_path):
    audio, meta = freesound_zips
    kaggle = tmp_path / "FSDKaggle2019.meta.zip"
    with zipfile.ZipFile(meta) as src, zipfile.ZipFile(kaggle, "w") as dst:
        csv = src.read("FSDKaggle2019.meta/train_curated_post_competition.csv")
        table = pd.read_csv(io.BytesIO(csv))[["fname", "labels"]]
        dst.writestr("FSDKaggle2019.meta/train_curated.csv", table.to_csv(index=False))
    counts = download("freesound", freesound_params(audio, kaggle), tmp_path / "raw",
                      tmp_path / "cache")
    assert counts["clips_used"] == 46


def test_missing_clip_is_named(freesound_zips, tmp_path):
    audio, meta = freesound_zips
    broken = tmp_path / "FSDKaggle2019.audio_train_curated.zip"
    with zipfile.ZipFile(audio) as src, zipfile.ZipFile(broken, "w") as dst:
        items = src.infolist()
        for item in items[1:]:
            dst.writestr(item, src.read(item))
    missing = items[0].filename.split("/")[-1]
    with pytest.raises(LayoutError, match=rf"1 of 49 clips .*missing.*{missing}"):
        download("freesound", freesound_params(broken, meta), tmp_path / "raw",
                 tmp_path / "cache")


def test_integer_coded_labels_still_train_a_classifier(features, tmp_path):
    """The original failure: integer labels made fastai train a one-output regressor."""
    mask = FreeSound().validation_mask(features, {"data": {"freesound": FREESOUND}})
    table, _ = normalize(features, mask, "standard")
    codes = {name: k for k, name in enumerate(sorted(table["label"].unique()))}
    table["label"] = table["label"].map(codes).astype(int)
    table.to_parquet(tmp_path / "n.parquet")
    rnd = load_rounds(tmp_path / "n.parquet")[0]
    learn, _ = fit_nn(rnd, tmp_path, epochs=15, batch_size=8, class_weights="balanced")
    assert learn.model.layers[-1][0].out_features == 5
    x_valid, actual = rnd.xy("valid")
    predicted = predict(learn, x_valid)
    metrics = classification_metrics(actual, predicted)
    assert len(set(predicted)) > 1
    assert metrics["accuracy"] >= 0.6 and metrics["balanced_accuracy"] >= 0.6  # chance 0.2
