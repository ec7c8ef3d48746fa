"""docs/DATA.md documents every table registered in code, column by column."""

from __future__ import annotations

import re

import pytest

from embeddings.data.schemas import TABLES
from tests.conftest import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "DATA.md").read_text()


def _section(table: str) -> str:
    match = re.search(rf"^### `{re.escape(table)}`.*?$(.*?)(?=^##|\Z)", DOC, flags=re.M | re.S)
    assert match, f"docs/DATA.md has no '### `{table}`' section"
    return match.group(1)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_table_and_column_is_documented(table):
    section = _section(table)
    for field in TABLES[table].schema:
        assert f"`{field.name}`" in section, f"column {field.name} of {table} is not documented"
    partitioned = "partitioned by `ds`" in DOC.split(f"### `{table}`")[1].splitlines()[0]
    assert partitioned == TABLES[table].partitioned_by_ds, f"{table}: partitioning in docs differs from code"
