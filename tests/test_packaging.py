"""The tests run against the installed wheel, and the wheel carries every file of the package.

Under tox (``TASKSTORE_TEST_INSTALLED=1``) the checkout must never shadow the installed
package, and the installed distribution must be a real (non-editable) install whose file list,
the wheel's ``RECORD``, holds every module, Lua script and ``py.typed`` of the source tree.
Elsewhere (an editable install, a bare checkout) the wheel checks skip with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import taskstore

CHECKOUT = Path(__file__).resolve().parents[1]
SOURCE = (CHECKOUT / "taskstore").resolve()


def _installed_required() -> bool:
    return os.environ.get("TASKSTORE_TEST_INSTALLED") == "1"


def _wheel_files() -> set[str]:
    """The installed distribution's file list (its RECORD), as posix paths."""
    try:
        distribution = metadata.distribution("taskstore")
    except metadata.PackageNotFoundError:
        if _installed_required():
            pytest.fail("taskstore is not installed (TASKSTORE_TEST_INSTALLED=1)")
        pytest.skip("taskstore is not installed as a distribution")
    direct_url = distribution.read_text("direct_url.json")
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        if _installed_required():
            pytest.fail("taskstore is an editable install (TASKSTORE_TEST_INSTALLED=1)")
        pytest.skip("taskstore is an editable install: there is no wheel to inspect")
    return {str(path.as_posix()) for path in distribution.files or ()}


def _package_files() -> set[str]:
    """Every file the wheel must carry: modules, Lua scripts, the typing marker."""
    wanted = set()
    for pattern in ("**/*.py", "**/*.lua", "py.typed"):
        for path in SOURCE.glob(pattern):
            if "__pycache__" not in path.parts:
                wanted.add(path.relative_to(CHECKOUT).as_posix())
    return wanted


def test_tests_import_the_installed_package_not_the_checkout() -> None:
    """Under tox, ``import taskstore`` in the tests resolves outside the checkout."""
    if not _installed_required():
        pytest.skip("not a tox run (TASKSTORE_TEST_INSTALLED is not 1)")
    assert Path(taskstore.__file__).resolve().parent != SOURCE, taskstore.__file__


def test_subprocesses_import_the_installed_package_not_the_checkout() -> None:
    """A ``python -m``/``-c`` subprocess started from the checkout, as the tests start servers,
    imports the installed package too (the env sets PYTHONSAFEPATH)."""
    if not _installed_required():
        pytest.skip("not a tox run (TASKSTORE_TEST_INSTALLED is not 1)")
    done = subprocess.run(
        [sys.executable, "-c", "import taskstore; print(taskstore.__file__)"],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert Path(done.stdout.strip()).resolve().parent != SOURCE, done.stdout


def test_wheel_carries_every_module_lua_script_and_py_typed() -> None:
    """The installed wheel's file list holds every source module, every Lua script and
    ``py.typed``: a wheel built without its package data fails here."""
    files = _wheel_files()
    wanted = _package_files()
    assert "taskstore/py.typed" in wanted
    assert any(name.endswith(".lua") for name in wanted)
    assert sorted(wanted - files) == []


def test_wheel_carries_no_tests_or_checkout_files() -> None:
    """The wheel installs only the ``taskstore`` package (and its metadata)."""
    files = _wheel_files()
    stray = sorted(
        name
        for name in files
        if not name.startswith(("taskstore/", "taskstore-")) and not name.startswith("../")
    )
    assert stray == []
