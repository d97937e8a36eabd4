"""Repositories: the only code that speaks SQL. Each takes the session of the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from psycopg import RawCursor
from psycopg.types.json import Json
from sqlalchemy import bindparam, func
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from ebl.parties import code_keys
from ebl.store.db import discard_if_lost, driver_connection
from ebl.store.tables import (
    AdditionalDocumentRow,
    CheckpointRow,
    CosignatureRow,
    EblRow,
    EnvelopeRow,
    ForeignCredentialRow,
    ForeignProofRow,
    IdempotencyRow,
    LogLeafRow,
    OutboundTransferRow,
    PartyCodeRow,
    PartyKeyRow,
    PartyRow,
    TransferEntryRow,
    WitnessedLogRow,
)

# The ORM statements every request runs, built once: building a statement costs about as much as running it.
_PARTY_BY_API_KEY_HASH = select(PartyRow).where(PartyRow.api_key_hash == bindparam("hash"))
_PARTIES_BY_ID = (
    select(PartyRow)
    .where(col(PartyRow.id).in_(bindparam("ids", expanding=True)))
    .order_by(col(PartyRow.created_at), col(PartyRow.id))
)
_KEYS_OF_PARTY = (
    select(PartyKeyRow).where(PartyKeyRow.party_id == bindparam("party_id")).order_by(col(PartyKeyRow.created_at))
)


@lru_cache(maxsize=512)
def _numbered(statement: str) -> str:
    """``statement`` with its ``?`` placeholders written as PostgreSQL's: ``$1``, ``$2``…"""
    *parts, last = statement.split("?")
    return "".join(f"{part}${number}" for number, part in enumerate(parts, start=1)) + last


class _DriverSql:
    """SQL sent straight to the database driver, on the connection of the session's transaction.

    For the statements every action runs: no ORM unit of work and no statement compilation. Statements use ``?``
    placeholders and SQL that SQLite and PostgreSQL both speak. On PostgreSQL they go through psycopg's raw cursor,
    numbered ``$1``, ``$2``…: psycopg's own ``%s`` placeholders are parsed in Python for each statement, and the parse
    is cached only for statements of up to 50 parameters, where a batch's multi-row inserts have more; parsing one
    cost twice what sending it did (docs/benchmarks-history.md).
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        dialect = session.get_bind().dialect
        self._postgresql = dialect.name == "postgresql"
        self._dbapi = dialect.loaded_dbapi
        self._driver: Any = None

    def _execute(self, statement: str, parameters: Sequence[Any] = ()) -> Any:
        """Run ``statement`` on the driver; returns its cursor. A broken constraint raises SQLAlchemy's
        :class:`~sqlalchemy.exc.IntegrityError`, and a dead connection its ``OperationalError`` with
        ``connection_invalidated`` set, as the ORM's statements do."""
        if self._driver is None:
            # The session keeps one connection for its transaction, and a repository lives within one transaction.
            self._driver = driver_connection(self._session)
        try:
            if self._postgresql:
                return RawCursor(self._driver).execute(_numbered(statement), parameters)
            return self._driver.execute(statement, parameters)
        except self._dbapi.IntegrityError as exc:
            raise IntegrityError(statement, parameters, exc) from exc
        except self._dbapi.OperationalError as exc:
            if discard_if_lost(self._session):
                raise OperationalError(statement, parameters, exc, connection_invalidated=True) from exc
            raise

    def _timestamp(self, value: datetime) -> Any:
        # SQLite has no timestamp type: store the text SQLAlchemy would have stored ("%Y-%m-%d %H:%M:%S.%f").
        utc = value.astimezone(UTC)
        return utc if self._postgresql else utc.replace(tzinfo=None).isoformat(" ", "microseconds")

    def _to_json(self, value: Any) -> Any:
        # A JSON column is text on SQLite (as SQLAlchemy stores it); psycopg adapts a value wrapped in Json.
        return Json(value) if self._postgresql else json.dumps(value)

    @staticmethod
    def _from_json(value: Any) -> Any:
        # psycopg has already parsed a JSON column; SQLite hands back its text.
        return json.loads(value) if isinstance(value, str) else value


