"""The gateway's two metering transactions on the raw DB-API connection.

reserve (a hold) and settle (the post plus the usage record) run for every proxied request, and
through SQLAlchemy they cost about ten times what the database itself spends on them. Here they
are plain SQL strings executed on a driver connection (sqlite3 or psycopg), with the rules of
billing/ledger.py kept statement for statement:

- every balance change is one conditional UPDATE, and its row count is checked (for an UPDATE
  with RETURNING, the rows it returned are the count);
- accounts are updated in id order, so two transactions never wait on each other in a cycle;
- the hold and its resolution are inserted under the same UNIQUE idempotency keys as the ledger
  uses ("req:<request id>", "ledger:resolve:<hold id>"), and the resolution's UNIQUE(pending_id)
  still makes a hold resolve once;
- the usage record is written in the same transaction as the post, and so is its price in the
  month's spend of the workspace's budget row (billing/budget_holds.py: the same statements)
  and of the key's spend row (billing/key_caps.py; capped holds themselves are placed and
  settled on the ledger's path, never here);
- a workspace with a hard budget has its hold counted in the budget row in the hold's own
  transaction, after the accounts, refused by row count; the settlement takes it out again.

Only the common case runs here: a hold that fits, and a settlement at or under the amount of a
hold this process placed. When anything else happens (a short balance, a used key, a hold that
was already resolved, a price above the hold) the raw transaction is rolled back, having written
nothing, and the function returns None: the caller then runs the SQLAlchemy path in ledger.py
and metering.py, so every unusual outcome keeps exactly one implementation.

On PostgreSQL each transaction is one statement: the same UPDATEs and INSERTs, chained as
data-modifying CTEs, sent in one round trip (with autocommit, as dbworkers.py opens its
connections, the statement is the whole transaction). The rules above hold inside it:

- each UPDATE after the first runs only if the one before it matched its row (its WHERE clause
  asks for a row of the previous one's RETURNING), which also makes them run in id order;
- the row that ends the statement (the transfer of a hold, the usage record of a settlement)
  takes NOT NULL values from the RETURNING of the balance UPDATEs: if one of them matched
  nothing, the value is NULL, the insert fails, and the whole statement is undone. A statement
  commits all of its changes or none, so no partial hold or settlement can be left behind;
- a hold whose first UPDATE matches nothing (a short balance, when the customer's account has
  the lower id) ends with no row and no error. When the revenue account comes first, its UPDATE
  also asks that the customer's limit check pass on the statement's snapshot, so a short balance
  stops there too, without an error; the customer's UPDATE still checks it again on the row it
  locks.
"""

from __future__ import annotations

import operator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from creditdash.billing import budget_holds, key_caps
from creditdash.billing.budget_holds import period_of
from creditdash.billing.codes import TransferCode, hold_key, resolve_key
from creditdash.billing.models import UsageEntry, UsageRecord
from creditdash.core.money import MAX_MICROS
from creditdash.core.timeutil import utcnow

# The drivers get the code as the plain str it always was: a str subclass would cost sqlite3 an
# adapter lookup for every statement.
_USAGE = TransferCode.USAGE.value

