"""The folder dataset kind (soundclf.data.folder): label folders or a metadata table, read
in place or from an archive, its splits, its params and the errors a user meets."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import zipfile

import numpy as np
import pandas as pd
import pytest

from scripts.make_demo_data import write_folder_dataset
from soundclf.data.archive import DownloadError
from soundclf.data.datasets import LayoutError, adapter_for
from soundclf.data.download import download
from soundclf.data.folder import Folder, scan
from soundclf.data.index import index
from soundclf.features.extraction import ExtractionError
from soundclf.features.summary import write_features
from soundclf.params import ParamError, read_yaml, validate

LABELS = ["dog bark", "café, noisy", "rain"]  # a space, a comma, non-ASCII


def params_with(path, **keys) -> dict:
    """params.yaml with a folder dataset ``mine`` at ``path`` (validated: defaults filled)."""
    params = read_yaml(open("params.yaml"))
    params["datasets"] = params["cnn"]["datasets"] = ["esc50", "mine"]
    params["data"]["mine"] = {"kind": "folder", "path": str(path), **keys}
    return validate(params)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three labels x 10 clips of WAV, FLAC and OGG, 2-6 s, 22.05/44.1 kHz, mono/stereo."""
    return write_folder_dataset(tmp_path_factory.mktemp("rec") / "recordings", LABELS, 10,
                                formats=("wav", "flac", "ogg"))


def copy_of(recordings, tmp_path):
    return shutil.copytree(recordings, tmp_path / "recordings")


def test_label_folders_give_the_labels_sorted_and_every_clip_in_place(recordings, tmp_path):
    out = tmp_path / "raw"
    counts = download("mine", params_with(recordings), out, tmp_path / "cache")
    adapter = adapter_for("mine", params_with(recordings))
    meta = adapter.metadata(out)
    assert list(meta["label"].unique()) == sorted(LABELS)  # as ImageFolder orders classes
    assert len(meta) == 30 and set(meta.columns) == {"filename", "label"}
    assert meta["filename"].iloc[0].startswith(f"{sorted(LABELS)[0]}/")
    # read in place: the paths are the user's files, nothing was copied
    assert adapter.audio_path(out, meta["filename"].iloc[0]).parent.parent == recordings.resolve()
    assert not any(p.suffix in (".wav", ".flac", ".ogg") for p in out.rglob("*"))
    assert counts == {"clips_listed": 30, "clips_used": 30, "clips_excluded": 0, "classes": 3,
                      "smallest_class": 10, "largest_class": 10, "shortest_s": 2.0,
                      "median_s": 4.0, "longest_s": 6.0}


def test_files_not_used_are_reported_with_their_reason(recordings, tmp_path):
    root = copy_of(recordings, tmp_path)
    (root / "rain" / "notes.txt").write_text("field notes")
    shutil.copy(root / "rain" / "rain-0.wav", root / "stray.wav")  # in no label folder
    (root / "rain" / "night").mkdir()
    shutil.copy(root / "rain" / "rain-1.flac", root / "rain" / "night" / "late.flac")
    (root / ".DS_Store").write_text("hidden: ignored")
    outside = tmp_path / "elsewhere.wav"
    shutil.copy(root / "rain" / "rain-0.wav", outside)
    os.symlink(outside, root / "rain" / "linked.wav")
    clips, unused = scan(root)
    assert "rain/night/late.flac" in set(clips["filename"])  # sub-folders of a label folder
    assert clips.loc[clips["filename"] == "rain/night/late.flac", "label"].item() == "rain"
    reasons = dict(unused)
    assert set(reasons) == {"rain/notes.txt", "stray.wav", "rain/linked.wav"}
    assert reasons["stray.wav"] == "at the top level, in no label folder"
    assert reasons["rain/notes.txt"].startswith("not an audio file")
    assert "outside" in reasons["rain/linked.wav"] and str(outside) in reasons["rain/linked.wav"]


