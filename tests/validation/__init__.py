"""Tests of mmetools.model.validation, split like the package, plus the command and the example models."""
