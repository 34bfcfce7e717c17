"""Run an exported model (``stt export``: ONNX through onnxruntime, or TorchScript) where stt
runs its PyTorch model.

:func:`load_exported` reads ``model.onnx`` / ``model.int8.onnx`` / ``model.ts`` and its
metadata into an :class:`ExportedModel`, which has the calling convention of
:class:`stt.model.WaveNetCTC` that :func:`stt.inference.infer_log_probs` and
:func:`stt.inference.stream_log_probs` use: ``model(waveform, lengths)`` and
``model.forward_features(features, frame_lengths)`` return ``(log_probs, out_lengths)``
tensors, and ``config``, ``vocab_size``, ``frame_ms``, ``features``, ``blocks``,
``input_proj`` describe the network. So a :class:`stt.transcribe.Transcriber` decodes,
timestamps, reads long audio in windows and writes its formats with the same code for every
backend. Long-audio windows compute their MFCC statistics over the whole file with PyTorch (as
for a checkpoint) and feed the exported graph's ``features`` input.

A TorchScript file runs the code it holds (torch operators only, but not sandboxed): load one
only from a source you trust, as with a pickle. An ONNX file holds no code.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stt.checkpoint import read_model
from stt.errors import CheckpointError, ConfigError, ToolMissingError, require_file
from stt.model import ModelConfig, WaveNetCTC, model_config_from_dict
from stt.text import Vocabulary

FORMAT = "stt-onnx"  # the metadata marker of an exported model (TorchScript: "stt-torchscript")
VERSION = 1  # of the export format: a newer file is refused, not misread

BACKENDS = ("auto", "torch", "onnx", "torchscript")

PADDING_SLACK = 1.2
"""How much padding a group of rows may carry: an exported graph computes every padded frame
(the fused PyTorch model packs a batch's rows end to end instead), so a batch runs as groups of
similar lengths, each trimmed to its longest row, a group's padded size at most this factor of
its rows' real size. Ten mixed-length examples padded into one batch were 2.1x their audio and
ran at half the int8 file's batch-1 speed."""
ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript")


def backend_for(path: str | Path, backend: str = "auto") -> str:
    """The backend that runs ``path``: ``backend`` as given, or (``auto``) ``onnx`` for
    ``.onnx``, ``torchscript`` for ``.ts``, else ``torch`` (a checkpoint)."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    suffix = Path(path).suffix.lower()
    found = (
        "onnx"
        if suffix in ONNX_SUFFIXES
        else "torchscript"
        if suffix in TORCHSCRIPT_SUFFIXES
        else "torch"
    )
    if backend == "auto":
        return found
    if backend != found:
        hint = {
            "onnx": "an .onnx file",
            "torchscript": "a .ts file",
            "torch": "a checkpoint (.pt)",
        }[backend]
        raise ConfigError(
            f"{path}: --backend {backend} runs {hint}; export a checkpoint with "
            "`stt export CHECKPOINT OUT` and pass --model OUT/model.onnx (or OUT/model.ts)"
        )
    return backend


# The exported graph's entry points: (inputs, outputs) of each.
ENTRY_POINTS = {
    "waveform": (("waveform", "lengths"), ("log_probs", "out_lengths")),
    "features": (("features", "feature_lengths"), ("features_log_probs", "features_out_lengths")),
    "mfcc": (("mfcc_waveform",), ("mfcc",)),
}


class _OnnxRunner:
    """onnxruntime sessions over an exported graph's entry points.

    The file is one graph that maps each entry point's inputs to its outputs, but onnxruntime
    runs every node of a graph on each call, whatever outputs are asked for: a waveform call
    also ran the features path (the encoder again) and the MFCC path on their one-frame
    defaults, ~half the nodes, 5-10% of a batch-1 call's time on one thread. So each entry
    point gets a session of its own over just its nodes (``onnx.utils.Extractor``, a few
    hundredths of a second at load; the features and MFCC ones when first used, by long
    audio). Without the ``onnx`` package, or for a file with external data, one session over
    the whole graph does it all, as before."""

    def __init__(self, path: Path, threads: int | None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ToolMissingError(
                "onnxruntime is not installed: pip install onnxruntime (the [onnx] extra)"
            ) from None
        self._ort, self.path = ort, path
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # the optional inputs' defaults are meant to be inputs
        self._options = options
        self._graph = _entry_point_graphs(path)
        self._sessions: dict[str, object] = {}
        if self._graph is None:
            whole = self._session(str(path))
            self._sessions = dict.fromkeys(ENTRY_POINTS, whole)
            self.metadata = whole.get_modelmeta().custom_metadata_map
        else:
            self.metadata = {p.key: p.value for p in self._graph.model.metadata_props}
            self._entry("waveform")  # the main path: a damaged file fails here, at load
        self.n_fft = 0  # set by ExportedModel: the dummy waveform of a whole-graph call

    def _session(self, model: str | bytes):
        try:
            return self._ort.InferenceSession(
                model, self._options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for a damaged file
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise CheckpointError(f"{self.path}: not a readable ONNX model ({reason})") from None

    def _entry(self, name: str):
        if name not in self._sessions:
            inputs, outputs = ENTRY_POINTS[name]
            try:
                part = self._graph.extract_model(list(inputs), list(outputs))
            except Exception as exc:  # a graph without stt's entry points
                reason = " ".join(str(exc).split())[:200] or type(exc).__name__
                raise CheckpointError(
                    f"{self.path}: not an stt ONNX model (entry point {name}: {reason})"
                ) from None
            defaults = [t for t in part.graph.initializer if t.name in inputs]
            for tensor in defaults:  # the whole graph's one-frame defaults: required here
                part.graph.initializer.remove(tensor)
            self._sessions[name] = self._session(part.SerializeToString())
        return self._sessions[name]

    def _run(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        session = self._entry(name)
        if self._graph is None and name != "waveform":
            feeds = {**self._no_waveform(), **feeds}
        return session.run(list(ENTRY_POINTS[name][1]), feeds)

    def forward(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self._run("waveform", {"waveform": waveform, "lengths": lengths}))

    def forward_features(self, feats: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self._run("features", {"features": feats, "feature_lengths": lengths}))

    def mfcc(self, waveform: np.ndarray) -> np.ndarray:
        return self._run("mfcc", {"mfcc_waveform": waveform})[0]

    def _no_waveform(self) -> dict[str, np.ndarray]:
        # One frame of silence for the whole graph's required inputs: computed, not used.
        return {
            "waveform": np.zeros((1, self.n_fft), np.float32),
            "lengths": np.array([self.n_fft], np.int64),
        }


def _entry_point_graphs(path: Path):
    """An ``onnx.utils.Extractor`` over the file's graph, or None where the whole graph has to
    be one session: no ``onnx`` package, a file onnx cannot parse (onnxruntime then says
    why), or tensors stored outside the file (which onnxruntime resolves itself)."""
    try:
        import onnx
        from onnx.external_data_helper import uses_external_data
        from onnx.utils import Extractor
    except ImportError:
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends
        return None
    if any(uses_external_data(t) for t in model.graph.initializer):
        return None
    names = {i.name for i in model.graph.input} | {o.name for o in model.graph.output}
    if not all(set(i) | set(o) <= names for i, o in ENTRY_POINTS.values()):
        return None  # not stt's layout: the metadata check says what it is
    try:
        return Extractor(model)
    except Exception:
        return None


class _TorchScriptRunner:
    """A traced TorchScript module (``forward`` and ``forward_features``)."""

    EXTRA = "stt.json"

    def __init__(self, path: Path) -> None:
        extra = {self.EXTRA: ""}
        try:
            with warnings.catch_warnings():  # torch 2.11 deprecates TorchScript (still works)
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # torch raises many types for a damaged or foreign file
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise CheckpointError(f"{path}: not a readable TorchScript model ({reason})") from None
        self.module.eval()
        raw = extra[self.EXTRA]
        try:
            meta = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = {}
        # The same keys as an ONNX file's metadata_props (JSON text values).
        self.metadata = {key: json.dumps(value) for key, value in meta.items()}
        self.device = torch.device("cpu")

    def forward(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
        return self._run(self.module.forward, waveform, lengths)

    def forward_features(self, feats: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
        return self._run(self.module.forward_features, feats, lengths)

    def mfcc(self, waveform: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module.mfcc(torch.from_numpy(waveform)).numpy()

    def _run(self, method, x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            out, out_lengths = method(
                torch.from_numpy(x).to(self.device), torch.from_numpy(lengths).to(self.device)
            )
        return out.cpu().numpy(), out_lengths.cpu().numpy()


def _read_metadata(path: Path, raw: dict[str, str]) -> dict:
    try:
        meta = {key: json.loads(value) for key, value in raw.items()}
    except (json.JSONDecodeError, TypeError):
        meta = {}
    if meta.get("format") not in ("stt-onnx", "stt-torchscript"):
        raise CheckpointError(
            f"{path}: not an stt model (no stt metadata); make one with `stt export CHECKPOINT OUT`"
        )
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path}: export format version {version} is not one this stt reads ({VERSION}); "
            "upgrade stt or export again"
        )
    missing = [k for k in ("vocabulary", "model_config") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: stt metadata lacks {', '.join(missing)}")
    return meta


class _ExportedFeatures:
    """``model.features`` of an exported model: ``config``, ``frame_lengths`` and ``mfcc``
    (unnormalised MFCC ``(batch, n_mfcc, frames)`` of full rows, computed by the exported
    graph, whose filter banks are the checkpoint's: a fresh torchaudio MFCC's differ from a
    checkpoint saved in half precision)."""

    def __init__(self, config: ModelConfig, features, runner) -> None:
        self.config = config.features
        self.frame_lengths = features.frame_lengths
        self._runner = runner

    def mfcc(self, waveform: Tensor) -> Tensor:
        """``(batch, samples)`` float32 -> ``(batch, n_mfcc, frames)``."""
        x = np.ascontiguousarray(waveform.detach().cpu().float().numpy())
        return torch.from_numpy(np.asarray(self._runner.mfcc(x)))


class ExportedModel:
    """An exported model behind :class:`~stt.model.WaveNetCTC`'s inference interface (see the
    module docstring). Inference only, in float32 on the CPU.

    ``model(waveform (batch, samples), lengths (batch,))`` and ``model.forward_features(
    features (batch, n_mfcc, frames), frame_lengths (batch,))`` -> ``(log_probs (batch,
    out_frames, vocab) float32, out_lengths (batch,) long)`` tensors; frames past
    ``out_lengths`` are arbitrary.
    """

    def __init__(self, path: Path, backend: str, runner, meta: dict) -> None:
        self.path, self.backend, self.runner, self.metadata = path, backend, runner, meta
        try:
            self.config: ModelConfig = model_config_from_dict(meta["model_config"])
            self.vocab = Vocabulary(meta["vocabulary"])
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200]
            raise CheckpointError(
                f"{path}: stt metadata does not describe a model ({reason})"
            ) from None
        self.vocab_size = len(self.vocab)
        self.quantization = meta.get("quantization")
        # The network's geometry (paddings, receptive field; its random weights are never
        # used), for the long-audio window plan.
        skeleton = WaveNetCTC(self.config, self.vocab_size).eval()
        self.blocks, self.input_proj = skeleton.blocks, skeleton.input_proj
        self._skeleton = skeleton
        self.features = _ExportedFeatures(self.config, skeleton.features, runner)
        runner.n_fft = self.config.features.n_fft

    @property
    def frame_ms(self) -> float:
        return self.config.stride * self.config.features.hop_ms

    @property
    def receptive_field_frames(self) -> int:
        return self._skeleton.receptive_field_frames

    @property
    def receptive_field_seconds(self) -> float:
        return self._skeleton.receptive_field_seconds

    @property
    def training(self) -> bool:
        return False

    def to(self, device: torch.device | str | None = None, *args, **kwargs) -> ExportedModel:
        """Only the CPU: the onnxruntime package stt installs has no GPU provider, and an
        export is meant for machines without a GPU anyway."""
        if device is not None and torch.device(device).type != "cpu":
            raise ConfigError(
                f"--device {device}: the {self.backend} backend runs on the CPU; use --device cpu"
            )
        return self

    def eval(self) -> ExportedModel:
        return self

    def __call__(self, waveform: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[1], dtype=torch.long)
        width = waveform.shape[1]
        out_frames = int(self.output_lengths(torch.tensor([width]))[0])
        floor = min(width, self.config.features.n_fft)  # a row shorter than a window is padded
        return self._run(self.runner.forward, waveform, lengths, out_frames, floor)

    def forward_features(self, features: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
        out_frames = -(-features.shape[2] // self.config.stride)
        return self._run(self.runner.forward_features, features, frame_lengths, out_frames, 1)

    @staticmethod
    def _run(
        method: Callable, x: Tensor, lengths: Tensor, out_frames: int, floor: int
    ) -> tuple[Tensor, Tensor]:
        """``method`` on ``x`` ``(batch, ..., length)`` in groups of similar ``lengths``
        (:func:`length_groups`), each cut to its longest row (at least ``floor``), reassembled
        as one ``(batch, out_frames, vocab)`` result; frames past a row's length are uniform
        distributions."""
        x_np = np.ascontiguousarray(x.detach().cpu().float().numpy())
        lengths_np = np.ascontiguousarray(lengths.detach().cpu().numpy().astype(np.int64))
        groups = length_groups(lengths_np.tolist())
        if not groups or (len(groups) == 1 and int(lengths_np.max()) >= x_np.shape[-1]):
            out, out_lengths = method(x_np, lengths_np)
            return torch.from_numpy(np.asarray(out)), torch.from_numpy(np.asarray(out_lengths))
        out, out_lengths = None, np.zeros(len(lengths_np), dtype=np.int64)
        for rows in groups:
            width = max(floor, int(lengths_np[rows].max()))
            part = np.ascontiguousarray(x_np[rows, ..., :width])
            log_probs, part_lengths = (np.asarray(a) for a in method(part, lengths_np[rows]))
            if out is None:
                vocab = log_probs.shape[2]
                out = np.full((len(lengths_np), out_frames, vocab), -np.log(vocab), np.float32)
            for row, lp, n in zip(rows, log_probs, part_lengths, strict=True):
                out[row, :n] = lp[:n]
            out_lengths[rows] = part_lengths
        return torch.from_numpy(out), torch.from_numpy(out_lengths)

    def output_lengths(self, sample_lengths: Tensor) -> Tensor:
        frames = self.features.frame_lengths(torch.as_tensor(sample_lengths))
        s = self.config.stride
        return torch.div(frames + s - 1, s, rounding_mode="floor")

    def describe(self) -> str:
        c = self.config
        q = f", {self.quantization}" if self.quantization else ""
        return (
            f"{self.backend} model {self.path.name}{q}: {len(self.blocks)} blocks x "
            f"{c.channels} channels, output every {self.frame_ms:g} ms, "
            f"{'causal' if c.causal else 'non-causal'}, vocab {self.vocab_size}"
        )


def length_groups(lengths: Sequence[int], slack: float = PADDING_SLACK) -> list[list[int]]:
    """Row indices in groups of similar length, longest first: a row joins the current group
    while the group padded to its longest row stays within ``slack`` times its rows' lengths
    (:data:`PADDING_SLACK`). Equal lengths make one group."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    total = 0
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= slack * (
            total + lengths[i]
        ):
            groups[-1].append(i)
            total += lengths[i]
        else:
            groups.append([i])
            total = lengths[i]
    return groups