class PartyRepository(_DriverSql):
    def get(self, party_id: str) -> PartyRow | None:
        return self._session.get(PartyRow, party_id)

    def by_api_key_hash(self, api_key_hash: str) -> PartyRow | None:
        return self._session.exec(_PARTY_BY_API_KEY_HASH, params={"hash": api_key_hash}).first()

    def with_codes(self, platform: str, codes: Iterable[tuple[str, str]]) -> list[PartyRow]:
        """The parties of ``platform`` that hold any of these ``(codeListProvider, partyCode)`` pairs."""
        wanted = sorted(set(codes))
        if not wanted:
            return []
        # On every issuance and action: primary-key lookups in plain SQL, then the rows in one query.
        matches = " OR ".join(["(code_list_provider = ? AND party_code = ?)"] * len(wanted))
        holders = self._execute(
            f"SELECT DISTINCT party_id FROM party_code WHERE ebl_platform = ? AND ({matches})",  # noqa: S608
            [platform, *(value for pair in wanted for value in pair)],
        ).fetchall()
        if not holders:
            return []
        return list(self._session.exec(_PARTIES_BY_ID, params={"ids": [party_id for (party_id,) in holders]}).all())

    def on_platform(self, platform: str) -> Sequence[PartyRow]:
        statement = select(PartyRow).where(PartyRow.ebl_platform == platform).order_by(col(PartyRow.created_at))
        return self._session.exec(statement).all()

    def all(self) -> Sequence[PartyRow]:
        return self._session.exec(select(PartyRow).order_by(col(PartyRow.created_at), col(PartyRow.id))).all()

    def add(self, row: PartyRow) -> None:
        self._session.add(row)
        # Without ORM relationships the unit of work does not order inserts by foreign key: flush the party first.
        self._session.flush()
        for provider, code in code_keys({"identifyingCodes": row.identifying_codes}):
            self._session.add(
                PartyCodeRow(
                    ebl_platform=row.ebl_platform, code_list_provider=provider, party_code=code, party_id=row.id
                )
            )

    def keys_of(self, party_id: str) -> Sequence[PartyKeyRow]:
        return self._session.exec(_KEYS_OF_PARTY, params={"party_id": party_id}).all()

    def key(self, kid: str) -> PartyKeyRow | None:
        return self._session.get(PartyKeyRow, kid)

    def all_keys(self) -> Sequence[PartyKeyRow]:
        return self._session.exec(select(PartyKeyRow).order_by(col(PartyKeyRow.created_at))).all()

    def add_key(self, row: PartyKeyRow) -> None:
        self._session.add(row)


@dataclass(frozen=True, slots=True)
class Ebl:
    """An eBL as stored: its document (in its RFC 8785 form), and a cache of its state (the chain is the truth)."""

    id: int
    transport_document_reference: str
    transport_document_sub_reference: str
    document_json: str
    document_checksum: str
    issue_to: dict[str, Any]
    status: str
    chain_length: int
    superseded: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """A chain entry: the compact JWS, verbatim, at its position."""

    sequence: int
    jws: str
    checksum: str


