"""`cj migrate` against a real PostgreSQL."""

from __future__ import annotations

from click.testing import CliRunner

from cj.cli import cli
from cj.pgcluster import free_port


def test_migrate_applies_then_reports_up_to_date(empty_database_url: str) -> None:
    runner = CliRunner()
    env = {"CJ_DATABASE_URL": empty_database_url}
    check = runner.invoke(cli, ["migrate", "--check"], env=env)
    assert check.exit_code == 1 and "pending: 0001_initial" in check.output
    first = runner.invoke(cli, ["migrate"], env=env)
    assert first.exit_code == 0, first.output
    assert "applied: 0001_initial" in first.output
    second = runner.invoke(cli, ["migrate"], env=env)
    assert second.exit_code == 0 and "schema is up to date" in second.output
    check = runner.invoke(cli, ["migrate", "--check"], env=env)
    assert check.exit_code == 0


def test_migrate_reports_an_unreachable_database() -> None:
    url = f"postgresql://cj@127.0.0.1:{free_port()}/nope?connect_timeout=2"
    for args in (["migrate"], ["migrate", "--check"]):
        result = CliRunner().invoke(cli, args, env={"CJ_DATABASE_URL": url})
        assert result.exit_code == 1
        assert "cannot connect to the database" in result.output


def test_migrate_reports_a_bad_configuration() -> None:
    result = CliRunner().invoke(cli, ["migrate"], env={"CJ_DATABASE_POOL_SIZE": "-1"})
    assert result.exit_code == 1
    assert "database.pool_size" in result.output
