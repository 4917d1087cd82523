"""CLAP and AST, Hugging Face ``transformers``' own models, as pretrained encoders.

Nothing of them is re-implemented here: the weights folder (a Hub repository's files,
soundclf.features.hub) is read by ``transformers`` (``ClapModel``, ``ASTModel``
``from_pretrained``), and each window's input is what the repository's own feature
extractor computes (``ClapFeatureExtractor``: 48 kHz, 64 mel bands, 10 s;
``ASTFeatureExtractor``: 16 kHz, 128 Kaldi filter banks, 1,024 frames of 10 ms, 10.24 s).
The clip is read at the extractor's ``sampling_rate`` (librosa resamples it); a clip no
longer than the window is one window, which the extractor pads as it does (CLAP repeats
the clip, AST adds zeros); a longer one is cut into full windows every ``hop`` of a window,
the last one ending with the clip, and their embeddings are pooled
(soundclf.features.embeddings).

- ``clap`` (LAION, ``laion/clap-htsat-unfused``): a window's embedding is
  ``ClapModel.get_audio_features``, the audio tower's output projected into the space it
  shares with the text tower, of unit length (512 values). That model is unfused: its
  extractor is run with ``truncation="rand_trunc"`` (one spectrogram per window; no window
  is ever longer than 10 s, so nothing is cut at random).
- ``ast`` (Gong et al. 2021, ``MIT/ast-finetuned-audioset-10-10-0.4593``): a window's
  embedding is ``ASTModel``'s ``pooler_output``, the mean of its two class tokens (768
  values), before the AudioSet classifier.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers

from soundclf.data.audio import Recipe
from soundclf.features.encoders import Embedder, WeightsError, precision_of, with_precision

# each encoder's feature extractor and model class in transformers
CLASSES = {"clap": ("ClapFeatureExtractor", "ClapModel"),
           "ast": ("ASTFeatureExtractor", "ASTModel")}


@dataclass(frozen=True)
class ExtractorWindows(Recipe):
    """A whole clip cut into windows of ``window`` samples and turned into the model's input
    by its feature extractor (in the workers). The fields are what the cached window
    embeddings depend on."""

    duration: float | None = None
    encoder: str = "clap"
    weights: str = ""  # the weights' identity (soundclf.features.hub)
    hop: float = 1.0
    window: int = 480000  # samples per window at sr
    extractor: str = "{}"  # the feature extractor's settings (JSON), as the folder has them
    transformers: str = transformers.__version__
    torch: str = torch.__version__
    device: str = "cpu"
    precision: str = "fp32"  # the network's autocast dtype (embeddings.precision, resolved)

    def starts(self, n: int) -> list[int]:
        """Where each window begins in a clip of ``n`` samples: one for a clip no longer
        than a window, else every ``hop`` of a window and a last one ending with the clip."""
        if n <= self.window:
            return [0]
        step = max(1, int(round(self.window * self.hop)))
        found = list(range(0, n - self.window + 1, step))
        return found + ([n - self.window] if found[-1] != n - self.window else [])

    def compute(self, ys: list[np.ndarray]) -> list[np.ndarray]:
        extract = feature_extractor(self.encoder, self.extractor)
        return [model_input(extract, self.encoder,
                            [y[s:s + self.window] for s in self.starts(len(y))])
                for y in ys]


@functools.cache
def feature_extractor(name: str, settings: str):
    """The encoder's feature extractor with ``settings`` (built once per process)."""
    return getattr(transformers, CLASSES[name][0])(**json.loads(settings))


def model_input(extract, name: str, windows: list[np.ndarray]) -> np.ndarray:
    """The model's input of each window, (windows, ...) float32, as the extractor gives it."""
    found = extract(windows, sampling_rate=extract.sampling_rate, return_tensors="np")
    key = "input_features" if name == "clap" else "input_values"
    return np.asarray(found[key], dtype=np.float32)