# Written with qmark placeholders (sqlite3); PostgreSQL's psycopg gets them as %s.
_DEBIT_PENDING = (
    "UPDATE ledger_accounts SET debits_pending = debits_pending + ? "
    "WHERE id = ? AND (enforce_limit IS FALSE OR "
    "credits_posted - debits_posted - debits_pending - ? >= -credit_limit_micros)"
)
# The customer's available balance after the hold (posted less held), returned by the hold's
# own UPDATE so that a stream can show it without a read.
_AVAILABLE = "credits_posted - debits_posted - debits_pending"
_DEBIT_PENDING_RETURNING = f"{_DEBIT_PENDING} RETURNING {_AVAILABLE}"
_CREDIT_PENDING = "UPDATE ledger_accounts SET credits_pending = credits_pending + ? WHERE id = ?"
# Releasing the hold on the customer's side hands back the posted balance for the usage record,
# so the settlement needs no separate read.
_RELEASE_DEBIT = (
    "UPDATE ledger_accounts SET debits_posted = debits_posted + ?, "
    "debits_pending = debits_pending - ? WHERE id = ? AND debits_pending >= ? "
    "RETURNING credits_posted - debits_posted"
)
_RELEASE_CREDIT = (
    "UPDATE ledger_accounts SET credits_posted = credits_posted + ?, "
    "credits_pending = credits_pending - ? WHERE id = ? AND credits_pending >= ?"
)
_TRANSFER_INTO = (
    "INSERT INTO transfers (idempotency_key, kind, debit_account_id, credit_account_id, "
    "amount_micros, pending_id, code, reference, memo, expires_at, actor_user_id, created_at)"
)
_TRANSFER_VALUES = "?, ?, ?, ?, ?, ?, ?, ?, '', ?, NULL, ?"
_INSERT_TRANSFER = f"{_TRANSFER_INTO} VALUES ({_TRANSFER_VALUES}) RETURNING id"
_TOUCH_KEY = "UPDATE api_keys SET last_used_at = ? WHERE id = ?"
# Every column of the usage record, in the model's order (metering._store writes the same).
_USAGE_COLUMNS = tuple(c.name for c in UsageRecord.__table__.columns)  # type: ignore[attr-defined]
# Built from the model's column names, never from request data.
_INSERT_USAGE = (
    f"INSERT INTO usage_records ({', '.join(_USAGE_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in _USAGE_COLUMNS)})"
)
_usage_values = operator.attrgetter(*_USAGE_COLUMNS)
_USAGE_CREATED_AT = _USAGE_COLUMNS.index("created_at")


# ------------------------------------------------------------------ PostgreSQL: one statement


def _fill(text: str, *values: str) -> str:
    """text with its qmark placeholders replaced, in order, by the given SQL expressions."""
    parts = text.split("?")
    if len(parts) != len(values) + 1:
        raise ValueError(f"{len(parts) - 1} placeholders for {len(values)} values: {text}")
    return "".join(part + value for part, value in zip(parts, values, strict=False)) + parts[-1]


def _named(text: str, *names: str) -> str:
    """text with psycopg's named placeholders instead of its qmark ones."""
    return _fill(text, *(f"%({name})s" for name in names))


def _pg_hold_sql(debit_first: bool, budgeted: bool) -> str:
    """The hold in one statement: the two pending UPDATEs in id order, then the transfer; when
    budgeted, the hard budget's UPDATE after them and the hold's budget_holds row last."""
    debit = _named(_DEBIT_PENDING, "amount", "debit", "amount")
    credit = _named(_CREDIT_PENDING, "amount", "credit")
    first, second = ("debit", "credit") if debit_first else ("credit", "debit")
    if debit_first:
        credit += " AND EXISTS (SELECT FROM debit)"
    else:
        # The customer's limit on the statement's snapshot, so that a short balance stops
        # before the revenue account is touched (the debit below checks it again, locked).
        limit = debit.split(" WHERE ", 1)[1]
        credit += f" AND EXISTS (SELECT FROM ledger_accounts WHERE {limit})"
        debit += " AND EXISTS (SELECT FROM credit)"
    # The account ids of the transfer come from the UPDATEs: NULL (refused, the statement
    # undone) if one of them matched nothing after the first one did.
    values = _fill(
        _TRANSFER_VALUES, "%(key)s", "'pending'", "(SELECT id FROM debit)",
        "(SELECT id FROM credit)", "%(amount)s", "NULL", "%(code)s", "%(reference)s",
        "%(expires)s", "%(now)s",
    )  # fmt: skip
    ctes = {
        "debit": f"debit AS ({debit} RETURNING id, {_AVAILABLE} AS available)",
        "credit": f"credit AS ({credit} RETURNING id)",
    }
    # Built from the constants above, never from request data (as every statement here).
    if not budgeted:
        return (
            f"WITH {ctes[first]}, {ctes[second]} "  # noqa: S608
            f"{_TRANSFER_INTO} SELECT {values} WHERE EXISTS (SELECT FROM {first}) "
            "RETURNING id, (SELECT available FROM debit)"
        )
    reserve = _named(
        budget_holds.RESERVE_SQL, "period", "period", "period", "amount", "customer", "period",
        "amount",
    )  # fmt: skip
    # The budget_holds row takes its NOT NULL customer id from the budget's UPDATE: a budget
    # that refused makes it NULL, and the whole statement is undone.
    return (
        f"WITH {ctes[first]}, {ctes[second]}, "  # noqa: S608
        f"budget AS ({reserve} AND EXISTS (SELECT FROM {second}) RETURNING customer_id), "
        f"hold AS ({_TRANSFER_INTO} SELECT {values} WHERE EXISTS (SELECT FROM {first}) "
        "RETURNING id) "
        "INSERT INTO budget_holds (hold_id, customer_id, amount_micros) "
        "SELECT hold.id, (SELECT customer_id FROM budget), %(amount)s FROM hold "
        "RETURNING hold_id, (SELECT available FROM debit)"
    )