@dataclass(frozen=True, slots=True)
class NewEbl:
    """An eBL to store."""

    reference: str
    sub_reference: str
    document_json: str
    document_checksum: str
    issue_to: dict[str, Any]
    status: str
    chain_length: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Advance:
    """An action's move of its eBL: to ``status`` and ``chain_length``, if its chain is still ``from_length`` long."""

    ebl_id: int
    from_length: int
    status: str
    chain_length: int


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A chain entry to store: its eBL, the entry, the code of its action, when it was recorded."""

    ebl_id: int
    entry: Entry
    action_code: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EblRecord:
    """An eBL with its chain entries, in order, and the last entry its platform transfer chain covers, if the eBL
    came from another platform: what reading or acting on an eBL needs, read in one query."""

    ebl: Ebl
    entries: list[Entry]
    last_hop_sequence: int | None

    @property
    def party_chain_complete(self) -> bool:
        """Whether the party-signed entries cover every hop of the platform transfer chain (an eBL from a platform
        that sends no party-signed chain has hops its entries do not cover)."""
        return self.last_hop_sequence is None or self.last_hop_sequence < len(self.entries)


_EBL_COLUMNS = (
    "id, transport_document_reference, transport_document_sub_reference, document_json, document_checksum, "
    "issue_to, status, chain_length, superseded"
)
_NEW_EBL_COLUMNS = (
    "transport_document_reference, transport_document_sub_reference, document_json, document_checksum, issue_to, "
    "status, chain_length, superseded, created_at"
)
# An eBL's row, then the last entry its platform hops cover, then its chain entries as one JSON array of
# [sequence, jws, checksum]: the two databases' JSON functions differ only in name. Unordered: sorted as read.
# The queries choose their eBL rows in a subquery (FROM (...) AS ebl), which is planned as if alone: beside these
# columns' subqueries, a PostgreSQL that had no statistics costed walking the primary key backwards, past every newer
# eBL, as cheap as the reference's index (62 ms instead of 0.6 at 73,000 eBLs: docs/benchmarks-history.md, step 14).
_RECORD_COLUMNS = (
    f"ebl.{_EBL_COLUMNS.replace(', ', ', ebl.')}, "  # noqa: S608
    "(SELECT last_sequence FROM transfer_entry WHERE ebl_id = ebl.id ORDER BY position DESC LIMIT 1), "
    "(SELECT json_group_array(json_array(sequence, jws, checksum)) FROM chain_entry WHERE ebl_id = ebl.id)"
)
_RECORD_COLUMNS_POSTGRESQL = _RECORD_COLUMNS.replace("json_group_array(json_array", "json_agg(json_build_array")


class EblRepository(_DriverSql):
    """eBLs, their chain entries and who is involved in them: plain SQL, since every action reads and writes them."""

    def _ebl(self, row: Sequence[Any]) -> Ebl:
        id_, reference, sub_reference, document_json, checksum, issue_to, status, length, superseded = row
        return Ebl(
            int(id_),
            reference,
            sub_reference,
            document_json,
            checksum,
            self._from_json(issue_to),
            status,
            int(length),
            bool(superseded),
        )

    def latest(self, reference: str, *, for_update: bool = False) -> Ebl | None:
        """The current eBL of ``reference``; ``for_update`` locks its row until the transaction ends.

        The lock makes conflicting actions on one eBL queue up, so each reads the chain its predecessor wrote.
        """
        lock = " FOR UPDATE" if for_update and self._postgresql else ""
        row = self._execute(
            f"SELECT {_EBL_COLUMNS} FROM ebl WHERE transport_document_reference = ? ORDER BY id DESC LIMIT 1{lock}",  # noqa: S608
            (reference,),
        ).fetchone()
        return None if row is None else self._ebl(row)

    def has_sub_reference(self, reference: str, sub_reference: str) -> bool:
        """Whether an eBL of ``reference`` with this ``transportDocumentSubReference`` was ever stored here, superseded
        or not."""
        row = self._execute(
            "SELECT 1 FROM ebl WHERE transport_document_reference = ? AND transport_document_sub_reference = ?",
            (reference, sub_reference),
        ).fetchone()
        return row is not None

    def add(self, new: NewEbl) -> Ebl:
        """Store a new eBL: a second one with the same reference and sub-reference raises ``IntegrityError``."""
        (ebl_id,) = self._execute(
            f"INSERT INTO ebl ({_NEW_EBL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",  # noqa: S608
            self._values(new),
        ).fetchone()
        return self._stored(int(ebl_id), new)

    def add_first(self, news: Sequence[NewEbl]) -> dict[str, Ebl]:
        """Store each new eBL whose reference no eBL has yet, in one statement; the stored ones by reference. Run it in
        a write, whose turn keeps any other from adding a reference meanwhile, and with distinct references: the
        statement looks only at the eBLs stored before it."""
        rows = self._execute(
            f"INSERT INTO ebl ({_NEW_EBL_COLUMNS}) SELECT * FROM (VALUES "  # noqa: S608
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(news))
            + ") AS v WHERE NOT EXISTS (SELECT 1 FROM ebl WHERE transport_document_reference = v.column1) "
            "RETURNING id, transport_document_reference",
            [value for new in news for value in self._values(new)],
        ).fetchall()
        by_reference = {new.reference: new for new in news}
        return {reference: self._stored(int(ebl_id), by_reference[reference]) for ebl_id, reference in rows}

    def _values(self, new: NewEbl) -> tuple[Any, ...]:
        return (
            new.reference,
            new.sub_reference,
            new.document_json,
            new.document_checksum,
            self._to_json(new.issue_to),
            new.status,
            new.chain_length,
            False,
            self._timestamp(new.created_at),
        )

    @staticmethod
    def _stored(ebl_id: int, new: NewEbl) -> Ebl:
        return Ebl(
            ebl_id,
            new.reference,
            new.sub_reference,
            new.document_json,
            new.document_checksum,
            new.issue_to,
            new.status,
            new.chain_length,
            False,
        )

    def advance(self, advances: Sequence[Advance]) -> set[int]:
        """Move each eBL on to its new status and length if its chain is still ``from_length`` entries long and it is
        not superseded, all in one statement; the ids of those it moved.

        A compare-and-set: the update locks the rows until the transaction ends, so conflicting actions on one eBL
        queue up, and one that was built on a chain that has grown since finds it out here, with nothing written.
        Two advances of one eBL move it at most once.
        """
        rows = self._execute(
            "UPDATE ebl SET status = v.column3, chain_length = v.column4 FROM (VALUES "  # noqa: S608
            + ", ".join(["(CAST(? AS INTEGER), CAST(? AS INTEGER), ?, CAST(? AS INTEGER))"] * len(advances))
            + ") AS v WHERE ebl.id = v.column1 AND ebl.chain_length = v.column2 AND ebl.superseded = ? "
            "RETURNING ebl.id",
            [*(value for a in advances for value in (a.ebl_id, a.from_length, a.status, a.chain_length)), False],
        ).fetchall()
        return {int(ebl_id) for (ebl_id,) in rows}

    def set_state(self, ebl_id: int, *, status: str, chain_length: int) -> None:
        self._execute("UPDATE ebl SET status = ?, chain_length = ? WHERE id = ?", (status, chain_length, ebl_id))

    def supersede(self, ebl_id: int) -> None:
        """Mark an eBL replaced by its amended re-issue."""
        self._execute("UPDATE ebl SET superseded = ? WHERE id = ?", (True, ebl_id))

    def entries(self, ebl_id: int) -> list[Entry]:
        rows = self._execute(
            "SELECT sequence, jws, checksum FROM chain_entry WHERE ebl_id = ? ORDER BY sequence", (ebl_id,)
        ).fetchall()
        return [Entry(int(sequence), jws, checksum) for sequence, jws, checksum in rows]

    def add_entries(self, entries: Sequence[NewEntry]) -> None:
        """Store chain entries, in one statement: a lost race on ``(ebl_id, sequence)`` raises ``IntegrityError``."""
        if entries:
            self._execute(
                "INSERT INTO chain_entry (ebl_id, sequence, jws, checksum, action_code, created_at) VALUES "  # noqa: S608
                + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(entries)),
                [
                    value
                    for new in entries
                    for value in (
                        new.ebl_id,
                        new.entry.sequence,
                        new.entry.jws,
                        new.entry.checksum,
                        new.action_code,
                        self._timestamp(new.created_at),
                    )
                ],
            )

    def entry_by_checksum(self, checksum: str) -> Entry | None:
        row = self._execute(
            "SELECT sequence, jws, checksum FROM chain_entry WHERE checksum = ?", (checksum,)
        ).fetchone()
        return None if row is None else Entry(int(row[0]), row[1], row[2])

    def involve(self, pairs: Iterable[tuple[int, str]]) -> None:
        """Record that these ``(eBL id, party id)`` are involved (those already are stay as they are): one statement."""
        wanted = sorted(set(pairs))
        if wanted:
            self._execute(
                "INSERT INTO involvement (ebl_id, party_id) VALUES "  # noqa: S608
                + ", ".join(["(?, ?)"] * len(wanted))
                + " ON CONFLICT DO NOTHING",
                [value for pair in wanted for value in pair],
            )

    def read(self, reference: str, *, party_id: str | None) -> EblRecord | None:
        """The current eBL of ``reference`` with its chain, if ``party_id`` is involved in it (whoever is, for
        ``None``); else ``None``: one query for all of it."""
        involved = "TRUE"
        if party_id is not None:
            involved = "EXISTS (SELECT 1 FROM involvement WHERE ebl_id = ebl.id AND party_id = ?)"
        row = self._execute(
            f"SELECT {self._record_columns}, {involved} FROM (SELECT * FROM ebl "  # noqa: S608
            "WHERE transport_document_reference = ? ORDER BY id DESC LIMIT 1) AS ebl",
            (reference,) if party_id is None else (party_id, reference),
        ).fetchone()
        return None if row is None or not row[-1] else self._record(row[:-1])

    def record(self, ebl_id: int) -> EblRecord | None:
        row = self._execute(f"SELECT {self._record_columns} FROM ebl WHERE id = ?", (ebl_id,)).fetchone()  # noqa: S608
        return None if row is None else self._record(row)

    @property
    def _record_columns(self) -> str:
        return _RECORD_COLUMNS_POSTGRESQL if self._postgresql else _RECORD_COLUMNS

    def _record(self, row: Sequence[Any]) -> EblRecord:
        *ebl, last_hop, entries = row
        ordered = sorted(self._from_json(entries) or [])
        return EblRecord(
            self._ebl(ebl),
            [Entry(int(sequence), jws, checksum) for sequence, jws, checksum in ordered],
            None if last_hop is None else int(last_hop),
        )

    def count_after(self, after_id: int) -> tuple[int, int]:
        """How many eBLs have an id above ``after_id``, and the highest id (``after_id`` when there is none): read
        along the primary key from ``after_id`` on."""
        count, highest = self._execute("SELECT COUNT(*), MAX(id) FROM ebl WHERE id > ?", (after_id,)).fetchone()
        return int(count), after_id if highest is None else int(highest)

    def page(self, *, party_id: str | None, after_id: int, limit: int) -> list[EblRecord]:
        """eBLs in id order after ``after_id``, with their chains; only those ``party_id`` is involved in, unless it
        is ``None``."""
        if party_id is None:
            rows = self._execute(
                f"SELECT {self._record_columns} FROM (SELECT * FROM ebl WHERE id > ? ORDER BY id LIMIT ?) AS ebl "  # noqa: S608
                "ORDER BY ebl.id",
                (after_id, limit),
            ).fetchall()
        else:
            # Walked in the order of the index on (party_id, ebl_id), from the cursor on.
            rows = self._execute(
                f"SELECT {self._record_columns} FROM (SELECT ebl.* FROM involvement "  # noqa: S608
                "JOIN ebl ON ebl.id = involvement.ebl_id WHERE involvement.party_id = ? AND involvement.ebl_id > ? "
                "ORDER BY involvement.ebl_id LIMIT ?) AS ebl ORDER BY ebl.id",
                (party_id, after_id, limit),
            ).fetchall()
        return [self._record(row) for row in rows]


class IdempotencyRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, party_id: str, key: str) -> IdempotencyRow | None:
        return self._session.get(IdempotencyRow, (party_id, key))

    def add(self, row: IdempotencyRow) -> None:
        self._session.add(row)
        self._session.flush()

    def save(self, row: IdempotencyRow) -> None:
        self._session.add(row)


# MAX over the primary key is an index lookup; COUNT(*) would scan every leaf.
_LOG_SIZE = 'COALESCE(MAX("index") + 1, 0)'


class LogRepository(_DriverSql):
    """The ledger's leaves, subtree hashes and checkpoints.

    Appends and proofs run on the hot path of every action, so they send SQL on primary keys straight to the
    database driver, on the connection of the session's transaction: no ORM unit of work, no statement compilation.
    """

    def size(self) -> int:
        return int(self._execute(f"SELECT {_LOG_SIZE} FROM log_leaf").fetchone()[0])  # noqa: S608

    def sizes(self) -> tuple[int, int | None]:
        """The log's size and the latest checkpoint's (``None`` before the first), in one query."""
        size, checkpointed = self._execute(
            f"SELECT {_LOG_SIZE}, (SELECT MAX(size) FROM checkpoint) FROM log_leaf"  # noqa: S608
        ).fetchone()
        return int(size), None if checkpointed is None else int(checkpointed)

    def add_leaves(self, leaves: Sequence[tuple[int, str, bytes, datetime]]) -> None:
        """Add leaves ``(index, entry checksum, leaf hash, time)``. Run it in a write (:func:`ebl.store.db.write`),
        at the log's end: one write transaction at a time writes, so no other can take the same index (the primary
        key would refuse it)."""
        self._execute(
            'INSERT INTO log_leaf ("index", entry_checksum, leaf_hash, created_at) VALUES '  # noqa: S608
            + ", ".join(["(?, ?, ?, ?)"] * len(leaves)),
            [value for index, checksum, leaf, now in leaves for value in (index, checksum, leaf, self._timestamp(now))],
        )

    def leaf(self, index: int) -> LogLeafRow | None:
        return self._session.get(LogLeafRow, index)

    def leaf_by_checksum(self, entry_checksum: str) -> LogLeafRow | None:
        return self._session.exec(select(LogLeafRow).where(LogLeafRow.entry_checksum == entry_checksum)).first()

    def add_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        if nodes:
            self._execute(
                'INSERT INTO log_node (level, "index", hash) VALUES ' + ", ".join(["(?, ?, ?)"] * len(nodes)),  # noqa: S608
                [value for node in nodes for value in node],
            )

    def node(self, level: int, index: int) -> bytes:
        row = self._execute('SELECT hash FROM log_node WHERE level = ? AND "index" = ?', (level, index)).fetchone()
        if row is None:
            raise LookupError(f"the log has no subtree ({level}, {index})")
        return bytes(row[0])

    def nodes(self, positions: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Several subtree hashes in one query."""
        if not positions:
            return {}
        by_level: dict[int, set[int]] = {}
        for level, index in positions:
            by_level.setdefault(level, set()).add(index)
        # One primary-key lookup per level, OR-ed: SQLite answers this from the index (a row-value IN it would scan).
        parameters: list[int] = []
        clauses = []
        for level, indexes in sorted(by_level.items()):
            parameters += [level, *sorted(indexes)]
            clauses.append(f'(level = ? AND "index" IN ({", ".join("?" * len(indexes))}))')
        statement = f'SELECT level, "index", hash FROM log_node WHERE {" OR ".join(clauses)}'  # noqa: S608
        rows = self._execute(statement, parameters).fetchall()
        return {(int(level), int(index)): bytes(value) for level, index, value in rows}

    def latest_checkpoint(self) -> CheckpointRow | None:
        return self._session.exec(select(CheckpointRow).order_by(col(CheckpointRow.size).desc()).limit(1)).first()

    def add_checkpoint(self, row: CheckpointRow) -> None:
        self._session.add(row)
        self._session.flush()


