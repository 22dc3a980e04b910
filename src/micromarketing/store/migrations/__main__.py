"""``python -m micromarketing.store.migrations revision MESSAGE`` | ``regenerate``.

``revision`` autogenerates a new migration: the difference between the models and a scratch
SQLite store upgraded to the current head.  ``regenerate`` deletes the initial revision and
autogenerates it again from an empty store (this round's single-revision rule).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from micromarketing.store.ops import BASELINE_REVISION, MIGRATIONS, alembic_config


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"revision", "regenerate"} or (argv[0] == "revision" and len(argv) < 2):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'ops.sqlite'}")
        with engine.connect() as conn:
            config = alembic_config(conn)
            _format_with_ruff(config)
            if argv[0] == "regenerate":
                for old in (MIGRATIONS / "versions").glob(f"{BASELINE_REVISION}_*.py"):
                    old.unlink()
                command.revision(config, "initial schema", autogenerate=True, rev_id=BASELINE_REVISION)
            else:
                command.upgrade(config, "head")
                command.revision(config, " ".join(argv[1:]), autogenerate=True)
            conn.commit()
        engine.dispose()
    return 0


def _format_with_ruff(config: Config) -> None:
    """Run ruff (beside this interpreter) over the new revision so it passes ``make lint``."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        return
    config.set_section_option("post_write_hooks", "hooks", "format, fix")
    for name, options in (("fix", "check --fix --quiet REVISION_SCRIPT_FILENAME"),
                          ("format", "format --quiet REVISION_SCRIPT_FILENAME")):
        config.set_section_option("post_write_hooks", f"{name}.type", "exec")
        config.set_section_option("post_write_hooks", f"{name}.executable", str(ruff))
        config.set_section_option("post_write_hooks", f"{name}.options", options)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
