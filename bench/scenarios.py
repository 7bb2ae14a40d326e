"""What the benchmark measures, one function per part of the table.

Each function starts the servers it needs, measures, and stops them, so one part's servers
never take CPU from another's.
"""

from __future__ import annotations

import base64
import os
import statistics
import time
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from bench import servers, wrk
from bench.measure import Options, Row, alternate, measure

FORM = ("Content-Type", "application/x-www-form-urlencoded")
# The /healthz probe during the login storm: 4 connections, each pausing 20 ms between
# requests (about 190 requests/s): other traffic on the worker, not a second flood.
PROBE_CONNECTIONS = 4
PROBE_PAUSE_MS = 20
STORM_CONNECTIONS = 8
VERIFIES_PER_THREAD = 75
POSTGRES_URL = os.environ.get(
    "AUTHSVC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _post_form(url: str, **form: str) -> dict[str, Any]:
    response = httpx.post(url, data=form, timeout=60)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def login(gateway: servers.Server) -> dict[str, Any]:
    username, password = servers.ADMIN
    return _post_form(
        f"{gateway.url}/oauth2/token", grant_type="password", username=username, password=password
    )


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def register_client(gateway: servers.Server, admin_token: str) -> tuple[str, str]:
    """A confidential client allowed client_credentials; its Basic header."""
    registered = httpx.post(
        f"{gateway.url}/admin/clients",
        headers={"Authorization": f"Bearer {admin_token}"},
        json={"name": "bench", "grant_types": ["client_credentials"]},
        timeout=30,
    ).json()
    return ("Authorization", _basic(registered["client_id"], registered["client_secret"]))


def gateway_routes(options: Options, workdir: Path, facts: dict[str, Any]) -> list[Row]:
    """Items 1-4 and 8: the protected route, forward-auth, introspection, client_credentials,
    the downstream guard; memory and time to ready."""
    rows: list[Row] = []
    # The first start creates the database, the keys and the admin (one bcrypt hash); the
    # time to ready that operators see on every restart is the second.
    with servers.gateway(workdir) as gateway:
        facts["gateway_first_start_seconds"] = round(gateway.startup_seconds, 3)
    with servers.gateway(workdir) as gateway:
        facts["gateway_ready_seconds"] = round(gateway.startup_seconds, 3)
        admin = login(gateway)
        bearer = ("Authorization", f"Bearer {admin['access_token']}")
        basic = register_client(gateway, admin["access_token"])
        bare = (f"{gateway.url}/healthz", wrk.Load())
        rows.append(
            measure(
                options,
                "gateway /users/me (full chain)",
                (f"{gateway.url}/users/me", wrk.Load(headers=(bearer,))),
                "gateway /healthz",
                bare,
                ">= 0.60",
            )
        )
        rows.append(
            measure(
                options,
                "forward-auth /auth/verify",
                (f"{gateway.url}/auth/verify", wrk.Load(headers=(bearer,))),
                "gateway /healthz",
                bare,
                ">= 0.55",
            )
        )
        introspect = wrk.Load("POST", (basic, FORM), "token=" + admin["access_token"])
        rows.append(
            measure(
                options,
                "introspection",
                (f"{gateway.url}/oauth2/introspect", introspect),
                "gateway /healthz",
                bare,
                ">= 5000/s",
            )
        )
        grant = wrk.Load("POST", (basic, FORM), "grant_type=client_credentials")
        rows.append(
            measure(
                options,
                "client_credentials grant (RS256)",
                (f"{gateway.url}/oauth2/token", grant),
                "gateway /healthz",
                bare,
                ">= 2000/s",
            )
        )
        with servers.downstream(workdir, gateway.url) as service:
            rows.append(
                measure(
                    options,
                    "downstream guard /me (JWKS cached)",
                    (f"{service.url}/me", wrk.Load(headers=(bearer,))),
                    "downstream /hello",
                    (f"{service.url}/hello", wrk.Load()),
                    ">= 0.65",
                )
            )
            facts["downstream_rss_mb"] = round(service.rss_mb(), 1)
        facts["gateway_rss_mb"] = round(gateway.rss_mb(), 1)
    return rows


def es256_grants(options: Options, workdir: Path) -> list[Row]:
    """client_credentials with ES256 keys: an RSA-2048 signature alone takes about 1 ms."""
    es256 = {"AUTHSVC_JWT_ALGORITHM": "ES256"}
    with servers.gateway(workdir, "gateway-es256", settings=es256) as gateway:
        admin = login(gateway)
        basic = register_client(gateway, admin["access_token"])
        grant = wrk.Load("POST", (basic, FORM), "grant_type=client_credentials")
        return [
            measure(
                options,
                "client_credentials grant (ES256)",
                (f"{gateway.url}/oauth2/token", grant),
                "gateway /healthz",
                (f"{gateway.url}/healthz", wrk.Load()),
                ">= 2000/s",
            )
        ]


def _refresh_tokens(gateway: servers.Server, count: int) -> list[str]:
    return [login(gateway)["refresh_token"] for _ in range(count)]


def refreshes(options: Options, workdir: Path, facts: dict[str, Any]) -> list[Row]:
    """Item 5: refresh_token grants per second, on SQLite and on PostgreSQL.

    Each refresh spends its token and the answer carries the next (rotation), so every run
    starts from fresh logins. These gateways hash at bcrypt cost 4: a refresh does no bcrypt
    work, and the logins that seed the runs should not take minutes.
    """
    rows: list[Row] = []
    with servers.postgres_database(POSTGRES_URL) as postgres_url:
        databases: list[tuple[str, dict[str, str]]] = [("SQLite", {"AUTHSVC_BCRYPT_ROUNDS": "4"})]
        if postgres_url is None:
            facts["refresh_postgresql"] = f"not measured: no PostgreSQL at {POSTGRES_URL}"
        else:
            databases.append(
                ("PostgreSQL", {"AUTHSVC_BCRYPT_ROUNDS": "4", "AUTHSVC_DATABASE_URL": postgres_url})
            )
        for label, settings in databases:
            name = f"gateway-refresh-{label.lower()}"
            with servers.gateway(workdir, name, settings=settings) as gateway:

                def chain(gateway: servers.Server = gateway) -> wrk.Result:
                    tokens = _refresh_tokens(gateway, options.connections + 1)
                    load = wrk.Load("POST", (FORM,), lua=wrk.refresh_chain(tokens))
                    return wrk.run(
                        f"{gateway.url}/oauth2/token",
                        load,
                        seconds=options.seconds,
                        connections=options.connections,
                        core=1,
                    )

                def bare(gateway: servers.Server = gateway) -> wrk.Result:
                    return wrk.run(
                        f"{gateway.url}/healthz",
                        wrk.Load(),
                        seconds=options.seconds,
                        connections=options.connections,
                        core=1,
                    )

                title = f"refresh_token grant ({label})"
                row = alternate(title, chain, "gateway /healthz", bare, options.rounds)
                row.goal = ">= 800/s (PostgreSQL)"
                rows.append(row)
    return rows


def bcrypt_verify_seconds(rounds: int, samples: int = 5) -> float:
    """One bcrypt verify at the gateway's cost, timed here, while the gateways are idle."""
    password = b"bench-admin-password-1"
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds))
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        bcrypt.checkpw(password, hashed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def logins(options: Options, workdir: Path, facts: dict[str, Any], cost: int) -> list[Row]:
    """Item 6: password logins at the configured bcrypt cost vs the bound (cores / one
    verify), and a paced /healthz probe during the storm vs the same probe idle.

    This gateway is not pinned: the bound counts every core, and the hashing pool has one
    thread per core. The bound is timed again before every storm, once the gateway has
    finished the previous one's work: on a shared machine a bound timed once, minutes
    away, would compare each storm with another moment's machine.
    """
    cores = os.cpu_count() or 1
    facts["bcrypt_cost"] = cost
    username, password = servers.ADMIN
    storm_load = wrk.Load(
        "POST",
        (FORM,),
        f"grant_type=password&username={username}&password={password}",
    )
    probe_load = wrk.Load(lua=wrk.paced(PROBE_PAUSE_MS))
    # Long enough that the logins cut off at the end of a run (up to one per hashing thread,
    # half done on average) weigh little: 75 verifies per thread, 15 s at cost 12.
    seconds = max(options.seconds, VERIFIES_PER_THREAD * bcrypt_verify_seconds(cost))
    storms: list[tuple[wrk.Result, float]] = []
    alone: list[tuple[wrk.Result, float]] = []
    verifies: list[float] = []
    cost_setting = {"AUTHSVC_BCRYPT_ROUNDS": str(cost)}
    with servers.gateway(workdir, "gateway-logins", pin=False, settings=cost_setting) as gateway:
        probe_url = f"{gateway.url}/healthz"

        def probe(*, after_idle: bool) -> wrk.Result:
            if after_idle:
                # Not while the previous storm's queued logins still hash.
                servers.wait_until_idle(gateway)
            return wrk.run(
                probe_url, probe_load, seconds=seconds, connections=PROBE_CONNECTIONS, core=None
            )

        def probe_idle() -> wrk.Result:
            return probe(after_idle=True)

        def storm() -> tuple[wrk.Running, float]:
            """Start a storm; with the bound timed just before it."""
            servers.wait_until_idle(gateway)
            verify = bcrypt_verify_seconds(cost)
            verifies.append(verify)
            running = wrk.start(
                f"{gateway.url}/oauth2/token",
                storm_load,
                seconds=seconds,
                connections=STORM_CONNECTIONS,
                core=None,
            )
            return running, cores / verify

        def probe_during_storm() -> wrk.Result:
            running, bound = storm()
            during = probe(after_idle=False)
            storms.append((running.result(), bound))
            return during

        probe_row = alternate(
            "/healthz probe during a login storm",
            probe_during_storm,
            "same probe, idle",
            probe_idle,
            options.rounds,
        )
        # The storm with nothing else running: what the probe's own requests (and its wrk)
        # take from the hashing threads shows as the difference between the two login rows.
        for _ in range(options.rounds):
            running, bound = storm()
            alone.append((running.result(), bound))
    probe_row.goal = ">= 0.75, p99 < 2x idle"
    if any(result.errors for result, _ in storms + alone):
        raise RuntimeError("login storm: non-2xx answers")
    verify = statistics.median(verifies)
    facts["bcrypt_verify_ms"] = round(verify * 1000, 1)
    facts["bcrypt_verify_ms_each_storm"] = [round(v * 1000, 1) for v in verifies]
    facts["login_bound_per_second"] = round(cores / verify, 2)

    def login_row(name: str, results: list[tuple[wrk.Result, float]]) -> Row:
        return Row(
            name=name,
            baseline=f"bound: {cores} cores / one verify",
            rate=statistics.median(result.rate for result, _ in results),
            baseline_rate=statistics.median(bound for _, bound in results),
            p99_ms=statistics.median(result.p99_ms for result, _ in results),
            goal=">= 0.90",
            rounds=[{"target": result.rate, "baseline": bound} for result, bound in results],
            paired=True,
        )

    return [
        login_row(f"password logins, bcrypt cost {cost} (storm alone)", alone),
        login_row(f"password logins, bcrypt cost {cost} (during the probe)", storms),
        probe_row,
    ]


def _p99_ms(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] * 1000 if len(samples) > 1 else float("nan")


def login_timing(workdir: Path, facts: dict[str, Any], cost: int, tries: int) -> list[Row]:
    """Issue 7: can login latency tell an unknown username from a known one?

    ``tries`` logins each for an unknown user and for a known user with a wrong password,
    one at a time on one connection, alternating (A B B A), at the configured bcrypt cost.
    Lockout and throttling are off, so every wrong password takes the password path. The
    medians' difference is reported against one bcrypt verify; the goal is under 5%.
    """
    verify = bcrypt_verify_seconds(cost)
    settings = {
        "AUTHSVC_BCRYPT_ROUNDS": str(cost),
        "AUTHSVC_LOCKOUT_THRESHOLD": "0",
        "AUTHSVC_RATE_LIMIT_FAILURES": "0",
    }
    username = servers.ADMIN[0]
    forms = {
        "unknown": {"username": "no-such-user", "password": "wrong-password-1"},
        "wrong": {"username": username, "password": "wrong-password-1"},
    }
    times: dict[str, list[float]] = {"unknown": [], "wrong": []}
    with (
        servers.gateway(workdir, "gateway-timing", pin=False, settings=settings) as gateway,
        httpx.Client(base_url=gateway.url, timeout=60) as client,
    ):

        def attempt(kind: str) -> None:
            started = time.perf_counter()
            response = client.post("/oauth2/token", data={"grant_type": "password", **forms[kind]})
            times[kind].append(time.perf_counter() - started)
            if response.status_code != 400:
                raise RuntimeError(f"login timing: {kind} answered {response.status_code}")

        for kind in forms:  # warm up: first requests pay for imports and connections
            attempt(kind)
        times = {"unknown": [], "wrong": []}
        for _ in range((tries + 1) // 2):
            for kind in ("unknown", "wrong", "wrong", "unknown"):
                attempt(kind)
    unknown = statistics.median(times["unknown"])
    wrong = statistics.median(times["wrong"])
    facts["login_timing_tries_each"] = len(times["unknown"])
    facts["login_timing_unknown_user_median_ms"] = round(unknown * 1000, 2)
    facts["login_timing_wrong_password_median_ms"] = round(wrong * 1000, 2)
    facts["login_timing_difference_of_one_verify"] = round(abs(unknown - wrong) / verify, 4)
    facts["login_timing_goal"] = "difference < 0.05 of one verify"
    # As a row: sequential logins per second, the wrong password as the baseline.
    return [
        Row(
            name="one login at a time, unknown user",
            baseline="known user, wrong password",
            rate=1 / unknown,
            baseline_rate=1 / wrong,
            p99_ms=_p99_ms(times["unknown"]),
            baseline_p99_ms=_p99_ms(times["wrong"]),
            goal="medians differ by < 5% of one verify (facts)",
        )
    ]


def peers(options: Options, workdir: Path) -> list[Row]:
    """Item 7: the same protected-route work in a FastAPI docs tutorial app and in
    fastapi-users, each against its own bare route, and fastapi-users against us."""
    rows: list[Row] = []
    with servers.peer(workdir, "tutorial_app") as tutorial:
        token = _post_form(
            f"{tutorial.url}/token", username="johndoe", password="tutorial-password-1"
        )["access_token"]
        rows.append(
            measure(
                options,
                "peer: FastAPI tutorial /users/me (HS256, dict users)",
                (
                    f"{tutorial.url}/users/me",
                    wrk.Load(headers=(("Authorization", f"Bearer {token}"),)),
                ),
                "its /hello",
                (f"{tutorial.url}/hello", wrk.Load()),
            )
        )
    with servers.peer(workdir, "fastapi_users_app") as users_app:
        credentials = {"email": "bench@example.com", "password": "bench-password-1"}
        httpx.post(f"{users_app.url}/auth/register", json=credentials, timeout=30)
        token = _post_form(
            f"{users_app.url}/auth/jwt/login",
            username=credentials["email"],
            password=credentials["password"],
        )["access_token"]
        peer_me = (
            f"{users_app.url}/users/me",
            wrk.Load(headers=(("Authorization", f"Bearer {token}"),)),
        )
        rows.append(
            measure(
                options,
                "peer: fastapi-users /users/me (JWT, current_active_user)",
                peer_me,
                "its /hello",
                (f"{users_app.url}/hello", wrk.Load()),
            )
        )
        with servers.gateway(workdir, "gateway-vs-peer") as gateway:
            admin = login(gateway)
            ours = (
                f"{gateway.url}/users/me",
                wrk.Load(headers=(("Authorization", f"Bearer {admin['access_token']}"),)),
            )
            rows.append(
                measure(
                    options,
                    "gateway /users/me",
                    ours,
                    "fastapi-users /users/me",
                    peer_me,
                    ">= 5.0",
                )
            )
    return rows
