"""soundclf.predict: a trained model's file applied to recordings, from their audio alone.

That it gives the labels each model's own stage gave (every family, the ensemble
included) is tested end to end in test_experiments; here, what it computes and its errors.
"""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from soundclf import predict, trained
from soundclf.features.summary import SummaryFeatures, file_features
from soundclf.params import load_params

SHORT = {"sr": 22050, "duration": 1.0, "n_fft": 1024, "hop_length": 512, "n_mels": 32,
         "cqt_bins": 36}


@pytest.fixture
def feature_model(tmp_path, wav):
    """A model folder with a feature model ("lr") trained on six 1 s clips of 2 classes,
    saved as stages.train does; its clips."""
    clips = [wav(f"{k}-{i}.wav", target=k, seconds=1.0) for k in (0, 1) for i in range(3)]
    fp = SummaryFeatures.from_params(SHORT)
    x = np.stack([file_features(c, fp) for c in clips])
    labels = np.repeat(["dog", "rain"], 3)
    scaler = StandardScaler().fit(x)
    estimator = LogisticRegression().fit(scaler.transform(x), labels)
    folder = tmp_path / "models" / "esc50"
    trained.save(folder / "lr.joblib", trained.Trained(
        "lr", estimator, ["dog", "rain"], "features", {"features": SHORT}, scaler=scaler,
        probabilities="abc"))
    return folder, clips, estimator.predict_proba(scaler.transform(x))


def test_a_feature_model_gives_what_it_gives_its_features(feature_model, tmp_path):
    folder, clips, expected = feature_model
    table, failed = predict.predict(folder, "lr", clips, tmp_path)
    assert failed == {}
    assert list(table.columns) == ["filename", "predicted", "p_dog", "p_rain"]
    assert list(table["predicted"]) == ["dog"] * 3 + ["rain"] * 3
    # the same features (to float32 rounding of the mel block), through the same scaler
    np.testing.assert_allclose(table[["p_dog", "p_rain"]].to_numpy(), expected, atol=1e-4)


def test_the_settings_come_from_the_model_file_not_params_yaml(feature_model, tmp_path):
    folder, clips, _ = feature_model
    assert load_params()["features"]["sr"] != SHORT["sr"]  # params.yaml says otherwise
    table, _ = predict.predict(folder, "lr", clips, tmp_path)
    assert list(table["predicted"]) == ["dog"] * 3 + ["rain"] * 3


def test_a_folder_is_every_audio_file_inside_it_recursively(feature_model, tmp_path):
    folder, clips, expected = feature_model
    inbox = tmp_path / "inbox"
    (inbox / "day 2").mkdir(parents=True)
    for k, clip in enumerate(clips):  # half at the top, half in a sub-folder
        (inbox / ("day 2" if k % 2 else "") / clip.name).write_bytes(clip.read_bytes())
    (inbox / "notes.txt").write_text("not a recording")  # not audio by its name: not read
    table, failed = predict.predict(folder, "lr", [inbox], tmp_path)
    assert failed == {}
    names = [f"{'day 2/' if k % 2 else ''}{c.name}" for k, c in enumerate(clips)]
    assert list(table["filename"]) == [str(inbox / n) for n in sorted(names)]
    by_name = dict(zip(table["filename"].map(lambda f: f.rsplit("/", 1)[-1]),
                       table["p_dog"], strict=True))
    np.testing.assert_allclose([by_name[c.name] for c in clips], expected[:, 0], atol=1e-4)


def test_bad_inputs_among_good_ones_are_listed_and_the_good_ones_classified(
        feature_model, tmp_path, capsys):
    folder, clips, _ = feature_model
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    empty = tmp_path / "empty"
    empty.mkdir()
    gone = tmp_path / "gone.wav"
    with pytest.raises(SystemExit) as stop:
        predict.main(["esc50", "lr", str(clips[0]), str(gone), str(bad), str(empty),
                      str(clips[3]), "--models", str(folder.parent), "--top", "1"])
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [str(clips[0]), str(clips[3])]
    assert out[0].startswith(f"{clips[0]}: dog 0.") and out[1].startswith(f"{clips[3]}: rain 0.")
    message = str(stop.value)  # exits non-zero, naming each bad input and why
    assert message.startswith("predict: 3 input(s) not classified (2 were):")
    assert f"{gone}: does not exist" in message
    assert f"{empty}: a folder with no audio file in it" in message
    assert f"{bad}: " in message and "not a readable audio file" in message


def test_the_command_prints_the_top_classes_or_writes_a_csv(feature_model, tmp_path, capsys):
    folder, clips, _ = feature_model
    predict.main(["esc50", "lr", str(clips[0]), "--models", str(folder.parent), "--top", "1"])
    assert capsys.readouterr().out.strip().startswith(f"{clips[0]}: dog 0.")
    predict.main(["esc50", "lr", *map(str, clips), "--models", str(folder.parent),
                  "--csv", str(tmp_path / "out.csv")])
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "filename,predicted,p_dog,p_rain"


def test_errors_name_the_file_or_the_model(feature_model, tmp_path):
    folder, clips, _ = feature_model
    def fails(*args: str) -> str:
        with pytest.raises(SystemExit) as stop:
            predict.main(["esc50", *args, "--models", str(folder.parent)])
        return str(stop.value)

    assert fails("svc", str(clips[0])) == (
        f"predict: {folder / 'svc.joblib'} does not exist: the model was never trained "
        "(dvc repro train-svc@esc50)")
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    message = fails("lr", str(clips[0]), str(bad))
    assert str(bad) in message and "not a readable audio file" in message
    assert f"{tmp_path / 'gone.wav'}: does not exist" in fails("lr", str(tmp_path / "gone.wav"))
    joblib.dump(LogisticRegression(), folder / "old.joblib")  # a bare estimator
    assert "holds a LogisticRegression, not a model of stages.train" in fails(
        "old", str(clips[0]))


def test_an_ensemble_whose_member_was_trained_again_is_refused(feature_model, tmp_path):
    folder, clips, _ = feature_model
    trained.save(folder / "ensemble.joblib", trained.Trained(
        "ensemble", None, ["dog", "rain"], "probabilities", {}, members={"lr": "other"}))
    with pytest.raises(trained.NotTrainedError,
                       match=r"lr\.joblib is not the lr the ensemble learned from"):
        predict.predict(folder, "ensemble", clips, tmp_path)


def test_an_embedding_model_refuses_a_checkpoint_other_than_its_own(tmp_path, wav):
    from scripts.make_demo_data import write_demo_weights

    weights = tmp_path / "weights"
    write_demo_weights(weights / "aisfx/checkpoint.pth")
    settings = {"embeddings": {"encoder": "aisfx", "hop": 1.0, "blocks": [4],
                               "peak_normalize": False, "pooling": ["mean"]},
                "weights": {"aisfx": {"sha256": "0" * 64}}}  # trained with other weights
    folder = tmp_path / "models" / "esc50"
    trained.save(folder / "pretrained-aisfx.joblib", trained.Trained(
        "pretrained-aisfx", LogisticRegression(), ["dog", "rain"], "embeddings", settings))
    with pytest.raises(ValueError, match=r"aisfx/checkpoint\.pth has sha256 [0-9a-f]+, not "
                                         r"the 0{64}"):
        predict.predict(folder, "pretrained-aisfx", [wav("a.wav", seconds=1.0)], weights)