_USAGE_PARAMS = tuple(f"u_{column}" for column in _USAGE_COLUMNS)


def _pg_settle_sql(debit_first: bool, touch_key: bool, budgeted: bool) -> str:
    """The settlement in one statement: the resolving transfer (the claim on the hold), the two
    release UPDATEs in id order, the budget row (the price into the month's spend and, when
    budgeted, the hold's share out of held), the usage record, and the key's last use."""
    resolution = _fill(
        _TRANSFER_VALUES, "%(key)s", "'post'", "%(debit)s", "%(credit)s", "%(price)s",
        "%(hold)s", "%(code)s", "%(reference)s", "NULL", "%(now)s",
    )  # fmt: skip
    first, second = ("debit", "credit") if debit_first else ("credit", "debit")
    after = {first: "resolution", second: first}
    release_debit = _named(_RELEASE_DEBIT, "price", "held", "debit", "held")
    debit_where, debit_returning = release_debit.split(" RETURNING ")
    debit = f"{debit_where} AND EXISTS (SELECT FROM {after['debit']}) RETURNING {debit_returning}"
    credit = _named(_RELEASE_CREDIT, "price", "held", "credit", "held")
    credit += f" AND EXISTS (SELECT FROM {after['credit']}) RETURNING id"
    ctes = {"debit": f"debit(balance) AS ({debit})", "credit": f"credit AS ({credit})"}
    spend = _named(
        budget_holds.COUNT_SPEND_SQL, "spend_period", "price", "spend_period", "price",
        "spend_period", "spend_period", "customer",
    )  # fmt: skip
    if budgeted:
        # One UPDATE of the row: the share out of held (checked) and the price into spent.
        spend = spend.replace(
            "UPDATE budgets SET ", "UPDATE budgets SET held_micros = held_micros - %(held)s, ", 1
        )
        spend += " AND held_micros >= %(held)s AND EXISTS (SELECT FROM budget_hold)"
        budget = (
            f"budget_hold AS ({_named(budget_holds.DELETE_HOLD_SQL, 'hold')} "
            f"AND EXISTS (SELECT FROM {second}) RETURNING hold_id), "
            f"budget AS ({spend} RETURNING customer_id)"
        )
        joined = "debit, credit, budget"
        after_budget = "budget"
    else:
        # No row for a workspace without a budget: nothing to check.
        budget = f"budget AS ({spend} AND EXISTS (SELECT FROM {second}))"
        joined = "debit, credit"
        after_budget = second
    # The price into the key's spend too (a key that never held under a cap has no row). Capped
    # holds never settle here (the gateway places them on the ledger's path), so held is not.
    key_spend = _named(
        key_caps.COUNT_SPEND_SQL, "spend_period", "price", "spend_period", "price",
        "spend_period", "spend_period", "api_key",
    )  # fmt: skip
    budget += f", key_spend AS ({key_spend} AND EXISTS (SELECT FROM {after_budget}))"
    # The balance after comes from the join of both releases (and the budget's): NULL (refused,
    # the statement undone) unless each of them matched its row.
    usage = ", ".join(
        f"(SELECT debit.balance FROM {joined})"  # noqa: S608
        if column == "balance_after_micros"
        else f"%({param})s"
        for column, param in zip(_USAGE_COLUMNS, _USAGE_PARAMS, strict=True)
    )
    touched = f", touched AS ({_named(_TOUCH_KEY, 'now', 'api_key')})" if touch_key else ""
    return (
        f"WITH resolution AS ({_TRANSFER_INTO} VALUES ({resolution}) RETURNING id), "
        f"{ctes[first]}, {ctes[second]}, {budget}{touched} "
        f"INSERT INTO usage_records ({', '.join(_USAGE_COLUMNS)}) SELECT {usage} "
        "RETURNING balance_after_micros"
    )


