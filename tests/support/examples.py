"""The runnable examples (``examples/*.py``), loaded as modules for in-process tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["EXAMPLES", "load_example"]

#: The checkout's ``examples/`` directory (scripts, not part of the installed package).
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str = "data_pipeline") -> Any:
    """Import ``examples/<name>.py`` under the module name ``<name>_example`` and return it."""
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
