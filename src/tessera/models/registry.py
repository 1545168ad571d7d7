"""A local model registry: ``<root>/<name>/<version>/`` with a ``manifest.json`` each.

Versions are ``v0001``, ``v0002``, ... and only ever increase. A version is published
atomically: everything is written into a hidden temporary directory next to it, flushed to
disk, then renamed into place — ``rename`` of a directory onto an existing non-empty one
fails, so two writers racing for the same number cannot overwrite each other; the loser
takes the next number. A reader therefore sees a complete version or none; a crash leaves
only a ``.tmp-*`` directory, which listings ignore.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_VERSION = re.compile(r"^v(\d{4,})$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_TMP_PREFIX = ".tmp-"
_MAX_RACE_RETRIES = 1000


class RegistryError(LookupError):
    """An unknown model or version, or a malformed reference."""


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    name: str
    version: str
    path: Path

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        return data


def format_version(number: int) -> str:
    return f"v{number:04d}"


def parse_version(text: str) -> int:
    """``v0003``, ``3`` or ``0003`` -> 3."""
    m = _VERSION.match(text) or re.match(r"^v?(\d+)$", text)
    if not m or int(m.group(1)) < 1:
        raise RegistryError(f"bad version {text!r}: expected v0001, v0002, ... or a number")
    return int(m.group(1))


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:VERSION`` (``latest`` allowed) -> (name, version or None)."""
    name, _, version = ref.partition(":")
    if not _NAME.match(name):
        raise RegistryError(f"bad model name {name!r}: letters, digits, _ . - only")
    if not version or version == "latest":
        return name, None
    return name, format_version(parse_version(version))


def _fsync_tree(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """Published versions of ``name``, oldest first."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = []
        for p in folder.iterdir():
            m = _VERSION.match(p.name)
            if m and (p / MANIFEST).is_file():
                found.append((int(m.group(1)), p.name))
        return [v for _, v in sorted(found)]

    def list(self) -> list[ArtifactRef]:
        return [
            ArtifactRef(name, v, self.root / name / v)
            for name in self.names()
            for v in self.versions(name)
        ]

    def resolve(self, name: str, version: str | None = None) -> ArtifactRef:
        """The given version of ``name``, or its latest."""
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"no model named {name!r} in {self.root} (known: {known})")
        if version is None:
            version = versions[-1]
        else:
            version = format_version(parse_version(version))
            if version not in versions:
                raise RegistryError(
                    f"model {name!r} has no version {version} (has {', '.join(versions)})"
                )
        return ArtifactRef(name, version, self.root / name / version)

    def resolve_ref(self, ref: str) -> ArtifactRef:
        """``NAME[:VERSION]``."""
        name, version = parse_model_ref(ref)
        return self.resolve(name, version)

    def publish(self, name: str, write: Callable[[Path], dict[str, Any]]) -> ArtifactRef:
        """Publish a new version of ``name``.

        ``write(tmp_dir)`` writes the artifact files and returns the manifest; the registry
        adds ``name`` and ``version`` to it, writes ``manifest.json`` and renames the directory
        into place.
        """
        if not _NAME.match(name):
            raise RegistryError(f"bad model name {name!r}: letters, digits, _ . - only")
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        tmp.mkdir()
        try:
            manifest = dict(write(tmp))
            existing = self.versions(name)
            number = parse_version(existing[-1]) + 1 if existing else 1
            for _ in range(_MAX_RACE_RETRIES):
                version = format_version(number)
                manifest.update(name=name, version=version)
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
                _fsync_tree(tmp)
                target = folder / version
                try:
                    os.rename(tmp, target)
                except OSError as exc:
                    # Taken by a concurrent writer (or a stray file): try the next number.
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                        raise
                    number += 1
                    continue
                _fsync_dir(folder)
                return ArtifactRef(name, version, target)
            raise RegistryError(f"could not allocate a version of {name!r}")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