def read_json(folder: Path, name: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise WeightsError(f"{path} does not exist: {folder} is not a complete copy of the "
                           "repository (stage weights)")
    return json.loads(path.read_text())


def extractor_settings(name: str, folder: Path) -> dict:
    """The repository's feature extractor settings (``preprocessor_config.json``, or the
    ``feature_extractor`` part of a ``processor_config.json``), for an unfused CLAP with
    one spectrogram per window."""
    if (folder / "preprocessor_config.json").is_file():
        settings = read_json(folder, "preprocessor_config.json")
    else:
        settings = read_json(folder, "processor_config.json").get("feature_extractor", {})
    settings = {k: v for k, v in settings.items()
                if k not in ("feature_extractor_type", "processor_class")}
    if name == "clap" and not read_json(folder, "config.json").get(
            "audio_config", {}).get("enable_fusion", False):
        settings["truncation"] = "rand_trunc"
    return settings


def window_samples(name: str, settings: dict) -> int:
    """Samples per window: CLAP's ``nb_max_samples``; AST's ``max_length`` frames of 10 ms
    (its filter banks' hop)."""
    extract = getattr(transformers, CLASSES[name][0])(**settings)
    if name == "clap":
        return int(extract.nb_max_samples)
    return int(round(extract.max_length * extract.sampling_rate / 100))


def windows(name: str, params: dict, weights: str, device: str, folder: Path
            ) -> ExtractorWindows:
    """The recipe of encoder ``name`` (clap, ast) with the ``embeddings`` section and the
    feature extractor's settings in the weights ``folder``."""
    settings = extractor_settings(name, folder)
    extract = getattr(transformers, CLASSES[name][0])(**settings)
    return ExtractorWindows(sr=int(extract.sampling_rate), encoder=name, weights=weights,
                            hop=params["embeddings"]["hop"],
                            window=window_samples(name, settings),
                            extractor=json.dumps(settings, sort_keys=True), device=device,
                            precision=precision_of(params["embeddings"], device))


# the ``model_type`` of each encoder's config.json
MODEL_TYPES = {"clap": "clap", "ast": "audio-spectrogram-transformer"}


def load_model(name: str, folder: Path, device: torch.device | str) -> torch.nn.Module:
    """The repository's model (both towers for CLAP) in eval mode on ``device``; refused
    unless every weight of the model is in the files (transformers would start a missing
    one at random and only warn), a classifier head beside them being ignored (AST's)."""
    cls = getattr(transformers, CLASSES[name][1])
    found = read_json(folder, "config.json").get("model_type")
    if found != MODEL_TYPES[name]:
        raise WeightsError(f"{folder / 'config.json'} is of a {found!r} model, not "
                           f"{name}'s {MODEL_TYPES[name]!r}")
    try:
        model, info = cls.from_pretrained(folder, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{folder} does not hold a {cls.__name__} that transformers "
                           f"{transformers.__version__} loads ({type(exc).__name__}: "
                           f"{str(exc)[:300]})") from None
    missing = [*info.get("missing_keys", []), *(k for k, *_ in info.get("mismatched_keys", []))]
    if missing:
        raise WeightsError(f"{folder} does not hold {name}'s {cls.__name__}: its weights lack "
                           f"or mismatch {len(missing)} of the model's, e.g. "
                           f"{', '.join(sorted(missing)[:3])}")
    return model.to(device).eval()


def embedder(folder: Path, recipe: ExtractorWindows, device: torch.device) -> Embedder:
    """What embeds a batch of the recipe's windows (the module's text)."""
    model = load_model(recipe.encoder, folder, device)

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
        if recipe.encoder == "clap":
            is_longer = torch.zeros((len(x), 1), dtype=torch.bool, device=device)
            out = model.get_audio_features(input_features=x, is_longer=is_longer)
        else:
            out = model(input_values=x)
        return out.pooler_output.float().cpu().numpy()

    return with_precision(run, recipe.precision, device)
