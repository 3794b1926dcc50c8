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
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str = "base") -> None:
    command.downgrade(alembic_config(settings), revision)


def current_heads(settings: Settings) -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(settings)).get_heads())
