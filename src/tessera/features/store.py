"""Materialised feature sets: computed once, stored as Parquet, reused while nothing changed.

A set is keyed by a content hash of three things, so a stale set is never served:

* the **spec** — the feature list and parameters (not where sets are cached);
* the **data** — the bars' row count, first and last open time, and a digest of their values;
* the **code** — a digest of the feature library's source files.

``<root>/<key>.parquet`` holds ``open_time`` and the feature columns; ``<key>.json`` says what
went in (spec, data range, code hash, columns, build time). Writes go to a temporary file that
is renamed into place, so a crash mid-write leaves no half set behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tessera.config.models import FeatureConfig
from tessera.features.base import Feature, make_features
from tessera.features.engine import OPEN_TIME, build_features, prepare_bars


def spec_document(spec: FeatureConfig) -> dict[str, Any]:
    """The part of a feature config that decides the features (not where they are cached)."""
    doc: dict[str, Any] = spec.model_dump(mode="json", exclude={"output_dir"})
    return doc


def spec_hash(spec: FeatureConfig) -> str:
    canonical = json.dumps(spec_document(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def code_hash() -> str:
    """sha256 over the feature library's Python sources (relative path + bytes, sorted)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def data_fingerprint(bars: pl.DataFrame) -> dict[str, Any]:
    """Rows, first/last open time and a sha256 of every column's values."""
    frame = prepare_bars(bars)
    h = hashlib.sha256()
    for col in sorted(frame.columns):
        s = frame[col]
        if s.dtype.is_temporal():
            s = s.dt.epoch("ns")
        h.update(col.encode() + b"\0")
        if s.dtype.is_numeric():
            h.update(np.ascontiguousarray(s.cast(pl.Float64).to_numpy()).tobytes())
        else:
            h.update("\x1f".join(map(str, s.to_list())).encode())
    times = frame[OPEN_TIME]
    return {
        "rows": len(frame),
        "first": str(times[0]) if len(frame) else None,
        "last": str(times[-1]) if len(frame) else None,
        "sha256": h.hexdigest(),
    }


@dataclass(frozen=True)
class FeatureSet:
    key: str
    path: Path
    frame: pl.DataFrame
    reused: bool
    manifest: dict[str, Any]


class FeatureSetStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(self, spec: FeatureConfig, bars: pl.DataFrame) -> tuple[str, dict[str, Any]]:
        data = data_fingerprint(bars)
        parts = {"spec": spec_hash(spec), "data": data["sha256"], "code": code_hash()}
        key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
        return key, {"hashes": parts, "data": data}

    def get_or_build(
        self,
        bars: pl.DataFrame,
        spec: FeatureConfig,
        source: str = "",
        force: bool = False,
        on_feature: Callable[[Feature], None] | None = None,
    ) -> FeatureSet:
        make_features(spec.features)  # bad specs fail before any hashing or I/O
        key, ident = self.key(spec, bars)
        path = self.root / f"{key}.parquet"
        meta_path = self.root / f"{key}.json"
        if not force and path.exists() and meta_path.exists():
            manifest = json.loads(meta_path.read_text())
            return FeatureSet(key, path, pl.read_parquet(path), True, manifest)
        started = time.perf_counter()
        frame = build_features(bars, spec, on_feature=on_feature)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        frame.write_parquet(tmp)
        os.replace(tmp, path)
        manifest = {
            "key": key,
            "source": source,
            "spec": spec_document(spec),
            **ident,
            "columns": [c for c in frame.columns if c != OPEN_TIME],
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        tmp_meta = meta_path.with_suffix(f".tmp-{os.getpid()}")
        tmp_meta.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp_meta, meta_path)
        return FeatureSet(key, path, frame, False, manifest)

    def list(self) -> list[dict[str, Any]]:
        out = []
        for meta in sorted(self.root.glob("*.json")):
            if (self.root / f"{meta.stem}.parquet").exists():
                out.append(json.loads(meta.read_text()))
        return out
