"""Replaying stopping strategies over recorded runs: ``scalar`` (each run through a real Monitor, the
reference), ``bank`` (runs as arrays), ``engine`` (the vectorised replay, identical to the scalar one),
``strategy`` (the CLI's strategy specs). The top layer below the CLI.
"""
