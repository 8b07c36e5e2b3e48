"""Rendering: the one place results become text for people and files for CI.

- :mod:`.console`: build steps and Triton test reports as rich lines and tables;
- :mod:`.tables`: the other commands' tables and summary lines (fixtures, publish, inspect,
  targets, loadtest);
- :mod:`.junit`: every JUnit XML report (build steps, test runs, diffs);
- :mod:`.markdown`: the diff's Markdown report; :mod:`.json_report`: the JSON reports;
- :mod:`.html`: the load test's HTML report;
- :mod:`.files`: checking a report path up front and writing a report file atomically.

Rendering sits above the pipeline: it may import any lower layer, never :mod:`mmetools.cli`.
The library logs; only rendering and the CLI print.
"""
