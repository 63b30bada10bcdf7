"""The hand-written parts of ``docs/performance.rst``; the tables come from a run.

``python -m bench --write-docs`` renders the page from a fresh run's results
and these paragraphs (``{name}`` fields are filled from the run's settings or
the memory results).
"""

from __future__ import annotations

__all__ = ["PROSE"]

PROSE: dict[str, str] = {
    "intro": """\
How much flask-access-cors costs per request, compared with bare Flask and with
flask-cors on the same routes, how that was measured, and which of the targets
set for it are met. The numbers are observations with targets, not tests: the
benchmark never fails because a target is missed.""",
    "machine": """\
The machine is a shared virtual machine: other jobs (test suites, a headless
browser) may run on its two cores during a benchmark. Absolute times therefore
move by tens of percent from one run to the next, and are several times those
of an idle desktop. Read the ratios: every variant of a scenario is measured in
the same process, interleaved with the others, and divided by its baseline
from the same run.""",
    "reproduce": """\
.. code-block:: console

   $ make bench                                  # the full run (a few minutes)
   $ .venv/bin/python -m bench --quick           # a smoke run (about a minute)
   $ .venv/bin/python -m bench --only preflight,hostile --skip http
   $ .venv/bin/python -m bench --write-docs      # full run, then rewrite this page
   $ .venv/bin/python -m bench --profile hostile:access_commas_64k

The full run writes its results to ``bench/results/latest.json`` (a quick run to
``bench/results/quick.json``) and prints the table below. ``--profile
SCENARIO:VARIANT`` runs one variant under cProfile and prints the top entries
and those inside ``flask_access_cors``; the variant keys are in the JSON.""",
    "method": """\
**Direct WSGI calls.** Each request calls the app's ``app(environ,
start_response)``, with no server and no test client. The environ is a shallow
copy of a template built once, with a fresh ``io.BytesIO`` as ``wsgi.input``;
where a scenario needs distinct values (tokens, origins) they come from lists
built beforehand, and every variant of that scenario uses the same environ
factory, so the harness costs the same for each. The returned iterable is
iterated to the end and closed; ``start_response`` keeps the status and
headers. The harness's own cost is the "null WSGI app" row.

**Same routes, same process.** Bare Flask, flask-cors 6 and flask-access-cors
are three apps built by one function (views return a two-byte text body, so
the CORS layer's cost is as visible as it can be). flask-cors gets the closest
configuration it has (same origins, credentials, methods, allowed headers,
``max_age``; wildcards as compiled regexes). Before and after the timing, every
variant's answer is checked (status code and the key ``Access-Control-*``
headers), so a variant that answers wrongly is reported as an error instead of
being timed.

**Interleaving.** Each variant is warmed up for {warmup_seconds:g} s, which
also picks its batch size (about {batch_seconds:g} s of requests). A *run* is
{rounds} rounds; in each round every variant of the scenario serves one batch,
in an order that alternates between forwards and backwards. A variant's time in
a run is the median of its batch means; its ratio is that time divided by its
baseline's time in the same run. The table shows the median over {runs} runs
and, in parentheses, the smallest and largest of the {runs} values.

**Clock.** The primary clock is ``{clock}``: with ``cpu`` (the default),
``time.process_time_ns`` around each batch, which counts every thread of the
process (the debug log's background writer included) but not the time the
process waited for a core while other jobs ran. The ratio by the other clock is
shown as "wall ratio"; when the two disagree, the machine was busy.

**Start-up** is ``AccessCors(app, origins=[...])`` on a fresh app with the
same routes (validation, parsing and compilation), median of 5 interleaved
runs, CPU time; flask-cors' constructor is timed on the same lists.

**Memory** is measured in a separate process (so nothing else the benchmark
allocated counts), over a long run described below. **HTTP** is one run per
app and route under gunicorn, described below.""",
    "results": """\
*ratio*: the variant's time divided by the time of the row named in *vs*, in
the same run: the median over runs, with the smallest and largest run in
parentheses. *wall ratio*: the same, by the other clock. *x bare*: the ratio to
bare Flask on the same route. A target applies to *ratio*, except for start-up
(an absolute time). ACRH is the ``Access-Control-Request-Headers`` request
header.""",
    "startup": """\
``AccessCors(app, origins=[...], credentials=True)`` on a fresh app with the
routes already registered, so validation, parsing and compiling the policy are
all inside the measurement; median of 5 interleaved runs (CPU time).""",
    "memory": """\
{requests:,} requests against the full configuration: the gate with RS256
tokens from a JWKS on loopback, 1,000 exact origins and 1,000 wildcards, and
the debug event log on (SQLite). Every request has a new origin under a
wildcard, and a token from a cycle of {token_cycle:,} distinct tokens (twice the
4,096 entries of the verified-token cache, so every request is a cache miss
that verifies, inserts and evicts); every 8th request comes from a new
disallowed origin (a distinct debug event each time) and every 16th carries no
token. The run took {seconds:g} s ({us_per_request:g} µs per request; signing
the tokens beforehand took {signing_seconds:g} s); {events_dropped} events
were dropped; the verified-token cache held {token_cache_entries} entries at the
end. Resident memory (``VmRSS``) and its peak (``VmHWM``) are read from
``/proc/self/status`` after every batch:""",
    "http": """\
One run, for the end-to-end picture rather than the extension's own cost: the
load generator is Python in the same two cores as the workers, and gunicorn's
sync workers close the connection after every response, so every request also
pays for a TCP connection. *x bare (time)* is bare Flask's throughput divided by
the variant's (above 1: slower). Repeated runs on this machine moved these
ratios by up to 0.25 either way, so they only show that nothing is grossly
slower end to end; the in-process tables above are the measurement.""",
    "targets": """\
Each target, with the value measured in this run (the median ratio, with the
smallest and largest run in parentheses).""",
    "findings": """\
Each target missed in this run, with what profiling (``python -m bench
--profile SCENARIO:VARIANT``) shows and the change proposed for it. The effect
of each change was checked by patching it into the package in a scratch
process and rerunning the scenario; the package itself is unchanged.""",
}

