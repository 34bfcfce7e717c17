"""Export a checkpoint for inference without stt's PyTorch code: ONNX (fp32 and int8) and
TorchScript.

:func:`export_model` writes, into one folder:

* ``model.onnx``: the fused model (:mod:`stt.fusion`) with the MFCC front end inside the graph,
  as traced from :class:`stt.portable.PortableWaveNetCTC`. Inputs ``waveform`` ``(batch,
  samples)`` float32 at 16 kHz and ``lengths`` ``(batch,)`` int64 (valid samples per row);
  outputs ``log_probs`` ``(batch, frames, vocab)`` float32 (log-softmax over the vocabulary,
  blank at id 0) and ``out_lengths`` ``(batch,)`` int64 (valid frames per row). Batch and
  length axes are dynamic. Three more inputs have a one-frame default, so other callers can
  ignore them and their outputs: ``features`` ``(batch, n_mfcc, frames)`` and
  ``feature_lengths`` feed the encoder alone (outputs ``features_log_probs``,
  ``features_out_lengths``), and ``mfcc_waveform`` the front end alone (output ``mfcc``,
  unnormalised). stt's long-audio windows use them: each window's MFCC normalised with
  statistics of the whole recording, then the encoder.
* ``model.int8.onnx`` (``quantize="int8"``): the same graph with onnxruntime's dynamic int8
  quantisation of every matrix product of the encoder (weights int8, activations quantised per
  call); the front end stays fp32 (a quantised DFT would lose the quiet bands). In both files
  the DFT basis is not stored but computed from the window by a few nodes that onnxruntime
  folds when it loads the model.
* ``model.int4.onnx`` (``quantize="int4"``): the encoder's matrix products as onnxruntime's
  ``MatMulNBits`` with 4-bit weights, one fp32 scale per 32 of them (:func:`quantize_int4`):
  the smallest file, for devices where size matters more than speed.
* ``model.ts``: TorchScript (``torch.jit.trace``) of the same module: methods ``forward``,
  ``forward_features`` and ``mfcc``, with the same shapes.
* ``model.json``: what every file needs to be used: the format marker ``stt-onnx`` and its
  version, the vocabulary, feature settings, model configuration, seconds per output frame, and
  the inputs and outputs. The same keys are in each ONNX file's ``metadata_props`` (values as
  JSON text) and in the TorchScript file's ``stt.json`` extra file.
* ``model.streaming.onnx`` and ``model.streaming.json`` (``streaming=True``, causal models): the
  network of :class:`stt.streaming.StreamingEncoder` as one step (:class:`StreamingStep`) with
  the projection's and every block's cache as explicit inputs and outputs, so a runtime streams
  exactly as stt does; :func:`onnx_streaming_encoder` drives it with onnxruntime.
* ``decoder.yaml``: the checkpoint's tuned decoder settings, if it has any (LM paths made
  absolute), so ``stt transcribe --model OUT/model.onnx`` decodes as with the checkpoint.

:mod:`stt.exported` loads these files back as a model :class:`stt.transcribe.Transcriber` runs.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from stt.atomic import atomic_path
from stt.audio import SAMPLE_RATE
from stt.checkpoint import read_model
from stt.errors import ConfigError, ToolMissingError
from stt.exported import FORMAT, VERSION
from stt.fusion import can_fuse, fuse
from stt.model import WaveNetCTC
from stt.portable import OnnxEntry, PortableMFCC, PortableWaveNetCTC
from stt.text import Vocabulary
from stt.version import __version__

MIN_OPSET = 17
DEFAULT_OPSET = 17
FORMATS = ("onnx", "torchscript", "all")
QUANTIZATIONS = ("int8", "int4")
INT4_BLOCK = 32  # weights per fp32 scale in model.int4.onnx (16: 20% of fp32 for no better WER)
DFT_BASIS = "model.front_end.dft"  # the front end's windowed DFT basis in the exported graph

ONNX_FILE, INT8_FILE, INT4_FILE, TORCHSCRIPT_FILE, METADATA_FILE = (
    "model.onnx",
    "model.int8.onnx",
    "model.int4.onnx",
    "model.ts",
    "model.json",
)
TORCHSCRIPT_EXTRA = "stt.json"  # the metadata inside a TorchScript file

INPUTS = {
    "waveform": "(batch, samples) float32, 16 kHz mono",
    "lengths": "(batch,) int64, valid samples per row",
    "features": "(batch, n_mfcc, frames) float32 normalised MFCC (optional; default 1 frame)",
    "feature_lengths": "(batch,) int64, valid frames per row (optional)",
    "mfcc_waveform": "(batch, samples) float32 (optional; default n_fft zeros)",
}
OUTPUTS = {
    "log_probs": "(batch, frames, vocab) float32 log-softmax, blank at id 0",
    "out_lengths": "(batch,) int64, valid output frames per row",
    "features_log_probs": "(batch, frames, vocab) float32, from the features input",
    "features_out_lengths": "(batch,) int64",
    "mfcc": "(batch, n_mfcc, frames) float32 unnormalised MFCC of mfcc_waveform",
}


@dataclass
class ExportResult:
    """Paths written by :func:`export_model` (None: not asked for)."""

    metadata: Path
    onnx: Path | None = None
    onnx_int8: Path | None = None
    onnx_int4: Path | None = None
    torchscript: Path | None = None
    extra: list[Path] = field(default_factory=list)

    def files(self) -> list[Path]:
        found = [
            self.onnx,
            self.onnx_int8,
            self.onnx_int4,
            self.torchscript,
            self.metadata,
            *self.extra,
        ]
        return [p for p in found if p is not None]


def metadata(model: WaveNetCTC, vocab: Vocabulary, **extra) -> dict:
    """What a consumer of an exported model needs besides the graph (JSON-ready)."""
    config = asdict(model.config)
    return {
        "format": FORMAT,
        "version": VERSION,
        "stt_version": __version__,
        "vocabulary": vocab.tokens,
        "blank_id": vocab.blank_id,
        "sample_rate": SAMPLE_RATE,
        "frame_seconds": model.frame_ms / 1000,
        "features": config["features"],
        "model_config": config,
        "causal": bool(model.config.causal),
        "inputs": INPUTS,
        "outputs": OUTPUTS,
        **extra,
    }


def portable_model(model: WaveNetCTC) -> PortableWaveNetCTC:
    """The traceable copy (:mod:`stt.portable`) of an eval-mode float32 model."""
    model = model.float().eval()
    if not can_fuse(model):
        raise ConfigError("only a float32 stt WaveNetCTC can be exported")
    try:
        return PortableWaveNetCTC(fuse(model)).eval()
    except ValueError as exc:
        raise ConfigError(f"cannot export this model: {exc}") from None


def _example_inputs(model: PortableWaveNetCTC) -> tuple[torch.Tensor, ...]:
    """Two utterances of different lengths (any will do: the graph follows the input)."""
    g = torch.Generator().manual_seed(0)
    waveform = torch.randn(2, SAMPLE_RATE, generator=g) * 0.1
    lengths = torch.tensor([SAMPLE_RATE, SAMPLE_RATE * 3 // 4])
    n_mfcc = model.config.features.n_mfcc
    features = torch.randn(2, n_mfcc, 37, generator=g)
    mfcc_waveform = torch.randn(1, SAMPLE_RATE // 2, generator=g) * 0.1
    return waveform, lengths, features, torch.tensor([37, 20]), mfcc_waveform


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ToolMissingError(
            f"{module} is not installed: pip install onnx onnxruntime onnx-ir (the [onnx] extra)"
        ) from None


def check_opset(opset: int) -> int:
    if int(opset) < MIN_OPSET:
        raise ConfigError(f"--opset {opset}: ONNX opset {MIN_OPSET} or newer is needed")
    return int(opset)


def _set_metadata(onnx_model, meta: dict) -> None:
    del onnx_model.metadata_props[:]
    for key, value in meta.items():
        prop = onnx_model.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)
    onnx_model.producer_name = "stt"
    onnx_model.producer_version = __version__


def _short_names(graph) -> None:
    """Give every node and every intermediate tensor a short name (``n12``, ``t34``).

    The exporter names them by module path (``/model/blocks.3/conv/MatMul_output_0``): 0.24 MB
    of the default's 2.7 MB int8 file, 9% of it, was such names. The graph's inputs, outputs and
    initializers keep theirs (callers and :func:`quantize_int8` find them by name)."""
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    keep |= {t.name for t in graph.initializer}
    renamed: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        for position, name in enumerate(node.output):
            if name and name not in keep:
                node.output[position] = renamed.setdefault(name, f"t{len(renamed)}")
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in renamed:
                node.input[position] = renamed[name]


def _merge_equal_constants(graph) -> None:
    """Keep one ``Constant`` node per distinct value: the trace repeats the same few scalars
    and shapes for every block (1,103 nodes, ~70 distinct, in the default's graph)."""
    outputs = {v.name for v in graph.output}
    first: dict[bytes, str] = {}
    alias: dict[str, str] = {}
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] not in outputs:
            key = b"".join(a.SerializeToString() for a in node.attribute)
            if key in first:
                alias[node.output[0]] = first[key]
                continue
            first[key] = node.output[0]
        kept.append(node)
    for node in kept:
        for position, name in enumerate(node.input):
            if name in alias:
                node.input[position] = alias[name]
    del graph.node[:]
    graph.node.extend(kept)


