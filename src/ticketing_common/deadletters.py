"""Dead letters, to list, read, replay and purge: the ``ticketing-deadletters`` command and its functions.

A listener that cannot handle an event keeps a copy in the ``TICKETING_DEAD_LETTERS`` stream with the
reason in its headers. Once the cause is fixed, replaying it publishes the body on its original subject
again and only then removes the dead letter; an event that fails again comes back as a new dead letter.
Every queue group on that subject sees a replayed event, so it relies on handlers being idempotent (the
reference services' are: find-by-event ignores a version already applied)::

    ticketing-deadletters --server nats://nats:4222 list
    ticketing-deadletters show 12
    ticketing-deadletters replay 12 13   # or --all, with --subject order:created, --queue-group tickets
    ticketing-deadletters purge --all
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck, RawStreamMsg

from ticketing_common._deadletter import (
    DELIVERIES_HEADER,
    ORIGINAL_MSG_ID_HEADER,
    QUEUE_GROUP_HEADER,
    REASON_HEADER,
    SEQUENCE_HEADER,
    SUBJECT_HEADER,
)
from ticketing_common._jetstream import publish_acked
from ticketing_common._streams import DEAD_LETTER_SUBJECT_PREFIX, DEAD_LETTERS_STREAM

__all__ = [
    "REPLAYED_FROM_HEADER",
    "DeadLetter",
    "dead_letters",
    "get_dead_letter",
    "main",
    "purge",
    "replay",
]

REPLAYED_FROM_HEADER = "Ticketing-Replayed-From"
"""On a replayed event: the dead letter's sequence in ``TICKETING_DEAD_LETTERS``."""


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """One dead letter: the event's body and subject, who gave up on it, and why."""

    sequence: int
    """Its sequence in the dead-letter stream, which names it for ``show``, ``replay`` and ``purge``."""
    subject: str
    """The subject the event was published on, where a replay publishes it."""
    queue_group: str
    reason: str
    deliveries: int
    original_sequence: int
    """The event's sequence in the events stream."""
    original_msg_id: str | None
    stored_at: datetime
    data: bytes
    headers: dict[str, str] = field(repr=False)

    @classmethod
    def from_message(cls, message: RawStreamMsg) -> DeadLetter:
        """Read a message of the dead-letter stream; headers missing (a hand-made copy) read as unknown."""
        headers: dict[str, str] = dict(message.headers or {})
        fallback = (message.subject or "").removeprefix(f"{DEAD_LETTER_SUBJECT_PREFIX}.").partition(".")
        return cls(
            sequence=message.seq or 0,
            subject=headers.get(SUBJECT_HEADER, fallback[2]),
            queue_group=headers.get(QUEUE_GROUP_HEADER, fallback[0]),
            reason=headers.get(REASON_HEADER, ""),
            deliveries=_int(headers.get(DELIVERIES_HEADER)),
            original_sequence=_int(headers.get(SEQUENCE_HEADER)),
            original_msg_id=headers.get(ORIGINAL_MSG_ID_HEADER),
            stored_at=message.time or datetime.now(UTC),
            data=message.data or b"",
            headers=headers,
        )

    def age(self, now: datetime | None = None) -> float:
        """Seconds since it was stored."""
        return ((now or datetime.now(UTC)) - self.stored_at).total_seconds()

    def matches(self, *, subject: str | None = None, queue_group: str | None = None) -> bool:
        """Whether it is of ``subject`` and ``queue_group`` (None matches any)."""
        return subject in (None, self.subject) and queue_group in (None, self.queue_group)


def _int(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() else 0


async def dead_letters(
    js: JetStreamContext, *, subject: str | None = None, queue_group: str | None = None
) -> AsyncIterator[DeadLetter]:
    """Yield the dead letters, oldest first, of ``subject`` and ``queue_group`` if given."""
    filter_subject = f"{DEAD_LETTER_SUBJECT_PREFIX}.{queue_group or '*'}.{subject or '>'}"
    sequence = 1
    while True:
        try:
            message = await js.get_msg(DEAD_LETTERS_STREAM, sequence, subject=filter_subject, next=True)
        except nats.js.errors.NotFoundError:
            return
        letter = DeadLetter.from_message(message)
        if letter.matches(subject=subject, queue_group=queue_group):
            yield letter
        sequence = letter.sequence + 1


async def get_dead_letter(js: JetStreamContext, sequence: int) -> DeadLetter:
    """The dead letter at ``sequence``.

    Raises:
        LookupError: there is none (never was, replayed or purged).
    """
    try:
        message = await js.get_msg(DEAD_LETTERS_STREAM, sequence)
    except nats.js.errors.NotFoundError as error:
        raise LookupError(f"no dead letter {sequence}") from error
    return DeadLetter.from_message(message)


async def replay(js: JetStreamContext, letter: DeadLetter, *, deadline: float = 30.0) -> PubAck:
    """Publish the event on its subject again, then remove the dead letter; return the new PubAck.

    The message id is derived from the dead letter, so a replay retried after a crash between the
    publish and the removal is stored once.
    """
    headers = {REPLAYED_FROM_HEADER: str(letter.sequence)}
    ack = await publish_acked(
        js,
        letter.subject,
        letter.data,
        msg_id=f"{letter.original_msg_id or letter.subject}:replay-{letter.sequence}",
        headers=headers,
        timeout=2.0,
        deadline=deadline,
    )
    await _delete(js, letter.sequence)
    return ack


async def purge(js: JetStreamContext, letter: DeadLetter) -> None:
    """Remove the dead letter for good."""
    await _delete(js, letter.sequence)


async def _delete(js: JetStreamContext, sequence: int) -> None:
    # Removed meanwhile (by another operator, or a retried replay): what was asked holds.
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_msg(DEAD_LETTERS_STREAM, sequence)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ticketing-deadletters", description=__doc__.splitlines()[0])
    nats_options = parser.add_argument_group("NATS")
    nats_options.add_argument(
        "-s",
        "--server",
        default="nats://127.0.0.1:4222",
        help="URLs, comma-separated",
    )
    nats_options.add_argument("--creds", help="a user credentials file")
    nats_options.add_argument("--user")
    nats_options.add_argument("--password")
    nats_options.add_argument("--token")
    nats_options.add_argument("--tlscert", help="client certificate (with --tlskey)")
    nats_options.add_argument("--tlskey", help="client private key")
    nats_options.add_argument("--tlsca", help="CA certificate(s) to verify the server with")
    nats_options.add_argument("--timeout", type=float, default=5.0, help="connect timeout, seconds")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="one line per dead letter: sequence, subject, reason, ...")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = commands.add_parser("show", help="a dead letter's headers and body")
    show.add_argument("sequence", type=int)
    for name, what in (("replay", "publish on the original subject, then remove"), ("purge", "remove")):
        command = commands.add_parser(name, help=f"{what} the dead letters named or selected")
        command.add_argument("sequences", type=int, nargs="*", metavar="sequence")
        command.add_argument("--all", action="store_true", help="every dead letter matching the filters")
    for command in (listing, commands.choices["replay"], commands.choices["purge"]):
        command.add_argument("--subject", help="only events of this subject, e.g. order:created")
        command.add_argument("--queue-group", help="only those of this queue group, e.g. tickets-service")
    return parser