@dataclass(frozen=True, slots=True)
class PlacedHold:
    """A hold this process placed: what settling it needs, so the hold row is never re-read."""

    id: int
    amount_micros: int
    debit_account_id: int
    credit_account_id: int
    reference: str
    # The customer's available balance right after the hold (posted less held).
    available_micros: int | None = None
    # The workspace whose hard budget counts the hold (its budget_holds row), if any.
    budget_customer_id: str | None = None


def _sqlite_time(value: datetime) -> str:
    # The text SQLAlchemy stores for an aware datetime on SQLite: UTC, without the offset.
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _as_is(value: datetime) -> datetime:
    return value


class HotLedger:
    """The hot transactions for one database dialect ("sqlite" or "postgresql").

    Functions take a DB-API connection that is not inside a transaction: on SQLite one in
    autocommit mode (db.py sets isolation_level=None) where BEGIN IMMEDIATE is issued here, on
    PostgreSQL a psycopg connection, best in autocommit mode (dbworkers.py): each transaction is
    then its single statement. Without autocommit psycopg wraps it in BEGIN and COMMIT, which
    only costs two round trips more.
    """

    def __init__(
        self,
        dialect: str,
        integrity_error: type[Exception],
        write_lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        self.sqlite = dialect == "sqlite"
        self._integrity_error = integrity_error
        # SQLite: the process's writers queue on one lock (db.py) instead of the busy timeout.
        self._write_lock = write_lock or nullcontext()
        self._time = _sqlite_time if self.sqlite else _as_is

        def sql(text: str) -> str:
            return text if self.sqlite else text.replace("?", "%s")

        self._debit_pending = sql(_DEBIT_PENDING_RETURNING)
        self._credit_pending = sql(_CREDIT_PENDING)
        self._release_debit = sql(_RELEASE_DEBIT)
        self._release_credit = sql(_RELEASE_CREDIT)
        self._insert_transfer = sql(_INSERT_TRANSFER)
        self._insert_usage = sql(_INSERT_USAGE)
        self._touch_key = sql(_TOUCH_KEY)
        self._budget_reserve = sql(budget_holds.RESERVE_SQL)
        self._budget_insert_hold = sql(budget_holds.INSERT_HOLD_SQL)
        self._budget_delete_hold = sql(budget_holds.DELETE_HOLD_SQL)
        self._budget_release = sql(budget_holds.RELEASE_SQL)
        self._count_spend = sql(budget_holds.COUNT_SPEND_SQL)
        self._count_key_spend = sql(key_caps.COUNT_SPEND_SQL)
        # PostgreSQL's single statements, by (debit account id < credit account id, budgeted)
        # and (debit account id < credit account id, touch, budgeted).
        both = (False, True)
        self._pg_hold = {(f, b): _pg_hold_sql(f, b) for f in both for b in both}
        self._pg_settle = {
            (f, t, b): _pg_settle_sql(f, t, b) for f in both for t in both for b in both
        }

    def _begin(self, cursor: Any) -> None:
        if self.sqlite:
            # A write transaction that queues on the busy timeout rather than failing later.
            cursor.execute("BEGIN IMMEDIATE")

    # ------------------------------------------------------------------------------- reserve

    def hold(
        self,
        connection: Any,
        *,
        request_id: str,
        account_id: int,
        revenue_account_id: int,
        amount_micros: int,
        expires_at: datetime,
        budget_customer_id: str | None = None,
    ) -> PlacedHold | None:
        """Place the hold of a request (ledger.hold with key "req:<request_id>"); with
        budget_customer_id, also count it in that workspace's hard budget (metering.reserve).

        None when it did not simply fit (short balance, missing account, a used key, a budget
        it would pass or that is no longer hard): nothing was written, and ledger.hold and
        budget_holds.reserve decide what that means.
        """
        if not 0 < amount_micros <= MAX_MICROS or account_id == revenue_account_id:
            return None
        args = (connection, request_id, account_id, revenue_account_id, amount_micros,
                expires_at, utcnow(), budget_customer_id)  # fmt: skip
        if self.sqlite:
            with self._write_lock:
                placed = self._hold(*args)
        else:
            placed = self._hold_pg(*args)
        if placed is None:
            return None
        hold_id, available = placed
        return PlacedHold(
            id=hold_id,
            amount_micros=amount_micros,
            debit_account_id=account_id,
            credit_account_id=revenue_account_id,
            reference=request_id,
            available_micros=available,
            budget_customer_id=budget_customer_id,
        )

    def _hold(
        self,
        connection: Any,
        request_id: str,
        account_id: int,
        revenue_account_id: int,
        amount_micros: int,
        expires_at: datetime,
        now: datetime,
        budget_customer_id: str | None,
    ) -> tuple[int, int] | None:
        cursor = connection.cursor()
        available = 0
        try:
            self._begin(cursor)
            for account in sorted((account_id, revenue_account_id)):
                if account == account_id:
                    # The spending limit is in the WHERE clause: a hold that does not fit
                    # matches no row (its RETURNING rows are the count).
                    cursor.execute(self._debit_pending, (amount_micros, account, amount_micros))
                    returned = cursor.fetchall()
                    matched = len(returned)
                    if matched == 1:
                        available = int(returned[0][0])
                else:
                    cursor.execute(self._credit_pending, (amount_micros, account))
                    matched = cursor.rowcount
                if matched != 1:
                    connection.rollback()
                    return None
            cursor.execute(
                self._insert_transfer,
                (hold_key(request_id), "pending", account_id, revenue_account_id, amount_micros,
                 None, _USAGE, request_id, self._time(expires_at), self._time(now)),
            )  # fmt: skip
            rows = cursor.fetchall()
            if budget_customer_id is not None:
                # After the accounts: the hard budget's share, refused by its row count.
                reserve = budget_holds.reserve_params(
                    budget_customer_id, amount_micros, period_of(now)
                )
                cursor.execute(self._budget_reserve, reserve)
                if cursor.rowcount != 1:
                    connection.rollback()
                    return None
                cursor.execute(
                    self._budget_insert_hold, (rows[0][0], budget_customer_id, amount_micros)
                )
            connection.commit()
        except self._integrity_error:
            # The key is taken (a replay, or a concurrent twin): the ledger sorts it out.
            connection.rollback()
            return None
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()
        return int(rows[0][0]), available

    def _hold_pg(
        self,
        connection: Any,
        request_id: str,
        account_id: int,
        revenue_account_id: int,
        amount_micros: int,
        expires_at: datetime,
        now: datetime,
        budget_customer_id: str | None,
    ) -> tuple[int, int] | None:
        params = {
            "key": hold_key(request_id),
            "debit": account_id,
            "credit": revenue_account_id,
            "amount": amount_micros,
            "code": _USAGE,
            "reference": request_id,
            "expires": expires_at,
            "now": now,
            "customer": budget_customer_id,
            "period": period_of(now),
        }
        statement = self._pg_hold[account_id < revenue_account_id, budget_customer_id is not None]
        rows = self._run_pg(connection, statement, params)
        if not rows:
            # The first UPDATE matched nothing (the statement stopped there), or the statement
            # was refused and undone: a short balance, a used key, a missing account.
            return None
        return int(rows[0][0]), int(rows[0][1])

    def _run_pg(
        self,
        connection: Any,
        statement: str,
        params: dict[str, Any],
        short_release: str | None = None,
    ) -> list[Any]:
        """Run one statement as its own transaction; [] when a constraint refused it (and so
        undid all of it). With short_release, the NULL balance of a settlement whose release
        UPDATE matched nothing raises RuntimeError(short_release) instead, as on SQLite."""
        cursor = connection.cursor()
        try:
            cursor.execute(statement, params)
            rows: list[Any] = cursor.fetchall()
            # Nothing to do on an autocommit connection, where the statement was the transaction.
            connection.commit()
        except self._integrity_error as error:
            connection.rollback()
            diag = getattr(error, "diag", None)
            if short_release and getattr(diag, "column_name", None) == "balance_after_micros":
                raise RuntimeError(short_release) from error
            return []
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()
        return rows

    # -------------------------------------------------------------------------------- settle

    def settle(
        self,
        connection: Any,
        *,
        hold: PlacedHold,
        price_micros: int,
        record: UsageEntry,
        touch_key: bool,
    ) -> UsageEntry | None:
        """Post price_micros against the hold and write the usage record, in one transaction
        (metering.settle). None when the price exceeds the hold or the hold was already
        resolved (expired): nothing was written, and metering.settle handles it."""
        if not 0 <= price_micros <= hold.amount_micros:
            return None
        if not self.sqlite:
            return self._settle_pg(connection, hold, price_micros, record, touch_key, utcnow())
        with self._write_lock:
            return self._settle(connection, hold, price_micros, record, touch_key, utcnow())

    def _settle_pg(
        self,
        connection: Any,
        hold: PlacedHold,
        price_micros: int,
        record: UsageEntry,
        touch_key: bool,
        now: datetime,
    ) -> UsageEntry | None:
        record.price_micros = price_micros
        record.hold_id = hold.id
        params = dict(zip(_USAGE_PARAMS, _usage_values(record), strict=True))
        params.update(
            key=resolve_key(hold.id),
            debit=hold.debit_account_id,
            credit=hold.credit_account_id,
            price=price_micros,
            held=hold.amount_micros,
            hold=hold.id,
            code=_USAGE,
            reference=hold.reference,
            now=now,
            api_key=record.api_key_id,
            customer=record.customer_id,
            spend_period=period_of(record.created_at),
        )
        statement = self._pg_settle[
            hold.debit_account_id < hold.credit_account_id,
            touch_key,
            hold.budget_customer_id is not None,
        ]
        short = (
            f"ledger account {hold.debit_account_id} or {hold.credit_account_id} (or the "
            f"budget of {record.customer_id}) holds less than hold {hold.id}"
        )
        rows = self._run_pg(connection, statement, params, short_release=short)
        if not rows:
            # Refused and undone: most likely the hold was expired meanwhile (metering.settle
            # charges it directly).
            return None
        record.balance_after_micros = int(rows[0][0])
        return record

    def _settle(
        self,
        connection: Any,
        hold: PlacedHold,
        price_micros: int,
        record: UsageEntry,
        touch_key: bool,
        now: datetime,
    ) -> UsageEntry | None:
        held = hold.amount_micros
        cursor = connection.cursor()
        try:
            self._begin(cursor)
            # Claim the hold first: UNIQUE(pending_id) lets only one resolution exist.
            cursor.execute(
                self._insert_transfer,
                (resolve_key(hold.id), "post", hold.debit_account_id,
                 hold.credit_account_id, price_micros, hold.id, _USAGE, hold.reference, None,
                 self._time(now)),
            )  # fmt: skip
            cursor.fetchall()
            balance_after: int | None = None
            for account in sorted((hold.debit_account_id, hold.credit_account_id)):
                params = (price_micros, held, account, held)
                if account == hold.debit_account_id:
                    cursor.execute(self._release_debit, params)
                    returned = cursor.fetchall()
                    matched = len(returned)
                    if matched == 1:
                        balance_after = int(returned[0][0])
                else:
                    cursor.execute(self._release_credit, params)
                    matched = cursor.rowcount
                if matched != 1:
                    raise RuntimeError(f"ledger account {account} holds less than hold {hold.id}")
            assert balance_after is not None
            if hold.budget_customer_id is not None:
                cursor.execute(self._budget_delete_hold, (hold.id,))
                released = cursor.rowcount == 1
                if released:
                    cursor.execute(self._budget_release, (held, hold.budget_customer_id, held))
                    released = cursor.rowcount == 1
                if not released:
                    raise RuntimeError(
                        f"the budget of {hold.budget_customer_id} holds less than hold {hold.id}"
                    )
            if price_micros:
                cursor.execute(
                    self._count_spend,
                    budget_holds.count_spend_params(
                        record.customer_id, price_micros, period_of(record.created_at)
                    ),
                )
                cursor.execute(
                    self._count_key_spend,
                    key_caps.count_spend_params(
                        record.api_key_id, price_micros, period_of(record.created_at)
                    ),
                )
            record.price_micros = price_micros
            record.hold_id = hold.id
            record.balance_after_micros = balance_after
            values = list(_usage_values(record))
            values[_USAGE_CREATED_AT] = self._time(values[_USAGE_CREATED_AT])
            cursor.execute(self._insert_usage, values)
            if touch_key:
                cursor.execute(self._touch_key, (self._time(now), record.api_key_id))
            connection.commit()
        except self._integrity_error:
            # Most likely the hold was expired meanwhile: metering.settle charges it directly.
            connection.rollback()
            return None
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()
        return record
