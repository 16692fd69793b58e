"""The apply / wait / ignore rule of replicas; its property: any delivery order converges to the source."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing_common import OutOfOrder
from ticketing_common.versioning import Decision, decide, should_apply


@pytest.mark.parametrize(
    ("current", "incoming", "decision"),
    [
        (None, 0, Decision.APPLY),
        (None, 1, Decision.WAIT),
        (0, 1, Decision.APPLY),
        (4, 5, Decision.APPLY),
        (4, 4, Decision.IGNORE),
        (4, 0, Decision.IGNORE),
        (4, 6, Decision.WAIT),
    ],
)
def test_decide(current: int | None, incoming: int, decision: Decision) -> None:
    """The next version applies, the past is ignored, a gap waits."""
    assert decide(current, incoming) is decision


def test_should_apply_raises_out_of_order_for_a_gap() -> None:
    """WAIT becomes OutOfOrder, naming the record and both versions."""
    assert should_apply(0, 1) is True
    assert should_apply(1, 1) is False
    with pytest.raises(OutOfOrder, match="ticket t1: version 3 arrived with replica at version 1") as caught:
        should_apply(1, 3, record="ticket t1")
    assert (caught.value.current, caught.value.incoming) == (1, 3)


@given(
    versions=st.integers(min_value=1, max_value=12),
    copies=st.lists(st.integers(min_value=1, max_value=3), min_size=12, max_size=12),
    data=st.data(),
)
def test_any_interleaving_converges_to_the_source(
    versions: int, copies: list[int], data: st.DataObject
) -> None:
    """Deliveries in any order, each event duplicated up to 3 times: the replica ends equal to the source.

    The source's state at version n is f"state {n}". A delivered event is applied, ignored (acked) or left
    pending (unacked, redelivered later) as decide() says; each version is applied exactly once, in order.
    """
    pending = [version for version in range(versions) for _ in range(copies[version])]
    replica: tuple[int, str] | None = None
    applied: list[int] = []
    for step in range(10_000):
        if not pending:
            break
        # After many steps, deliver the oldest first: JetStream's redelivery is fair, a test draw need not be.
        index = data.draw(st.integers(0, len(pending) - 1)) if step < 200 else pending.index(min(pending))
        version = pending[index]
        decision = decide(None if replica is None else replica[0], version)
        if decision is Decision.APPLY:
            replica = (version, f"state {version}")
            applied.append(version)
        if decision is not Decision.WAIT:
            del pending[index]
    assert not pending
    assert replica == (versions - 1, f"state {versions - 1}")
    assert applied == list(range(versions))
