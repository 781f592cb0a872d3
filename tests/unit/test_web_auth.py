"""``exporter.web.auth``: the PasswordGate that bounds bcrypt checks, fairly per client.

Basic auth as the guard applies it (decoys, the cache, long passwords) is in
tests/component/test_web_security.py.
"""

from __future__ import annotations

import threading

from exporter.web.auth import PasswordGate
from testkit.waiting import wait_for
from testkit.webconfig import DEADLINE


def test_password_gate_gives_one_place_per_client_in_arrival_order() -> None:
    gate = PasswordGate(slots=1)
    order: list[str] = []
    release = threading.Event()

    def check(client: str) -> None:
        with gate.turn(client) as admitted:
            order.append(client if admitted else f"{client} refused")
            if client == "a" and admitted:
                release.wait(DEADLINE)

    first = threading.Thread(target=check, args=("a",))
    first.start()
    wait_for(lambda: order == ["a"], DEADLINE, "a's check to run")
    # While a's check runs, a second request from a gets no place at all.
    check("a")
    assert order == ["a", "a refused"]
    waiting = []
    for client in ("b", "c"):
        thread = threading.Thread(target=check, args=(client,))
        thread.start()
        waiting.append(thread)
        wait_for(lambda c=client: c in gate._holders, DEADLINE, f"{client} to queue")
    release.set()
    for thread in (first, *waiting):
        thread.join(DEADLINE)
    assert order == ["a", "a refused", "b", "c"]
