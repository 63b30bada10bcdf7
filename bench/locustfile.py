"""Locust users for the HTTP run (``bench.cli`` starts the servers): each user sends each route to
every server of ``BENCH_SERVERS`` (``name=url,...``) in turn; a wrong status or
Access-Control-Allow-Origin header is a failure. Imports nothing from bench: locust loads it by path.
"""

import os

from locust import FastHttpUser, constant, task

SERVERS = [tuple(s.split("=", 1)) for s in os.environ.get("BENCH_SERVERS", "bare=http://x").split(",")]
ORIGIN = "https://app.example.com"
ROUTES = [  # name, method, headers, status by server
    ("get_allowed", "GET", {"Origin": ORIGIN}, {}),
    ("preflight", "OPTIONS", {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                              "Access-Control-Request-Headers": "content-type,x-requested-with"},
     {"access_cors": 204}),
]


class Client(FastHttpUser):
    host = SERVERS[0][1]
    wait_time = constant(0)
    turn = 0

    @task
    def round_robin(self) -> None:
        self.turn += 1
        for route, method, headers, statuses in ROUTES:
            for name, url in SERVERS if self.turn % 2 else SERVERS[::-1]:
                with self.client.request(method, url + "/api/items", headers=headers,
                                         name=f"{route} {name}", catch_response=True) as r:
                    cors = (r.headers or {}).get("Access-Control-Allow-Origin") == ORIGIN
                    if r.status_code != statuses.get(name, 200):
                        r.failure(f"status {r.status_code}")
                    elif cors != (name != "bare"):
                        r.failure(f"Access-Control-Allow-Origin {'present' if cors else 'missing'}")
