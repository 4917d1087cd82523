"""PANNs CNN14: the AudioSet tagging network of Kong et al. (2020), as a clip embedder.

Kong, Cao, Iqbal, Wang, Wang & Plumbley, "PANNs: Large-Scale Pretrained Audio Neural
Networks for Audio Pattern Recognition", IEEE/ACM TASLP 28, 2020. Weights:
``Cnn14_mAP=0.431.pth``, Zenodo record 3987831 (327 MB, CC BY 4.0).

This is the project's own module, written to load the published checkpoint strictly: its
``model`` entry holds every tensor below, under the names used here.

- Front end (fixed, float32): the waveform at 32 kHz, reflect-padded by half a frame at
  each end, its short-time Fourier transform as a strided convolution with the published
  kernels (``spectrogram_extractor.stft.conv_real/conv_imag.weight``: 513 periodic-Hann
  windowed cosines and negated sines of 1,024 samples, hop 320), the power spectrum
  through the Slaney mel matrix (``logmel_extractor.melW``: librosa's 64 bands from 50 to
  14,000 Hz, unit area), ``10 log10(max(power, 1e-10))`` (no top-dB clipping). The
  checkpoint stores those three tensors; :func:`read_panns_state` refuses one whose values
  are not what :class:`PannsFrontEnd` computes (torchlibrosa's construction).
- ``bn0``: batch norm over the 64 mel bands; six blocks of two 3x3 convolutions (no bias)
  with batch norm and ReLU, 64 to 2,048 channels, 2x2 average pooling after the first five;
  the mean over bands, then the maximum plus the mean over frames; ``fc1`` (2,048 -> 2,048)
  and ReLU: the 2,048-value ``embedding``. ``fc_audioset`` maps it to the 527 AudioSet
  classes (:meth:`Cnn14.tags`; the embedding does not use it).

A clip up to ``PannsFrontEnd.window`` seconds long (10 s) is embedded whole, at its own
length (the network pools over frames, so no padding is needed); a longer one in windows of
that length every ``hop`` of a window, the last window ending where the clip ends, and the
windows' embeddings are pooled as for any encoder (soundclf.features.embeddings.pool).
Clips shorter than 0.31 s (32 frames, the least the five poolings leave a frame of) are
zero-padded to that length.

Use: :func:`read_panns_state` (a checkpoint file's checked state dict) and :class:`Cnn14`
(the network it loads into strictly), or :func:`load_panns` (both, without initializing
weights that loading overwrites) and :func:`load_embedder` (the fast inference form alone,
:class:`FoldedCnn14`, in float32 or bfloat16); ``PannsFrontEnd().windows(y, sr, hop)``
(a mono clip at any rate -> its 32 kHz input windows); :func:`embed_windows` (windows ->
(windows, 2048) embeddings, batched, by the fast form). The encoder registry's entry
``panns_cnn14`` (soundclf.features.encoders) calls :func:`windows` (the recipe the
extraction workers run) and :func:`embedder`.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import librosa
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from soundclf.data.audio import Recipe
from soundclf.features.encoders import (
    CHECKPOINT,
    ConvBlock,
    Embedder,
    WeightsError,
    precision_of,
)

SR = 32000
EMBEDDING = 2048
CLASSES = 527  # AudioSet's
FRONT_END_KEYS = ("spectrogram_extractor.stft.conv_real.weight",
                  "spectrogram_extractor.stft.conv_imag.weight", "logmel_extractor.melW")


@dataclass(frozen=True)
class PannsFrontEnd:
    """CNN14's input: 32 kHz waveform windows; the log-mel constants its network uses."""

    sr: int = SR
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    amin: float = 1e-10
    window: float = 10.0  # seconds: a clip up to this long is embedded whole

    @property
    def min_samples(self) -> int:
        """The shortest input the network takes: 32 frames (1 + samples // hop)."""
        return 31 * self.hop_length

    def stft_kernels(self) -> tuple[np.ndarray, np.ndarray]:
        """(513, 1, 1024) float32 real and imaginary DFT kernels times the periodic Hann
        window, as torchlibrosa's ``STFT`` builds them (its values to float32 rounding)."""
        n = np.arange(self.n_fft)
        k = np.arange(self.n_fft // 2 + 1)
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.n_fft)
        angle = 2 * np.pi * ((k[:, None] * n[None, :]) % self.n_fft) / self.n_fft
        real = (np.cos(angle) * hann).astype(np.float32)[:, None, :]
        imag = (-np.sin(angle) * hann).astype(np.float32)[:, None, :]
        return real, imag

    def mel_matrix(self) -> np.ndarray:
        """(513, 64) float32: librosa's Slaney mel filters, transposed (torchlibrosa's)."""
        return librosa.filters.mel(sr=self.sr, n_fft=self.n_fft, n_mels=self.n_mels,
                                   fmin=self.fmin, fmax=self.fmax).T.astype(np.float32)

    def buffers(self) -> dict[str, np.ndarray]:
        """The checkpoint's front-end tensors as this front end computes them."""
        real, imag = self.stft_kernels()
        return dict(zip(FRONT_END_KEYS, (real, imag, self.mel_matrix()), strict=True))

    def waveform(self, y: np.ndarray, sr: int) -> np.ndarray:
        """A mono clip at ``sr`` as float32 at 32 kHz (librosa's default resampler)."""
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1:
            raise ValueError(f"a mono waveform has one axis, not shape {y.shape}")
        if sr != self.sr:
            y = librosa.resample(y, orig_sr=sr, target_sr=self.sr).astype(np.float32)
        return y

    def windows(self, y: np.ndarray, sr: int = SR, hop: float = 0.5) -> np.ndarray:
        """(windows, samples) of a mono clip at ``sr``: the whole clip (at least
        ``min_samples``, zero-padded) when no longer than ``window`` seconds, else windows
        of ``window`` seconds every ``hop`` of a window, the last one ending at the end."""
        if not 0 < hop <= 1:
            raise ValueError(f"hop is a fraction of a window, 0 < hop <= 1, not {hop}")
        y = self.waveform(y, sr)
        size = int(round(self.window * self.sr))
        if len(y) <= size:
            if len(y) < self.min_samples:
                y = np.concatenate([y, np.zeros(self.min_samples - len(y), np.float32)])
            return y[None]
        step = max(1, int(round(size * hop)))
        starts = list(range(0, len(y) - size + 1, step))
        if starts[-1] + size < len(y):
            starts.append(len(y) - size)
        return np.stack([y[s:s + size] for s in starts])


