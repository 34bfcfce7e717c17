#!/usr/bin/env python
"""stt next to a real peer, pocketsphinx, on the same test sets: WER, CER and RTFx side by side.

pocketsphinx (the PyPI package, an extra: ``pip install -e '.[peer]'`` or ``make bench-peer``)
runs with what it ships: the CMU en-us continuous acoustic model, its general-English 3-gram
``en-us.lm.bin`` and ``cmudict-en-us.dict``, on 16 kHz mono int16 samples. ``stt`` runs the
shipped model (or ``--checkpoint``) with its tuned beam search + KenLM (``decoder.yaml``), the
way ``stt transcribe`` does; greedy decoding is shown too. Both engines' hypotheses and the
references go through :func:`stt.text.normalize_text` before jiwer's WER and CER.

Timing is the same for both: wall time of recognition only, audio already in memory.

* **RTFx, one stream, one thread each**: audio seconds / seconds spent recognising, one
  utterance at a time. pocketsphinx is single-threaded (one decoder per process, each utterance
  timed alone); ``stt`` runs batch 1 with one torch thread, the same.
* **RTFx, all cores**: audio seconds / wall seconds of the whole set with every core busy:
  pocketsphinx with one process per core, utterance ``i`` on process ``i % cores`` (the set's
  wall time is the busiest process's); ``stt`` with batches of 16 utterances, torch threads =
  cores and the beam search's one process per core.

``stt``'s timings are the best of ``--repeats`` runs (other processes only ever slow a run
down); pocketsphinx, 50 times slower, runs once. A full run takes about 5 minutes on 2 quiet
cores, almost all of it pocketsphinx.

Targets (issue 8): ``stt`` at >= 10x pocketsphinx's RTFx, and a lower WER on every set.

    .venv/bin/python scripts/bench_peer.py [MANIFEST...] [--limit N] [--quick]

Default manifests: the speaker-disjoint dev splits of LibriSpeech mini, speechocean762, AN4
and FSDD made by ``scripts/prepare_data.sh``, and ``data_cache/synth/test.jsonl`` (synthetic
voices never heard in training). WERs come with 95% bootstrap intervals over utterances.
Writes ``bench/results/peer.json``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_infer import command_line, load_test_set, time_end_to_end  # noqa: E402
from machine import load_average, write_results  # noqa: E402

from stt.audio import SAMPLE_RATE  # noqa: E402
from stt.decoding import DecoderConfig, build_decoder  # noqa: E402
from stt.inference import infer_log_probs  # noqa: E402
from stt.metrics import bootstrap_interval, error_counts  # noqa: E402
from stt.text import normalize_text  # noqa: E402
from stt.transcribe import default_model_path, load_model  # noqa: E402

DEFAULT_MANIFESTS = [  # scripts/prepare_data.sh makes them: real speakers never trained on
    Path("data_cache/librispeech/dev.jsonl"),
    Path("data_cache/speechocean/dev.jsonl"),
    Path("data_cache/an4/dev.jsonl"),
    Path("data_cache/fsdd/dev.jsonl"),
    Path("data_cache/synth/test.jsonl"),
]
RTFX_FACTOR = 10.0  # target: stt's RTFx >= 10x pocketsphinx's
STT = "stt beam+lm"  # the shipped default decoder, the one the targets are about


# ---------------------------------------------------------------------------------------------
# pocketsphinx, one decoder per worker process
# ---------------------------------------------------------------------------------------------


def _recognise_all(pcms: list[bytes]) -> list[tuple[str, float]]:
    """Utterances of 16 kHz int16 samples, in order, by a fresh decoder (pocketsphinx adapts its
    cepstral mean from one utterance to the next, so a fresh one per share of a set makes the
    results independent of scheduling) -> ``(hypothesis, seconds recognising)`` each."""
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")  # its default en-us model, LM and dictionary
    out = []
    for pcm in pcms:
        start = time.perf_counter()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        out.append(((hyp.hypstr if hyp is not None else ""), time.perf_counter() - start))
    return out


def pocketsphinx_info() -> dict:
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        sys.exit(
            "pocketsphinx is not installed: it is an extra, only for this benchmark. Install it "
            "with `bash scripts/setup.sh peer` (or `.venv/bin/pip install -e '.[peer]'`), or run "
            "`make bench-peer`."
        )
    from pocketsphinx import Config

    config = Config()  # the defaults Decoder() uses
    names = {key: Path(str(config[key])).name for key in ("hmm", "lm", "dict")}
    return {
        "package": "pocketsphinx",
        "version": importlib.metadata.version("pocketsphinx"),
        "acoustic_model": names["hmm"],
        "language_model": f"{names['lm']} (its default general-English 3-gram)",
        "dictionary": names["dict"],
        "input": "16 kHz mono int16",
        "threads": "1 per decoder (pocketsphinx is single-threaded); one process per core",
    }


def to_pcm16(waveform: np.ndarray) -> bytes:
    return (np.clip(waveform, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def run_pocketsphinx(
    pool, waveforms: list[np.ndarray], workers: int
) -> tuple[list[str], float, float]:
    """``(hypotheses, seconds recognising summed over utterances, wall seconds of the set)``.

    Utterance ``i`` goes to worker ``i % workers``; the workers run side by side, so the set's
    wall time is the busiest worker's recognition time (loading a decoder is not timed)."""
    pcm = [to_pcm16(w) for w in waveforms]  # conversion is not recognition: not timed
    shares = pool.map(_recognise_all, [pcm[k::workers] for k in range(workers)], chunksize=1)
    results: list[tuple[str, float]] = [("", 0.0)] * len(pcm)
    for k, share in enumerate(shares):
        results[k::workers] = share
    wall = max(sum(seconds for _, seconds in share) for share in shares)
    return [h for h, _ in results], sum(s for _, s in results), wall


