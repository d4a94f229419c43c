"""What a release carries: the wheel built from this tree, its licence and metadata, and a README
whose images render on PyPI (which resolves no relative path)."""

from __future__ import annotations

import email.parser
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")

ROOT = pathlib.Path(__file__).parents[1]


def _uv() -> list[str]:
    if shutil.which("uv"):
        return ["uv"]
    for python in (sys.executable, shutil.which("python3")):
        if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    pytest.skip("uv is not installed: it builds the wheel")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [*_uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = out.glob("airflow_provider_chartmogul-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel.read(name).decode())


def test_wheel_ships_the_apache_license(wheel: zipfile.ZipFile) -> None:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(name).decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert text == (ROOT / "LICENSE").read_text()
    assert "airflow_provider_chartmogul/py.typed" in wheel.namelist()


def test_wheel_metadata_is_complete(wheel: zipfile.ZipFile) -> None:
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Author"]
    classifiers = set(meta.get_all("Classifier"))
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert {"Typing :: Typed", "Framework :: Apache Airflow :: Provider"} <= classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert any(c.startswith("Intended Audience ::") for c in classifiers)
    assert not any(c.startswith("License ::") for c in classifiers)  # the SPDX expression says it
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Source", "Documentation", "Changelog", "Issues"} <= set(urls)


def test_only_user_extras_are_published(wheel: zipfile.ZipFile) -> None:
    assert set(_metadata(wheel).get_all("Provides-Extra")) == {
        "sql",
        "postgres",
        "sqlite",
        "openlineage",
        "redis",
    }
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    assert {"test", "dev", "browser"} <= set(groups)


def test_readme_images_use_absolute_urls() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", readme) + re.findall(r'<img[^>]+src="([^"]+)"', readme)
    assert targets
    source = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Source"]
    raw = source.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    for target in targets:
        assert target.startswith(raw), target
        assert (ROOT / target.removeprefix(raw)).is_file(), target
