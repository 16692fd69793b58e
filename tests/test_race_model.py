"""The order's state machine across services, under any interleaving of what users and events do.

Hypothesis drives the marketplace (``marketplace.py``: the real tickets, orders and payments, the test as
their message bus) through random interleavings of sell, edit, order, cancel, pay, expire, and events
handled in any order, duplicated, or while a charge is on its way. After every step, and whenever
nothing is in flight, the invariants of ``Marketplace.check_always`` must hold. The named interleavings
below are the races found so far, each replayed exactly, so that each stays fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from marketplace import SEEN, USERS, Marketplace
from ticketing_common import OrderStatus
from ticketing_common.testing import NatsServer

logger = logging.getLogger(__name__)
Order = tuple[str, str]
"""An order's id and its user."""


class Interleavings(RuleBasedStateMachine):
    """Users and events in whatever order hypothesis picks."""

    tickets = Bundle("tickets")
    orders = Bundle("orders")

    def __init__(self, nats_server: NatsServer, folder: Path) -> None:
        super().__init__()
        self.market = Marketplace(nats_server, folder)

    def teardown(self) -> None:
        """Handle what is left, check, stop."""
        self.market.close()

    @initialize(target=tickets)
    def a_ticket_everyone_knows(self) -> str:
        """Every run starts with a ticket that orders knows, so orders can be made at once."""
        ticket = self.market.sell(10.0)
        self.market.run(self.market.settle())
        return ticket

    @rule(target=tickets, price=st.sampled_from([5.0, 12.5]))
    def sell(self, price: float) -> str:
        """Another ticket."""
        return self.market.sell(price)

    @rule(ticket=tickets, price=st.sampled_from([7.0, 30.0]))
    def edit(self, ticket: str, price: float) -> None:
        """A price edit, which may race an order."""
        self.market.edit(ticket, price)

    @rule(target=orders, ticket=tickets, user=st.sampled_from(list(USERS)))
    def order(self, ticket: str, user: str) -> Order | MultipleResults[Order]:
        """An order; a refused one is not kept."""
        order_id = self.market.order(ticket, user)
        return multiple() if order_id is None else (order_id, user)

    @rule(order=orders)
    def cancel(self, order: Order) -> None:
        """Its user cancels it."""
        self.market.cancel(*order)

    @rule(order=orders, known=st.booleans(), during=st.integers(0, 3), data=st.data())
    def pay(self, order: Order, known: bool, during: int, data: st.DataObject) -> None:  # noqa: FBT001
        """Pay, handling ``during`` fetched events (hypothesis picks which) while the charge is on its way."""
        market = self.market

        async def meanwhile() -> None:
            await market.fetch()
            for _ in range(min(during, len(market.pool))):
                await market.deliver(
                    data.draw(st.integers(0, len(market.pool) - 1), label="during the charge")
                )

        market.pay(*order, known=known, meanwhile=meanwhile)

    @rule(order=orders)
    def expire(self, order: Order) -> None:
        """Its expiration fires, whatever the state of the order."""
        self.market.expire(order[0])

    @rule(data=st.data())
    def handle_one(self, data: st.DataObject) -> None:
        """Handle any one fetched event: the pool is in no particular order."""
        self.market.run(self.market.fetch())
        if self.market.pool:
            self.market.run(self.market.deliver(data.draw(st.integers(0, len(self.market.pool) - 1))))

    @rule(data=st.data())
    def catch_up(self, data: st.DataObject) -> None:
        """One listener handles its whole backlog, as a service that runs ahead of the others."""
        inbox = data.draw(st.sampled_from(self.market.inboxes), label="inbox")
        self.market.run(self.market.deliver_all(inbox.name))

    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """An event already handled comes again."""
        if self.market.handled:
            self.market.replay(*data.draw(st.sampled_from(self.market.handled), label="again"))

    @rule()
    def settle(self) -> None:
        """Everything in flight is handled."""
        self.market.run(self.market.settle())

    @invariant()
    def holds(self) -> None:
        """The marketplace's invariants, after every step."""
        self.market.check_always()


