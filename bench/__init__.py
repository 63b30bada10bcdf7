"""Benchmark harness for flask-access-cors.

``python -m bench`` calls the WSGI apps of bare Flask, flask-cors and this
extension directly (no server, no test client), on the same routes, in the
same process, interleaved, and reports medians of several runs as ratios to
bare Flask on the same route in the same run. It also measures start-up
validation, memory over a long run, and one run over HTTP under gunicorn.
The numbers are observations with targets, not pass/fail tests.

See ``docs/performance.rst`` for the method and the latest full results.
"""
