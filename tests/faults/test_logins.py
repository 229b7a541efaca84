"""Failed sign-ins are throttled per (username, client address), per address and per
username -- and nobody can lock a user out from somewhere else.

Clients are told apart by their real source address: each test client binds its own
loopback address (127.0.0.x), so no forwarded header has to be trusted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from deardiary.services.auth.identity import LoginLimiter, LoginThrottle, client_network
from deardiary.services.server import EmbeddedServer
from tests.faults.auth_world import ADMIN_PW, serving_users

ANN_PW = "ann-secret-1"


@dataclass
class Site:
    url: str
    server: EmbeddedServer


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving_users(tmp_path_factory.mktemp("logins") / "data", {"ann": ANN_PW}) as (
        server,
        url,
    ):
        yield Site(url, server)


@pytest.fixture(autouse=True)
def fresh_throttle(site: Site) -> None:
    """Each test starts with nobody throttled (the limits are per process, in memory)."""
    site.server.identity.throttle = LoginThrottle()


def _login(site: Site, address: str, user: str, password: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=address)) as client:
        return client.post(
            f"{site.url}/api/v1/auth/login", json={"username": user, "password": password}
        )


def _throttled(r: httpx.Response) -> bool:
    if r.status_code != 429:
        return False
    assert r.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
    assert int(r.headers["Retry-After"]) >= 1
    return True


def test_an_attacker_elsewhere_cannot_lock_the_admin_out(site: Site) -> None:
    attacker, admin = "127.0.0.3", "127.0.0.2"
    answers = [_login(site, attacker, "root", f"guess-{i}").status_code for i in range(8)]
    assert answers[:5] == [401] * 5 and answers[5:] == [429] * 3  # still counted and limited
    assert _login(site, admin, "root", ADMIN_PW).status_code == 200  # while hammered
    assert _throttled(_login(site, attacker, "root", ADMIN_PW))  # even the right one, there
    # from the attacker's address, other accounts are not locked by root's failures
    assert _login(site, attacker, "ann", ANN_PW).status_code == 200


def test_one_address_cannot_spray_many_accounts(site: Site) -> None:
    sprayer = "127.0.0.4"
    statuses = [_login(site, sprayer, f"user{i}", "password1").status_code for i in range(35)]
    assert statuses[:30] == [401] * 30 and set(statuses[30:]) == {429}
    assert _throttled(_login(site, sprayer, "ann", ANN_PW))  # the address waits, whoever
    assert _login(site, "127.0.0.5", "ann", ANN_PW).status_code == 200


def test_a_distributed_guess_is_limited_but_not_where_the_user_signs_in(site: Site) -> None:
    site.server.identity.throttle = LoginThrottle(per_user=12)
    home = "127.0.0.2"
    assert _login(site, home, "ann", ANN_PW).status_code == 200  # ann's usual place
    for n in range(10, 14):  # four places, three guesses each: 12 failures on ann
        for i in range(3):
            assert _login(site, f"127.0.0.{n}", "ann", f"guess-{i}").status_code == 401
    assert _throttled(_login(site, "127.0.0.20", "ann", "guess-x"))  # a new place waits
    assert _login(site, home, "ann", ANN_PW).status_code == 200  # her own does not


def test_concurrent_guesses_cannot_slip_past_the_limit(site: Site) -> None:
    """An attempt counts from its start: twenty guesses at once get five tries."""
    barrier = threading.Barrier(20)

    def guess(i: int) -> int:
        barrier.wait()
        return _login(site, "127.0.0.6", "root", f"guess-{i}").status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(guess, range(20)))
    assert statuses.count(401) == 5 and statuses.count(429) == 15, statuses


def test_a_success_forgives_earlier_failures_of_that_place(site: Site) -> None:
    for _ in range(2):
        for i in range(4):
            assert _login(site, "127.0.0.7", "ann", f"typo-{i}").status_code == 401
        assert _login(site, "127.0.0.7", "ann", ANN_PW).status_code == 200


def test_unknown_and_known_users_fail_alike(site: Site) -> None:
    unknown = _login(site, "127.0.0.8", "nobody", "password1")
    known = _login(site, "127.0.0.8", "ann", "password1")
    assert unknown.status_code == known.status_code == 401
    assert unknown.json() == known.json()


def test_client_networks() -> None:
    assert client_network("192.0.2.7") == "192.0.2.7"
    assert client_network("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_network("2001:db8:1:2:aaaa::1") == client_network("2001:db8:1:2:bbbb::9")
    assert client_network("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_network("2001:db8:1:3::1") != client_network("2001:db8:1:2::1")
    assert client_network("") == "" and client_network("unix") == "unix"


def test_the_limiter_forgets_the_longest_idle_keys_first() -> None:
    limiter = LoginLimiter(attempts=2, window_s=60.0, max_keys=3)
    limiter.failed("a")
    limiter.failed("a")
    for key in ("b", "c", "d"):
        limiter.failed(key)
    assert not limiter.blocked("a")  # forgotten: memory stays bounded
    limiter.failed("d")
    assert limiter.blocked("d")


def test_sessions_are_not_throttled(site: Site) -> None:
    ok = _login(site, "127.0.0.9", "ann", ANN_PW)
    token = {"Authorization": f"Bearer {ok.json()['token']}"}
    for i in range(6):
        _login(site, "127.0.0.9", "ann", f"bad-{i}")
    assert httpx.get(f"{site.url}/api/v1/auth/me", headers=token).status_code == 200