# ---------------------------------------------------------------------------------------------
# stt
# ---------------------------------------------------------------------------------------------


def run_stt(model, decoder, waveforms: list[np.ndarray]) -> tuple[list[str], float]:
    """Batch 1, as one stream: ``(hypotheses, seconds)``."""
    frame_seconds = model.frame_ms / 1000
    hyps, seconds = [], 0.0
    for w in waveforms:
        start = time.perf_counter()
        result = decoder.decode_batch(infer_log_probs(model, [w]), frame_seconds)[0]
        seconds += time.perf_counter() - start
        hyps.append(result.text)
    return hyps, seconds


def set_name(manifest: Path) -> str:
    return f"{manifest.parent.name}/{manifest.stem}"


def markdown_table(sets: list[dict]) -> str:
    lines = [
        "| test set | utterances | audio (min) | engine | WER % (95% CI) | CER % "
        "| RTFx, one stream, 1 thread | RTFx, all cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sets:
        for i, (engine, r) in enumerate(s["engines"].items()):
            head = (
                f"{s['name']} | {s['utterances']} | {s['audio_seconds'] / 60:.1f}"
                if i == 0
                else " | | "
            )
            low, high = (100 * x for x in r.get("wer_95ci", (r["wer"], r["wer"])))
            lines.append(
                f"| {head} | {engine} | {100 * r['wer']:.1f} ({low:.1f}-{high:.1f}) | "
                f"{100 * r['cer']:.1f} | "
                f"{r['rtfx_stream']:,.0f} | {r['rtfx_all_cores']:,.0f} |"
            )
    return "\n".join(lines)


def scores(refs: list[str], hyps: list[str]) -> dict:
    """WER and CER with their 95% bootstrap intervals (utterances resampled, seeded)."""
    counts = error_counts(refs, hyps)
    return {
        "wer": round(counts.wer, 4),
        "wer_95ci": [round(x, 4) for x in bootstrap_interval(refs, hyps, "wer")],
        "cer": round(counts.cer, 4),
        "cer_95ci": [round(x, 4) for x in bootstrap_interval(refs, hyps, "cer")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="*", type=Path, default=DEFAULT_MANIFESTS)
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped model")
    parser.add_argument("--limit", type=int, help="first N utterances of each manifest")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="default: cores")
    parser.add_argument("--repeats", type=int, default=2, help="stt timings: best of N")
    parser.add_argument("--quick", action="store_true", help="--limit 40")
    parser.add_argument("--note", help="a remark stored with the results")
    args = parser.parse_args()
    if args.quick:
        args.limit = args.limit or 40
    cores = args.threads
    torch.set_num_threads(cores)
    peer = pocketsphinx_info()
    load_start = load_average()

    checkpoint = args.checkpoint or default_model_path()
    transcriber = load_model(checkpoint)
    model, vocab, beam_config = transcriber.model, transcriber.vocab, transcriber.decoder_config
    transcriber.close()
    test_sets = [(m, *load_test_set(m, args.limit)) for m in args.manifests]
    print(
        f"{model.describe()}\npocketsphinx {peer['version']}; threads {cores}, "
        f"load average {load_start}"
    )

    # Spawned (not forked) workers: this process has OpenMP threads running already.
    ctx = multiprocessing.get_context("spawn")
    sets = []
    with (
        ctx.Pool(cores) as pool,
        build_decoder(vocab, beam_config) as beam,
        build_decoder(vocab, DecoderConfig(kind="greedy")) as greedy,
    ):
        pool.map(_recognise_all, [[to_pcm16(np.zeros(SAMPLE_RATE, np.float32))]] * cores)  # warm
        first = test_sets[0][2][:4]
        time_end_to_end(model, beam, [first], True)  # warm the beam pool, the LM, the model
        run_stt(model, greedy, first)
        for manifest, utterances, waveforms in test_sets:
            audio = sum(len(w) for w in waveforms) / SAMPLE_RATE
            refs = [normalize_text(u.text) for u in utterances]
            engines = {}
            batches = [waveforms[i : i + 16] for i in range(0, len(waveforms), 16)]
            for name, decoder in ((STT, beam), ("stt greedy", greedy)):
                # stt is cheap to time again: best of --repeats, as bench_infer.py does.
                torch.set_num_threads(1)
                runs = [run_stt(model, decoder, waveforms) for _ in range(args.repeats)]
                hyps, seconds = runs[0][0], min(r[1] for r in runs)
                torch.set_num_threads(cores)
                wall16 = min(
                    time_end_to_end(model, decoder, batches, True) for _ in range(args.repeats)
                )
                engines[name] = {
                    **scores(refs, [normalize_text(h) for h in hyps]),
                    "rtfx_stream": round(audio / seconds, 1),
                    "rtfx_all_cores": round(audio / wall16, 1),
                }
            hyps, seconds, wall = run_pocketsphinx(pool, waveforms, cores)
            engines["pocketsphinx"] = {
                **scores(refs, [normalize_text(h) for h in hyps]),
                "rtfx_stream": round(audio / seconds, 1),
                "rtfx_all_cores": round(audio / wall, 1),
            }
            row = {
                "name": set_name(manifest),
                "manifest": str(manifest),
                "utterances": len(waveforms),
                "audio_seconds": round(audio, 1),
                "engines": engines,
                "examples": [
                    {"reference": r, "pocketsphinx": normalize_text(h)}
                    for r, h in list(zip(refs, hyps, strict=True))[:3]
                ],
            }
            sets.append(row)
            for e, r in engines.items():
                print(
                    f"{row['name']:>12} {e:>12}: WER {100 * r['wer']:5.1f}%, RTFx "
                    f"{r['rtfx_stream']:.0f} (one stream) {r['rtfx_all_cores']:.0f} (all cores)"
                )

    targets = {}
    for s in sets:
        ours, theirs = s["engines"][STT], s["engines"]["pocketsphinx"]
        targets[s["name"]] = {
            "lower_wer": ours["wer"] < theirs["wer"],
            "rtfx_ratio_stream": round(ours["rtfx_stream"] / theirs["rtfx_stream"], 1),
            "rtfx_ratio_all_cores": round(ours["rtfx_all_cores"] / theirs["rtfx_all_cores"], 1),
        }
        targets[s["name"]]["rtfx_10x"] = (
            min(targets[s["name"]]["rtfx_ratio_stream"], targets[s["name"]]["rtfx_ratio_all_cores"])
            >= RTFX_FACTOR
        )
    table = markdown_table(sets)
    path = write_results(
        "peer",
        {
            "benchmark": "peer",
            "command": command_line("bench_peer.py"),
            "checkpoint": str(checkpoint),
            "model_description": model.describe(),
            "stt_decoder": {
                "beam_width": beam_config.beam_width,
                "alpha": beam_config.alpha,
                "beta": beam_config.beta,
                "lm": Path(beam_config.lm).name if beam_config.lm else None,
            },
            "peer": peer,
            "threads": cores,
            "load_average": {"start": load_start, "end": load_average()},
            "limit_per_set": args.limit,
            "timing": "wall time of recognition only, audio in memory; one stream: one thread "
            "each, stt batch 1 with 1 torch thread, pocketsphinx one utterance per decoder; all "
            f"cores ({cores}): stt batches of 16 with torch threads = cores (beam search: one "
            "process per core), pocketsphinx one process per core; stt best of "
            f"{args.repeats} runs, pocketsphinx one run",
            "normalisation": "stt.text.normalize_text on references and both engines' output; "
            "WER/CER by jiwer (stt.metrics.error_counts)",
            "sets": sets,
            "targets": {"stt": STT, "rtfx_factor": RTFX_FACTOR, "per_set": targets},
            "table_markdown": table,
            **({"note": args.note} if args.note else {}),
        },
    )
    print(table)
    for name, t in targets.items():
        print(
            f"{name}: lower WER {'yes' if t['lower_wer'] else 'NO'}; RTFx x"
            f"{t['rtfx_ratio_stream']} (one stream), x{t['rtfx_ratio_all_cores']} (all cores)"
        )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
