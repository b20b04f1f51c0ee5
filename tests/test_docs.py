"""Executable documentation: every python block of the core API contract runs."""

import re
import textwrap
from pathlib import Path

import pytest

CORE_API = Path(__file__).resolve().parents[1] / "docs" / "core-api.md"
BLOCKS = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", CORE_API.read_text(), flags=re.S)]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_core_api_python_blocks_run(code):
    exec(compile(code, str(CORE_API), "exec"), {})


def test_core_api_has_python_blocks():
    assert BLOCKS


@pytest.mark.parametrize(
    ("module", "name", "new"),
    [
        ("keyart.policies", "LoggedFeedback", "keyart.feedback"),
        ("keyart.policies", "Decision", "keyart.feedback"),
        ("keyart.features", "CandidateBatch", "keyart.batch"),
        ("keyart.features", "split_rows", "keyart.batch"),
    ],
)
def test_old_import_paths_still_work_for_one_release_with_a_warning(module, name, new):
    import importlib

    with pytest.warns(DeprecationWarning, match=f"moved to {new}.{name}"):
        old = getattr(importlib.import_module(module), name)
    assert old is getattr(importlib.import_module(new), name)
