"""Pretrained audio encoders: networks trained elsewhere, turning a clip into embeddings.

An encoder is one :class:`Encoder` in :data:`ENCODERS`: where its published weights are
(``weights.<name>`` in params.yaml; stage `weights` fetches them), the recipe that cuts a
clip into the network's input windows (in the extraction workers), and what embeds a
batch of windows. :func:`embed_windows` runs it batched.

``aisfx``: Ma & Lerch, "Representation Learning for the Automatic Indexing of Sound
Effects Libraries", ISMIR 2022 (weights CC BY 4.0, from the ``aisfx`` 0.1.2 wheel on
PyPI). A 9-layer CNN (the DCASE 2018 cross-task baseline's ``Cnn_9layers``: four blocks of
two 3x3 convolutions with batch norm and ReLU, 64 to 512 channels, 2x2 max pooling after
the first three) over windows of 100 frames x 96 mel bands (44.1 kHz, 2,048-sample
blocks, hop 1,024: about 2.3 s), then a mean over frequency and a max over time: 512
values per window. Its front end is the package's librosa one (HTK mel bands of unit
area, ``log10(1 + 10^4 x)`` scaled by the training set's maximum, 9.4578), with time as
the first axis as the network expects (the package's librosa path hands it the transposed
spectrogram), and the audio as recorded unless asked to peak-normalize it as the package
does (``embeddings.peak_normalize``; docs/models.md has the choice).

``clap`` and ``ast``: networks of Hugging Face ``transformers``, their weights a Hub
repository (soundclf.features.hub), their windows and embeddings
soundclf.features.audio_transformers.

``panns_cnn14``: PANNs CNN14 (Kong et al. 2020; weights CC BY 4.0, Zenodo record 3987831),
the project's own module, loaded strictly, with its front end: soundclf.features.panns.

An encoder's weights are a folder, ``data/weights/<name>/`` (stage `weights`): a
checkpoint encoder's file in it as :data:`CHECKPOINT`, a Hub repository's files as
published. Adding an encoder: an entry in :data:`ENCODERS` (its ``windows`` recipe, what
the workers cut of each clip; its ``embedder``, what turns a batch of windows into
embeddings; for a checkpoint, its ``network`` and ``read_state``), its ``weights.<name>``
section in params.yaml and in soundclf/params.py's SCHEMA (which makes it a value of
``embeddings.encoders`` and a ``pretrained-<name>`` model, soundclf.models.pretrained).
dvc.yaml needs nothing: its stages are a matrix over ``embeddings.encoders``.

``aisfx``'s and ``panns_cnn14``'s networks are this project's own modules, loaded with
``strict=True`` (a checkpoint of another shape is refused).
"""

from __future__ import annotations

import pickle
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from soundclf.data.archive import sha256sum
from soundclf.data.audio import Recipe
from soundclf.params import ParamError

CHECKPOINT = "checkpoint.pth"  # a checkpoint encoder's file in its weights folder
# what turns a batch of an encoder's windows into their (windows, dim) float32 embeddings
Embedder = Callable[[np.ndarray], np.ndarray]


class WeightsError(ValueError):
    """A checkpoint file that is missing, not the published one, or of another network."""


class ConvBlock(nn.Module):
    """Two 3x3 convolutions (no bias), each with batch norm and ReLU, then ``pooling`` by
    ``pool`` (aisfx: max pooling; PANNs CNN14: average pooling)."""

    def __init__(self, c_in: int, c_out: int, pool: int,
                 pooling: Callable[[torch.Tensor, int], torch.Tensor] = F.max_pool2d):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pool = pool
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        return self.pooling(x, self.pool) if self.pool > 1 else x


