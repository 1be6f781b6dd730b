"""Fixtures of the skillbank.run tests: one tiny strings model per test module, and a
library home with it registered as base ``tiny``."""

from __future__ import annotations

import pytest
from run_helpers import make_home

from skillbank.library import Library
from tinyskills import tiny_strings_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "model"
    tiny_strings_model(path)
    return path


@pytest.fixture
def lib(tmp_path, model_dir):
    with Library.open(make_home(tmp_path / "home", model_dir)) as library:
        yield library
