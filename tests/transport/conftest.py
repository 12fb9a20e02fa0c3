"""Fixtures for the transport's real-socket tests: the raw server, a local CA, and checks
that every thread and socket a stream used is gone at the end of the test."""

from __future__ import annotations

import gc

import pytest

import streamcoord
from tests.conftest import streamcoord_threads
from tests.support.rawserver import Proxy, RawServer
from tests.transport._support import open_sockets


@pytest.fixture
def session():
    """A fresh streamcoord session, so that pooled connections of other tests do not
    count; closed at the end."""
    made = streamcoord.new_session()
    yield made
    made.close()


@pytest.fixture
def clean():
    """At the end of the test (servers stopped, sessions closed): no streamcoord thread
    and no socket more than at its start."""
    threads = set(streamcoord_threads())
    sockets = open_sockets()
    yield
    for thread in streamcoord_threads():
        if thread not in threads:
            thread.join(2.0)
    assert [t.name for t in streamcoord_threads() if t not in threads] == []
    # urllib3 2 closes a closed session's idle pooled connections when the pool is
    # collected, not in session.close(): collect, then count.
    gc.collect()
    assert open_sockets() <= sockets


@pytest.fixture
def raw():
    with RawServer() as server:
        yield server


@pytest.fixture(scope="session")
def ca():
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def server_tls(ca):
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def tls_raw(server_tls):
    with RawServer(tls=server_tls) as server:
        yield server


@pytest.fixture
def proxy():
    with Proxy() as running:
        yield running


@pytest.fixture
def tls_proxy(server_tls):
    with Proxy(tls=server_tls) as running:
        yield running
