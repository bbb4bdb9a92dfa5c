"""A real registry for the tests: Debian's ``docker-registry`` (CNCF distribution 2.8) on a free port of
127.0.0.1, storage in a temporary directory, a config written here (never the packaged one, which listens
on every interface), stopped by PID. Modes: anonymous, htpasswd (bcrypt), htpasswd over TLS (a
self-signed certificate for IP:127.0.0.1) and bearer tokens from :class:`TokenServer` (RS256 JWTs with an
``x5c`` header). Also a loopback TCP proxy that injects faults."""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.server
import ipaddress
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER, PASSWORD = "ocitar-user", "s3cr3t-Pa55w0rd-xyzzy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(dirpath: Path, name: str, ca: bool = False) -> tuple[Path, Path, Any, Any]:
    """A self-signed certificate for IP:127.0.0.1 and localhost: (cert path, key path, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dirpath / f"{name}.crt", dirpath / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return cert_path, key_path, cert, key


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenServer:
    """A token realm: GET with Basic credentials, or POST ``grant_type=password|refresh_token``; answers
    RS256 JWTs granting what was asked for to the one known user. ``ttl`` is the token lifetime;
    ``requests`` counts token requests."""

    def __init__(self, dirpath: Path, service: str, issuer: str, ttl: int = 300) -> None:
        from cryptography.hazmat.primitives import serialization

        self.cert_path, _, cert, self.key = self_signed(dirpath, "token")
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.service, self.issuer, self.ttl = service, issuer, ttl
        self.requests = 0
        self.expire_next = 0
        self.refresh_token = "refresh-" + os.urandom(8).hex()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _answer(self, user_ok: bool, query: dict[str, list[str]]) -> None:
                outer.requests += 1
                if not user_ok:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps(outer.issue(query.get("scope", []))).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                self._answer(self.headers.get("authorization") == expected, q)

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                q = urllib.parse.parse_qs(self.rfile.read(n).decode())
                grant = q.get("grant_type", [""])[0]
                ok = (grant == "password" and q.get("password", [""])[0] == PASSWORD) or (
                    grant == "refresh_token" and q.get("refresh_token", [""])[0] == outer.refresh_token
                )
                self._answer(ok, {"scope": [s for v in q.get("scope", []) for s in v.split(" ")]})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def issue(self, scopes: list[str]) -> dict[str, Any]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for s in scopes:
            kind, _, rest = s.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        if self.expire_next > 0:
            self.expire_next -= 1
            now -= 600
        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": USER,
            "aud": self.service,
            "exp": now + self.ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return {"token": f"{signing}.{_b64(sig)}", "expires_in": self.ttl, "issued_at": ""}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class RegistryServer:
    """One running ``docker-registry``."""

    host: str
    proc: subprocess.Popen[bytes]
    log: Path
    storage: Path
    ca_file: Path | None = None
    token: TokenServer | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.token is not None:
            self.token.stop()


def start_registry(binary: str, dirpath: Path, mode: str, htpasswd: str | None = None) -> RegistryServer:
    """Start a registry in ``mode`` (``anonymous``, ``htpasswd``, ``tls``, ``token``) under ``dirpath``."""
    dirpath.mkdir(parents=True, exist_ok=True)
    port = free_port()
    storage = dirpath / "storage"
    storage.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}, "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "ocitar-tests"},
    }
    ca_file = None
    token = None
    if mode in ("htpasswd", "tls"):
        assert htpasswd is not None
        pw = dirpath / "htpasswd"
        subprocess.run([htpasswd, "-Bbc", str(pw), USER, PASSWORD], check=True, capture_output=True)
        config["auth"] = {"htpasswd": {"realm": "ocitar-tests", "path": str(pw)}}
    if mode == "tls":
        cert, key, _, _ = self_signed(dirpath, "registry")
        config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        ca_file = cert
    if mode == "token":
        token = TokenServer(dirpath, service="ocitar-registry", issuer="ocitar-token-server")
        config["auth"] = {
            "token": {
                "realm": token.realm,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.cert_path),
            }
        }
    cfg = dirpath / "config.yml"
    cfg.write_text(json.dumps(config))  # YAML is a superset of JSON
    log = dirpath / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
    scheme = "https" if mode == "tls" else "http"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"docker-registry did not listen on {port}") from None
            time.sleep(0.05)
    del scheme
    return RegistryServer(f"127.0.0.1:{port}", proc, log, storage, ca_file, token)


def catalog(server: RegistryServer) -> list[str]:
    """The repositories of an anonymous plain-HTTP registry."""
    with urllib.request.urlopen(f"http://{server.host}/v2/_catalog") as r:
        return list(json.load(r)["repositories"] or [])


class FaultProxy:
    """A loopback TCP proxy in front of ``target`` (``host:port``). ``fault(conn_index, direction, data,
    total)`` may return bytes to send instead of ``data``, or ``None`` to cut the connection. Every
    connection is bounded in time (30 s)."""

    def __init__(self, target: str, fault: Callable[[int, str, bytes, int], bytes | None] | None = None) -> None:
        self.target = target
        self.fault = fault
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            threading.Thread(target=self._serve, args=(client, index), daemon=True).start()

    def _serve(self, client: socket.socket, index: int) -> None:
        h, p = self.target.rsplit(":", 1)
        upstream = socket.create_connection((h, int(p)), timeout=30)
        client.settimeout(30)
        cut = threading.Event()

        def pump(src: socket.socket, dst: socket.socket, direction: str) -> None:
            total = 0
            try:
                while not cut.is_set():
                    data = src.recv(65536)
                    if not data:
                        break
                    if direction == "up":
                        self.requests.append(data)
                    out: bytes | None = data
                    if self.fault is not None:
                        out = self.fault(index, direction, data, total)
                    total += len(data)
                    if out is None:
                        cut.set()
                        break
                    dst.sendall(out)
            except OSError:
                pass
            finally:
                cut.set()
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        t = threading.Thread(target=pump, args=(upstream, client, "down"), daemon=True)
        t.start()
        pump(client, upstream, "up")
        t.join(timeout=30)
        client.close()
        upstream.close()

    def stop(self) -> None:
        self._stop = True
        self.sock.close()


Answer = tuple[int, dict[str, str], int, Callable[[], Iterator[bytes]]]


def answer(status: int, body: bytes, content_type: str = "application/json") -> Answer:
    """A whole body."""
    return status, {"content-type": content_type}, len(body), lambda: iter([body])


def repeated(status: int, head: bytes, chunk: bytes, times: int, tail: bytes = b"") -> Answer:
    """A body streamed as ``head + chunk * times + tail`` (never held whole)."""

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(times):
            yield chunk
        yield tail

    return status, {"content-type": "application/json"}, len(head) + len(chunk) * times + len(tail), chunks


class HostileServer:
    """A loopback plain-HTTP server that speaks just enough of the distribution API (and, with
    ``token=True``, of a token realm) for a client to reach the one answer a test makes hostile:
    ``answers`` maps ``"token"`` or ``"manifest"`` to an :data:`Answer`. Without one, the token realm gives
    a token and every manifest is 404. ``paths`` lists the requests seen."""

    def __init__(self, answers: dict[str, Answer], token: bool = False) -> None:
        self.answers = answers
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _send(self, a: Answer) -> None:
                status, headers, length, chunks = a
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(length))
                self.end_headers()
                # The client stops reading a body it refuses: that is the point, not an error.
                with contextlib.suppress(OSError):
                    for c in chunks():
                        self.wfile.write(c)

            def do_GET(self) -> None:
                outer.paths.append(self.path)
                if self.path.startswith("/token"):
                    self._send(outer.answers.get("token", answer(200, b'{"token": "t0k3n", "expires_in": 300}')))
                elif self.path == "/v2/":
                    if token and self.headers.get("authorization") is None:
                        realm = f"http://{outer.host}/token"
                        self.send_response(401)
                        self.send_header("www-authenticate", f'Bearer realm="{realm}",service="hostile"')
                        self.send_header("content-length", "0")
                        self.end_headers()
                    else:
                        self._send(answer(200, b"{}"))
                elif "/manifests/" in self.path:
                    self._send(outer.answers.get("manifest", answer(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')))
                else:
                    self._send(answer(404, b""))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


ACCESS = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/1\.1" (\d{3}) ')


def access_log(server: RegistryServer, repository: str) -> list[tuple[str, str, int]]:
    """The registry's own access log (method, path, status) of requests under ``/v2/REPOSITORY/``, in
    order."""
    prefix = f"/v2/{repository}/"
    return [
        (m.group(1), m.group(2), int(m.group(3)))
        for m in ACCESS.finditer(server.log_text())
        if m.group(2).startswith(prefix)
    ]
