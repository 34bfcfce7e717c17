"""stt.export and stt.exported: ONNX (fp32, int8) and TorchScript exports compute what the
PyTorch model computes, and stt runs them with the same transcription code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from model_fixtures import model_with_norm_statistics

from stt.audio import SAMPLE_RATE
from stt.checkpoint import model_state, save_checkpoint
from stt.cli import main
from stt.errors import CheckpointError, ConfigError
from stt.export import DFT_BASIS, FORMAT, VERSION, export_model
from stt.exported import length_groups, load_exported
from stt.features import MFCC, FeatureConfig
from stt.fusion import fuse
from stt.model import WaveNetCTC
from stt.portable import PortableMFCC, PortableWaveNetCTC
from stt.text import Vocabulary
from stt.transcribe import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-4  # fp32 exports against PyTorch's fused model, on valid frames
VOCAB = Vocabulary.default()
SECONDS = {"0.3s": 0.3, "3s": 3.0, "17s": 17.0}
NO_ONNX = "onnx and onnxruntime are not installed: pip install -e '.[onnx]'"


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Tones hopping every 0.2 s over a little noise: every MFCC band moves."""
    rng = np.random.default_rng(seed)
    n = max(1, int(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    hops = int(0.2 * SAMPLE_RATE)
    freq = np.repeat(rng.uniform(120, 4000, size=n // hops + 1), hops)[:n]
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def padded(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for row, w in enumerate(waves):
        batch[row, : len(w)] = torch.from_numpy(w)
    return batch, lengths


def tiny_model(seed: int = 0, **overrides) -> WaveNetCTC:
    """A small eval-mode model with non-trivial norm statistics (so folding is exercised)."""
    config = dict(
        channels=16, kernel_size=3, dilations=[1, 2, 4], stacks=1, stride=2, head_channels=16,
        dropout=0.0,
    )  # fmt: skip
    return model_with_norm_statistics(config, len(VOCAB), seed, **overrides)


def assert_same_valid_frames(expected, expected_lengths, got, got_lengths) -> None:
    got, got_lengths = torch.as_tensor(got), torch.as_tensor(got_lengths)
    assert tuple(got.shape) == tuple(expected.shape)
    assert got_lengths.tolist() == expected_lengths.tolist()
    for row, n in enumerate(expected_lengths.tolist()):
        torch.testing.assert_close(got[row, :n], expected[row, :n], atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    return save_checkpoint(folder / "model.pt", model_state(tiny_model(), VOCAB))


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint exported in every format (and int8)."""
    pytest.importorskip("onnxruntime", reason=NO_ONNX)
    pytest.importorskip("onnx", reason=NO_ONNX)
    out = tmp_path_factory.mktemp("exported")
    torch.set_num_threads(1)
    export_model(checkpoint, out, format="all", quantize="int8")
    return out


@pytest.fixture(scope="module")
def fused(checkpoint):
    return fuse(load_model(checkpoint).model)


def batches() -> dict[str, list[np.ndarray]]:
    """Batch size 1 at each length, and all three lengths padded into one batch of 3."""
    cases = {name: [speechlike(s, seed=i)] for i, (name, s) in enumerate(SECONDS.items())}
    cases["batch3-padded"] = [speechlike(s, seed=i) for i, s in enumerate(SECONDS.values())]
    return cases


BATCHES = batches()


# ---------------------------------------------------------------------------------------------
# The traceable model
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, "running", False])
def test_portable_front_end_reproduces_stt_features_within_1e_4(normalize):
    features = MFCC(FeatureConfig(normalize=normalize)).eval()
    waves, lengths = padded([speechlike(2.0), speechlike(0.7, 1), speechlike(0.01, 2)])
    expected, expected_lengths = features(waves, lengths)  # (batch, n_mfcc, frames)
    got, got_lengths = PortableMFCC(features)(waves, lengths)  # (batch, frames, n_mfcc)
    assert_same_valid_frames(expected.transpose(1, 2), expected_lengths, got, got_lengths)


ARCHITECTURES = {
    "batchnorm-stride2": {},
    "layernorm-causal-running": dict(
        norm="layer", causal=True, features=FeatureConfig(normalize="running")
    ),
    "no-norm-stride1": dict(norm="none", stride=1),
    "stride3": dict(stride=3, kernel_size=5),
}


@pytest.mark.parametrize("overrides", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_portable_model_gives_the_fused_log_probs_for_a_padded_batch(overrides):
    fused_model = fuse(tiny_model(**overrides))
    waves, lengths = padded([speechlike(1.3), speechlike(0.3, 1), speechlike(0.02, 2)])
    with torch.inference_mode():
        expected = fused_model(waves, lengths)
        got = PortableWaveNetCTC(fused_model)(waves, lengths)
    assert_same_valid_frames(*expected, *got)


# ---------------------------------------------------------------------------------------------
# Parity of the exported files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file", ["model.onnx", "model.ts"])
@pytest.mark.parametrize("case", BATCHES.keys())
def test_export_gives_pytorchs_fused_log_probs_within_1e_4(exported, fused, file, case):
    waves, lengths = padded(BATCHES[case])
    with torch.inference_mode():
        expected = fused(waves, lengths)
    assert_same_valid_frames(*expected, *load_exported(exported / file)(waves, lengths))


@pytest.mark.parametrize("file", ["model.onnx", "model.ts"])
def test_export_runs_the_encoder_alone_on_given_features(exported, fused, file):
    features, frame_lengths = fused.features(*padded(BATCHES["batch3-padded"]))
    with torch.inference_mode():
        expected = fused.forward_features(features, frame_lengths)
    got = load_exported(exported / file).forward_features(features, frame_lengths)
    assert_same_valid_frames(*expected, *got)


@pytest.mark.parametrize("file", ["model.onnx", "model.ts", "model.int8.onnx"])
def test_greedy_transcripts_and_timestamps_of_an_export_are_pytorchs(exported, checkpoint, file):
    waves = [speechlike(s, seed=i) for i, s in enumerate((0.3, 3.0, 17.0))]
    reference = load_model(checkpoint, decoder={"kind": "greedy"})
    model = load_model(exported / file, decoder={"kind": "greedy"})
    for wave in waves:
        expected, got = reference.transcribe(wave), model.transcribe(wave)
        if file == "model.int8.onnx":  # int8 changes labels; its accuracy is benchmarked
            assert isinstance(got.text, str)
            continue
        assert got.text == expected.text
        assert [(w.start, w.end) for w in got.words] == [(w.start, w.end) for w in expected.words]


@pytest.mark.parametrize("file", ["model.onnx", "model.ts"])
def test_long_audio_windows_of_an_export_equal_pytorchs(exported, checkpoint, file):
    wave = speechlike(9.0, seed=3)
    reference = load_model(checkpoint, window_seconds=2.0)
    model = load_model(exported / file, window_seconds=2.0)
    chunks = list(model.iter_log_probs(wave))
    assert len(chunks) > 1  # really window by window
    expected = np.concatenate(list(reference.iter_log_probs(wave)))
    np.testing.assert_allclose(np.concatenate(chunks), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("file", ["model.onnx", "model.int8.onnx"])
def test_each_onnx_entry_point_runs_a_session_over_its_own_nodes(exported, file):
    """A waveform call no longer runs the features and MFCC paths on their dummy inputs: each
    entry point's session takes only its own inputs, and the features one is made only when
    long audio first needs it."""
    model = load_exported(exported / file)
    runner = model.runner
    assert [i.name for i in runner._entry("waveform").get_inputs()] == ["waveform", "lengths"]
    assert "features" not in runner._sessions
    model(*padded(BATCHES["3s"]))
    assert set(runner._sessions) == {"waveform"}
    assert [i.name for i in runner._entry("features").get_inputs()] == [
        "features",
        "feature_lengths",
    ]
    assert [i.name for i in runner._entry("mfcc").get_inputs()] == ["mfcc_waveform"]


def test_length_groups_keep_each_groups_padding_within_the_slack():
    assert length_groups([]) == []
    assert length_groups([50, 50, 50]) == [[0, 1, 2]]
    assert length_groups([100, 10, 95, 12]) == [[0, 2], [3, 1]]
    assert length_groups([100, 10, 95, 12], slack=20.0) == [[0, 2, 3, 1]]
    assert length_groups([100, 10, 95, 12], slack=1.0) == [[0], [2], [3], [1]]
    for lengths in ([7, 3, 9, 9, 1, 0, 4], list(range(40, 0, -3))):
        groups = length_groups(lengths)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        for g in groups:
            padded_size = len(g) * max(lengths[i] for i in g)
            assert len(g) == 1 or padded_size <= 1.2 * sum(lengths[i] for i in g)


@pytest.mark.parametrize("file", ["model.onnx", "model.ts"])
def test_a_padded_batch_runs_as_groups_cut_to_their_longest_row(exported, fused, file):
    """Exported graphs compute every padded frame, so rows of very different lengths run
    apart, each call only as wide as its longest row; the result has the full batch's shape."""
    model = load_exported(exported / file)
    calls = []
    forward = model.runner.forward

    def spy(waveform, lengths):
        calls.append((waveform.shape, lengths.tolist()))
        return forward(waveform, lengths)

    model.runner.forward = spy
    waves, lengths = padded(BATCHES["batch3-padded"])  # 0.3, 3 and 17 s
    got = model(waves, lengths)
    assert sorted(calls) == sorted(((1, n), [n]) for n in lengths.tolist())
    with torch.inference_mode():
        expected = fused(waves, lengths)
    assert_same_valid_frames(*expected, *got)
    same = torch.stack([waves[2], waves[2]]), torch.tensor([waves.shape[1]] * 2)
    calls.clear()
    model(*same)
    assert calls == [((2, waves.shape[1]), same[1].tolist())]  # equal lengths: one call


def test_the_whole_graph_session_computes_what_the_entry_point_sessions_do(exported, monkeypatch):
    """Without the onnx package (or for a file it cannot split) one session over the whole
    graph serves every entry point, with the same results."""
    split = load_exported(exported / "model.onnx")
    monkeypatch.setattr("stt.exported._entry_point_graphs", lambda path: None)
    whole = load_exported(exported / "model.onnx")
    assert len({id(s) for s in whole.runner._sessions.values()}) == 1
    waves, lengths = padded(BATCHES["batch3-padded"])
    for got, expected in zip(whole(waves, lengths), split(waves, lengths), strict=True):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    features = whole.features.mfcc(waves)
    np.testing.assert_array_equal(features.numpy(), split.features.mfcc(waves).numpy())
    frame_lengths = whole.features.frame_lengths(lengths)
    for got, expected in zip(
        whole.forward_features(features, frame_lengths),
        split.forward_features(features, frame_lengths),
        strict=True,
    ):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_int8_export_runs_with_the_same_shapes(exported, fused):
    waves, lengths = padded(BATCHES["batch3-padded"])
    with torch.inference_mode():
        expected, expected_lengths = fused(waves, lengths)
    got, got_lengths = load_exported(exported / "model.int8.onnx")(waves, lengths)
    assert got.shape == expected.shape
    assert got_lengths.tolist() == expected_lengths.tolist()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(got.shape[:2]), atol=1e-3, rtol=0)


def test_int8_file_keeps_only_small_tensors_in_float32(exported):
    """Every encoder weight matrix is int8; what float32 is left is biases, scales, the window
    and the small mel and DCT matrices."""
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(exported / "model.int8.onnx")).graph
    assert any(t.data_type == TensorProto.INT8 for t in graph.initializer)
    float32 = [t for t in graph.initializer if t.data_type == TensorProto.FLOAT]
    matrices = {t.name for t in float32 if sum(d > 1 for d in t.dims) > 1}
    assert matrices == {"model.front_end.mel_fb", "model.front_end.dct"}
    assert not graph.value_info  # shapes are inferred by the runtime, not stored


def test_int8_weights_use_seven_bits(exported):
    """reduce_range: no product of a uint8 activation pair and an int8 weight pair can saturate
    the 16-bit sums of CPUs without VNNI."""
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = onnx.load(str(exported / "model.int8.onnx")).graph
    int8 = [t for t in graph.initializer if t.data_type == TensorProto.INT8]
    weights = [numpy_helper.to_array(t) for t in int8]
    assert weights and all(w.min() >= -64 and w.max() <= 64 for w in weights)
    assert max(int(abs(w).max()) for w in weights) == 64  # the range is used, not lost


@pytest.mark.parametrize("file", ["model.onnx", "model.int8.onnx"])
def test_exported_files_compute_the_dft_basis_instead_of_storing_it(exported, file):
    """The basis is rebuilt by a few nodes from the window (the log-probs tests above show it is
    the same basis); only the window's taps are stored."""
    import onnx

    graph = onnx.load(str(exported / file)).graph
    names = {t.name for t in graph.initializer}
    assert DFT_BASIS not in names
    assert f"{DFT_BASIS}.window" in names
    assert any(n.op_type == "Cos" for n in graph.node) and any(
        n.op_type == "Sin" for n in graph.node
    )


@pytest.mark.parametrize("file", ["model.onnx", "model.int8.onnx"])
def test_exported_graphs_carry_short_names_and_one_constant_per_value(exported, file):
    """The exporter's module-path names and its repeated constants were 12% of the int8 file;
    the interface keeps its names (the log-probs tests above run the graphs by them)."""
    import onnx

    graph = onnx.load(str(exported / file)).graph
    interface = {v.name for v in graph.input} | {v.name for v in graph.output}
    interface |= {t.name for t in graph.initializer}
    inner = [name for node in graph.node for name in node.output if name not in interface]
    assert inner and max(len(name) for name in inner) <= 6
    assert len(set(inner)) == len(inner)
    assert all(len(node.name) <= 6 for node in graph.node)
    constants = [b"".join(a.SerializeToString() for a in node.attribute)
                 for node in graph.node if node.op_type == "Constant"]  # fmt: skip
    assert constants and len(set(constants)) == len(constants)
    onnx.checker.check_model(onnx.load(str(exported / file)))


# ---------------------------------------------------------------------------------------------
# Metadata and the graph's interface
# ---------------------------------------------------------------------------------------------


def test_metadata_names_the_format_vocabulary_features_and_frame_rate(exported):
    import onnx

    sidecar = json.loads((exported / "model.json").read_text())
    props = {p.key: json.loads(p.value) for p in onnx.load(exported / "model.onnx").metadata_props}
    for meta in (sidecar, props):
        assert meta["format"] == FORMAT and meta["version"] == VERSION
        assert meta["vocabulary"] == VOCAB.tokens
        assert meta["features"] == FeatureConfig().to_dict()
        assert meta["frame_seconds"] == pytest.approx(0.02)
    assert set(sidecar["files"]) == {"model.onnx", "model.int8.onnx", "model.ts"}
    assert load_exported(exported / "model.ts").metadata["vocabulary"] == VOCAB.tokens


def test_onnx_graph_has_dynamic_batch_and_length_and_two_required_inputs(exported):
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported / "model.onnx"))
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs == {"waveform": ["batch", "samples"], "lengths": ["batch"]}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert outputs["log_probs"] == ["batch", "frames", len(VOCAB)]
    waveform = speechlike(1.0)[None]
    log_probs, out_lengths = session.run(
        ["log_probs", "out_lengths"], {"waveform": waveform, "lengths": np.array([16000])}
    )
    frames = -(-(1 + (16000 - 512) // 160) // 2)  # MFCC frames (n_fft 512, hop 160), stride 2
    assert log_probs.shape == (1, frames, len(VOCAB)) and out_lengths.tolist() == [frames]


# ---------------------------------------------------------------------------------------------
# Loading errors
# ---------------------------------------------------------------------------------------------


def foreign_onnx(path: Path) -> Path:
    """A valid ONNX file that stt did not make (no stt metadata)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_an_onnx_file_without_stt_metadata_is_refused_in_one_line(tmp_path):
    pytest.importorskip("onnxruntime", reason=NO_ONNX)
    pytest.importorskip("onnx", reason=NO_ONNX)
    with pytest.raises(CheckpointError, match="not an stt model") as info:
        load_model(foreign_onnx(tmp_path / "foreign.onnx"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["garbage.onnx", "garbage.ts"])
def test_a_damaged_export_is_refused_in_one_line(tmp_path, name):
    if name.endswith(".onnx"):
        pytest.importorskip("onnxruntime", reason=NO_ONNX)
    path = tmp_path / name
    path.write_bytes(b"\x00not a model\xff" * 50)
    with pytest.raises(CheckpointError, match="not a readable") as info:
        load_exported(path)
    assert "\n" not in str(info.value)


def test_a_missing_export_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_exported(tmp_path / "none.onnx")


def test_backend_onnx_with_a_checkpoint_says_to_export_it(checkpoint):
    with pytest.raises(ConfigError, match="stt export"):
        load_model(checkpoint, backend="onnx")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_transcribe_refuses_a_foreign_onnx_in_one_line(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason=NO_ONNX)
    pytest.importorskip("onnx", reason=NO_ONNX)
    audio = tmp_path / "a.wav"
    sf.write(audio, speechlike(0.5), SAMPLE_RATE)
    model = foreign_onnx(tmp_path / "foreign.onnx")
    code, _, err = run(capsys, "transcribe", str(audio), "--backend", "onnx", "--model", str(model))
    assert code == 1
    assert err.strip().count("\n") == 0 and err.startswith("stt: error: ")
    assert "not an stt model" in err


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def test_cli_transcribe_with_the_onnx_backend_writes_what_pytorch_writes(
    exported, checkpoint, tmp_path, capsys
):
    audio = tmp_path / "speech.wav"
    sf.write(audio, speechlike(2.5, seed=5), SAMPLE_RATE)
    outputs = {}
    for name, args in {
        "torch": ["--model", str(checkpoint)],
        "onnx": ["--backend", "onnx", "--model", str(exported / "model.onnx")],
    }.items():
        out_dir = tmp_path / name
        code, _, err = run(capsys, "transcribe", str(audio), *args, "--format", "all",
                           "--output-dir", str(out_dir), "--no-progress")  # fmt: skip
        assert code == 0, err
        outputs[name] = {p.name: p.read_text() for p in sorted(out_dir.iterdir())}
    assert set(outputs["onnx"]) == {f"speech.{f}" for f in ("txt", "json", "srt", "vtt", "tsv")}
    assert outputs["onnx"] == outputs["torch"]


def test_cli_eval_of_an_export_scores_what_the_checkpoint_scores(
    exported, checkpoint, tmp_path, capsys
):
    manifest = tmp_path / "test.jsonl"
    lines = []
    for i, seconds in enumerate((0.6, 1.4, 2.2)):
        sf.write(tmp_path / f"u{i}.wav", speechlike(seconds, seed=i), SAMPLE_RATE)
        lines.append(json.dumps({"audio_filepath": f"u{i}.wav", "duration": seconds,
                                 "text": "a b c"}))  # fmt: skip
    manifest.write_text("\n".join(lines) + "\n")
    reports = {}
    for name, model in {"torch": checkpoint, "onnx": exported / "model.onnx",
                        "torchscript": exported / "model.ts"}.items():  # fmt: skip
        backend = ["--backend", name] if name == "torchscript" else []  # the others: auto
        code, _, err = run(capsys, "eval", str(model), str(manifest), "--out",
                           str(tmp_path / name), "--no-progress", *backend)  # fmt: skip
        assert code == 0, err
        report = json.loads((tmp_path / name / "report.json").read_text())
        utterances = (tmp_path / name / "utterances.jsonl").read_text().splitlines()
        hypotheses = [json.loads(line)["hypothesis"] for line in utterances]
        reports[name] = ([(s["name"], s["wer"], s["cer"]) for s in report_sets(report)],
                         hypotheses)  # fmt: skip
    assert any(reports["torch"][1])  # the tiny model says something, so equality means much
    assert reports["onnx"] == reports["torch"] == reports["torchscript"]


def report_sets(report: dict) -> list[dict]:
    """Each test set's greedy scores in a report.json."""
    return [{"name": n, **v} for n, v in report["decoders"]["greedy"]["sets"].items()]


def test_cli_export_writes_onnx_int8_and_metadata(checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason=NO_ONNX)
    pytest.importorskip("onnx", reason=NO_ONNX)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "export", str(checkpoint), str(out), "--format", "onnx",
                            "--quantize", "int8", "--opset", "18")  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["model.int8.onnx", "model.json", "model.onnx"]
    assert "model.onnx" in stdout
    assert load_exported(out / "model.onnx").metadata["opset"] == 18


def test_cli_export_int4_is_the_smallest_file_and_runs_like_the_others(
    checkpoint, fused, tmp_path, capsys
):
    """--quantize int8,int4: both files; int4's encoder products are MatMulNBits with 4-bit
    weights, its file is smaller than int8's, and its log-probs keep the shapes, lengths and
    (for this tiny model) nearly every frame's best label of PyTorch's."""
    pytest.importorskip("onnxruntime", reason=NO_ONNX)
    onnx = pytest.importorskip("onnx", reason=NO_ONNX)
    pytest.importorskip("onnx_ir", reason=NO_ONNX)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "export", str(checkpoint), str(out), "--format", "onnx",
                            "--quantize", "int8,int4")  # fmt: skip
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["model.int4.onnx", "model.int8.onnx", "model.json", "model.onnx"]
    assert "model.int4.onnx" in stdout
    int4 = out / "model.int4.onnx"
    assert int4.stat().st_size < (out / "model.int8.onnx").stat().st_size
    graph = onnx.load(str(int4)).graph
    ops = [n.op_type for n in graph.node]
    assert "MatMulNBits" in ops
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]  # left: the front end's two
    assert matmuls and all(any(".front_end." in x for x in n.input) for n in matmuls)
    assert {a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute
            if a.name == "bits"} == {4}  # fmt: skip
    exported = load_exported(int4)
    assert exported.metadata["quantization"] == "int4"
    waves, lengths = padded(BATCHES["batch3-padded"])
    with torch.inference_mode():
        expected, expected_lengths = fused(waves, lengths)
    got, got_lengths = exported(waves, lengths)
    assert got.shape == expected.shape
    assert got_lengths.tolist() == expected_lengths.tolist()
    agree = [(got[r, :n].argmax(-1) == expected[r, :n].argmax(-1)).float().mean().item()
             for r, n in enumerate(expected_lengths.tolist())]  # fmt: skip
    assert min(agree) >= 0.95
    valid = torch.arange(got.shape[1])[None, :] < expected_lengths[:, None]
    assert (got - expected).abs()[valid].max() < 0.2  # measured 0.026: 4 bits, not a wrong graph


def test_cli_export_torchscript_only(checkpoint, tmp_path, capsys):
    out = tmp_path / "ts"
    code, _, err = run(capsys, "export", str(checkpoint), str(out), "--format", "torchscript")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.ts"]


def causal_checkpoint(tmp_path: Path) -> Path:
    model = tiny_model(causal=True, norm="layer", features=FeatureConfig(normalize="running"))
    return save_checkpoint(tmp_path / "causal.pt", model_state(model, VOCAB))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "checkpoint not found"),
        ("corrupt", "not a checkpoint"),
        ("opset", "opset 17 or newer"),
        ("streaming-non-causal", "needs a causal model"),
        ("streaming-torchscript", "--streaming writes ONNX"),
        ("int8-torchscript", "applies to ONNX"),
        ("unknown-quantization", "--quantize int3: choose from int8, int4"),
        ("out-is-a-file", "is a file"),
    ],
)
def test_cli_export_errors_are_one_line_and_exit_1(checkpoint, tmp_path, capsys, case, expected):
    pytest.importorskip("onnx", reason=NO_ONNX)
    out = tmp_path / "out"
    args = [str(checkpoint), str(out)]
    if case == "missing":
        args[0] = str(tmp_path / "none.pt")
    elif case == "corrupt":
        (tmp_path / "bad.pt").write_bytes(b"\x00garbage" * 100)
        args[0] = str(tmp_path / "bad.pt")
    elif case == "opset":
        args += ["--opset", "13"]
    elif case == "streaming-non-causal":
        args += ["--streaming"]
    elif case == "streaming-torchscript":
        args = [str(causal_checkpoint(tmp_path)), str(out), "--streaming", "--format",
                "torchscript"]  # fmt: skip
    elif case == "int8-torchscript":
        args += ["--format", "torchscript", "--quantize", "int8"]
    elif case == "unknown-quantization":
        args += ["--quantize", "int8,int3"]
    elif case == "out-is-a-file":
        out.write_text("in the way")
    code, _, err = run(capsys, "export", *args)
    assert code == 1
    assert err.startswith("stt: error: ") and err.strip().count("\n") == 0, err
    assert expected in err
    assert not out.is_dir()