def _save_onnx(onnx_model, path: Path) -> None:
    onnx = _require("onnx")
    del onnx_model.graph.value_info[:]  # the exporter's inferred shapes: unused, 1.5% of a file
    _merge_equal_constants(onnx_model.graph)
    _short_names(onnx_model.graph)
    with atomic_path(path) as tmp:
        onnx.save(onnx_model, str(tmp))


@torch.no_grad()
def export_onnx(
    model: PortableWaveNetCTC, path: str | Path, meta: dict, opset: int = DEFAULT_OPSET
) -> Path:
    """Write ``model`` as ONNX to ``path`` (see the module docstring for the graph)."""
    onnx = _require("onnx")
    from onnx import numpy_helper

    opset = check_opset(opset)
    path = Path(path)
    entry = OnnxEntry(model).eval()
    inputs = _example_inputs(model)
    dynamic = {
        "waveform": {0: "batch", 1: "samples"},
        "lengths": {0: "batch"},
        "features": {0: "features_batch", 2: "feature_frames"},
        "feature_lengths": {0: "features_batch"},
        "log_probs": {0: "batch", 1: "frames"},
        "out_lengths": {0: "batch"},
        "features_log_probs": {0: "features_batch", 1: "features_frames"},
        "features_out_lengths": {0: "features_batch"},
        "mfcc_waveform": {0: "mfcc_batch", 1: "mfcc_samples"},
        "mfcc": {0: "mfcc_batch", 2: "mfcc_frames"},
    }
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The TorchScript-based exporter announces its own deprecation and notes every traced
        # size; the graph is checked against PyTorch by tests/test_export.py instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            entry, inputs, str(tmp), input_names=list(INPUTS), output_names=list(OUTPUTS),
            dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True,
        )  # fmt: skip
        onnx_model = onnx.load(str(tmp))
    # A graph input with an initializer of the same name is optional, that value its default.
    f = model.config.features
    onnx_model.graph.initializer.extend([
        numpy_helper.from_array(np.zeros((1, f.n_mfcc, 1), np.float32), "features"),
        numpy_helper.from_array(np.ones(1, np.int64), "feature_lengths"),
        numpy_helper.from_array(np.zeros((1, f.n_fft), np.float32), "mfcc_waveform"),
    ])  # fmt: skip
    _basis_in_graph(onnx_model, model.front_end)
    _set_metadata(onnx_model, {**meta, "opset": opset, "quantization": None})
    _save_onnx(onnx_model, path)
    return path


