"""Integration tests: real servers and tools (Triton, moto_server, dvc, pants); every test
here is marked integration (conftest.py)."""
