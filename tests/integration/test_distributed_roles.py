"""The distributed profile's PostgreSQL roles, on the machine's PostgreSQL: one login role per service (Airflow,
MLflow), neither a superuser, each owning its own databases and unable to connect to the other's, as
postgres/init-roles.sql sets up in compose. Uniquely named (Profile.ephemeral) and dropped afterwards."""

from __future__ import annotations

import socket

import psycopg
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def profile(tmp_path):
    from mlplatform.devstack.distributed import Profile, drop_databases

    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", 5432)) != 0:
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432; the distributed profile needs it")
    profile = Profile.ephemeral(tmp_path / "data")
    yield profile
    drop_databases(profile)


def _admin(profile):
    return psycopg.connect(f"{profile.postgres_url}/postgres", autocommit=True)


def test_each_service_has_its_own_role_owning_its_databases(profile):
    from mlplatform.devstack.distributed import ensure_databases

    ensure_databases(profile)
    ensure_databases(profile)  # re-runnable
    airflow, mlflow = profile.roles["airflow"], profile.roles["mlflow"]
    with _admin(profile) as conn:
        roles = conn.execute("SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                             "WHERE rolname = ANY(%s) ORDER BY 1", [[airflow, mlflow]]).fetchall()
        assert roles == [(airflow, True, False, False, False), (mlflow, True, False, False, False)]
        owners = dict(conn.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(%s)",
                                   [list(profile.databases.values())]).fetchall())
        assert owners == {profile.databases["airflow"]: airflow, profile.databases["mlflow"]: mlflow,
                          profile.databases["mlflow_auth"]: mlflow}
        for role, own, other in ((airflow, "airflow", "mlflow"), (mlflow, "mlflow_auth", "airflow")):
            privileges = conn.execute("SELECT has_database_privilege(%s, %s, 'CONNECT'), "
                                      "has_database_privilege(%s, %s, 'CONNECT')",
                                      [role, profile.databases[own], role, profile.databases[other]]).fetchone()
            assert privileges == (True, False), role


def test_components_connect_as_their_service_role(profile):
    from mlplatform.devstack.distributed import component_env, ensure_databases, profile_env

    ensure_databases(profile)
    env = profile_env(profile)
    mlflow_env = component_env(profile, env, "mlflow")
    urls = {"airflow": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], "mlflow": mlflow_env["MLFLOW_BACKEND_STORE_URI"]}
    for service, url in urls.items():
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            user, superuser = conn.execute("SELECT current_user, usesuper FROM pg_user WHERE usename = current_user").fetchone()
        assert (user, superuser) == (profile.roles[service], False)
    # The MLflow role's password is in the MLflow server's environment only, not in what every component shares.
    assert profile.role_password("mlflow") not in str(env)
    assert "--backend-store-uri" not in str(env)


def test_a_database_from_before_the_roles_is_refused_with_a_clear_error(profile):
    from psycopg import sql

    from mlplatform.devstack.distributed import ensure_databases

    with _admin(profile) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(profile.databases["airflow"])))
    with pytest.raises(RuntimeError, match="predates the per-service roles.*make down-distributed"):
        ensure_databases(profile)


def test_down_drops_the_roles(profile):
    from mlplatform.devstack.distributed import drop_databases, ensure_databases

    ensure_databases(profile)
    drop_databases(profile)
    with _admin(profile) as conn:
        left = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) UNION ALL "
                            "SELECT datname FROM pg_database WHERE datname = ANY(%s)",
                            [list(profile.roles.values()), list(profile.databases.values())]).fetchall()
    assert left == []
