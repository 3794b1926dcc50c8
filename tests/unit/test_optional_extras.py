"""The core package runs without its optional extras: typesense and psycopg are imported only where used."""

from __future__ import annotations

import subprocess
import sys

# Run in a fresh interpreter where the extras cannot be imported (a None entry in sys.modules refuses it).
WITHOUT_EXTRAS = """
import sys
for name in ("typesense", "psycopg", "boto3"):
    sys.modules[name] = None
"""


def run_without_extras(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS + code], capture_output=True, text=True, timeout=120)


def test_the_app_and_the_cli_build_without_the_extras(tmp_path):
    result = run_without_extras(f"""
import staybook.cli
from staybook.app import create_app
from staybook.kernel.settings import Settings
create_app(Settings(database_url="sqlite+aiosqlite:///{tmp_path / 'core.db'}", environment="test"))
print("built")
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "built"


def test_the_typesense_backend_without_its_extra_names_what_to_install():
    result = run_without_extras("""
try:
    import staybook.search.typesense
except ModuleNotFoundError as error:
    print(error)
""")
    assert result.returncode == 0, result.stderr
    assert "pip install 'staybook[typesense]'" in result.stdout
