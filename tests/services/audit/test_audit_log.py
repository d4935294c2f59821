"""The audit log on real PostgreSQL (and the embedded SQLite): appends chain and verify, concurrent
appends keep one chain, the database refuses UPDATE/DELETE/TRUNCATE, and tampering by someone who
gets past that is found by ``radwatch audit verify`` running as its own process."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from services.audit import actions
from services.audit import service as audit
from services.audit.chain import GENESIS, verify_lines
from services.cli.audit import app as audit_cli
from services.core.db import make_engine, make_sessionmaker, migrate, session_scope
from services.core.models import AuditRecord, Role
from tests.services.audit.conftest import append, as_superuser, run_audit_cli


def _records(sessions: sessionmaker[Session]) -> list[AuditRecord]:
    with session_scope(sessions) as s:
        return list(s.scalars(select(AuditRecord).order_by(AuditRecord.id)))


def test_appends_chain_from_the_genesis_and_verify(sessions: sessionmaker[Session]) -> None:
    ids = append(sessions, 3)
    rows = _records(sessions)
    assert [r.id for r in rows] == ids
    assert rows[0].prev_hash == GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert rows[0].actor == "alice"
    assert rows[0].payload == {"site": "north", "n": 0}
    with session_scope(sessions) as s:
        result = audit.verify(s)
    assert result.ok
    assert (result.checked, result.head, result.start) == (3, rows[-1].hash, GENESIS)


def test_a_record_rolls_back_with_its_change(sessions: sessionmaker[Session]) -> None:
    append(sessions, 1)
    s = sessions()
    try:
        audit.record(s, actor="bob", action="alert.resolved", entity_type="alert", entity_id=9)
        s.rollback()  # the change it describes failed
    finally:
        s.close()
    append(sessions, 1)  # the next append links to the committed head, not the lost record
    assert [r.actor for r in _records(sessions)] == ["alice", "alice"]
    with session_scope(sessions) as s:
        assert audit.verify(s).ok


def test_awkward_payloads_are_stored_exactly_as_hashed(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as s:
        audit.record(
            s,
            actor="bob",
            action=actions.MODEL_REGISTERED,
            entity_type=actions.MODEL_VERSION,
            entity_id=actions.model_version_id("cxr", 3),
            reason='Ünïcode reason, quotes " and a\nnewline',
            payload={
                "when": datetime(2026, 1, 1, tzinfo=UTC),
                "role": Role.AUDITOR,
                "auroc": float("nan"),
                "tiny": 1e-300,
                "pair": (1, "two"),
                "deep": {"z": [1.5, None, True], "a": {}},
            },
        )
    with session_scope(sessions) as s:
        assert audit.verify(s).ok
        stored = s.scalars(select(AuditRecord)).one()
    assert stored.payload["role"] == "auditor"
    assert stored.payload["auroc"] == "nan"
    assert stored.payload["pair"] == [1, "two"]


def test_bad_record_fields_are_refused_not_truncated(session: Session) -> None:
    with pytest.raises(ValueError, match="actor"):
        audit.record(session, actor="x" * 129, action="a.b", entity_type="t", entity_id=1)
    with pytest.raises(ValueError, match="entity_id"):
        audit.record(session, actor="x", action="a.b", entity_type="t", entity_id="")


def test_concurrent_appends_from_many_connections_keep_one_chain(
    sessions: sessionmaker[Session],
) -> None:
    """8 writers x 15 appends, each in its own transaction on its own connection, started
    together: the advisory lock orders them, so no append fails and the chain has no fork."""
    writers, each = 8, 15
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            start.wait()
            for i in range(each):
                with session_scope(sessions) as s:
                    audit.record(
                        s,
                        actor=f"writer-{w}",
                        action=actions.ALERT_OPENED,
                        entity_type=actions.ALERT,
                        entity_id=w * 1000 + i,
                    )
                    # Work after the append keeps the lock held while others queue on it.
                    s.execute(text("SELECT pg_sleep(0.001)"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    rows = _records(sessions)
    assert len(rows) == writers * each
    assert len({r.prev_hash for r in rows}) == len(rows)
    assert {r.actor for r in rows} == {f"writer-{w}" for w in range(writers)}
    # Times follow chain order, because each is taken after the lock.
    assert [r.at for r in rows] == sorted(r.at for r in rows)
    with session_scope(sessions) as s:
        result = audit.verify(s, batch_size=7)  # many server-side cursor fetches
    assert result.ok
    assert result.checked == writers * each


def test_sqlite_appends_from_several_threads_keep_one_chain(tmp_path: Path) -> None:
    """The embedded setup: SQLite's single writer plus the no-op UPDATE that takes the write lock
    before the head is read."""
    url = f"sqlite:///{tmp_path / 'radwatch.db'}"
    migrate(url)  # 0006 is a no-op on SQLite
    engine = make_engine(url)
    try:
        factory = make_sessionmaker(engine)
        errors: list[BaseException] = []

        def writer(w: int) -> None:
            try:
                for i in range(10):
                    with session_scope(factory) as s:
                        audit.record(s, actor=f"w{w}", action="a.b", entity_type="t", entity_id=i)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        with session_scope(factory) as s:
            result = audit.verify(s)
            assert result.ok
            assert result.checked == 40
            # SQLite hands the time back without its zone; the API still says UTC.
            first = s.scalars(select(AuditRecord).order_by(AuditRecord.id)).first()
            assert first is not None
            assert first.prev_hash == GENESIS
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET reason = 'changed'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "UPDATE audit_log SET reason = 'x' WHERE id < 0",  # refused even when it matches nothing
    ],
)
def test_the_database_refuses_to_change_or_remove_records(
    sessions: sessionmaker[Session], engine: Engine, sql: str
) -> None:
    append(sessions, 2)
    with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only") as caught:
        conn.execute(text(sql))
    assert "new audit record" in str(caught.value)  # the hint says what to do instead
    with session_scope(sessions) as s:
        assert s.scalar(select(func.count(AuditRecord.id))) == 2
        assert audit.verify(s).ok


def test_an_edited_record_is_found_by_the_cli_process(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    """The tampering drill: an attacker with superuser rights gets past the trigger and edits one
    record; `radwatch audit verify`, a separate process, exits 1 naming that record."""
    ids = append(sessions, 5)
    clean = run_audit_cli(database_url, "verify", data_dir=tmp_path)
    assert clean.returncode == 0, clean.stderr
    head = _records(sessions)[-1].hash
    assert clean.stdout.strip() == f"verified 5 records, chain head {head}"

    victim = ids[2]
    as_superuser(
        database_url,
        f"UPDATE audit_log SET reason = 'nothing to see here' WHERE id = {victim}",
    )
    assert _records(sessions)[2].reason == "nothing to see here"  # the edit really landed

    tampered = run_audit_cli(database_url, "verify", data_dir=tmp_path)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert f"record {victim}" in tampered.stderr
    assert "content_edited" in tampered.stderr
    assert "2 records before it are intact" in tampered.stderr


def test_an_edited_payload_is_found_too(sessions: sessionmaker[Session], database_url: str) -> None:
    ids = append(sessions, 3)
    as_superuser(
        database_url,
        f"""UPDATE audit_log SET payload = '{{"site": "south", "n": 1}}' WHERE id = {ids[1]}""",
        bypass="disable",
    )
    with session_scope(sessions) as s:
        result = audit.verify(s)
    assert result.broken is not None
    assert (result.broken.record_id, result.broken.reason) == (ids[1], "content_edited")


def test_a_deleted_record_is_found_at_the_next_id(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    ids = append(sessions, 5)
    as_superuser(database_url, f"DELETE FROM audit_log WHERE id = {ids[2]}", bypass="disable")
    result = run_audit_cli(database_url, "verify", data_dir=tmp_path)
    assert result.returncode == 1
    assert f"record {ids[3]}" in result.stderr
    assert "chain_broken" in result.stderr
    assert f"record {ids[1]}" in result.stderr  # names the record it should have followed
    # The trigger is back on after the attack.
    with session_scope(sessions) as s, pytest.raises(DBAPIError, match="append-only"):
        s.execute(text("DELETE FROM audit_log"))


def test_a_deleted_first_record_breaks_the_link_to_the_genesis(
    sessions: sessionmaker[Session], database_url: str
) -> None:
    ids = append(sessions, 3)
    as_superuser(database_url, f"DELETE FROM audit_log WHERE id = {ids[0]}")
    with session_scope(sessions) as s:
        result = audit.verify(s)
    assert result.broken is not None
    assert result.broken.record_id == ids[1]
    assert "genesis" in result.broken.message


def test_a_cut_tail_is_found_only_with_an_anchor(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    """A chain cannot prove its own end: deleting the newest records leaves a valid chain. The
    head recorded outside radwatch (``--anchor``) catches it."""
    ids = append(sessions, 4)
    head = _records(sessions)[-1].hash
    as_superuser(database_url, f"DELETE FROM audit_log WHERE id = {ids[-1]}")
    assert run_audit_cli(database_url, "verify", data_dir=tmp_path).returncode == 0
    anchored = run_audit_cli(database_url, "verify", "--anchor", head, data_dir=tmp_path)
    assert anchored.returncode == 1
    assert "anchor_missing" in anchored.stderr


def test_export_and_offline_verify_round_trip(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    ids = append(sessions, 4)
    rows = _records(sessions)
    buf = io.StringIO()
    with session_scope(sessions) as s:
        assert audit.export(s, buf) == 4
    lines = buf.getvalue().splitlines(keepends=True)
    offline = verify_lines(lines)
    assert offline.ok
    assert (offline.checked, offline.head) == (4, rows[-1].hash)

    # A line edited in the file is named by id and line number.
    edited = lines.copy()
    edited[1] = edited[1].replace('"actor":"alice"', '"actor":"mallory"')
    assert edited[1] != lines[1]
    broken = verify_lines(edited)
    assert broken.broken is not None
    assert (broken.broken.record_id, broken.broken.line) == (ids[1], 2)

    # Only records from a time on: a partial export, verified as such.
    since = rows[2].at
    part = io.StringIO()
    with session_scope(sessions) as s:
        assert audit.export(s, part, since=since) == 2
        assert audit.export(s, io.StringIO(), until=since) == 2
    assert not verify_lines(part.getvalue().splitlines()).ok
    assert verify_lines(part.getvalue().splitlines(), allow_partial=True).ok


def test_cli_export_then_verify_file(
    sessions: sessionmaker[Session],
    settings: object,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.core.settings import get_settings

    append(sessions, 3)
    monkeypatch.setenv("RADWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RADWATCH_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        out = tmp_path / "audit.jsonl"
        exported = runner.invoke(audit_cli, ["export", "--out", str(out)])
        assert exported.exit_code == 0, exported.output
        assert len(out.read_text().splitlines()) == 3
        ok = runner.invoke(audit_cli, ["verify", "--file", str(out)])
        assert ok.exit_code == 0, ok.output
        assert ok.stdout.startswith("verified 3 records, chain head ")

        stdout = runner.invoke(audit_cli, ["export", "--since", "2000-01-01"])
        assert stdout.exit_code == 0
        assert stdout.stdout.splitlines() == out.read_text().splitlines()

        lines = out.read_text().splitlines()
        out.write_text("\n".join([lines[0], lines[2]]) + "\n")
        gone = runner.invoke(audit_cli, ["verify", "--file", str(out)])
        assert gone.exit_code == 1
        assert "line 2" in gone.stderr
        assert "chain_broken" in gone.stderr

        missing = runner.invoke(audit_cli, ["verify", "--file", str(tmp_path / "nope.jsonl")])
        assert missing.exit_code == 2
        bad_time = runner.invoke(audit_cli, ["export", "--since", "yesterday"])
        assert bad_time.exit_code == 2
        assert "ISO-8601" in bad_time.stderr
    finally:
        get_settings.cache_clear()


def test_cli_says_so_when_the_database_is_unreachable(tmp_path: Path) -> None:
    down = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    result = run_audit_cli(down, "verify", data_dir=tmp_path)
    assert result.returncode == 2
    assert "cannot read the audit log" in result.stderr


def test_migration_0006_down_and_up(sessions: sessionmaker[Session], database_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    import services.core.db

    cfg = Config()
    cfg.set_main_option(
        "script_location", str(Path(services.core.db.__file__).parent / "migrations")
    )
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    append(sessions, 2)
    command.downgrade(cfg, "0005")
    with session_scope(sessions) as s:
        s.execute(text("UPDATE audit_log SET reason = 'allowed without the trigger'"))
    command.upgrade(cfg, "head")
    with session_scope(sessions) as s, pytest.raises(DBAPIError, match="append-only"):
        s.execute(text("UPDATE audit_log SET reason = 'refused again'"))