class Cnn9(nn.Module):
    """aisfx's embedding network; input (windows, frames, bands), output (windows, 512).

    Parameter names are the checkpoint's (``conv_block1.conv1.weight`` ...), so its state
    dict loads as it is.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        channels = [1, width, 2 * width, 4 * width, 8 * width]
        for i in range(4):
            self.add_module(f"conv_block{i + 1}",
                            ConvBlock(channels[i], channels[i + 1], pool=2 if i < 3 else 1))

    def forward(self, x: torch.Tensor, blocks: tuple[int, ...] = (4,)) -> torch.Tensor:
        """The embedding: each listed block's output (1 to 4; aisfx's is the 4th's alone)
        averaged over bands, then its maximum over frames, concatenated."""
        x = x[:, None]  # (windows, 1, frames, bands)
        found = []
        for i in range(1, max(blocks) + 1):
            x = getattr(self, f"conv_block{i}")(x)
            if i in blocks:
                found.append(x.mean(dim=3).amax(dim=2))
        return torch.cat(found, dim=1)

    def width(self, blocks: tuple[int, ...]) -> int:
        """Values per window for these blocks."""
        return sum(getattr(self, f"conv_block{i}").conv1.out_channels for i in blocks)


# The aisfx checkpoint pickles numpy scalars beside its tensors: torch.load's safe
# (weights_only) unpickler takes them once allowed; nothing else in it may run code.
_NUMPY_SCALARS = [np._core.multiarray.scalar,  # as numpy 2 pickles it, and numpy 1:
                  (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
                  np.dtype, np.dtypes.Int64DType]


def read_aisfx_state(path: Path) -> dict[str, torch.Tensor]:
    """The embedding network's tensors from aisfx's ``checkpoint.pth``, a pickled
    ``(state_dict, datasets)`` tuple; its classifier heads (trained for the sound-effects
    libraries' labels) are left out."""
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALARS):
            state, _datasets = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"its first item is a {type(state).__name__}, not a state dict")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        reason = next((line.strip() for line in lines if "error" in line.lower()),
                      lines[0] if lines else "")[:300]
        raise WeightsError(f"{path} is not an aisfx checkpoint, a pickled (state dict, "
                           f"datasets) pair ({type(exc).__name__}: {reason})") from None
    prefix = "embedding_net."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