class WitnessRepository(_DriverSql):
    """Cosignatures peers gave this node, and the peer logs this node witnesses."""

    def cosignatures(self, checkpoint_size: int) -> Sequence[CosignatureRow]:
        statement = select(CosignatureRow).where(CosignatureRow.checkpoint_size == checkpoint_size)
        return self._session.exec(statement.order_by(col(CosignatureRow.id))).all()

    def last_cosigned_size(self, witness_url: str) -> int:
        statement = select(func.max(CosignatureRow.checkpoint_size)).where(CosignatureRow.witness_url == witness_url)
        return int(self._session.exec(statement).one() or 0)

    def add_cosignature(self, row: CosignatureRow) -> None:
        """Keep a witness's cosignature of a checkpoint, unless one of that witness for that checkpoint is kept already:
        every server process pushes the checkpoints, and two may both be given one."""
        self._execute(
            "INSERT INTO cosignature (checkpoint_size, witness_url, line, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (checkpoint_size, witness_url) DO NOTHING",
            (row.checkpoint_size, row.witness_url, row.line, self._timestamp(row.created_at)),
        )

    def witnessed(self, origin: str) -> WitnessedLogRow | None:
        """The latest checkpoint cosigned for ``origin``, locked until the transaction ends (compare and swap)."""
        return self._session.get(WitnessedLogRow, origin, with_for_update=True)

    def save_witnessed(self, row: WitnessedLogRow) -> None:
        self._session.add(row)


