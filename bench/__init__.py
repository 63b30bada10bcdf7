"""Benchmarks of flask-access-cors against bare Flask and flask-cors: ``python -m bench``.

See ``docs/performance.rst`` for the method, the latest figures and how to rerun them.
"""
