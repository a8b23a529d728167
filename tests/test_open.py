"""taskstore.open / open_backend: URLs, options, lazy drivers (DESIGN §2, §6)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import taskstore
from taskstore import ConfigurationError, InMemoryBackend, MissingDependencyError
from taskstore.backends import known_schemes, open_backend, register_backend


def test_open_memory_default() -> None:
    """open() with no URL gives a working in-memory store with default settings."""
    with taskstore.open() as store:
        assert isinstance(store.backend, InMemoryBackend)
        assert store.config == taskstore.StoreConfig()
        assert store.security == taskstore.SecurityConfig()


def test_open_takes_config_from_keywords_and_query() -> None:
    """Store and security fields come from the query string or keywords; keywords win."""
    store = taskstore.open(
        "memory://?max_tasks_per_owner=5&default_ttl_ms=2000&stripes=8&list_page_size=7",
        default_ttl_ms=3000,
        allow_anonymous=True,
    )
    assert store.security.max_tasks_per_owner == 5
    assert store.security.allow_anonymous is True
    assert store.config.default_ttl_ms == 3000
    assert store.config.list_page_size == 7
    assert repr(store.backend) == "InMemoryBackend(stripes=8)"


def test_open_none_values_from_query() -> None:
    """`none` in the query turns a nullable setting off."""
    store = taskstore.open("memory://?default_ttl_ms=none&max_tasks_per_owner=null")
    assert store.config.default_ttl_ms is None
    assert store.security.max_tasks_per_owner is None


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("memory://?stripes=x", {}),
        ("memory://?bogus=1", {}),
        ("memory://", {"bogus": 1}),
        ("memory://?default_ttl_ms=abc", {}),
        ("memory://", {"max_tasks_per_owner": 0}),
        ("memory://", {"min_ttl_ms": 10, "max_ttl_ms": 5}),
        ("memory://", {"stripes": 0}),
    ],
)
def test_open_bad_options(url: str, options: dict[str, object]) -> None:
    """Bad options raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        taskstore.open(url, **options)


@pytest.mark.parametrize("url", ["nope://x", "memory", "", "ftp://host"])
def test_unknown_or_malformed_url(url: str) -> None:
    """Unknown schemes list the known ones; URLs without a scheme are refused."""
    with pytest.raises(ConfigurationError) as info:
        open_backend(url)
    if "://" in url:
        for scheme in ("memory://", "redis://", "dynamodb://"):
            assert scheme in str(info.value)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("redis://localhost:6379/0", "redis", "redis"),
        ("rediss://h", "redis", "redis"),
        ("unix:///tmp/redis.sock", "redis", "redis"),
        ("dynamodb://table?region=x", "boto3", "dynamodb"),
    ],
)
def test_missing_driver_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    """Without the driver, MissingDependencyError (an ImportError) names the exact command."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError) as info:
        taskstore.open(url)
    assert f"pip install 'taskstore[{extra}]'" in str(info.value)
    assert isinstance(info.value, ImportError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_register_backend_plugs_in_third_parties() -> None:
    """register_backend makes a new scheme build a third-party class lazily."""
    register_backend("mymem", "taskstore.backends.memory", "InMemoryBackend")
    try:
        assert "mymem" in known_schemes()
        assert isinstance(open_backend("mymem://"), InMemoryBackend)
    finally:
        from taskstore.backends import _REGISTRY

        _REGISTRY.pop("mymem")


def test_import_needs_only_msgspec() -> None:
    """`import taskstore` and the memory store work with redis and boto3 unimportable."""
    code = (
        "import sys\n"
        "for name in ('redis', 'boto3', 'botocore', 'fakeredis', 'moto'):\n"
        "    sys.modules[name] = None\n"
        "import taskstore\n"
        "store = taskstore.open('memory://', allow_anonymous=True)\n"
        "t = store.create('x')\n"
        "store.complete(t.task_id, 'x', 1)\n"
        "assert store.get_result(t.task_id, 'x').result == 1\n"
        "loaded = [m for m in ('redis', 'boto3', 'botocore') if sys.modules.get(m) is not None]\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
