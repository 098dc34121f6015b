"""The import rules of docs/architecture.md hold (tools/check_layers.py, which CI also runs on its own)."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "tools" / "check_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_repository_has_no_upward_import_cycle_or_stray_sql() -> None:
    assert _checker().violations() == []


def test_the_checker_sees_upward_imports_cycles_hidden_in_functions_and_sql(tmp_path: Path) -> None:
    files = {
        "envs/__init__.py": "",
        "memory/__init__.py": "",
        "memory/a.py": "def f():\n    from memory import b\n",
        "memory/b.py": "import memory.a\n",
        "agent/__init__.py": "",
        "agent/x.py": "from distill.y import thing\n",
        "distill/__init__.py": "",
        "distill/y.py": "from sqlalchemy import select\nthing = 1\n",
        "oel/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    problems = _checker().violations(tmp_path)
    assert any("agent.x (agent) imports distill.y (distill), a floor above it" in p for p in problems)
    assert "import cycle: memory.a -> memory.b -> memory.a" in problems
    assert any(p.startswith("distill/y.py:1: imports sqlalchemy") for p in problems)
    assert len(problems) == 3


def test_the_repository_scan_includes_the_benchmarks_and_tools() -> None:
    modules = _checker().project_modules()
    assert "benchmarks.store" in modules and "tools.check_layers" in modules


def test_scripts_may_import_any_floor_but_not_sql_nor_shadow_a_floor_nor_be_imported(tmp_path: Path) -> None:
    files = {
        "envs/__init__.py": "",
        "memory/__init__.py": "",
        "memory/models.py": "",
        "oel/__init__.py": "",
        "oel/run.py": "import benchmarks.speed\n",
        "benchmarks/speed.py": "import oel.run\nfrom memory import models\n",
        "benchmarks/store.py": "from sqlalchemy.orm import Session\nfrom memory.models import Step\n",
        "benchmarks/envs.py": "",
        "benchmarks/a.py": "def f():\n    import b\n",
        "benchmarks/b.py": "import a\n",
        "tools/fine.py": "import oel.run\nimport memory\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    assert sorted(_checker().violations(tmp_path)) == sorted([
        "benchmarks/envs.py: shadows the envs package for the scripts beside it; rename it",
        "benchmarks/speed.py:2: imports memory.models; only memory/ may touch SQL",
        "benchmarks/store.py:1: imports sqlalchemy; only memory/ may touch SQL",
        "benchmarks/store.py:2: imports memory.models; only memory/ may touch SQL",
        "oel/run.py:1: oel.run (oel) imports benchmarks.speed (benchmarks), a floor above it",
        "import cycle: benchmarks.a -> benchmarks.b -> benchmarks.a",
        "import cycle: benchmarks.speed -> oel.run -> benchmarks.speed",
    ])  # fmt: skip
