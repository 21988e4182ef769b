"""What the tests share besides fixtures: plain-Python oracles of the raw tables and the models,
hand-written raw rows, the key and retry policy of test runs, and small network helpers.

Importable as `support` because pytest puts tests/ on sys.path (tests/ is a rootdir-style folder
without __init__.py). Nothing here imports dlt, so the fast tests run without it.
"""