def _basis_in_graph(onnx_model, front_end: PortableMFCC) -> None:
    """Replace the front end's windowed DFT basis (the largest float tensor of the file, 0.8 MB
    for the default) by the few nodes that compute it, ``cos`` and ``-sin`` of ``2 pi (k n mod
    N) / N`` times the window: onnxruntime folds them into the same tensor when it loads the
    model, so the file carries only the window. The integer ``mod`` keeps every angle under
    2 pi, where float32 is exact to ~1e-7."""
    from onnx import TensorProto, helper, numpy_helper

    graph = onnx_model.graph
    index = next(i for i, t in enumerate(graph.initializer) if t.name == DFT_BASIS)
    freqs = graph.initializer[index].dims[0] // 2
    del graph.initializer[index]
    taps = front_end.window.numel()

    def name(part: str) -> str:
        return f"{DFT_BASIS}.{part}"

    constants = {
        "k": np.arange(freqs, dtype=np.int64)[:, None],
        "n": np.arange(taps, dtype=np.int64)[None, :] + front_end.window_start,
        "n_fft": np.array(front_end.n_fft, dtype=np.int64),
        "radians": np.array(2 * math.pi / front_end.n_fft, dtype=np.float32),
        "window": front_end.window.numpy()[None, :].astype(np.float32),
        "axis": np.array([1], dtype=np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, name(k)) for k, v in constants.items())
    steps = [
        ("Mul", ["k", "n"], "kn", {}),
        ("Mod", ["kn", "n_fft"], "turns", {}),  # k n mod N: exact in int64
        ("Cast", ["turns"], "turns_f", {"to": TensorProto.FLOAT}),
        ("Mul", ["turns_f", "radians"], "angle", {}),  # (freqs, taps), all in [0, 2 pi)
        ("Cos", ["angle"], "cos", {}),
        ("Sin", ["angle"], "sin", {}),
        ("Neg", ["sin"], "minus_sin", {}),
        ("Concat", ["cos", "minus_sin"], "rows", {"axis": 0}),
        ("Mul", ["rows", "window"], "windowed", {}),
    ]
    nodes = [helper.make_node(op, [name(i) for i in inputs], [name(out)], name=name(out), **attrs)
             for op, inputs, out, attrs in steps]  # fmt: skip
    nodes.append(helper.make_node("Unsqueeze", [name("windowed"), name("axis")], [DFT_BASIS],
                                  name=name("unsqueeze")))  # fmt: skip
    for node in reversed(nodes):  # before any consumer, under the basis's old name
        graph.node.insert(0, node)


