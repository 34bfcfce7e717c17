# The README's two commands: `make demo` (set up + the main job) and `make test` (set up + suite).
.PHONY: demo test setup setup-dev lint bench serve

demo: setup
	.venv/bin/stt demo

test: setup-dev
	.venv/bin/python -m pytest -q

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh dev,onnx,serve,serve-test

lint: setup-dev
	.venv/bin/ruff check stt tests scripts

bench: setup-dev
	.venv/bin/python scripts/bench_synth.py

# stt next to pocketsphinx (installed here as the `peer` extra, for this benchmark only).
.PHONY: bench-peer
bench-peer:
	bash scripts/setup.sh peer
	.venv/bin/python scripts/bench_peer.py

# The speech-to-text server on http://127.0.0.1:8000/ (README: `stt serve`).
serve:
	bash scripts/setup.sh serve
	.venv/bin/stt serve
