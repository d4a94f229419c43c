"""The README, the landing page: short, every link in it lands, and its table names every argument
of the operator (the documentation site itself is checked by ``make docs``, warnings as errors)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
REPOSITORY = "https://raw.githubusercontent.com/chartmogul-airflow/airflow-provider-chartmogul/main/"


def _arguments() -> list[str]:
    parameters = inspect.signature(AddCustomAttributesOperator.__init__).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def test_the_readme_is_a_landing_page_under_250_lines() -> None:
    assert len(README.splitlines()) < 250


def test_every_link_of_the_readme_names_a_file_of_the_repository() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    assert links
    for link in links:
        if link.startswith(REPOSITORY):
            link = link.removeprefix(REPOSITORY)
        elif link.startswith(("http://", "https://")):
            continue
        assert (ROOT / link.split("#", 1)[0]).exists(), f"README links to {link}, which does not exist"


def test_the_readme_table_has_one_row_per_operator_argument_in_order() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", README.split("## Operator arguments", 1)[1], flags=re.M)
    assert rows[: len(_arguments())] == _arguments()


def test_every_operator_argument_has_a_docstring_entry_for_the_site() -> None:
    documented = re.findall(r":param (\w+):", AddCustomAttributesOperator.__doc__ or "")
    assert documented == _arguments()