def metadata_folder(recordings, tmp_path, rows: list[dict]):
    root = copy_of(recordings, tmp_path)
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def test_a_metadata_table_gives_labels_folds_and_groups_as_written(recordings, tmp_path):
    rows = [{"file_name": f"rain/rain-{k}.wav" if k % 3 == 0 else f"rain/rain-{k}."
             + ("flac" if k % 3 == 1 else "ogg"), "label": label, "fold": k % 2 + 1,
             "group": f"site {k}"}
            for k, label in enumerate(["a/b", "NA", "Ünïcode", "x, y"] * 2)]
    root = metadata_folder(recordings, tmp_path, rows)
    out = tmp_path / "raw"
    download("mine", params_with(root), out, tmp_path / "cache")
    meta = Folder("mine").metadata(out)
    # labels intact through the clip table (no NaN for "NA", slashes and commas kept)
    assert list(meta["label"]) == [r["label"] for r in rows]
    assert list(meta["fold"]) == [r["fold"] for r in rows]
    assert list(meta["group"]) == [r["group"] for r in rows]
    unused = pd.read_csv(out / "unused.csv")
    assert len(unused) == 22 and set(unused["reason"]) == {"not listed in metadata.csv"}


def test_a_metadata_jsonl_reads_as_the_csv(recordings, tmp_path):
    root = copy_of(recordings, tmp_path)
    rows = [{"file_name": "rain/rain-0.wav", "label": "NA", "fold": 1, "note": "x"},
            {"file_name": "dog bark/dog bark-0.wav", "label": "dog", "fold": 2, "note": None}]
    pd.DataFrame(rows).to_json(root / "metadata.jsonl", orient="records", lines=True,
                               force_ascii=False)
    clips, unused = scan(root)
    assert clips.to_dict("records") == [{"filename": "rain/rain-0.wav", "label": "NA",
                                         "fold": 1},
                                        {"filename": "dog bark/dog bark-0.wav",
                                         "label": "dog", "fold": 2}]
    assert len(unused) == 28
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(LayoutError, match="both metadata.csv and metadata.jsonl: keep one"):
        scan(root)


@pytest.mark.parametrize("rows, message", [
    ([{"file_name": "rain/rain-0.wav", "label": "a"}, {"file_name": "rain/nope.wav",
                                                       "label": "b"}],
     "metadata.csv: 1 of 2 listed file\\(s\\) are not in .*: rain/nope.wav \\(line 3\\)"),
    ([{"file_name": "rain/rain-0.wav", "label": "a"}, {"file_name": "rain/rain-0.wav",
                                                       "label": "b"}],
     "rows list a file already listed: rain/rain-0.wav \\(lines 2, 3\\)"),
    ([{"file_name": "rain/rain-0.wav", "label": "a"}, {"file_name": "rain/rain-3.wav",
                                                       "label": ""}],
     "row\\(s\\) with no label, line\\(s\\) 3"),
    ([{"file_name": "rain/rain-0.wav", "label": "a", "fold": 1},
      {"file_name": "rain/rain-3.wav", "label": "b", "fold": "two"}],
     "fold must be an integer from 1, line\\(s\\) 3 \\('two'\\)"),
    ([{"file_name": "../rain/rain-0.wav", "label": "a"}, {"file_name": "rain/rain-3.wav",
                                                          "label": "b"}],
     "file_name must be a path inside"),
])
def test_bad_metadata_rows_are_named(recordings, tmp_path, rows, message):
    root = metadata_folder(recordings, tmp_path, rows)
    with pytest.raises(LayoutError, match=message):
        scan(root)


def test_no_audio_an_empty_label_folder_and_a_single_class_are_refused(recordings, tmp_path):
    empty = tmp_path / "empty"
    (empty / "dog").mkdir(parents=True)
    (empty / "dog" / "readme.txt").write_text("x")
    with pytest.raises(LayoutError, match="no audio found .* lay it out as <label>/<clip>"):
        scan(empty)
    root = copy_of(recordings, tmp_path)
    (root / "wind").mkdir()
    with pytest.raises(LayoutError, match="label folder\\(s\\) with no audio file: wind"):
        scan(root)
    shutil.rmtree(root / "wind")
    for label in LABELS[1:]:
        shutil.rmtree(root / label)
    with pytest.raises(LayoutError, match="a single class \\('dog bark', 10 clips\\)"):
        scan(root)


