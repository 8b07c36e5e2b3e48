"""Unit tests, by stage of src/mmetools/: no server, no moto, no real tool."""
