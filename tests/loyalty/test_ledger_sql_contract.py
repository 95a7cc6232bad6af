"""Rule 1 of the ledger: only the posting and the jobs use the ledger's SQL. The import-linter
contract in pyproject.toml guards it in `make lint`; these tests show that the contract is
there and that it catches a module that imports the SQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c.get("id") == "ledger-sql"]
    return contract


def test_the_contract_protects_the_ledger_sql_for_the_posting_and_the_jobs():
    contract = _contract()
    assert contract["type"] == "protected"
    assert contract["protected_modules"] == ["loyalty.services.ledger_sql"]
    assert sorted(contract["allowed_importers"]) == ["loyalty.services.jobs", "loyalty.services.posting"]


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    contract = _contract()
    config = "\n".join(
        [
            "[importlinter]",
            "root_packages =\n    loyalty",
            "include_external_packages = False",
            "[importlinter:contract:ledger-sql]",
            f"name = {contract['name']}",
            "type = protected",
            "protected_modules =\n    " + "\n    ".join(contract["protected_modules"]),
            "allowed_importers =\n    " + "\n    ".join(contract["allowed_importers"]),
            "as_packages = False",
        ]
    )
    (tree / ".importlinter").write_text(config + "\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / ".importlinter"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
def test_a_module_that_imports_the_ledger_sql_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "loyalty", tmp_path / "loyalty", ignore=shutil.ignore_patterns("__pycache__"))
    assert _lint(tmp_path).returncode == 0, "the real tree keeps the contract"

    (tmp_path / "loyalty" / "sneaky.py").write_text("from loyalty.services import ledger_sql\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "loyalty.sneaky" in result.stdout