def _connect_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "servers": args.server.split(","),
        "connect_timeout": args.timeout,
        "allow_reconnect": False,
        # The first connect tries each server twice, then gives up: an operator is waiting.
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.1,
        "error_cb": _quiet,  # nats-py would print each refused attempt's traceback; main says it once
        "name": "ticketing-deadletters",
    }
    for name in ("user", "password", "token"):
        if getattr(args, name):
            options[name] = getattr(args, name)
    if args.creds:
        options["user_credentials"] = args.creds
    if args.tlsca or args.tlscert:
        context = ssl.create_default_context(cafile=args.tlsca)
        if args.tlscert:
            context.load_cert_chain(args.tlscert, args.tlskey)
        options["tls"] = context
    return options


async def _quiet(_error: Exception) -> None:
    pass


def _line(letter: DeadLetter, now: datetime) -> str:
    return (
        f"{letter.sequence:>6}  {letter.subject:<18} {letter.queue_group:<20} "
        f"{letter.deliveries:>3}  {letter.original_sequence:>8}  {_age(letter.age(now)):>6}  {letter.reason}"
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _json(letter: DeadLetter, now: datetime) -> str:
    return json.dumps(
        {
            "sequence": letter.sequence,
            "subject": letter.subject,
            "queueGroup": letter.queue_group,
            "reason": letter.reason,
            "deliveries": letter.deliveries,
            "originalSequence": letter.original_sequence,
            "originalMsgId": letter.original_msg_id,
            "storedAt": letter.stored_at.isoformat(),
            "ageSeconds": round(letter.age(now), 3),
        }
    )


def _body(data: bytes) -> str:
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return repr(data)  # not JSON (why it may be here): shown as the bytes it is


async def _selected(js: JetStreamContext, args: argparse.Namespace) -> list[DeadLetter]:
    if args.all:
        if args.sequences:
            raise SystemExit("give sequences or --all, not both")
        return [
            letter async for letter in dead_letters(js, subject=args.subject, queue_group=args.queue_group)
        ]
    if not args.sequences:
        raise SystemExit(f"{args.command}: name the dead letters (their sequences) or give --all")
    letters = [await get_dead_letter(js, sequence) for sequence in args.sequences]
    return [
        letter for letter in letters if letter.matches(subject=args.subject, queue_group=args.queue_group)
    ]


async def _run(args: argparse.Namespace) -> int:
    client = await nats.connect(**_connect_options(args))
    try:
        js = client.jetstream()
        now = datetime.now(UTC)
        if args.command == "list":
            found = dead_letters(js, subject=args.subject, queue_group=args.queue_group)
            if not args.json:
                print(f"{'seq':>6}  {'subject':<18} {'queue group':<20} del  orig.seq     age  reason")
            async for letter in found:
                print(_json(letter, now) if args.json else _line(letter, now))
        elif args.command == "show":
            letter = await get_dead_letter(js, args.sequence)
            for name, value in sorted(letter.headers.items()):
                print(f"{name}: {value}")
            print(f"Stored-At: {letter.stored_at.isoformat()}\n")
            print(_body(letter.data))
        else:
            for letter in await _selected(js, args):
                if args.command == "replay":
                    ack = await replay(js, letter)
                    print(
                        f"replayed {letter.sequence} to {letter.subject} (events stream sequence {ack.seq})"
                    )
                else:
                    await purge(js, letter)
                    print(f"purged {letter.sequence} ({letter.subject}, {letter.queue_group})")
    finally:
        await client.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ticketing-deadletters``; return the exit status (1 with a message when a letter is missing)."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except LookupError as error:
        print(f"ticketing-deadletters: {error.args[0]}", file=sys.stderr)
        return 1
    except (OSError, nats.errors.NoServersError) as error:
        print(f"ticketing-deadletters: cannot reach NATS at {args.server}: {error!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
