"""Fault injection: the system under steady load while its processes and links fail."""

# The last run's headline numbers, printed at the end of the pytest session (conftest.py).
SUMMARY: list[str] = []
