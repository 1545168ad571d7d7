"""DuckDB over the Parquet store: views ``trades``, ``agg_trades``, ``klines``, ``book_updates``,
``book_snapshots``, ``book_ticker`` with the hive columns ``exchange``, ``symbol``, ``date``.

Views exist even for datasets with no files yet (empty, with the right columns), so queries
never fail on a fresh store.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from tessera.data.schemas import SCHEMAS
from tessera.data.store import ParquetStore

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
            has_files = any(self.store.root.glob(f"exchange=*/dataset={dataset}/*/*/*.parquet"))
            if has_files:
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
        relation = self.con.sql(sql, params=params)
        if relation is None:  # a statement without a result (DDL, SET, ...)
            return pa.table({})
        table: pa.Table = relation.to_arrow_table()
        return table

    def close(self) -> None:
        self.con.close()