class TransferRepository(_DriverSql):
    """PINT: transfer chains, envelopes received, additional documents, transfers to send, and what came with
    eBLs from other platforms (their parties' key credentials and their logs' inclusion proofs)."""

    def chain(self, ebl_id: int) -> Sequence[TransferEntryRow]:
        statement = select(TransferEntryRow).where(TransferEntryRow.ebl_id == ebl_id)
        return self._session.exec(statement.order_by(col(TransferEntryRow.position))).all()

    def add_entry(self, row: TransferEntryRow) -> None:
        self._session.add(row)
        self._session.flush()

    def envelope(self, reference: str, *, for_update: bool = False) -> EnvelopeRow | None:
        return self._session.get(EnvelopeRow, reference, with_for_update=for_update)

    def accepted_envelope(self, transport_document_reference: str, last_entry_checksum: str) -> EnvelopeRow | None:
        """The envelope of this eBL ending with this transfer chain entry that this node accepted, if any."""
        statement = select(EnvelopeRow).where(
            EnvelopeRow.transport_document_reference == transport_document_reference,
            EnvelopeRow.last_entry_checksum == last_entry_checksum,
            col(EnvelopeRow.accepted),
        )
        return self._session.exec(statement).first()

    def envelopes_for(self, transport_document_reference: str) -> Sequence[EnvelopeRow]:
        statement = select(EnvelopeRow).where(EnvelopeRow.transport_document_reference == transport_document_reference)
        return self._session.exec(statement.order_by(col(EnvelopeRow.created_at))).all()

    def save_envelope(self, row: EnvelopeRow) -> None:
        self._session.add(row)
        self._session.flush()

    def document_sizes(self, checksums: Iterable[str]) -> dict[str, int]:
        """The size in bytes of each of these additional documents that this node holds."""
        wanted = sorted(set(checksums))
        if not wanted:
            return {}
        statement = select(AdditionalDocumentRow.checksum, func.length(AdditionalDocumentRow.content)).where(
            col(AdditionalDocumentRow.checksum).in_(wanted)
        )
        return {checksum: int(size) for checksum, size in self._session.exec(statement).all()}

    def add_document(self, row: AdditionalDocumentRow) -> None:
        if self._session.get(AdditionalDocumentRow, row.checksum) is None:
            self._session.add(row)
            self._session.flush()

    def outbound(self, ebl_id: int) -> Sequence[OutboundTransferRow]:
        statement = select(OutboundTransferRow).where(OutboundTransferRow.ebl_id == ebl_id)
        return self._session.exec(statement.order_by(col(OutboundTransferRow.sequence))).all()

    def pending(self) -> list[tuple[int, str, datetime]]:
        """Every pending transfer as (id, the eBL's reference, when its next attempt is due), in the order recorded."""
        statement = (
            select(OutboundTransferRow.id, EblRow.transport_document_reference, OutboundTransferRow.next_attempt_at)
            .join(EblRow, col(EblRow.id) == col(OutboundTransferRow.ebl_id))
            .where(OutboundTransferRow.status == "PENDING")
            .order_by(col(OutboundTransferRow.id))
        )
        rows = self._session.exec(statement).all()
        return [(id_, reference, due) for id_, reference, due in rows if id_ is not None]  # a stored row has its id

    def claim(self, transfer_id: int, now: datetime, until: datetime) -> int | None:
        """Take the next attempt at a pending transfer due at ``now``, for this process alone: a compare-and-set that
        moves its next attempt to ``until``, a lease no other process's courier takes before it runs out (nor after,
        if the attempt is recorded meanwhile). The attempts made so far, or ``None`` if the transfer is not due: another
        process took it, or it is decided."""
        row = self._execute(
            "UPDATE outbound_transfer SET next_attempt_at = ? "
            "WHERE id = ? AND status = ? AND next_attempt_at <= ? RETURNING attempts",
            (self._timestamp(until), transfer_id, "PENDING", self._timestamp(now)),
        ).fetchone()
        return None if row is None else int(row[0])

    def keep_answer(self, transfer_id: int, *, status: str, response: str, response_code: str) -> bool:
        """Record the signed answer that decides a transfer, if it is still pending (whose attempt got it does not
        matter: it is the peer's word); whether it did. A decided transfer keeps the receipt it has."""
        row = self._execute(
            "UPDATE outbound_transfer SET status = ?, response = ?, response_code = ?, attempts = attempts + 1 "
            "WHERE id = ? AND status = ? RETURNING id",
            (status, response, response_code, transfer_id, "PENDING"),
        ).fetchone()
        return row is not None

    def retry_later(
        self, transfer_id: int, *, claimed_until: datetime, attempts: int, next_attempt_at: datetime, error: str
    ) -> bool:
        """Record a failed attempt and when to make the next, if the transfer is pending under the claim that made
        the attempt (``claimed_until``); whether it did. An attempt that outlived its claim records nothing: another
        process may hold the transfer now, or have decided it."""
        row = self._execute(
            "UPDATE outbound_transfer SET attempts = ?, next_attempt_at = ?, last_error = ? "
            "WHERE id = ? AND status = ? AND next_attempt_at = ? RETURNING id",
            (
                attempts,
                self._timestamp(next_attempt_at),
                error,
                transfer_id,
                "PENDING",
                self._timestamp(claimed_until),
            ),
        ).fetchone()
        return row is not None

    def outbound_by_id(self, transfer_id: int, *, for_update: bool = False) -> OutboundTransferRow | None:
        return self._session.get(OutboundTransferRow, transfer_id, with_for_update=for_update)

    def save_outbound(self, row: OutboundTransferRow) -> None:
        self._session.add(row)
        self._session.flush()

    def foreign_proofs(self, checksums: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(checksums))
        if not wanted:
            return {}
        statement = select(ForeignProofRow).where(col(ForeignProofRow.entry_checksum).in_(wanted))
        return {row.entry_checksum: row.tlog_proof for row in self._session.exec(statement).all()}

    def add_foreign_proof(self, row: ForeignProofRow) -> None:
        if self._session.get(ForeignProofRow, row.entry_checksum) is None:
            self._session.add(row)
            self._session.flush()

    def foreign_credential(self, kid: str) -> ForeignCredentialRow | None:
        return self._session.get(ForeignCredentialRow, kid)

    def add_foreign_credential(self, row: ForeignCredentialRow) -> None:
        if self._session.get(ForeignCredentialRow, row.kid) is None:
            self._session.add(row)
            self._session.flush()
