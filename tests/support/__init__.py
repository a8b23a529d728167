"""Test helpers importable as ``support`` (``tests/`` is on ``sys.path`` through pytest's
``pythonpath`` setting; the checkout root never is, so ``taskstore`` comes from the installed
wheel): server fixtures, the backend table, the MCP test server, the examples."""
