"""The lean HTTP/1.1 client (`tfgrpo.llm.http1`) against real sockets: keep-alive reuse, the framings of an
answer (length, chunked, read to the close), gzip, headers of an error, and every way an exchange breaks."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket

import pytest

from tfgrpo.llm.http1 import OriginPool, UpstreamRemoteProtocolError
from tfgrpo.llm.http_passthrough import PassthroughHTTP
from tfgrpo.llm.openai_shapes import UpstreamHTTPError


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


def _serve(answers, *, keep_open: bool = True):
    """A server that answers each request on a connection with the next of `answers` (bytes, or None: close
    without answering), and counts connections and requests."""
    seen = {"connections": 0, "requests": [], "heads": []}

    async def handle(reader, writer):
        seen["connections"] += 1
        try:
            while True:
                try:
                    head, body = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                seen["heads"].append(head)
                seen["requests"].append(body)
                out = answers[len(seen["requests"]) - 1]
                if out is None:
                    return
                if callable(out):
                    await out(writer)
                    return
                writer.write(out)
                await writer.drain()
                if not keep_open:
                    return
        finally:
            writer.close()

    return handle, seen


def _ok(content: str = "ok", extra: bytes = b"") -> bytes:
    body = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


def _run(answers, requests, *, keep_open=True, timeout=10.0):
    handle, seen = _serve(answers, keep_open=keep_open)

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        pool = OriginPool(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1/chat/completions",
                          {"Authorization": "Bearer k", "Content-Type": "application/json"})
        out = []
        try:
            for body in requests:
                try:
                    out.append(await pool.post(body, timeout=timeout))
                except Exception as exc:  # noqa: BLE001 - the test looks at what came out
                    out.append(exc)
                await asyncio.sleep(0.05)  # a server's close reaches the client before the next request
        finally:
            pool.close()
            srv.close()
            await srv.wait_closed()
        return out

    return asyncio.run(main()), seen


def test_keep_alive_reuses_one_connection_and_sends_the_prefix():
    out, seen = _run([_ok("a"), _ok("b"), _ok("c")], [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}'])
    assert [json.loads(a.body)["choices"][0]["message"]["content"] for a in out] == ["a", "b", "c"]
    assert seen["connections"] == 1 and seen["requests"] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    head = seen["heads"][0].lower()
    assert head.startswith(b"post /v1/chat/completions http/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in head and b"authorization: bearer k" in head and b"content-length: 8" in head


def test_a_connection_the_server_closed_is_not_reused():
    """Connection: close, or the server dropping an idle connection: the next request opens a new one."""
    close = _ok("x", b"Connection: close\r\n")
    out, seen = _run([close, _ok("y")], [b"{}", b"{}"])
    assert all(a.status == 200 for a in out) and seen["connections"] == 2
    out, seen = _run([_ok("x"), _ok("y")], [b"{}", b"{}"], keep_open=False)
    assert all(a.status == 200 for a in out) and seen["connections"] == 2


def test_chunked_read_to_close_and_gzip_bodies():
    payload = json.dumps({"choices": [{"message": {"content": "é"}}]}).encode()
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (10, payload[:10])
               + b"%x\r\n%s\r\n" % (len(payload) - 10, payload[10:]) + b"0\r\n\r\n")

    async def to_close(writer):  # HTTP/1.0 style: no length, the close ends the body
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + payload)
        await writer.drain()

    packed = gzip.compress(payload)
    zipped = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(packed), packed)
    out, seen = _run([chunked, zipped, to_close], [b"{}", b"{}", b"{}"])
    assert [a.body for a in out] == [payload, payload, payload]
    assert seen["connections"] == 1  # chunked and gzip kept the connection; the last one closed it


def test_error_answers_keep_their_headers_case_insensitively():
    err = b'{"error": {"message": "slow down"}}'
    limited = (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: %d\r\n\r\n%s" % (len(err), err))
    [a], _ = _run([limited], [b"{}"])
    assert a.status == 429 and a.reason == "Too Many Requests" and a.headers.get("retry-after") == "7"
    assert a.body == err


def test_broken_exchanges_raise_the_errors_the_gateway_classifies():
    async def garbage(writer):
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async def cut(writer):  # a length promised, half of it sent, then the close
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"choi")
        await writer.drain()

    out, _ = _run([None, garbage, cut], [b"{}", b"{}", b"{}"])
    assert all(isinstance(e, UpstreamRemoteProtocolError) for e in out), out
    assert "closed the connection" in str(out[0]) and "malformed" in str(out[1])


def test_a_hanging_server_times_out_and_its_connection_is_dropped():
    async def hang(writer):
        await asyncio.sleep(5)

    out, seen = _run([hang, _ok("after")], [b"{}", b"{}"], timeout=0.3)
    assert isinstance(out[0], TimeoutError)
    assert out[1].status == 200 and seen["connections"] == 2  # the timed-out connection was not reused


def test_nothing_listening_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused

    async def main():
        pool = OriginPool(f"http://127.0.0.1:{port}/v1/chat/completions", {})
        try:
            await pool.post(b"{}", timeout=5)
        finally:
            pool.close()

    with pytest.raises(ConnectionError, match="cannot connect to the upstream"):
        asyncio.run(main())


def test_not_an_http_url_is_refused_with_its_name():
    with pytest.raises(ValueError, match="not an http"):
        OriginPool("ftp://example.org/x", {})


def test_passthrough_send_raises_upstream_http_error_with_retry_after():
    """Through `PassthroughHTTP.send`, the gateway's transport: an error status becomes `UpstreamHTTPError`
    with the upstream's message and headers (the gateway's 429 handling reads Retry-After from them)."""
    err = b'{"error": {"message": "quota"}}'
    handle, _ = _serve([b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(err), err)])

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        http = PassthroughHTTP(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1", "k")
        try:
            await http.send({"model": "m", "messages": []}, timeout=5)
        finally:
            await http.aclose()
            srv.close()
            await srv.wait_closed()

    with pytest.raises(UpstreamHTTPError) as info:
        asyncio.run(main())
    assert info.value.status_code == 429 and "quota" in str(info.value)
    assert info.value.response.headers.get("Retry-After") == "3"


def _self_signed(tmp_path):
    """A key and a self-signed certificate for localhost and 127.0.0.1 (files in tmp_path)."""
    import datetime
    import ipaddress

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_verifies_the_server_and_reuses_the_tls_connection(tmp_path, monkeypatch):
    """An https upstream by name (localhost may resolve to ::1 first, where nothing listens: the next address is
    tried): the certificate is verified against the default trust store (here SSL_CERT_FILE), the TLS
    connection is kept alive; an untrusted certificate is a connection error."""
    import ssl

    cert_file, key_file = _self_signed(tmp_path)
    handle, seen = _serve([_ok("a"), _ok("b")])

    async def main():
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_file, key_file)
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        pool = OriginPool(f"https://localhost:{srv.sockets[0].getsockname()[1]}/v1/chat/completions", {})
        try:
            return [await pool.post(b"{}", timeout=10), await pool.post(b"{}", timeout=10)]
        except Exception as exc:  # noqa: BLE001
            return exc
        finally:
            pool.close()
            srv.close()
            await srv.wait_closed()

    untrusted = asyncio.run(main())
    assert isinstance(untrusted, ConnectionError) and "certificate" in str(untrusted).lower()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    seen["connections"], seen["requests"] = 0, []
    answers = asyncio.run(main())
    assert [a.status for a in answers] == [200, 200] and seen["connections"] == 1
