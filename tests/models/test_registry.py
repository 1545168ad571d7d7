"""The local registry: increasing versions, atomic publication, races, references."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tessera.models.registry import (
    MANIFEST,
    ModelRegistry,
    RegistryError,
    parse_model_ref,
)


def _writer(payload: str) -> Any:
    def write(tmp: Path) -> dict[str, Any]:
        (tmp / "model.bin").write_text(payload)
        return {"payload": payload}

    return write


def test_versions_increase_and_resolve(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "models")
    assert reg.names() == [] and reg.list() == []
    refs = [reg.publish("btc", _writer(f"m{i}")) for i in range(3)]
    assert [r.version for r in refs] == ["v0001", "v0002", "v0003"]
    assert reg.versions("btc") == ["v0001", "v0002", "v0003"]
    assert reg.resolve("btc").version == "v0003"
    assert reg.resolve("btc", "2").path == tmp_path / "models" / "btc" / "v0002"
    assert reg.resolve_ref("btc:v0001").manifest() == {
        "name": "btc",
        "version": "v0001",
        "payload": "m0",
    }
    assert (refs[1].path / "model.bin").read_text() == "m1"
    reg.publish("eth", _writer("e"))
    assert reg.names() == ["btc", "eth"]
    assert [(r.name, r.version) for r in reg.list()][-1] == ("eth", "v0001")


def test_numbering_goes_past_9999(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    (tmp_path / "m" / "v9999").mkdir(parents=True)
    (tmp_path / "m" / "v9999" / MANIFEST).write_text("{}")
    assert reg.publish("m", _writer("x")).version == "v10000"
    assert reg.resolve("m").version == "v10000"  # numeric, not lexical, order


def test_failed_write_publishes_nothing_and_cleans_up(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    reg.publish("m", _writer("ok"))

    def broken(tmp: Path) -> dict[str, Any]:
        (tmp / "half.bin").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        reg.publish("m", broken)
    assert reg.versions("m") == ["v0001"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["v0001"]
    assert reg.publish("m", _writer("next")).version == "v0002"


def test_a_crashed_writer_leaves_only_an_ignored_temp_dir(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    stale = tmp_path / "m" / ".tmp-deadbeef"
    stale.mkdir(parents=True)
    (stale / MANIFEST).write_text(json.dumps({"version": "v0001"}))
    # A version directory without a manifest is not a version either.
    (tmp_path / "m" / "v0001").mkdir()
    assert reg.versions("m") == [] and reg.names() == []
    with pytest.raises(RegistryError, match="no model named 'm'"):
        reg.resolve("m")
    assert reg.publish("m", _writer("x")).version == "v0001"


def test_concurrent_publishers_never_share_a_version(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    barrier = threading.Barrier(8)
    results: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        def write(tmp: Path) -> dict[str, Any]:
            (tmp / "model.bin").write_text(str(i))
            barrier.wait()  # everyone computes "next version" at the same moment
            return {"writer": i}

        ref = reg.publish("m", write)
        with lock:
            results.append(ref.version)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [f"v{i:04d}" for i in range(1, 9)]
    # Each version holds exactly its own writer's files and manifest.
    for v in reg.versions("m"):
        ref = reg.resolve("m", v)
        assert ref.manifest()["version"] == v
        assert (ref.path / "model.bin").read_text() == str(ref.manifest()["writer"])


def test_references_and_errors(tmp_path: Path) -> None:
    assert parse_model_ref("btc") == ("btc", None)
    assert parse_model_ref("btc:latest") == ("btc", None)
    assert parse_model_ref("btc:3") == ("btc", "v0003")
    assert parse_model_ref("btc:v0012") == ("btc", "v0012")
    for bad in ("../x", "btc:v0", "btc:abc", "a/b"):
        with pytest.raises(RegistryError):
            parse_model_ref(bad)
    reg = ModelRegistry(tmp_path)
    reg.publish("btc", _writer("x"))
    with pytest.raises(RegistryError, match="has no version v0002"):
        reg.resolve("btc", "v0002")
    with pytest.raises(RegistryError, match=r"known: btc"):
        reg.resolve("eth")
    with pytest.raises(RegistryError, match="bad model name"):
        reg.publish("../escape", _writer("x"))
