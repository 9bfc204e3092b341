"""The sign-in service's memory of tokens checked not revoked: only the last few seconds'."""

from gateway.identity.service import REVOCATION_CACHE_S, RecentChecks


def test_an_entry_is_fresh_until_its_ttl_passes():
    checks = RecentChecks(5.0)
    checks.remember("a", now=100.0)
    assert checks.fresh("a", now=104.9)
    assert not checks.fresh("a", now=105.1)
    assert not checks.fresh("b", now=100.0)


def test_old_entries_leave_as_new_ones_come():
    """A soak signs in thousands of times: each token is used for a while, then never
    again. The map holds only those of the last ttl (it held every one, up to 100,000)."""
    checks = RecentChecks(REVOCATION_CACHE_S)
    for second in range(10_000):
        checks.remember(f"token-{second}", now=float(second))
    assert len(checks) == int(REVOCATION_CACHE_S) + 1
    assert checks.fresh("token-9999", now=9999.0)
    assert not checks.fresh("token-0", now=9999.0)


def test_a_token_checked_again_moves_to_the_end():
    checks = RecentChecks(5.0)
    checks.remember("kept", now=0.0)
    checks.remember("other", now=1.0)
    checks.remember("kept", now=4.0)  # checked again: the oldest is now "other"
    checks.remember("new", now=6.5)
    assert checks.fresh("kept", now=6.5)
    assert not checks.fresh("other", now=6.5)
    assert len(checks) == 2


def test_forget_drops_a_revoked_token():
    checks = RecentChecks(5.0)
    checks.remember("a", now=0.0)
    checks.forget("a")
    checks.forget("never seen")
    assert not checks.fresh("a", now=0.0)