# ---------------------------------------------------------------------------------------------
# The streaming step graph
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streaming_export(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason=NO_ONNX)
    pytest.importorskip("onnx", reason=NO_ONNX)
    folder = tmp_path_factory.mktemp("streaming")
    checkpoint = causal_checkpoint(folder)
    result = export_model(checkpoint, folder / "out", format="onnx", streaming=True)
    return checkpoint, folder / "out", result


def test_streaming_export_writes_the_step_graph_and_how_to_drive_it(streaming_export):
    _, out, result = streaming_export
    assert {p.name for p in result.files()} >= {"model.onnx", "model.streaming.onnx",
                                                "model.streaming.json"}  # fmt: skip
    meta = json.loads((out / "model.streaming.json").read_text())
    stream = meta["streaming"]
    assert stream["stride"] == 2 and stream["hop"] == 160 and stream["n_fft"] == 512
    assert stream["cache_shapes"]["proj_cache"] == [2, 40]
    assert len(stream["cache_shapes"]) == 1 + 3  # the projection and every block
    assert meta["causal"] is True


def test_a_causal_layer_norm_models_offline_export_matches_pytorch(streaming_export):
    from stt.exported import load_exported

    checkpoint, out, _ = streaming_export
    model = load_model(checkpoint).model
    wave = torch.from_numpy(speechlike(1.7, seed=3))[None]
    with torch.no_grad():
        expected, _ = model(wave)
    got, _ = load_exported(out / "model.onnx")(wave, torch.tensor([wave.shape[1]]))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("chunk", [160, 1234, 4800])