def test_identical_audio_under_two_labels_is_refused(recordings, tmp_path):
    root = copy_of(recordings, tmp_path)
    shutil.copy(root / "rain" / "rain-0.wav", root / "dog bark" / "copy.wav")
    with pytest.raises(LayoutError, match="identical audio under different labels: "
                                          "dog bark/copy.wav \\(dog bark\\) = rain/rain-0.wav"):
        scan(root)


def test_generated_folds_are_stratified_grouped_and_seeded(tmp_path, capsys):
    labels = np.repeat(["a", "b", "c"], 20)
    groups = np.char.add(labels, (np.tile(np.arange(20), 3) // 4).astype(str))  # 4 clips each
    meta = pd.DataFrame({"filename": [f"{i}.wav" for i in range(60)], "label": labels,
                         "group": groups})
    params = params_with(tmp_path, cv=True)
    rounds = Folder("mine").rounds(meta, params)
    assert list(rounds) == ["fold1", "fold2", "fold3", "fold4", "fold5"]
    valid = np.stack(list(rounds.values()))
    assert (valid.sum(axis=0) == 1).all()  # every clip validated exactly once
    for mask in valid:  # a recording never on both sides; every class in every fold
        assert not set(groups[mask]) & set(groups[~mask])
        assert set(labels[mask]) == {"a", "b", "c"}
    again = Folder("mine").rounds(meta, params)
    assert all((again[k] == rounds[k]).all() for k in rounds)
    other = Folder("mine").rounds(meta, params_with(tmp_path, cv=True, split_seed=7))
    assert any((other[k] != rounds[k]).any() for k in rounds)
    assert "no group column" not in capsys.readouterr().out
    Folder("mine").rounds(meta.drop(columns="group"), params)
    assert "no group column: clips cut from one recording" in capsys.readouterr().out


def test_a_class_smaller_than_the_folds_fails_or_trains_only(tmp_path, capsys):
    labels = np.array(["a"] * 10 + ["b"] * 10 + ["tiny"] * 3)
    meta = pd.DataFrame({"filename": [f"{i}.wav" for i in range(23)], "label": labels})
    with pytest.raises(LayoutError, match="1 class\\(es\\) have fewer clips than "
                       "data.mine.folds = 5.*tiny \\(3\\).*small_classes: train"):
        Folder("mine").rounds(meta, params_with(tmp_path))
    rounds = Folder("mine").rounds(meta, params_with(tmp_path, small_classes="train", cv=True))
    assert not np.stack(list(rounds.values()))[:, labels == "tiny"].any()
    assert "kept in training only (data.mine.small_classes: train): tiny" in (
        capsys.readouterr().out)


def test_given_folds_are_used_and_a_group_across_folds_is_refused(tmp_path, capsys):
    meta = pd.DataFrame({"filename": ["1", "2", "3", "4"], "label": ["a", "b", "a", "b"],
                         "fold": [1, 1, 2, 2], "group": ["r1", "r2", "r3", "r4"]})
    rounds = Folder("mine").rounds(meta, params_with(tmp_path, valid_fold=2, cv=True))
    assert list(rounds) == ["fold2", "fold1"] and list(rounds["fold2"]) == [0, 0, 1, 1]
    with pytest.raises(ParamError, match="data.mine.valid_fold' must be one of the "
                                         "dataset's folds \\[1, 2\\], got 3"):
        Folder("mine").rounds(meta, params_with(tmp_path, valid_fold=3))
    meta.loc[3, "group"] = "r1"  # a group giving clips to two classes in two folds: told
    Folder("mine").rounds(meta, params_with(tmp_path))
    assert "1 group(s) give clips to different classes in different folds, taken as the " \
        "metadata gives them: r1 (folds 1, 2)" in capsys.readouterr().out
    meta.loc[2, "group"] = "r1"  # ... of one class in two folds: refused (ESC-50's check)
    with pytest.raises(LayoutError, match="1 group\\(s\\) have clips of one class in several "
                                          "folds.*r1 a \\(folds 1, 2\\)"):
        Folder("mine").rounds(meta, params_with(tmp_path))


def test_an_archive_is_extracted_and_a_member_outside_it_refused(recordings, tmp_path):
    archive = tmp_path / "recordings.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(recordings, arcname="recordings")  # one top folder: descended into
    out = tmp_path / "raw"
    counts = download("mine", params_with(archive), out, tmp_path / "cache")
    assert counts["clips_used"] == 30
    assert Folder("mine").audio_path(out, "rain/rain-0.wav").is_file()
    assert Folder("mine").root(out).is_relative_to(out)
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.wav")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"RIFF"))
    with pytest.raises(DownloadError, match="evil.tar.gz: cannot extract"):
        download("mine", params_with(evil), tmp_path / "raw2", tmp_path / "cache")
    assert not (tmp_path / "outside.wav").exists()
    bad_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad_zip, "w") as zf:
        zf.writestr("../outside.wav", b"RIFF")
    with pytest.raises(DownloadError, match="refusing unsafe archive members"):
        download("mine", params_with(bad_zip), tmp_path / "raw3", tmp_path / "cache")


def test_the_params_of_a_folder_dataset_are_checked(tmp_path):
    params = params_with(tmp_path)
    assert params["data"]["mine"] == {"kind": "folder", "path": str(tmp_path), "sha256": None,
                                      "valid_fold": 1, "cv": False, "folds": 5,
                                      "split_seed": 42, "small_classes": "fail"}
    with pytest.raises(ParamError) as bad:
        params_with(tmp_path, fold=3, folds=1, small_classes="drop")
    message = str(bad.value)
    assert "'data.mine.fold' is not a known key of a folder dataset (did you mean 'folds'?)" in (
        message)
    assert "'data.mine.folds' must be an integer >= 2; got 1" in message
    assert "'data.mine.small_classes' must be one of fail, train; got 'drop'" in message
    raw = read_yaml(open("params.yaml"))
    raw["datasets"] = raw["cnn"]["datasets"] = ["esc50", "birds"]
    with pytest.raises(ParamError, match="add a data.birds section with kind: folder"):
        validate(raw)
    raw["data"]["birds"] = {"kind": "folder"}
    with pytest.raises(ParamError, match="'data.birds.path' is missing"):
        validate(raw)


def test_the_index_changes_with_a_file_added_edited_removed_or_relabelled(recordings, tmp_path):
    root = copy_of(recordings, tmp_path)
    params = params_with(root)
    seen = [index("mine", params)]
    assert index("mine", params) == seen[0]  # nothing changed: the same, so nothing reruns
    shutil.copy(root / "rain" / "rain-0.wav", root / "rain" / "new.wav")
    seen.append(index("mine", params))
    with open(root / "rain" / "new.wav", "r+b") as f:  # an edit of the same size
        f.seek(100)
        f.write(b"\x01\x02")
    os.utime(root / "rain" / "new.wav", ns=(1, 10**18))
    seen.append(index("mine", params))
    (root / "rain" / "rain-1.flac").unlink()
    seen.append(index("mine", params))
    (root / "rain").rename(root / "drizzle")
    seen.append(index("mine", params))
    assert len({repr(s) for s in seen}) == len(seen)


@pytest.mark.slow  # the feature extraction of seven clips, twice: about 20 s
def test_unreadable_audio_fails_naming_it_or_is_skipped_and_listed(tmp_path):
    root = write_folder_dataset(tmp_path / "rec", ["owl", "wren"], 3, formats=("mp3", "wav"))
    (root / "wren" / "broken.wav").write_bytes(b"RIFF\x00\x00not really audio")
    params = params_with(root)
    params["features"].update(sr=22050, duration=1.0, n_fft=1024, n_mels=32, cqt_bins=36,
                              n_jobs=1)
    raw, out = tmp_path / "raw", tmp_path / "out"
    download("mine", params, raw, tmp_path / "cache")
    out.mkdir()
    args = (out / "f.parquet", out / "f.json", out / "skipped.csv", tmp_path / "features")
    with pytest.raises(ExtractionError, match="(?s)1 of 7 clips failed .*features.on_error: skip"
                                              ".*broken.wav: .*not a readable audio file"):
        write_features("mine", raw, params, *args)
    params["features"]["on_error"] = "skip"
    skipped = write_features("mine", raw, params, *args)
    assert list(skipped["filename"]) == ["wren/broken.wav"]
    table = pd.read_parquet(out / "f.parquet")
    assert len(table) == 6 and table["filename"].str.endswith(".mp3").sum() == 4  # MP3 read