@dataclass(frozen=True)
class AisfxFrontEnd:
    """aisfx's input: log-compressed mel spectrogram windows, time first."""

    sr: int = 44100
    n_fft: int = 2048
    hop_length: int = 1024
    n_mels: int = 96
    window: int = 100  # frames per network input
    scale: float = 9.457798957824707  # the training spectrograms' maximum (aisfx 'original')

    def spectrogram(self, y: np.ndarray, peak_normalize: bool = False) -> np.ndarray:
        """(frames, bands) of one clip, values about 0 to 1; with ``peak_normalize``, of
        the clip scaled to a peak of 1 first, as aisfx's librosa path does."""
        peak = np.max(np.abs(y)) if len(y) else 0.0
        y = y / peak if peak_normalize and peak > 0 else y
        mel = librosa.feature.melspectrogram(y=y, sr=self.sr, n_fft=self.n_fft,
                                             hop_length=self.hop_length, n_mels=self.n_mels,
                                             fmin=0.0, fmax=self.sr / 2, htk=True, norm=1.0,
                                             power=2.0)
        return (np.log10(mel * 10000.0 + 1) / self.scale).T

    def windows(self, spec: np.ndarray, hop: float) -> np.ndarray:
        """(windows, window, bands): windows of ``window`` frames every ``hop`` of a window,
        the last one dropped if incomplete (aisfx's ``blocking``), a short clip zero-padded
        to one window."""
        step = int(round(self.window * hop))
        count = max(1, (len(spec) - self.window) // step + 1)
        padded = np.concatenate([spec, np.zeros((self.window, spec.shape[1]), spec.dtype)])
        return np.stack([padded[i * step:i * step + self.window] for i in range(count)])


@dataclass(frozen=True)
class EncoderWindows(Recipe):
    """A whole clip cut into aisfx's input windows (computed in the workers). The fields
    are what the cached window embeddings depend on."""

    duration: float | None = None
    encoder: str = "aisfx"
    weights: str = ""  # the weights' identity (the checkpoint's SHA-256)
    hop: float = 0.5
    blocks: tuple[int, ...] = (4,)  # what the network gives (Cnn9)
    peak_normalize: bool = False
    # what else the values depend on: the front end's constants, torch, the device's kind
    front_end: AisfxFrontEnd = AisfxFrontEnd()
    torch: str = torch.__version__
    device: str = "cpu"
    precision: str = "fp32"  # the network's autocast dtype (embeddings.precision, resolved)

    def compute(self, ys: list[np.ndarray]) -> list[np.ndarray]:
        front = self.front_end
        return [front.windows(front.spectrogram(y, self.peak_normalize), self.hop)
                .astype(np.float32) for y in ys]


def aisfx_windows(params: dict, weights: str, device: str, folder: Path | None = None
                  ) -> EncoderWindows:
    """aisfx's recipe of the ``embeddings`` section."""
    section = params["embeddings"]
    front = AisfxFrontEnd()
    return EncoderWindows(sr=front.sr, encoder="aisfx", weights=weights, hop=section["hop"],
                          blocks=tuple(sorted(section["blocks"])),
                          peak_normalize=section["peak_normalize"], front_end=front,
                          device=device, precision=precision_of(section, device))


def precision_of(section: dict, device: str) -> str:
    """``embeddings.precision`` resolved on ``device``: fp32 or bf16 (missing in the
    settings of a model trained before it existed: fp32)."""
    from soundclf.devices import autocast_dtype
    dtype = autocast_dtype(section.get("precision", "fp32"), torch.device(device),
                           "embeddings.precision")
    return "fp32" if dtype is None else "bf16"


def with_precision(run: Embedder, precision: str, device: torch.device) -> Embedder:
    """``run`` under bf16 autocast for ``precision`` bf16 (its output float32)."""
    if precision == "fp32":
        return run

    def autocast(batch: np.ndarray) -> np.ndarray:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            return np.asarray(run(batch), dtype=np.float32)

    return autocast


def aisfx_embedder(folder: Path, recipe: EncoderWindows, device: torch.device) -> Embedder:
    net = load_network(ENCODERS["aisfx"], folder / CHECKPOINT, device)
    return with_precision(lambda batch: run_network(net, batch, device, recipe.blocks),
                          recipe.precision, device)


def clap_windows(params: dict, weights: str, device: str, folder: Path) -> Recipe:
    from soundclf.features import audio_transformers
    return audio_transformers.windows("clap", params, weights, device, folder)


def ast_windows(params: dict, weights: str, device: str, folder: Path) -> Recipe:
    from soundclf.features import audio_transformers
    return audio_transformers.windows("ast", params, weights, device, folder)


def transformers_embedder(folder: Path, recipe: Recipe, device: torch.device) -> Embedder:
    from soundclf.features import audio_transformers
    return audio_transformers.embedder(folder, recipe, device)


def panns_windows(params: dict, weights: str, device: str, folder: Path) -> Recipe:
    from soundclf.features import panns
    return panns.windows(params, weights, device, folder)


def panns_embedder(folder: Path, recipe: Recipe, device: torch.device) -> Embedder:
    from soundclf.features import panns
    return panns.embedder(folder, recipe, device)


def panns_network() -> nn.Module:
    from soundclf.features import panns
    return panns.Cnn14()


def read_panns_state(path: Path) -> dict[str, torch.Tensor]:
    from soundclf.features import panns
    return panns.read_panns_state(path)


@dataclass(frozen=True)
class Encoder:
    name: str
    published: str  # where the weights come from, for messages
    # (params, the weights' identity, the device's kind, the weights folder) -> the
    # recipe of a clip's windows
    windows: Callable[[dict, str, str, Path], Recipe]
    # (weights folder, that recipe, device) -> what embeds a batch of windows
    embedder: Callable[[Path, Any, torch.device], Embedder]
    hub: bool = False  # weights a Hugging Face Hub repository, not one checkpoint file
    # a checkpoint encoder's network and how its file is read (stage weights checks it)
    network: Callable[[], nn.Module] | None = None
    read_state: Callable[[Path], dict[str, torch.Tensor]] | None = None
    member: str | None = None  # the checkpoint's path inside a published archive (a wheel)
    window: float = 0.0  # seconds of audio per window (docs)


ENCODERS = {
    "aisfx": Encoder("aisfx", "the aisfx 0.1.2 wheel on PyPI (pip download --no-deps "
                              "aisfx==0.1.2)",
                     aisfx_windows, aisfx_embedder, network=Cnn9,
                     read_state=read_aisfx_state, member="aisfx/models/checkpoint.pth",
                     window=100 * 1024 / 44100),
    "panns_cnn14": Encoder("panns_cnn14", "Cnn14_mAP=0.431.pth of Zenodo record 3987831 "
                                          "(https://zenodo.org/records/3987831)",
                           panns_windows, panns_embedder, network=panns_network,
                           read_state=read_panns_state, window=10.0),
    "clap": Encoder("clap", "the Hugging Face Hub repository laion/clap-htsat-unfused",
                    clap_windows, transformers_embedder, hub=True, window=10.0),
    "ast": Encoder("ast", "the Hugging Face Hub repository "
                          "MIT/ast-finetuned-audioset-10-10-0.4593",
                   ast_windows, transformers_embedder, hub=True, window=10.24),
}


def encoder(name: str) -> Encoder:
    if name not in ENCODERS:
        raise ParamError(f"'embeddings.encoders' names {name!r}; known encoders: "
                         f"{', '.join(ENCODERS)}")
    return ENCODERS[name]


def load_network(enc: Encoder, path: Path, device: torch.device) -> nn.Module:
    """The encoder's network with the weights of ``path``, in eval mode on ``device``."""
    net = enc.network()
    state = enc.read_state(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:3]
        raise WeightsError(f"{path} does not hold {enc.name}'s network: "
                           f"{' '.join(s.strip() for s in first)}") from None
    if torch.device(device).type == "cuda":  # cuDNN's TF32 would round to 1e-3, not 1e-6
        torch.backends.cudnn.allow_tf32 = False
    # channels-last convolutions: about 1.2x as fast on CPU (oneDNN), the same values
    return net.to(device, memory_format=torch.channels_last).eval()


def checkpoint_bytes(source: Path, member: str | None) -> bytes:
    """The checkpoint in ``source``: its ``member`` when ``source`` is an archive holding it
    (a wheel), else the file itself (a checkpoint taken out of the archive already; torch
    writes those as zip archives too, with a ``data.pkl`` inside)."""
    if member and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            names = zf.namelist()
            if member in names:
                return zf.read(member)
            if not any(name.endswith("data.pkl") for name in names):
                raise WeightsError(f"{source} is an archive without {member} (nor a torch "
                                   "checkpoint)")
    return source.read_bytes()


def unpinned(name: str, what: str, digest: str) -> None:
    """Warn that ``weights.<name>.sha256`` is null, giving the value to pin: a checkpoint's
    digest, or a Hub repository's files' digests as a JSON mapping."""
    print(f"warning: 'weights.{name}.sha256' is null: {what} not checked against pinned "
          f"digests. To pin, in params.yaml:\n  sha256: {digest}", file=sys.stderr)


def verify_checkpoint(path: Path, sha256: str | None, name: str) -> str:
    """Refuse a missing weights file, or one other than ``weights.<name>.sha256`` names;
    returns its SHA-256 (its identity). A null ``sha256`` (not pinned) is warned about."""
    if not path.is_file():
        raise WeightsError(f"{path} does not exist: the stage `weights` fetches it from "
                           f"'weights.{name}.url' (dvc repro weights)")
    actual = sha256sum(path)
    if sha256 is None:
        unpinned(name, f"{path} is", actual)
    elif actual != sha256.lower():
        raise WeightsError(f"{path} has sha256 {actual}, not the {sha256} of "
                           f"'weights.{name}.sha256': rerun the stage `weights` "
                           "(dvc repro -f weights)")
    return actual


@torch.inference_mode()
def run_network(net: nn.Module, batch: np.ndarray, device: torch.device,
                blocks: tuple[int, ...] = (4,)) -> np.ndarray:
    """(windows, dim) float32 embeddings of one batch of (windows, frames, bands)."""
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
    return net(x, blocks).float().cpu().numpy()


def embed_windows(net: nn.Module | Embedder, windows: np.ndarray, batch_size: int,
                  device: torch.device | None = None, blocks: tuple[int, ...] = (4,)
                  ) -> np.ndarray:
    """(windows, dim) float32 embeddings of ``windows``, ``batch_size`` at a time: by an
    :data:`Embedder`, or by aisfx's network from its ``blocks``."""
    run = net if not isinstance(net, nn.Module) else (
        lambda batch: run_network(net, batch, device, blocks))
    out = [run(windows[start:start + batch_size]) for start in range(0, len(windows),
                                                                    batch_size)]
    if out:
        return np.concatenate(out)
    return np.zeros((0, net.width(blocks) if isinstance(net, nn.Module) else 0), np.float32)