def load_exported(
    path: str | Path, backend: str = "auto", threads: int | None = None
) -> ExportedModel:
    """An :class:`ExportedModel` for an ``stt export`` file (``.onnx`` or ``.ts``).

    ``threads``: onnxruntime's intra-op threads (None: torch's thread count).

    Raises:
        CheckpointError: the file is missing, unreadable, or has no stt metadata.
        ConfigError: ``backend`` does not fit the file.
        ToolMissingError: onnxruntime is not installed (ONNX).
    """
    path = Path(path)
    backend = backend_for(path, backend)
    if backend == "torch":
        raise ConfigError(f"{path}: not an exported model (.onnx or .ts)")
    require_file(path, "model", CheckpointError)
    runner = _OnnxRunner(path, threads) if backend == "onnx" else _TorchScriptRunner(path)
    meta = _read_metadata(path, runner.metadata)
    return ExportedModel(path, backend, runner, meta)


def read_any_model(
    path: str | Path, backend: str = "auto"
) -> tuple[WaveNetCTC | ExportedModel, Vocabulary]:
    """``(model, vocabulary)`` of a checkpoint or an export, by ``backend`` (``auto``: by the
    file's suffix): what ``stt transcribe`` and ``stt eval`` run.

    Raises:
        CheckpointError: the file is missing or unreadable.
        ConfigError: ``backend`` does not fit the file.
    """
    if backend_for(path, backend) == "torch":
        return read_model(path)
    model = load_exported(path, backend)
    return model, model.vocab