def _front_end_nodes(model) -> list[str]:
    """The front end's products (mel filter bank, DCT) by their weights, which stay fp32: node
    names carry a module scope only on the waveform path."""
    return [n.name for n in model.graph.node if any(".front_end." in x for x in n.input)]


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """onnxruntime's quantisers narrate every node and tensor on ``logging``'s loggers (the
    root one included): warnings and below are silenced while one runs, then restored."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def quantize_int4(fp32_path: str | Path, path: str | Path, meta: dict) -> Path:
    """Weight-only 4-bit quantisation of an exported fp32 ONNX file: each encoder ``MatMul``
    becomes ``MatMulNBits`` (symmetric 4-bit weights in blocks of :data:`INT4_BLOCK` along the
    input axis, each block with its own fp32 scale; ``accuracy_level`` 4 multiplies in int8).

    Why both: int8 stores a byte per weight plus the front end and biases, 27% of the fp32
    file; 4 bits and a scale per 32 weights are 5 bits each, 17.5% of it. First measured on
    the default with ``stt eval`` (60 LibriSpeech dev utterances, greedy, a busy machine): CER
    +1.0 point against fp32, WER +0.25, half int8's speed; ``scripts/bench_export.py`` measures
    it beside the other backends."""
    onnx = _require("onnx")
    _require("onnx_ir")  # what onnxruntime's MatMulNBits quantiser is written on
    nbits = _require("onnxruntime.quantization.matmul_nbits_quantizer")
    path = Path(path)
    source = onnx.load(str(fp32_path))
    config = nbits.DefaultWeightOnlyQuantConfig(
        block_size=INT4_BLOCK, is_symmetric=True, accuracy_level=4
    )
    with _quiet_logging():
        quantizer = nbits.MatMulNBitsQuantizer(
            source, nodes_to_exclude=_front_end_nodes(source), algo_config=config
        )
        quantizer.process()
        onnx_model = quantizer.model.model
    opset = next((o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")), None)
    _set_metadata(onnx_model, {**meta, "opset": opset, "quantization": "int4"})
    _save_onnx(onnx_model, path)
    return path


def quantize_int8(fp32_path: str | Path, path: str | Path, meta: dict) -> Path:
    """Dynamic int8 quantisation of an exported fp32 ONNX file: the encoder's ``MatMul``
    weights become int8 (per output channel), activations are quantised on the fly; the MFCC
    front end stays fp32.

    The weights use 7 bits (``reduce_range``): x86 CPUs without VNNI (AVX2, most laptops)
    multiply uint8 activations by int8 weights in 16-bit pairs that saturate at full range, as
    onnxruntime's documentation warns; measured on 292 dev utterances, full-range weights cost
    0.6 points of beam + LM WER and 7-bit ones none."""
    onnx = _require("onnx")
    quantization = _require("onnxruntime.quantization")
    path = Path(path)
    source = onnx.load(str(fp32_path))
    front_end = _front_end_nodes(source)
    with _quiet_logging(), atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantization.quantize_dynamic(
            str(fp32_path), str(tmp), op_types_to_quantize=["MatMul"], per_channel=True,
            weight_type=quantization.QuantType.QInt8, nodes_to_exclude=front_end,
            reduce_range=True,
        )  # fmt: skip
        onnx_model = onnx.load(str(tmp))
    opset = next((o.version for o in source.opset_import if o.domain in ("", "ai.onnx")), None)
    _set_metadata(onnx_model, {**meta, "opset": opset, "quantization": "int8"})
    _save_onnx(onnx_model, path)
    return path


@torch.no_grad()
def export_torchscript(model: PortableWaveNetCTC, path: str | Path, meta: dict) -> Path:
    """Write ``model`` traced as TorchScript (methods ``forward``, ``forward_features`` and
    ``mfcc``),
    with ``meta`` as the extra file ``stt.json``."""
    path = Path(path)
    waveform, lengths, features, feature_lengths, mfcc_waveform = _example_inputs(model)
    methods = {
        "forward": (waveform, lengths),
        "forward_features": (features, feature_lengths),
        "mfcc": (mfcc_waveform,),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(model, methods, check_trace=False)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.11 deprecates TorchScript
        extra = {TORCHSCRIPT_EXTRA: json.dumps({**meta, "format": "stt-torchscript"})}
        torch.jit.save(traced, str(tmp), _extra_files=extra)
    return path


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def _copy_decoder_settings(checkpoint: Path, out_dir: Path) -> Path | None:
    from omegaconf import OmegaConf

    from stt.decoding import load_tuned_decoder

    settings = load_tuned_decoder(checkpoint)
    if not settings:
        return None
    for key in ("lm", "unigrams"):
        if settings.get(key):
            settings[key] = str(Path(settings[key]).resolve())
    target = out_dir / "decoder.yaml"
    with atomic_path(target) as tmp:
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(settings)))
    return target


def _quantizations(quantize: str | Sequence[str] | None, format: str) -> list[str]:
    """``quantize`` as a list without repeats ("int8,int4" or a list), each one checked."""
    if isinstance(quantize, str):
        quantize = [q.strip() for q in quantize.split(",") if q.strip()]
    wanted = list(dict.fromkeys(quantize or []))
    for q in wanted:
        if q not in QUANTIZATIONS:
            raise ConfigError(f"--quantize {q}: choose from {', '.join(QUANTIZATIONS)}")
    if wanted and format == "torchscript":
        raise ConfigError(
            f"--quantize {','.join(wanted)} applies to ONNX: use --format onnx or all"
        )
    return wanted


def export_model(
    checkpoint: str | Path,
    out_dir: str | Path,
    format: str = "all",
    quantize: str | Sequence[str] | None = None,
    opset: int = DEFAULT_OPSET,
    streaming: bool = False,
) -> ExportResult:
    """Export ``checkpoint`` into the folder ``out_dir`` (see the module docstring).

    ``format``: ``onnx``, ``torchscript`` or ``all``; ``quantize``: None, ``int8``, ``int4``,
    or several of them (a list, or one string such as ``"int8,int4"``), each an ONNX file more.

    Raises:
        CheckpointError: the checkpoint is missing or unreadable.
        ConfigError: a bad option, or a model this cannot export.
        ToolMissingError: onnx (or onnxruntime, for int8) missing for an ONNX export.
    """
    if format not in FORMATS:
        raise ConfigError(f"--format {format}: choose one of {', '.join(FORMATS)}")
    quantize = _quantizations(quantize, format)
    onnx_wanted = format in ("onnx", "all")
    if onnx_wanted:
        check_opset(opset)
        _require("onnx")
        if quantize:
            _require("onnxruntime")
    checkpoint = Path(checkpoint)
    model, vocab = read_model(checkpoint)
    if streaming:
        from stt.streaming import check_streamable

        if not model.config.causal:
            raise ConfigError(
                f"{checkpoint}: --streaming needs a causal model (stt train model=causal)"
            )
        check_streamable(model, str(checkpoint))
        if format == "torchscript":
            raise ConfigError("--streaming writes ONNX: use --format onnx or all")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"OUT {out_dir}: is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    portable = portable_model(model)
    meta = metadata(model, vocab, checkpoint=checkpoint.name)
    result = ExportResult(metadata=out_dir / METADATA_FILE)
    files = {}
    if onnx_wanted:
        result.onnx = export_onnx(portable, out_dir / ONNX_FILE, meta, opset)
        files[ONNX_FILE] = {"format": "onnx", "opset": opset, "quantization": None}
        if "int8" in quantize:
            result.onnx_int8 = quantize_int8(result.onnx, out_dir / INT8_FILE, meta)
            files[INT8_FILE] = {"format": "onnx", "opset": opset, "quantization": "int8"}
        if "int4" in quantize:
            result.onnx_int4 = quantize_int4(result.onnx, out_dir / INT4_FILE, meta)
            files[INT4_FILE] = {"format": "onnx", "opset": opset, "quantization": "int4"}
    if format in ("torchscript", "all"):
        result.torchscript = export_torchscript(portable, out_dir / TORCHSCRIPT_FILE, meta)
        files[TORCHSCRIPT_FILE] = {
            "format": "torchscript",
            "methods": ["forward", "forward_features", "mfcc"],
        }
    if streaming:
        from stt.streaming import StreamingEncoder

        encoder = StreamingEncoder(model, threads=None)
        stream_meta = streaming_metadata(encoder, vocab, checkpoint=checkpoint.name)
        stream_meta["opset"] = opset
        path = export_streaming(encoder, out_dir / STREAMING_FILE, stream_meta, opset)
        _write_json(out_dir / STREAMING_METADATA_FILE, stream_meta)
        result.extra += [path, out_dir / STREAMING_METADATA_FILE]
        files[STREAMING_FILE] = {"format": "onnx", "opset": opset, "streaming": True}
    _write_json(result.metadata, {**meta, "files": files})
    decoder = _copy_decoder_settings(checkpoint, out_dir)
    if decoder is not None:
        result.extra.append(decoder)
    return result


# ---------------------------------------------------------------------------------------------
# The streaming step graph (causal models)
# ---------------------------------------------------------------------------------------------

STREAMING_FILE, STREAMING_METADATA_FILE = "model.streaming.onnx", "model.streaming.json"


class StreamingStep(torch.nn.Module):
    """One step of :class:`stt.streaming.StreamingEncoder`'s network as a fixed graph, its
    caches explicit inputs and outputs, for a runtime that streams without stt's code.

    Inputs: ``features`` ``(n * stride, n_mfcc)``: the next normalised MFCC frames (running
    normalisation, :class:`stt.features.RunningNormState`), a whole number of groups of
    ``stride`` frames; ``proj_cache`` ``(stride, n_mfcc)``: the previous group (zeros at the
    start); ``cache_i`` ``(context_i, channels)`` per block (zeros at the start). Outputs:
    ``log_probs`` ``(n, vocab)`` and every cache's next value (``*_out``). The weights are the
    encoder's own (residual scale folded, taps side by side), so the outputs are its outputs.
    """

    def __init__(self, encoder) -> None:
        super().__init__()
        if encoder.proj_left != encoder.stride or encoder.proj_kernel != 2 * encoder.stride:
            raise ConfigError("a streaming export needs the causal model's input projection")
        self.stride, self.channels = encoder.stride, encoder.channels
        self.n_mfcc = encoder.n_mfcc
        self.proj_w, self.proj_b = encoder._proj_w, encoder._proj_b
        self.blocks = encoder._blocks
        self.skip_w, self.skip_b = encoder._skip_w, encoder._skip_b
        self.hidden_w, self.hidden_b = encoder._hidden_w, encoder._hidden_b
        self.head_norm = encoder._head_norm
        self.out_w, self.out_b = encoder._out_w, encoder._out_b

    def forward(self, features: torch.Tensor, proj_cache: torch.Tensor, *caches: torch.Tensor):
        s, c = self.stride, self.channels
        frames = torch.cat([proj_cache, features])
        groups = frames.reshape(-1, s * self.n_mfcc)
        taps = torch.cat([groups[:-1], groups[1:]], dim=1)  # output j: groups j and j + 1
        x = torch.addmm(self.proj_b, taps, self.proj_w)  # (n, C)
        new_caches, gated = [], []
        for b, cache in zip(self.blocks, caches, strict=True):
            xx = torch.cat([cache, x])  # (context + n, C)
            new_caches.append(xx[xx.shape[0] - b.context :])
            window = [xx[i * b.dilation : xx.shape[0] - b.context + i * b.dilation]
                      for i in range(b.kernel)]  # fmt: skip
            z = torch.cat(window, dim=1) @ b.weight
            z = b.norm(z if b.bias is None else z + b.bias)
            h = torch.tanh(z[:, :c]) * torch.sigmoid(z[:, c:])
            gated.append(h)
            if b.res_weight is not None:
                x = torch.addmm(b.res_bias, h, b.res_weight) + x * math.sqrt(0.5)
        skip = torch.addmm(self.skip_b, torch.cat(gated, dim=1), self.skip_w)
        h = torch.relu(skip) @ self.hidden_w
        if self.hidden_b is not None:
            h = h + self.hidden_b
        logits = torch.addmm(self.out_b, torch.relu(self.head_norm(h)), self.out_w)
        new_proj = frames[features.shape[0] :]
        return (torch.log_softmax(logits, dim=1), new_proj, *new_caches)


def streaming_io(encoder) -> tuple[list[str], list[str]]:
    """Input and output names of the step graph."""
    names = [f"cache_{i}" for i in range(len(encoder._blocks))]
    return (["features", "proj_cache", *names],
            ["log_probs", "proj_cache_out", *(f"{n}_out" for n in names)])  # fmt: skip


@torch.no_grad()
def export_streaming(encoder, path: str | Path, meta: dict, opset: int) -> Path:
    """Write the step graph (:class:`StreamingStep`) of a causal model's
    :class:`~stt.streaming.StreamingEncoder` as ONNX to ``path``."""
    onnx = _require("onnx")
    step = StreamingStep(encoder).eval()
    inputs, outputs = streaming_io(encoder)
    example = (torch.randn(3 * encoder.stride, encoder.n_mfcc),
               torch.zeros(encoder.stride, encoder.n_mfcc),
               *(torch.zeros(b.context, encoder.channels) for b in encoder._blocks))  # fmt: skip
    dynamic = {"features": {0: "feature_frames"}, "log_probs": {0: "frames"}}
    with atomic_path(Path(path)) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            step, example, str(tmp), input_names=inputs, output_names=outputs,
            dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True,
        )  # fmt: skip
        onnx_model = onnx.load(str(tmp))
    _set_metadata(onnx_model, meta)
    _save_onnx(onnx_model, Path(path))
    return Path(path)


def streaming_metadata(encoder, vocab: Vocabulary, **extra) -> dict:
    """What a runtime needs to drive the step graph of ``encoder``, beside the usual metadata."""
    model = encoder.model
    inputs, outputs = streaming_io(encoder)
    f = model.config.features
    return {
        **metadata(model, vocab, **extra),
        "streaming": {
            "stride": encoder.stride,
            "n_fft": f.n_fft,
            "hop": f.hop_length,
            "cache_shapes": {
                "proj_cache": [encoder.stride, encoder.n_mfcc],
                **{
                    n: [b.context, encoder.channels]
                    for n, b in zip(inputs[2:], encoder._blocks, strict=True)
                },
            },
            "outputs": outputs,
            "how": "frame i of MFCC sees samples [hop*i, hop*i + n_fft); normalise each "
            "coefficient by the running mean and variance of frames 0..i (eps 1e-5); feed "
            "whole groups of `stride` frames with the caches (zeros at the start) and keep "
            "the *_out caches; at the end, pad a last partial group with zero frames",
        },  # fmt: skip
    }


def onnx_streaming_encoder(model: WaveNetCTC, path: str | Path):
    """A :class:`stt.streaming.StreamingEncoder` whose network runs the exported step graph at
    ``path`` in onnxruntime (the front end stays stt's): the reference of how a runtime drives
    the graph, and what the tests hold equal to PyTorch."""
    from stt.streaming import StreamingEncoder

    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    class OnnxStreamingEncoder(StreamingEncoder):
        def reset(self) -> None:
            super().reset()
            self._pending = torch.zeros(0, self.n_mfcc)  # frames short of a whole group
            self._caches = [np.zeros((self.stride, self.n_mfcc), np.float32)] + [
                np.zeros((b.context, self.channels), np.float32) for b in self._blocks
            ]

        def _step(self, feats: torch.Tensor | None, final: bool = False) -> torch.Tensor:
            if feats is not None:
                self._pending = torch.cat([self._pending, feats])
            s = self.stride
            n, rest = divmod(len(self._pending), s)
            if final and rest:  # the offline right padding: zero frames complete the group
                pad = torch.zeros(s - rest, self.n_mfcc)
                self._pending, n = torch.cat([self._pending, pad]), n + 1
            if not n:
                return self._empty()
            x, self._pending = self._pending[: n * s], self._pending[n * s :]
            feeds = dict(zip(names, [x.numpy().astype(np.float32), *self._caches], strict=True))
            log_probs, *self._caches = session.run(None, feeds)
            self.frames += n
            return torch.from_numpy(log_probs)

    return OnnxStreamingEncoder(model, threads=None)
