"""DuckDB over the Parquet store: views ``trades``, ``agg_trades``, ``klines``, ``book_updates``,
``book_snapshots``, ``book_ticker``, ``funding_rates``, ``mark_klines`` with the hive columns
``exchange``, ``symbol``, ``date``.

Views exist even for datasets with no files yet (empty, with the right columns), so queries
never fail on a fresh store.

One corrupt file would fail every query of its view, so files are checked (footer) before the
views are made and a corrupt one is quarantined by the store; a query that still fails on a
store file (damage the footer check cannot see) has that file checked in full, quarantined if it
is corrupt, and is run again on the rest. ``store.quarantined`` lists what was moved.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from tessera.data.schemas import SCHEMAS
from tessera.data.store import ParquetStore, file_problem
from tessera.logging import get_logger

log = get_logger(__name__)

# DuckDB names the file in its error message: "... file '/path/part-1.parquet'"
_QUOTED_PARQUET = re.compile(r"'([^']+\.parquet)'|\"([^\"]+\.parquet)\"")

EXTRA = pa.schema([("exchange", pa.string()), ("symbol", pa.string()), ("date", pa.date32())])


class Catalog:
    def __init__(self, store: ParquetStore) -> None:
        self.store = store
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.refresh()

    def refresh(self) -> None:
        """(Re)create the views; call after new partitions appear."""
        for dataset, schema in SCHEMAS.items():
            glob = str(
                self.store.root / "exchange=*" / f"dataset={dataset}" / "*" / "*" / "*.parquet"
            )
            if self.store.all_files(dataset):  # quarantines corrupt files on the way
                sql = (
                    f"CREATE OR REPLACE VIEW {dataset} AS SELECT * EXCLUDE (dataset) FROM "
                    f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true, "
                    f"hive_types = {{'exchange': VARCHAR, 'symbol': VARCHAR, 'date': DATE, "
                    f"'dataset': VARCHAR}})"
                )
                self.con.execute(sql)
            else:
                empty = pa.Table.from_batches([], schema=pa.unify_schemas([schema, EXTRA]))
                self.con.register(f"_empty_{dataset}", empty)
                self.con.execute(
                    f"CREATE OR REPLACE VIEW {dataset} AS SELECT * FROM _empty_{dataset}"
                )

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run ``sql``; a failure caused by a corrupt store file quarantines it and retries."""
        while True:
            try:
                relation = self.con.sql(sql, params=params)
                if relation is None:  # a statement without a result (DDL, SET, ...)
                    return pa.table({})
                table: pa.Table = relation.to_arrow_table()
                return table
            except duckdb.Error as exc:
                if not self._quarantine_named(str(exc)):
                    raise
                log.warning("query re-run without the quarantined file", error=str(exc)[:300])
                self.refresh()

    def _quarantine_named(self, message: str) -> bool:
        """Quarantine the store files named in a DuckDB error that are corrupt; True if any."""
        root = self.store.root.resolve()
        moved = False
        for match in _QUOTED_PARQUET.finditer(message):
            path = Path(match.group(1) or match.group(2))
            try:
                inside = path.resolve().is_relative_to(root) and path.is_file()
                problem = file_problem(path, deep=True) if inside else None
            except OSError:
                continue
            if problem is not None and self.store.quarantine(path, problem) is not None:
                moved = True
        return moved

    def close(self) -> None:
        self.con.close()
