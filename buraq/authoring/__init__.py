"""Tools for writing pipelines: scaffold, resolve, export the schema, and test against real handlers.

Each command's logic lives in its own module; ``commands`` wires them into the CLI.
"""
