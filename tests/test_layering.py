"""The dependency rules of docs/architecture.md: ebl never imports the web layer; the offline verifier needs no
database."""

from __future__ import annotations

import subprocess
import sys


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in result.stdout.split()}


def test_the_domain_library_never_imports_fastapi() -> None:
    loaded = _modules_after_import("import ebl.service, ebl.cli, ebl.demo, ebl.schemas")
    assert "fastapi" not in loaded
    assert "starlette" not in loaded
    assert "api" not in loaded


def test_the_offline_verifier_needs_no_database_and_no_network() -> None:
    loaded = _modules_after_import("import ebl.verify, ebl.bundle")
    assert not loaded & {"sqlalchemy", "sqlmodel", "httpx", "fastapi", "sqlite3"}
