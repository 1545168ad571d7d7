"""Market data: schemas, the Parquet/DuckDB store, ingest, import and resampling."""
