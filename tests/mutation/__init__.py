"""Mutation testing of the modules that hold the rules (issue 23 item 1): `python -m tests.mutation` (README.md)."""
