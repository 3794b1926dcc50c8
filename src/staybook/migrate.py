"""Runs the one Alembic history programmatically (`staybook migrate`, tests, the demo)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from staybook.kernel.settings import Settings


def migrations_dir() -> Path:
    """The Alembic scripts shipped inside the package (package data), so an installed wheel migrates too."""
    candidate = Path(__file__).resolve().parent / "migrations"
    if not (candidate / "env.py").exists():
        raise FileNotFoundError(f"migrations folder not found at {candidate}")
    return candidate


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = settings.database_url
    return config


def upgrade(settings: Settings, revision: str = "heads") -> None:
    """Migrates the database, then each region's own (the same history: they hold the same schema,
    of which a region's database uses the table of its users' personal data)."""
    command.upgrade(alembic_config(settings), revision)
    for region in settings.regions.values():
        command.upgrade(alembic_config(settings.model_copy(update={"database_url": region.database_url})), revision)


def downgrade(settings: Settings, revision: str = "base") -> None:
    command.downgrade(alembic_config(settings), revision)


def current_heads(settings: Settings) -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(settings)).get_heads())


def branches_behind(settings: Settings, applied: set[str]) -> list[str]:
    """Each branch (a context's, or the kernel's) whose head the database has not reached, as
    "<branch> at <revision>, head <revision>"; also revisions this code does not know."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(settings))
    known = {revision.revision for revision in script.walk_revisions()}
    behind = []
    unknown = sorted(applied - known)
    if unknown:
        behind.append(f"the database is at {', '.join(unknown)}, unknown to this staybook (migrated by a newer one?)")
    for head in sorted(script.get_heads()):
        if head in applied:
            continue
        labels = script.get_revision(head).branch_labels
        branch = min(labels - {"kernel"}, default="kernel")
        on_branch = {
            revision.revision
            for revision in script.iterate_revisions(head, "base")
            if branch in revision.branch_labels and (branch == "kernel" or revision.revision != "0001_kernel")
        }
        at = ", ".join(sorted(applied & on_branch)) or "none of its revisions"
        behind.append(f"{branch} at {at}, head {head}")
    return behind


async def applied_revisions(settings: Settings) -> set[str]:
    """The revisions in the database's alembic_version table (empty when it was never migrated)."""
    from alembic.migration import MigrationContext

    from staybook.kernel.db import create_engine

    engine = create_engine(settings)  # as the app connects (e.g. through PgBouncer)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads()))
    finally:
        await engine.dispose()