def test_any_interleaving_settles_into_one_state(nats_server: NatsServer, tmp_path: Path) -> None:
    """Orders, tickets, payments and the gateway agree on every order, whatever the order of events."""

    class ThisTest(Interleavings):
        def __init__(self) -> None:
            super().__init__(nats_server, tmp_path)

    run_state_machine_as_test(
        ThisTest,
        settings=hypothesis_settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    logger.info("what the runs went through: %s", dict(SEEN))


# The named interleavings: each function is one race, replayed step by step; close() then checks.


def _ordered(market: Marketplace, user: str = "ann") -> tuple[str, str]:
    """A ticket everyone knows, and an order of it that payments knows too."""
    ticket = market.sell(10.0)
    market.run(market.settle())
    order_id = market.order(ticket, user)
    assert order_id is not None
    market.run(market.deliver_all("payments order:created"))
    return ticket, order_id


def _status(market: Marketplace, order_id: str) -> str:
    return market.run(market.statuses())[order_id]


def pay_after_a_cancellation_payments_has_not_heard_of(market: Marketplace) -> None:
    """Cancelled, then paid before payments hears of it: orders keeps it cancelled, payments refunds."""
    _, order_id = _ordered(market)
    assert market.cancel(order_id, "ann") == 204
    assert market.pay(order_id, "ann") == 201
    market.run(market.deliver_all("orders payment:created"))
    assert _status(market, order_id) == OrderStatus.CANCELLED
    market.run(market.settle())
    assert len(market.gateway.refunds) == 1


def cancel_after_a_payment_orders_has_not_heard_of(market: Marketplace) -> None:
    """Paid, then cancelled before payment:created reaches orders: the cancellation wins, money goes back."""
    _, order_id = _ordered(market)
    assert market.pay(order_id, "ann") == 201
    assert market.cancel(order_id, "ann") == 204
    market.run(market.settle())
    assert (_status(market, order_id), len(market.gateway.refunds)) == (OrderStatus.CANCELLED, 1)


def cancel_after_the_payment_reached_orders(market: Marketplace) -> None:
    """payment:created applied first: the cancellation is refused, the order stays complete and charged."""
    _, order_id = _ordered(market)
    assert market.pay(order_id, "ann") == 201
    market.run(market.deliver_all("orders payment:created"))
    assert market.cancel(order_id, "ann") == 400
    assert (_status(market, order_id), market.gateway.refunds) == (OrderStatus.COMPLETE, {})


def cancellation_heard_while_the_charge_is_on_its_way(market: Marketplace) -> None:
    """order:cancelled applied between the route's check and its save: 400, refunded before the answer."""
    _, order_id = _ordered(market)

    async def cancel_meanwhile() -> None:
        await market.http["orders"].delete(f"/api/orders/{order_id}", headers=USERS["ann"])
        await market.deliver_all("payments order:cancelled")

    assert market.pay(order_id, "ann", meanwhile=cancel_meanwhile) == 400
    assert len(market.gateway.refunds) == 1


def expiration_before_the_payment_reached_orders(market: Marketplace) -> None:
    """Paid just in time, but the expiration reaches orders first: cancelled, and the charge refunded."""
    _, order_id = _ordered(market)
    assert market.pay(order_id, "ann") == 201
    market.expire(order_id)
    market.run(market.deliver_all("orders expiration:complete"))
    market.run(market.settle())
    assert (_status(market, order_id), len(market.gateway.refunds)) == (OrderStatus.CANCELLED, 1)


def order_made_before_orders_heard_of_a_price_edit(market: Marketplace) -> None:
    """The edit reaches tickets first, the order is made at the old price: the order's price stands."""
    ticket = market.sell(10.0)
    market.run(market.settle())
    assert market.edit(ticket, 30.0) == 200
    order_id = market.order(ticket, "ann")  # orders has not heard of the edit
    assert order_id is not None
    market.run(market.deliver_all("orders ticket:updated"))  # the edit, before tickets undoes it
    assert market.shown_price(order_id, "ann") == 10.0
    market.run(market.settle())
    assert market.shown_price(order_id, "ann") == 10.0
    assert market.pay(order_id, "ann") == 201
    market.run(market.settle())
    [(_, cents, _)] = market.gateway.charges.values()
    assert cents == 1000


def a_new_order_before_tickets_heard_the_last_one_was_cancelled(market: Marketplace) -> None:
    """B's order reaches tickets while cancelled order A still holds the ticket there: B waits for it."""
    ticket, first = _ordered(market)
    market.run(market.deliver_all("tickets order:created"))
    assert market.cancel(first, "ann") == 204
    second = market.order(ticket, "ben")
    assert second is not None
    market.run(market.deliver_all("tickets order:created"))  # B waits: A's cancellation has not come
    market.run(market.settle())
    assert (_status(market, first), _status(market, second)) == (OrderStatus.CANCELLED, OrderStatus.CREATED)


def _cancelled(market: Marketplace) -> tuple[str, str]:
    """A ticket everyone knows, and an order of it, cancelled before any service but orders heard of it."""
    ticket = market.sell(10.0)
    market.run(market.settle())
    order_id = market.order(ticket, "ann")
    assert order_id is not None
    assert market.cancel(order_id, "ann") == 204
    return ticket, order_id


def order_created_events_reach_tickets_in_reverse(market: Marketplace) -> None:
    """A is cancelled and B made; tickets hears B's order:created before A's (a redelivery): B keeps it."""
    ticket, first = _cancelled(market)
    second = market.order(ticket, "ben")
    assert second is not None
    market.run(market.deliver_one("tickets order:created", second))
    market.run(market.deliver_one("tickets order:created", first))  # waits for A's cancellation
    market.run(market.settle())
    assert market.run(market.statuses())[second] == OrderStatus.CREATED


def a_cancellation_that_reaches_payments_before_its_order(market: Marketplace) -> None:
    """Payments hears order:cancelled before order:created: it waits, then applies both; no payment."""
    _, order_id = _cancelled(market)
    market.run(market.deliver_all("payments order:cancelled"))
    market.run(market.settle())
    assert market.pay(order_id, "ann") == 400


def every_event_comes_twice(market: Marketplace) -> None:
    """A whole story, then every event again: nothing is reserved, charged or refunded twice."""
    _, paid = _ordered(market)
    assert market.pay(paid, "ann") == 201
    market.run(market.settle())
    _, cancelled = _ordered(market, "ben")
    assert market.pay(cancelled, "ben") == 201
    assert market.cancel(cancelled, "ben") == 204
    market.run(market.settle())
    for subject, body in list(market.handled):
        market.replay(subject, body)
    market.run(market.settle())
    assert (len(market.gateway.charges), len(market.gateway.refunds)) == (2, 1)
    assert (_status(market, paid), _status(market, cancelled)) == (
        OrderStatus.COMPLETE,
        OrderStatus.CANCELLED,
    )


INTERLEAVINGS: list[Callable[[Marketplace], None]] = [
    pay_after_a_cancellation_payments_has_not_heard_of,
    cancel_after_a_payment_orders_has_not_heard_of,
    cancel_after_the_payment_reached_orders,
    cancellation_heard_while_the_charge_is_on_its_way,
    expiration_before_the_payment_reached_orders,
    order_made_before_orders_heard_of_a_price_edit,
    a_new_order_before_tickets_heard_the_last_one_was_cancelled,
    order_created_events_reach_tickets_in_reverse,
    a_cancellation_that_reaches_payments_before_its_order,
    every_event_comes_twice,
]


@pytest.mark.parametrize("interleaving", INTERLEAVINGS, ids=lambda function: function.__name__)
def test_a_known_race_settles_into_one_state(
    nats_server: NatsServer, tmp_path: Path, interleaving: Callable[[Marketplace], None]
) -> None:
    """The race, replayed: its outcome is the one the README describes, and every service agrees."""
    market = Marketplace(nats_server, tmp_path)
    try:
        interleaving(market)
        market.check_always()
    finally:
        market.close()