def test_streaming_step_graph_reproduces_the_offline_log_probs_chunk_by_chunk(
    streaming_export, chunk
):
    """onnxruntime running the step graph, fed chunk by chunk (any size, a last partial
    group at the end), gives what one offline PyTorch pass over the whole audio gives."""
    from stt.export import STREAMING_FILE, onnx_streaming_encoder

    checkpoint, out, _ = streaming_export
    model = load_model(checkpoint).model
    for seconds in (0.3, 2.57):
        wave = speechlike(seconds, seed=int(seconds * 10))
        with torch.no_grad():
            expected = model(torch.from_numpy(wave)[None])[0][0]
        encoder = onnx_streaming_encoder(model, out / STREAMING_FILE)
        pieces = [encoder.accept(wave[i : i + chunk]) for i in range(0, len(wave), chunk)]
        got = torch.cat([*pieces, encoder.finish()])
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_cli_export_streaming_writes_the_step_graph(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason=NO_ONNX)
    pytest.importorskip("onnx", reason=NO_ONNX)
    out = tmp_path / "out"
    code, printed, err = run(capsys, "export", str(causal_checkpoint(tmp_path)), str(out),
                             "--streaming", "--format", "onnx")  # fmt: skip
    assert code == 0, err
    assert "model.streaming.onnx" in printed and "model.streaming.json" in printed
    meta = json.loads((out / "model.streaming.json").read_text())
    assert meta["streaming"]["outputs"][0] == "log_probs"
