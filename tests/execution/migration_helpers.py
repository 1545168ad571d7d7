"""Moving a test database to one Alembic revision of the execution schema (up or down), for
the migration tests that seed rows as an older schema stored them."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from tessera.execution.persistence import MIGRATIONS, make_engine


def migrate_to(url: str, revision: str, down: bool = False) -> None:
    """Upgrade (or with ``down`` downgrade) the database at ``url`` to ``revision``; SQLite's
    foreign keys off, as the migrations expect while they rebuild tables."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            if url.startswith("sqlite"):
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            (command.downgrade if down else command.upgrade)(cfg, revision)
    finally:
        engine.dispose()
