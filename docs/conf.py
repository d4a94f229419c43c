"""Sphinx configuration of the documentation site (``make docs``; warnings are errors).

Sphinx, as Airflow's own providers document themselves: autodoc reads the ``:param x:`` docstrings
as they are written, and MyST reads the Markdown pages, which stay readable on GitHub too.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# autodoc imports Airflow: give it a throw-away home, not the user's ~/airflow.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="chartmogul-docs-airflow-home-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import airflow_provider_chartmogul  # noqa: E402

project = "airflow-provider-chartmogul"
author = "airflow-provider-chartmogul maintainers"
copyright = "the airflow-provider-chartmogul maintainers"
release = airflow_provider_chartmogul.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links, as on GitHub

autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_class_signature = "separated"
autodoc_mock_imports: list[str] = []

html_theme = "furo"
html_title = "ChartMogul provider for Apache Airflow"
html_static_path: list[str] = []

# Links into this repository (source files, example DAGs) point at GitHub; each must name a file
# or folder that exists here, or the build fails (the site is checked offline, as CI runs).
REPOSITORY = "https://github.com/chartmogul-airflow/airflow-provider-chartmogul/"
_IN_REPOSITORY = re.compile(re.escape(REPOSITORY) + r"(?:blob|tree)/main/([^#?]+)")


def _check_repository_links(app: Any, doctree: nodes.document, docname: str) -> None:
    for reference in doctree.findall(nodes.reference):
        match = _IN_REPOSITORY.match(reference.get("refuri", ""))
        if match and not (ROOT / match.group(1)).exists():
            location = f"{app.env.doc2path(docname)}:{reference.line or 0}"
            logger.warning(
                "link to a file that is not in the repository: %s", match.group(0), location=location
            )


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-resolved", _check_repository_links)
    return {"parallel_read_safe": True}
