"""The warm embedding server refuses abuse and keeps serving (issue 10, point 3)."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid

import numpy as np
import pytest

from rag_app import embedding_server
from rag_app.embedding_server import MAX_TEXT_CHARS
from rag_core.embedders import sentence_transformers as embedding
from rag_core.embedders import server_client
from rag_core.embedders.server_client import MAX_BODY_BYTES, MAX_TEXTS

TOKEN = uuid.uuid4().hex
MODEL = embedding.DEFAULT_MODEL
TEXTS = ["How do I configure retries?", "The crawler honours robots.txt.", "short"]


@pytest.fixture(scope="module")
def server():
    srv = embedding_server.serve("127.0.0.1", 0, MODEL, "float32", 0, TOKEN)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url_of(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def raw(srv, data: bytes, timeout: float = 15.0, close_write: bool = False) -> bytes:
    """Send ``data`` as is and return whatever the server answers before closing."""
    with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if close_write:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close early on a refused body; its answer is still read
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def status(answer: bytes) -> int | None:
    try:
        return int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def post(body: bytes, token: str | None = TOKEN, length: str | None = "auto") -> bytes:
    head = "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if length == "auto":
        head += f"Content-Length: {len(body)}\r\n"
    elif length is not None:
        head += f"Content-Length: {length}\r\n"
    return head.encode() + b"\r\n" + body


def good(texts=TEXTS, **fields) -> bytes:
    return json.dumps({"texts": texts, "model": MODEL, "dtype": "float32", **fields}).encode()


def test_requests_without_the_session_token_are_refused(server):
    assert status(raw(server, post(good(), token=None))) == 401
    assert status(raw(server, post(good(), token="wrong"))) == 401
    assert server_client.health(url_of(server), "wrong") is None
    assert server_client.health(url_of(server), TOKEN)["dimension"] == 384
    with pytest.raises(server_client.EmbeddingServerError, match="401"):
        server_client.remote_encode(url_of(server), TEXTS, MODEL, "float32", 8, "wrong")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2, 3]", b"must be a JSON object"),
        (b"{not json", b"not JSON"),
        (b"\xff\xfe\x00", b"not JSON"),
        (json.dumps({"texts": "abc", "model": MODEL, "dtype": "float32"}).encode(), b"'texts'"),
        (good(batch_size=0), b"'batch_size' must be between"),
        (good(batch_size="8"), b"'batch_size' must be a whole number"),
        (good(batch_size=True), b"'batch_size' must be a whole number"),
        (good(texts=["ok", 3]), b"texts[1] is a int"),
        (json.dumps({"texts": ["a"], "dtype": "float32"}).encode(), b"'model' must be a string"),
        (good(texts=["x"] * (MAX_TEXTS + 1)), b"at most 256 per request"),
        (good(texts=["x" * (MAX_TEXT_CHARS + 1)]), b"characters; at most"),
    ],
)
def test_a_bad_request_gets_a_400_with_a_message(server, body, message):
    answer = raw(server, post(body))
    assert status(answer) == 400, answer[:300]
    assert message in answer


def test_content_length_is_not_trusted(server):
    started = time.monotonic()
    # Negative: used to hang a thread reading "to the end"; now answered at once, although
    # the client keeps its side of the connection open.
    assert status(raw(server, post(good(), length="-5"))) == 400
    assert status(raw(server, post(good(), length="12abc"))) == 400
    assert status(raw(server, post(good(), length=None))) == 411
    assert status(raw(server, post(b"", length=str(MAX_BODY_BYTES + 1)))) == 413
    assert time.monotonic() - started < 5


def test_large_inputs_are_split_by_the_client_and_vectors_stay_in_order(server):
    texts = [f"text number {i} about crawling" for i in range(MAX_TEXTS * 2 + 5)]
    vectors = server_client.remote_encode(url_of(server), texts, MODEL, "float32", 64, TOKEN)
    assert vectors.shape == (len(texts), 384)
    tail = server_client.remote_encode(url_of(server), texts[-3:], MODEL, "float32", 64, TOKEN)
    assert np.abs(vectors[-3:] - tail).max() < 1e-5


def hostile_request(rng: random.Random) -> tuple[bytes, bool]:
    """One malformed or oversized request, and whether it is valid HTTP (so must get a 4xx)."""
    kind = rng.randrange(12)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))), False
    if kind == 1:
        return post(good(), length=str(-rng.randrange(1, 10**9))), True
    if kind == 2:
        return post(b"", length=str(MAX_BODY_BYTES + rng.randrange(1, 10**12))), True
    if kind == 3:
        return post(good(), length=None), True
    if kind == 4:
        value = rng.choice([[], {}, "x", 1, None, [[1]], {"texts": {}}, {"texts": [None]}])
        return post(json.dumps(value).encode()), True
    if kind == 5:
        return post(good(batch_size=rng.choice([0, -1, 10**9, 1.5, "a", None, []]))), True
    if kind == 6:
        return post(good(texts=["y" * (MAX_TEXT_CHARS + rng.randrange(1, 1000))])), True
    if kind == 7:
        return post(good(texts=["z"] * (MAX_TEXTS + rng.randrange(1, 5000)))), True
    if kind == 8:
        return post(good(), token=rng.choice([None, "", "Bearer", TOKEN[:-1], TOKEN + "x"])), True
    if kind == 9:  # a body shorter than announced, then the client goes away
        return post(good()[:10], length="5000"), False
    if kind == 10:
        return b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", True
    return post(good(), length="0x10"), True


def test_fuzzing_never_stops_a_well_formed_client(server):
    url = url_of(server)
    reference = server_client.remote_encode(url, TEXTS, MODEL, "float32", 8, TOKEN)
    stop = threading.Event()
    served, failures = [], []

    def well_formed_client():
        while not stop.is_set():
            try:
                vectors = server_client.remote_encode(url, TEXTS, MODEL, "float32", 8, TOKEN)
                assert np.abs(vectors - reference).max() < 1e-5
                served.append(time.monotonic())
            except Exception as exc:  # noqa: BLE001 - every failure is reported below
                failures.append(repr(exc))

    answers: list[tuple[bool, int | None, bytes]] = []

    def attacker(seed: int, count: int):
        rng = random.Random(seed)
        sent = 0
        # At least ``count`` requests, and on until the good client has been served 10 times
        # meanwhile: the two must overlap for the test to mean anything.
        while sent < count or len(served) < 10:
            sent += 1
            request, is_http = hostile_request(rng)
            answer = raw(server, request, timeout=20, close_write=not is_http)
            answers.append((is_http, status(answer), request[:80]))

    # Idle connections that never send a byte: each holds a thread only until the read
    # timeout, and there are fewer of them than the connection limit.
    idle = [socket.create_connection(("127.0.0.1", server.server_address[1])) for _ in range(8)]
    client = threading.Thread(target=well_formed_client)
    client.start()
    attackers = [threading.Thread(target=attacker, args=(seed, 75)) for seed in range(4)]
    for thread in attackers:
        thread.start()
    for thread in attackers:
        thread.join(timeout=300)
    stop.set()
    client.join(timeout=60)
    for sock in idle:
        sock.close()

    assert len(answers) >= 300
    assert not failures, failures[:5]
    assert len(served) >= 10
    gaps = np.diff(served)
    assert gaps.max() < 10, f"the well-formed client waited {gaps.max():.1f} s"
    for is_http, code, request in answers:
        if is_http:
            assert code is not None and 400 <= code < 500, (code, request)
    assert server_client.health(url, TOKEN)["encoded"] >= len(TEXTS) * len(served)


def test_a_full_queue_or_too_many_connections_get_503_at_once(server):
    import queue

    jobs, connections = server.jobs, server.connections
    held = 0
    try:
        # Every queue slot taken (the encoder keeps waiting on the real queue meanwhile).
        server.jobs = queue.Queue(maxsize=1)
        server.jobs.put_nowait(object())
        started = time.monotonic()
        answer = raw(server, post(good()))
        assert status(answer) == 503 and b"Retry-After: 1" in answer
        with pytest.raises(server_client.EmbeddingServerError, match="503"):
            server_client._post(url_of(server), TEXTS, MODEL, "float32", 8, TOKEN, timeout=1)
        assert time.monotonic() - started < 10
        server.jobs = jobs
        # Every connection slot taken: answered without a thread, then closed. The slots are
        # taken from the server's own semaphore, waiting for the connections above to finish
        # and release theirs (swapping the semaphore raced with those releases).
        for _ in range(embedding_server.MAX_CONNECTIONS):
            assert connections.acquire(timeout=10)
            held += 1
        answer = raw(server, post(good()))
        assert status(answer) == 503
    finally:
        server.jobs = jobs
        for _ in range(held):
            connections.release()
    assert server_client.health(url_of(server), TOKEN) is not None