#: Why a target is missed, by ``scenario:variant`` (or ``scenario`` for all of its
#: variants). Only the entries whose target was missed in the run are shown.
CAUSES: dict[str, str] = {
    "hostile": """\
Every denial builds a debug event (``Event.create``), even with ``debug`` off,
for the ``request_denied`` signal and the INFO log line. Its ``escape()``
takes a per-character Python loop (``_token()`` plus a regex match for each
character) whenever a value is longer than its limit or contains a special
character, for ``detail`` and for the message. Hostile values are exactly those:
64 KiB of commas, a 400-byte origin. Under cProfile, ``escape`` is 45 % of the
request for 64 KiB of commas. Proposed: (1) in ``escape()``, search the first
``limit`` characters with the compiled regex and return the slice (plus the
truncation mark) when nothing needs escaping, keeping the loop for values that
do; (2) in ``_State.deny()``, build the event only when someone consumes it
(``policy.debug``, a ``request_denied`` receiver, or the logger enabled for
INFO). Measured with both: 0.98 to 1.03 times a normal preflight (1.14 to 1.29
with the first alone).""",
    "preflight:access_cors_denied": """\
A denied preflight pays for the debug event (``Event.create``: uuid4, an aware
``datetime``, seven ``escape()`` calls and the message), the INFO log call and
the signal, all with ``debug`` off and no receiver, plus a JSON ``403`` body.
Proposed: build the event only when it is consumed (change 2 under the hostile
preflights). Measured with both changes proposed there: 0.98 times the allowed
preflight instead of 1.5.""",
    "gate:access_cached": """\
On a verified-token cache hit, ``Gate.identify`` still costs about 6 µs: the
token headers' environ keys are rebuilt on every request (``name.upper()
.replace()`` through a closure), the cookie header is split and every part
stripped, ``verify()`` copies the claims, and ``identity_from_claims`` copies
them again into a new ``Identity``. Proposed: precompute the environ keys of
``token_headers`` in ``Gate``, and cache the immutable ``Identity`` itself
with the verified token (same bound, same expiry; keyed by token and source),
so a hit is one lookup and one clock comparison. Measured with a patched
``identify``: 1.12 to 1.18 times bare instead of 1.26 to 1.30.""",
    "startup": """\
Parsing is about 10 µs per origin, two thirds of it in
``origins._split``'s per-character generator (``any(c.isspace() for c in
value)``) and ``_check_host``'s per-label regex matches. Proposed: one compiled
regex for the common, valid exact origin (scheme, lower-case labels, optional
port) that returns the ``Pattern`` directly, falling back to today's checks
only to explain a failure; and a compiled ``\\s`` search instead of the
generator. Measured: 10,000 origins in about 30 ms instead of 85 ms (same
results for every origin in the benchmark and for a set of invalid ones).""",
}
