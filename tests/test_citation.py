"""LICENSE and CITATION.cff: the licence pyproject names, and citation metadata valid under the
Citation File Format 1.2.0 schema (what ``cffconvert --validate`` checks) that name the papers
the package reproduces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).parent / "data" / "cff-1.2.0.schema.json"
REPRODUCED = {"arXiv:2405.04614", "arXiv:2312.08520"}  # Ozsoy 2024; Li, Jin, Ren 2023


def _pyproject(field: str) -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(rf'^{field} = (?:\{{ text = )?"([^"]+)"', text, re.MULTILINE).group(1)


@pytest.fixture(scope="module")
def citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def test_license_is_the_mit_licence_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    assert _pyproject("license") == "MIT"
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the mmlrepro authors\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in text


def test_citation_is_valid_cff(citation, validator):
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(citation)]
    assert not errors, errors


def test_the_validator_rejects_bad_metadata(citation, validator):
    assert not validator.is_valid({k: v for k, v in citation.items() if k != "authors"})
    assert not validator.is_valid({**citation, "cff-version": "1.2"})
    bad_doi = {**citation, "references": [{**citation["references"][0], "doi": "arXiv 2405"}]}
    assert not validator.is_valid(bad_doi)


def test_citation_agrees_with_pyproject_and_names_the_papers(citation):
    assert citation["version"] == _pyproject("version")
    assert citation["license"] == _pyproject("license")
    ids = {i["value"] for r in citation["references"] for i in r.get("identifiers", [])}
    assert REPRODUCED <= ids
