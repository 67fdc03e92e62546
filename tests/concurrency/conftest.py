"""Real deployments for race tests: a standalone simulator, and the app under gunicorn on SQLite,
on PostgreSQL, and as two separate instances sharing one PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer
from tests.support.servers import (
    Deployment,
    KeyPair,
    ServerProcess,
    app_environment,
    generate_key_pair,
    start_gunicorn,
    start_simulator,
)


@pytest.fixture(scope="package")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("concurrency")


@pytest.fixture(scope="package")
def merchant_keys(work_dir: Path) -> KeyPair:
    return generate_key_pair(work_dir / "keys")


@pytest.fixture(scope="package")
def simulator(merchant_keys: KeyPair, work_dir: Path) -> Iterator[ServerProcess]:
    """One standalone simulator (its own process) shared by every app instance."""
    server = start_simulator(keys=[merchant_keys], log_dir=work_dir / "logs")
    yield server
    server.stop()


@pytest.fixture(scope="package")
def start_app(
    merchant_keys: KeyPair, simulator: ServerProcess, work_dir: Path
) -> Iterator[Callable[[str, str], ServerProcess]]:
    """Starts `gunicorn 'app:create_app()'` (2 workers x 4 threads); stops all at teardown."""
    started: list[ServerProcess] = []

    def start(name: str, database_url: str) -> ServerProcess:
        env = app_environment(
            keys=merchant_keys, simulator_url=simulator.base_url, database_url=database_url
        )
        server = start_gunicorn(env=env, log_dir=work_dir / "logs", name=name, workers=2, threads=4)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="package")
def sqlite_app(start_app: Callable[[str, str], ServerProcess], work_dir: Path) -> ServerProcess:
    return start_app("app-sqlite", f"sqlite:///{work_dir / 'shop.sqlite3'}")


@pytest.fixture(scope="package")
def shared_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """One database that both PostgreSQL app instances use."""
    url = postgres_server.create_database("concurrency")
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(scope="package")
def postgres_app_a(
    start_app: Callable[[str, str], ServerProcess], shared_postgres_url: str
) -> ServerProcess:
    return start_app("app-postgres-a", shared_postgres_url)


@pytest.fixture(scope="package")
def postgres_app_b(
    start_app: Callable[[str, str], ServerProcess], shared_postgres_url: str
) -> ServerProcess:
    return start_app("app-postgres-b", shared_postgres_url)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-two-instances", marks=pytest.mark.postgres),
    ]
)
def deployment(request: pytest.FixtureRequest, simulator: ServerProcess) -> Deployment:
    """The app as deployed for each race: every parameter is a separate real setup."""
    if request.param == "sqlite":
        apps: tuple[ServerProcess, ...] = (request.getfixturevalue("sqlite_app"),)
    elif request.param == "postgres":
        apps = (request.getfixturevalue("postgres_app_a"),)
    else:
        apps = (
            request.getfixturevalue("postgres_app_a"),
            request.getfixturevalue("postgres_app_b"),
        )
    return Deployment(
        name=request.param,
        shop_urls=tuple(app.base_url for app in apps),
        simulator_url=simulator.base_url,
        servers=(*apps, simulator),
    )
