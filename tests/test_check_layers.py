"""scripts/check_layers.py on a tiny fake package: the loop, the upward import, the depth and the
long function it contains are each found, with where they are."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_layers.py"
_spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
check_layers = importlib.util.module_from_spec(_spec)
sys.modules["check_layers"] = check_layers  # its dataclasses look their module up there
_spec.loader.exec_module(check_layers)

LAYERS = [
    ("low", ["base"]),
    ("mid", ["a", "b", "sub.*"]),
    ("high", ["top", "__init__", "planned"]),
]


def body(lines: int) -> str:
    """A function of exactly ``lines`` lines (def line included)."""
    return (
        "def f{n}():\n".replace("{n}", str(lines)) + "    x = 1\n" * (lines - 2) + "    return x\n"
    )


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """Package ``fake``: a <-> b loop (one side lazy and relative), base importing up into top,
    sub.c importing base two levels up, top with a long function and a long method, an unlisted
    module, and a script importing a module and a name that do not exist."""
    write(
        tmp_path,
        {
            "fake/__init__.py": '"""The package."""\n',
            "fake/base.py": "from fake.top import helper\n\ny = helper\n",
            "fake/a.py": "from fake import b\n\nx = 1\n",
            "fake/b.py": """\
                def f():
                    from .a import x

                    return x
                """,
            "fake/sub/__init__.py": "",
            "fake/sub/c.py": """\
                from typing import TYPE_CHECKING

                from ..base import y

                if TYPE_CHECKING:
                    from fake.top import Box
                """,
            "fake/top.py": "from fake.a import x\n\n\ndef helper():\n    return x\n\n\n"
            + body(90)
            + "\n\nclass Box:\n"
            + textwrap.indent(body(81), "    ")
            + "\n\n"
            + body(80),
            "fake/stray.py": "import os\n",
            "scripts/use.py": "from fake.a import nothere\nfrom fake.missing import z\n",
        },
    )
    return tmp_path


def test_finds_the_import_loop_with_its_edges_and_names(fake: Path):
    report = check_layers.analyse(fake, "fake", LAYERS)
    assert report["figures"]["loops"] == 1
    (loop,) = report["loops"]
    assert loop["modules"] == ["a", "b"]
    edges = {(e["from"], e["to"]): e for e in loop["edges"]}
    assert set(edges) == {("a", "b"), ("b", "a")}
    assert edges["a", "b"]["kind"] == "module" and edges["a", "b"]["at"] == "fake/a.py:1"
    assert edges["b", "a"]["names"] == ["x"] and edges["b", "a"]["kind"] == "function"


def test_finds_imports_up_the_layers_and_modules_missing_from_the_table(fake: Path):
    report = check_layers.analyse(fake, "fake", LAYERS)
    violations = report["violations"]
    assert {"module": "stray", "problem": "not in LAYERS"} in violations
    upward = {(v["from"], v["to"]): v for v in violations if "from" in v}
    assert set(upward) == {("base", "top"), ("sub.c", "top")}
    assert upward["base", "top"]["names"] == ["helper"]
    assert (upward["base", "top"]["from_layer"], upward["base", "top"]["to_layer"]) == (
        "low",
        "high",
    )
    assert upward["sub.c", "top"]["kind"] == "type_checking"
    assert report["figures"]["violations"] == 3
    assert report["stale_layer_entries"] == ["planned"]


def test_depth_is_the_longest_chain_of_modules_with_loops_condensed(fake: Path):
    report = check_layers.analyse(fake, "fake", LAYERS)
    # sub.c -> base -> top -> a <-> b (the relative `from ..base` resolved to fake.base)
    assert report["depth_chain"] == [["sub.c"], ["base"], ["top"], ["a", "b"]]
    assert report["figures"]["depth"] == 4


def test_reports_functions_and_methods_over_the_limit_only(fake: Path):
    report = check_layers.analyse(fake, "fake", LAYERS)
    found = [(f["name"], f["file"], f["lines"]) for f in report["long_functions"]]
    assert found == [("f90", "fake/top.py", 90), ("Box.f81", "fake/top.py", 81)]
    assert report["long_functions"][0]["line"] == 8


def test_reports_imports_of_modules_and_names_that_do_not_exist(fake: Path):
    report = check_layers.analyse(fake, "fake", LAYERS)
    assert [u["import"] for u in report["unresolved_imports"]] == ["fake.a.nothere", "fake.missing"]


def test_json_and_exit_status(fake: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(check_layers, "LAYERS", LAYERS)
    out = tmp_path / "out" / "layers.json"
    assert check_layers.main(["--root", str(fake), "--package", "fake", "--json", str(out)]) == 0
    assert "import loops:" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["figures"] == {
        "loops": 1,
        "violations": 3,
        "depth": 4,
        "long_functions": 2,
        "unresolved_imports": 2,
    }
    assert data["targets"]["max_depth"] == 10 and data["met"]["depth"] is True
    assert check_layers.main(["--root", str(fake), "--package", "fake", "--check"]) == 1


def test_check_passes_on_a_clean_package(tmp_path: Path, monkeypatch):
    write(tmp_path, {"clean/__init__.py": "", "clean/base.py": "x = 1\n",
                     "clean/top.py": "from .base import x\n"})  # fmt: skip
    monkeypatch.setattr(check_layers, "LAYERS", [("low", ["base"]), ("high", ["top", "__init__"])])
    assert check_layers.main(["--root", str(tmp_path), "--package", "clean", "--check"]) == 0


def test_every_stt_module_has_a_layer():
    report = check_layers.analyse()
    assert [v["module"] for v in report["violations"] if "problem" in v] == []
