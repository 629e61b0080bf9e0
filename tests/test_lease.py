"""One active instance (adapters/lease.py): a lease row, expiring on the database's clock.

On a real database (SQLite file; PostgreSQL when configured), with short leases (1 to 2 seconds)
so that expiry can be watched happen.
"""
from __future__ import annotations

import threading
import time

import pytest

from service.daemon import Daemon, LeaseLost, Settings
from adapters.store.lease import Lease, read_lease
from adapters.store.database import Store


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def test_the_first_takes_it_the_second_waits(store):
    first = Lease(store.engine, ttl=30, holder="host-a/1/aa")
    second = Lease(store.engine, ttl=30, holder="host-b/2/bb")
    assert first.acquire() and first.held and first.generation == 1
    assert not second.acquire() and not second.held
    info = read_lease(store.engine)
    assert info.holder == "host-a/1/aa" and info.generation == 1 and 25 < info.expires_in <= 30
    assert first.acquire()                       # taking it again is renewing it: same tenure
    assert read_lease(store.engine).generation == 1


def test_a_clean_release_lets_the_other_take_over_at_once(store):
    first = Lease(store.engine, ttl=30, holder="a")
    second = Lease(store.engine, ttl=30, holder="b")
    assert first.acquire()
    first.release()
    assert not first.held
    assert second.acquire() and second.generation == 2
    assert not first.confirm()                   # the old holder learns it lost the lease


def test_a_holder_that_stops_renewing_is_taken_over_after_expiry(store):
    dead = Lease(store.engine, ttl=0.8, holder="dead")
    standby = Lease(store.engine, ttl=0.8, holder="standby")
    assert dead.acquire()
    assert not standby.acquire()                 # still valid
    time.sleep(1.0)
    assert standby.acquire() and standby.generation == 2
    assert not dead.confirm() and not dead.held  # too late to renew: someone else has it


def test_the_heartbeat_keeps_the_lease_past_its_duration(store):
    holder = Lease(store.engine, ttl=0.6, holder="alive")
    other = Lease(store.engine, ttl=0.6, holder="other")
    assert holder.acquire()
    holder.start_heartbeat()
    try:
        time.sleep(1.5)
        assert holder.held and not other.acquire()
    finally:
        holder.release()
    assert other.acquire()


def test_racing_instances_on_an_expired_lease_one_wins(store):
    Lease(store.engine, ttl=30, holder="gone").acquire()
    Lease(store.engine, ttl=30, holder="gone").release()
    contenders = [Lease(store.engine, ttl=30, holder=f"c{n}") for n in range(8)]
    barrier = threading.Barrier(len(contenders))
    results = {}

    def race(lease):
        barrier.wait()
        results[lease.holder] = lease.acquire()

    threads = [threading.Thread(target=race, args=(lease,)) for lease in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [h for h, won in results.items() if won]
    assert len(winners) == 1
    assert read_lease(store.engine).holder == winners[0]
    assert read_lease(store.engine).generation == 2


def test_no_message_leaves_once_the_lease_is_lost(store, db_url, tmp_path):
    """Before each message the daemon renews its lease; a lease taken over stops it before sending."""
    daemon = Daemon(Settings(rules_dir=tmp_path, db_url=db_url, clock=None, channel_for=None))
    daemon.lease = Lease(store.engine, ttl=30, holder="paused")
    assert daemon.lease.acquire()
    daemon.before_send()                         # still ours: goes ahead
    daemon.lease.release()                       # (as if it had expired while the process was paused)
    assert Lease(store.engine, ttl=30, holder="new").acquire()
    with pytest.raises(LeaseLost):
        daemon.before_send()


def test_a_leased_channel_renews_before_each_message_and_stops_once_the_lease_is_lost(store):
    """`rappel run` sends through ``leased(channel, lease)``: as the daemon, nothing leaves once another took over."""
    from adapters.channels.memory import MemoryChannel
    from service.daemon import leased
    from adapters.store.schema import leases

    run = Lease(store.engine, ttl=30, holder="rappel-run")
    assert run.acquire()
    inner = MemoryChannel()
    channel = leased(inner, run)
    assert channel.send_email("notice 1", "message 1").ok
    assert channel.name == "memory"                                      # the rest is the channel's own
    with store.engine.begin() as conn:                                   # paused past its lease …
        conn.execute(leases.update().values(expires_at=leases.c.expires_at - 3600))
    assert Lease(store.engine, ttl=30, holder="daemon").acquire()        # … and the daemon took over
    with pytest.raises(LeaseLost):
        channel.send_email("notice 2", "message 2")
    with pytest.raises(LeaseLost):
        channel.send_letter("notice 3", b"%PDF", "letter.pdf")
    assert [n for n, _ in inner.emails] == ["notice 1"] and inner.letters == []
    assert read_lease(store.engine).holder == "daemon"


def test_a_pass_renews_the_lease_in_each_marks_transaction_and_stops_once_it_is_lost(tmp_path):
    """dispatch renews the lease in the transaction that marks a message sending: once another
    instance took the lease, the next message is not marked nor handed over, and stays pending."""
    from sqlalchemy import select

    from adapters.channels.memory import MemoryChannel
    from adapters.store.schema import attempts, leases, notices
    from service.daemon import leased
    from service.dispatch import dispatch
    try:
        from tests.delivery_site import RUN, Site
    except ModuleNotFoundError:
        from delivery_site import RUN, Site

    site = Site(tmp_path)
    try:
        for n in (1, 2, 3):
            site.patron(f"P{n}", f"p{n}@etu.example")
            site.loan(f"L{n}", f"P{n}", "2026-11-16")
        site.decide_only()
        run = Lease(site.store.engine, ttl=30, holder="rappel-run")
        assert run.acquire()
        renewals = []

        class TakenOverAfterTheFirst(MemoryChannel):
            def send_email(self, notice, message):
                renewals.append(read_lease(site.store.engine).holder)
                with site.store.engine.begin() as conn:          # paused past its lease …
                    conn.execute(leases.update().values(expires_at=leases.c.expires_at - 3600))
                assert Lease(site.store.engine, ttl=30, holder="daemon").acquire()   # … and taken over
                return super().send_email(notice, message)

        inner = TakenOverAfterTheFirst()
        with pytest.raises(LeaseLost):
            dispatch(site.store, site.policy, site.templates, leased(inner, run), RUN)
        assert len(inner.emails) == 1 and renewals == ["rappel-run"]
        with site.store.engine.connect() as conn:
            status = dict(conn.execute(select(notices.c.key, notices.c.status)).all())
            marks = conn.execute(select(attempts.c.notice_key, attempts.c.outcome)).all()
        assert sorted(status.values()) == ["pending", "pending", "sent"]
        assert [outcome for _, outcome in marks] == ["sent"]          # no mark left for the others
    finally:
        site.close()
