"""The validation tests' fixtures (support/model/validation_fixtures.py), for this folder."""

from __future__ import annotations

from support.model.validation_fixtures import _in_tmp

__all__ = ["_in_tmp"]