class _Conv1dKernel(nn.Module):
    """A fixed convolution kernel stored as ``weight`` (a buffer: it is never trained)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("weight", torch.zeros(shape))


class _Stft(nn.Module):
    def __init__(self, front: PannsFrontEnd):
        super().__init__()
        shape = (front.n_fft // 2 + 1, 1, front.n_fft)
        self.conv_real = _Conv1dKernel(shape)
        self.conv_imag = _Conv1dKernel(shape)


class _Spectrogram(nn.Module):
    def __init__(self, front: PannsFrontEnd):
        super().__init__()
        self.stft = _Stft(front)


class _LogMel(nn.Module):
    def __init__(self, front: PannsFrontEnd):
        super().__init__()
        self.register_buffer("melW", torch.zeros(front.n_fft // 2 + 1, front.n_mels))


class _Ends(nn.Module):
    """What CNN14 computes before and after its convolutions (shared by both forms)."""

    front: PannsFrontEnd
    spectrogram_extractor: _Spectrogram
    logmel_extractor: _LogMel
    bn0: nn.BatchNorm2d
    fc1: nn.Linear
    fc_audioset: nn.Linear

    def logmel(self, x: torch.Tensor, fft: bool = False) -> torch.Tensor:
        """(batch, frames, bands) log-mel power in dB of (batch, samples), in float32.

        The STFT is the checkpoint's kernels convolved (as the original computes it), or
        with ``fft`` the same transform by FFT (``torch.stft``): far cheaper, and the
        same to float32 rounding except in bands near the 1e-10 floor (-100 dB), where the
        convolution's rounding noise is what the original computes (seen 0.05 dB apart on
        a pure tone, moving its embedding by 4e-5 of its largest value)."""
        half = self.front.n_fft // 2
        with torch.autocast(x.device.type, enabled=False):
            stft = self.spectrogram_extractor.stft
            if fft:
                window = stft.conv_real.weight[0, 0]  # the Hann window (the DC kernel)
                spec = torch.stft(x.float(), self.front.n_fft, self.front.hop_length,
                                  window=window, center=True, pad_mode="reflect",
                                  return_complex=True)
                power = torch.view_as_real(spec).square().sum(-1).transpose(1, 2)
            else:
                x = F.pad(x.float()[:, None, :], (half, half), mode="reflect")
                real = F.conv1d(x, stft.conv_real.weight, stride=self.front.hop_length)
                imag = F.conv1d(x, stft.conv_imag.weight, stride=self.front.hop_length)
                power = (real ** 2 + imag ** 2).transpose(1, 2)  # (batch, frames, 513)
            mel = torch.matmul(power, self.logmel_extractor.melW)
            return 10.0 * torch.log10(torch.clamp(mel, min=self.front.amin))

    def normalized_logmel(self, x: torch.Tensor, fft: bool = False) -> torch.Tensor:
        """(batch, 1, frames, bands): the log-mel through ``bn0`` (over the bands)."""
        x = self.logmel(x, fft)[:, None]
        return self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def tags(self, embedding: torch.Tensor) -> torch.Tensor:
        """(batch, 527) AudioSet class probabilities of (batch, 2048) embeddings."""
        return torch.sigmoid(self.fc_audioset(embedding))


class Cnn14(_Ends):
    """CNN14; input (batch, samples) float32 at 32 kHz, output (batch, 2048) embeddings.

    Parameter and buffer names are the published checkpoint's, so its ``model`` state dict
    loads with ``strict=True``. The front-end buffers are zeros until a state is loaded
    (:func:`read_panns_state` checks the checkpoint's against :class:`PannsFrontEnd`).
    """

    def __init__(self, classes: int = CLASSES, front: PannsFrontEnd = PannsFrontEnd()):
        super().__init__()
        self.front = front
        self.spectrogram_extractor = _Spectrogram(front)
        self.logmel_extractor = _LogMel(front)
        self.bn0 = nn.BatchNorm2d(front.n_mels)
        channels = [1, 64, 128, 256, 512, 1024, 2048]
        for i in range(6):
            self.add_module(f"conv_block{i + 1}",
                            ConvBlock(channels[i], channels[i + 1], pool=2 if i < 5 else 1,
                                      pooling=F.avg_pool2d))
        self.fc1 = nn.Linear(EMBEDDING, EMBEDDING)
        self.fc_audioset = nn.Linear(EMBEDDING, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalized_logmel(x).contiguous(memory_format=torch.channels_last)
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x)
        x = x.mean(dim=3)  # (batch, channels, frames)
        x = x.amax(dim=2) + x.mean(dim=2)
        return F.relu(self.fc1(x))

class FoldedCnn14(_Ends):
    """CNN14's embedding for inference only, computed faster than :class:`Cnn14` does.

    Each batch norm after a convolution folded into it (weights times ``gamma /
    sqrt(var + eps)``, a bias ``beta - mean * that``; the factors in float64, the
    products in float32), the folded weights stored in ``dtype`` (float32 or bfloat16: no
    casting per batch), the first five blocks channels-last and the last (15 x 2 positions
    for a 5 s clip, where oneDNN is faster channels-first) in the default layout. The front
    end, ``bn0``, the pooling over frames and ``fc1`` stay float32; in bfloat16 the STFT
    is by FFT (``Cnn14.logmel``). It shares
    the front end, ``bn0`` and ``fc1`` with ``net`` and holds its own copy of the
    convolutions (300 MB in float32, 150 MB in bfloat16): drop ``net`` to free its
    (:func:`load_embedder`), or ``consume`` it: each of its convolutions' weights is
    dropped once folded, so that the two copies never coexist (``net`` is unusable after).
    """

    def __init__(self, net: Cnn14, dtype: torch.dtype = torch.float32, consume: bool = False):
        super().__init__()
        self.front = net.front
        for name in ("spectrogram_extractor", "logmel_extractor", "bn0", "fc1", "fc_audioset"):
            setattr(self, name, getattr(net, name))  # shared, not copied
        self.dtype = dtype
        self.fft = dtype != torch.float32
        self.convs = nn.ModuleList()
        for i in range(1, 7):
            block = getattr(net, f"conv_block{i}")
            for conv, bn in ((block.conv1, block.bn1), (block.conv2, block.bn2)):
                scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                folded = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1,
                                   device="meta")
                folded.weight = nn.Parameter(
                    (conv.weight * scale.float()[:, None, None, None]).to(dtype),
                    requires_grad=False)
                folded.bias = nn.Parameter(
                    (bn.bias.double() - bn.running_mean.double() * scale).to(dtype),
                    requires_grad=False)
                if consume:  # free the unfolded weights as we go (net is unusable after)
                    conv.register_parameter("weight", None)
                self.convs.append(folded.to(memory_format=torch.channels_last if i <= 5
                                            else torch.contiguous_format))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalized_logmel(x, self.fft).to(self.dtype)
        for i, conv in enumerate(self.convs):
            block = i // 2  # 0 to 5
            if i % 2 == 0:
                x = x.contiguous(memory_format=torch.channels_last if block < 5
                                 else torch.contiguous_format)
            x = F.relu(conv(x), inplace=True)
            if i % 2 == 1 and block < 5:
                x = F.avg_pool2d(x, 2)
        x = x.float().mean(dim=3)  # (batch, channels, frames)
        x = x.amax(dim=2) + x.mean(dim=2)
        return F.relu(self.fc1(x))


@cache
def expected_shapes(classes: int = CLASSES) -> dict[str, tuple[int, ...]]:
    """Every key of CNN14's state dict and its shape (the published checkpoint's)."""
    with torch.device("meta"):
        net = Cnn14(classes)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def check_state(state: dict[str, torch.Tensor], source: str,
                front: PannsFrontEnd = PannsFrontEnd()) -> None:
    """Refuse a state dict that is not CNN14's, naming the first key that is missing,
    unknown or of another shape, or the front-end tensor that is not what ``front``
    computes (to a float32 rounding: rtol 1e-4, atol 1e-6)."""
    shapes = expected_shapes()
    for key, shape in shapes.items():
        if key not in state:
            raise WeightsError(f"{source} is not PANNs CNN14's checkpoint: it lacks '{key}'")
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise WeightsError(f"{source} is not PANNs CNN14's checkpoint: '{key}' has shape "
                               f"{got}, not CNN14's {shape}")
    for key in state:
        if key not in shapes:
            raise WeightsError(f"{source} is not PANNs CNN14's checkpoint: it has '{key}', "
                               "which CNN14 has not")
    for key, expected in front.buffers().items():
        value = state[key].float().numpy()
        if not np.allclose(value, expected, rtol=1e-4, atol=1e-6):
            worst = float(np.max(np.abs(value - expected)))
            raise WeightsError(f"{source}: '{key}' is not the front end's (32 kHz, window "
                               f"{front.n_fft}, hop {front.hop_length}, {front.n_mels} mel "
                               f"bands {front.fmin:g}-{front.fmax:g} Hz): it differs by up "
                               f"to {worst:.3g}")


def read_panns_state(path: Path) -> dict[str, torch.Tensor]:
    """CNN14's tensors from a checkpoint: a pickled dict whose ``model`` entry is the state
    dict (as the authors' code saves and loads it; other entries are ignored), checked by
    :func:`check_state`. Loaded with torch's safe unpickler (tensors, containers, numbers
    and numpy arrays only)."""
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = (lines[0] if lines else "")[:300]
        raise WeightsError(f"{path} is not a PANNs checkpoint, a torch file holding a dict "
                           f"with a 'model' state dict ({type(exc).__name__}: {reason})"
                           ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        kind = (f"a dict of {', '.join(map(repr, list(checkpoint)[:5]))}"
                if isinstance(checkpoint, dict) else f"a {type(checkpoint).__name__}")
        raise WeightsError(f"{path} is not a PANNs checkpoint: it holds {kind}, not a dict "
                           "with a 'model' state dict")
    state = dict(checkpoint["model"])
    check_state(state, str(path))
    return state


# numpy arrays may sit beside the state (the authors' training code also saves its
# sampler's state); torch's safe unpickler takes them once allowed (no code runs).
_NUMPY_ARRAYS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype,
                 (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                 np._core.multiarray.scalar,
                 (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
                 np.dtypes.Int64DType, np.dtypes.Int32DType, np.dtypes.Float32DType,
                 np.dtypes.Float64DType, np.dtypes.BoolDType]


def load_panns(path: Path, device: torch.device | str = "cpu") -> Cnn14:
    """CNN14 with the checked weights of ``path``, in eval mode, channels-last on ``device``."""
    return build_panns(read_panns_state(path)).to(device, memory_format=torch.channels_last)


def build_panns(state: dict[str, torch.Tensor]) -> Cnn14:
    """CNN14 holding the tensors of ``state`` (loaded strictly, not copied: the network is
    built without initializing weights it would overwrite), in eval mode."""
    with torch.device("meta"):
        net = Cnn14()
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval()


def load_embedder(path: Path, device: torch.device | str = "cpu",
                  dtype: torch.dtype | None = None) -> FoldedCnn14:
    """The fast form of :func:`load_panns`'s network, computing in ``dtype`` (None:
    float32), without the unfolded convolutions (their memory freed)."""
    return FoldedCnn14(load_panns(path, device), dtype or torch.float32, consume=True).eval()


def folded(net: Cnn14 | FoldedCnn14, dtype: torch.dtype | None = None) -> FoldedCnn14:
    """``net``'s fast form in ``dtype`` (None: float32): ``net`` itself when it is one (of
    that dtype), else made once per network and dtype and kept beside it."""
    dtype = dtype or torch.float32
    if isinstance(net, FoldedCnn14):
        if net.dtype != dtype:
            raise ValueError(f"this CNN14 computes in {net.dtype}, not {dtype}")
        return net
    forms = net.__dict__.setdefault("_folded", {})  # not a submodule: no state dict entry
    if dtype not in forms:
        forms[dtype] = FoldedCnn14(net, dtype).eval()
    return forms[dtype]


@torch.inference_mode()
def embed_windows(net: Cnn14 | FoldedCnn14, windows: np.ndarray | Sequence[np.ndarray],
                  batch_size: int, device: torch.device | str = "cpu",
                  dtype: torch.dtype | None = None) -> np.ndarray:
    """(windows, 2048) float32 embeddings of waveform windows at 32 kHz: a (windows,
    samples) array, or a sequence of 1-D windows of any lengths (consecutive windows of one
    length are batched together, at most ``batch_size`` at a time), by ``net``'s fast form
    (:class:`FoldedCnn14`) computing in ``dtype`` (``torch.bfloat16``, or None: float32)."""
    fast = folded(net, dtype)
    device = torch.device(device)
    out: list[np.ndarray] = []
    start = 0
    while start < len(windows):
        end = start + 1
        while (end < len(windows) and end - start < batch_size
               and len(windows[end]) == len(windows[start])):
            end += 1
        x = torch.from_numpy(np.ascontiguousarray(np.stack(windows[start:end]),
                                                  dtype=np.float32)).to(device)
        out.append(fast(x).float().cpu().numpy())
        start = end
    return np.concatenate(out) if out else np.zeros((0, EMBEDDING), np.float32)


@dataclass(frozen=True)
class PannsWindows(Recipe):
    """A whole clip read at 32 kHz and cut into CNN14's input windows (in the workers): one
    window of the whole clip up to 10 s, else windows of 10 s every ``hop``. The fields are
    what the cached window embeddings depend on."""

    sr: int = SR
    duration: float | None = None
    encoder: str = "panns_cnn14"
    weights: str = ""  # the checkpoint's SHA-256
    hop: float = 1.0
    front_end: PannsFrontEnd = PannsFrontEnd()
    torch: str = torch.__version__
    device: str = "cpu"
    precision: str = "fp32"  # the network's dtype (embeddings.precision, resolved)

    def compute(self, ys: list[np.ndarray]) -> list[np.ndarray]:
        return [self.front_end.windows(y, self.sr, self.hop) for y in ys]


def windows(params: dict, weights: str, device: str, folder: Path | None = None
            ) -> PannsWindows:
    """CNN14's recipe of the ``embeddings`` section (``hop``, ``precision``)."""
    section = params["embeddings"]
    return PannsWindows(weights=weights, hop=section["hop"], device=device,
                        precision=precision_of(section, device))


def embedder(folder: Path, recipe: PannsWindows, device: torch.device) -> Embedder:
    """What embeds a batch of the recipe's windows (all of one length): the fast form of
    the checkpoint in ``folder``, computing in the recipe's precision."""
    dtype = torch.bfloat16 if recipe.precision == "bf16" else None
    net = load_embedder(folder / CHECKPOINT, device, dtype)
    return lambda batch: embed_windows(net, batch, max(1, len(batch)), device, dtype)
