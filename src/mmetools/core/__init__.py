"""The bottom room: settings, errors, subprocesses, atomic writes, serving targets. Imports nothing
else of mmetools (docs/architecture.md)."""
