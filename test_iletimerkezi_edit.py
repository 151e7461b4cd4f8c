"""Tests for iletimerkezi_edit.

Everything runs offline against local servers: ``FakeService`` keeps an address
book and answers like api.iletimerkezi.com (status codes mirrored into the HTTP
status line, Turkish UTF-8 reason phrases, pretty-printed ``text/xml`` bodies);
raw sockets stand in for networks that fail.
"""

import base64
import codecs
import collections
import contextlib
import csv
import dataclasses
import errno
import datetime
import hashlib
import hmac
import http.server
import importlib.util
import io
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc
import types
import urllib.parse
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import pytest

import iletimerkezi_edit as ie

HERE = Path(__file__).resolve().parent
MODULE = HERE / "iletimerkezi_edit.py"

KEY = "test-key"
SECRET = "test-secret"
# The wire-facts test vector, written out so that a change of algorithm shows.
HASH = "44aa65038366988a92b488b7f92e915ba39f19c9668f69cda69d4b627c1980c6"
CREDS = ie.Credentials(KEY, HASH)
PATH = "/v1/edit-contact"

# What the real server sends, per wire-facts.md.
SERVER_MESSAGES = {
    200: "İşlem başarılı",
    400: "İstek çözümlenemedi",
    401: "Üyelik bilgileri hatalı",
    404: "API istek yapılan yönteme sahip değil",
    463: "Böyle bir grup bulunamadı.",
    465: "Kişi bulunamadı.",
    466: "Hatalı numara",
    472: "Ad, soyad, cep telefonu, email alanlarından en az biri dolu olmalıdır.",
    473: "Özel alan bulunamadı.",
    503: "Sunucu geçici olarak servis dışı",
}

# The provider's sample response, as documented.
SAMPLE_RESPONSE = b"""<?xml version="1.0" encoding="UTF-8"?>
<response>
  <status>
    <code>200</code>
    <message>\xc4\xb0\xc5\x9flem ba\xc5\x9far\xc4\xb1l\xc4\xb1</message>
  </status>
  <contact>
    <id>1009</id>
    <name>API</name>
    <surname>Test User 2</surname>
    <email>[email protected]</email>
    <gsm>+905056663325</gsm>
    <custom_fields>
      <custom_field>
        <id>1</id>
        <value>27/09/2024</value>
      </custom_field>
      <custom_field>
        <id>2</id>
        <value>cip</value>
      </custom_field>
    </custom_fields>
    <groups>
      <id>9</id>
      <id>12</id>
    </groups>
  </contact>
</response>
"""


# ---------------------------------------------------------------------------
# A local server that behaves like api.iletimerkezi.com, and what every section shares
# ---------------------------------------------------------------------------


def response_document(code, contact=None):
    """A pretty-printed response as the real server writes it (CDATA for names, as get-contact shows)."""

    def text(value):
        return xml_escape(value).replace("\r", "&#13;")

    def cdata(value):
        return text(value) if "]]>" in value or "\r" in value else "<![CDATA[" + value + "]]>"

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<response>",
        "  <status>",
        f"    <code>{code}</code>",
        f"    <message>{SERVER_MESSAGES.get(code, 'Hata')}</message>",
        "  </status>",
    ]
    if contact is not None:
        lines += ["  <contact>", f"    <id>{contact['id']}</id>"]
        for tag in ("name", "surname", "email"):
            lines.append(f"    <{tag}>{cdata(contact[tag])}</{tag}>" if contact[tag] else f"    <{tag}/>")
        lines.append(f"    <gsm>{text(contact['gsm'])}</gsm>")
        lines.append("    <custom_fields>")
        for field_id, value in sorted(contact["fields"].items()):
            lines.append(f"      <custom_field><id>{field_id}</id><value>{text(value)}</value></custom_field>")
        lines.append("    </custom_fields>")
        lines.append("    <groups>" + "".join(f"<id>{group}</id>" for group in contact["groups"]) + "</groups>")
        lines.append("  </contact>")
    lines.append("</response>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def http_answer(status, payload, content_type="text/xml; charset=utf-8", extra=(), length=None, connection="keep-alive"):
    """The bytes of an answer with nginx's headers and the real server's UTF-8 Turkish reason phrase."""
    # http.server would encode the reason phrase as Latin-1; the real server sends UTF-8.
    reason = SERVER_MESSAGES.get(status, "Hata")
    head = [f"HTTP/1.1 {status} {reason}"]
    head += [
        "Server: nginx",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(payload) if length is None else length}",
        f"Connection: {connection}",
        "Cache-Control: no-store, no-cache, must-revalidate",
        "Set-Cookie: PHPSESSID=fake; path=/",
    ]
    head += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + payload


RETRY_NOW = (("Retry-After", "0"),)


PEOPLE = range(5000, 6000)  # contact ids the fake service knows besides 1009


class FakeService:
    """An address book with the rules the provider documents, and a log of what it was sent."""

    def __init__(self):
        self.contacts = {
            1009: {
                "id": 1009,
                "name": "API",
                "surname": "Test User 2",
                "email": "[email protected]",
                "gsm": "+905056663325",
                "fields": {1: "27/09/2024", 2: "cip"},
                "groups": [9, 12],
            }
        }
        self.groups = {9, 12, 15}
        self.custom_field_ids = {1, 2, 3}
        self.requests = []  # (path, headers, body) per request
        self.connections = 0
        self.canned = []  # (status, body, content_type, extra headers) served before the rules
        self.url = ""
        self.lock = threading.Lock()
        # Knobs for sessions: per-name delays and names whose request is dropped unanswered, how long an idle
        # kept-alive connection stays open (nginx: 75 s), and what the server saw of connections and concurrency.
        self.delays = {}
        self.dropped_names = set()
        self.unavailable_once = set()  # names whose first request gets a 503
        self.idle_timeout = None
        self.closed = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.applied = []  # (id, name) of every edit stored and answered 200, in the order they were stored

    def answer(self, path, body):
        if self.canned:
            return self.canned.pop(0)
        code, contact = self._apply(path, body)
        return code, response_document(code, contact), "text/xml; charset=utf-8", ()

    def _apply(self, path, body):
        if path != PATH:
            return 404, None
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return 400, None
        if root.tag != "request" or root.find("contact") is None:
            return 400, None
        if root.findtext("authentication/key") != KEY or not hmac.compare_digest(
            root.findtext("authentication/hash") or "", HASH
        ):
            return 401, None
        element = root.find("contact")
        contact_id = int(element.findtext("id"))
        stored = self.contacts.get(contact_id)
        if stored is None and contact_id in PEOPLE:  # the people of people(): copies of 1009 with ids of their own
            stored = dict(self.contacts[1009], id=contact_id)
        if stored is None:
            return 465, None
        edited = dict(stored, fields=dict(stored["fields"]), groups=list(stored["groups"]))
        for tag in ("name", "surname", "email", "gsm"):
            child = element.find(tag)
            if child is not None:
                edited[tag] = child.text or ""
        if edited["gsm"] and not re.fullmatch(r"\+?(90)?5[0-9]{9}", edited["gsm"]):
            return 466, None
        fields = element.find("custom_fields")
        if fields is not None:
            if len(fields) == 0:
                edited["fields"] = {}
            for field in fields.findall("custom_field"):
                field_id = int(field.findtext("id"))
                if field_id not in self.custom_field_ids:
                    return 473, None
                edited["fields"][field_id] = field.findtext("value") or ""
        groups = element.find("groups")
        if groups is not None:
            edited["groups"] = [int(group.text) for group in groups.findall("id")]
            if not set(edited["groups"]) <= self.groups:
                return 463, None
        if not any(edited[tag] for tag in ("name", "surname", "email", "gsm")):
            return 472, None
        self.contacts[edited["id"]] = edited
        self.applied.append((edited["id"], element.findtext("name")))
        return 200, edited


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # connections stay open between requests, as nginx keeps them

    def setup(self):
        self.timeout = self.server.service.idle_timeout  # a connection idle this long is closed
        super().setup()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        service = self.server.service
        try:
            name = ET.fromstring(body).findtext("contact/name")
        except ET.ParseError:
            name = None
        with service.lock:
            service.requests.append((self.path, dict(self.headers), body))
            service.in_flight += 1
            service.most_in_flight = max(service.most_in_flight, service.in_flight)
        try:
            time.sleep(service.delays.get(name, 0))
            if name in service.dropped_names:
                self.close_connection = True  # closed without a word
                return
            with service.lock:
                if name in service.unavailable_once:
                    service.unavailable_once.discard(name)
                    status, payload, content_type, extra = 503, response_document(503), "text/xml", RETRY_NOW
                else:
                    status, payload, content_type, extra = service.answer(self.path, body)
        finally:
            with service.lock:
                service.in_flight -= 1
        self.send_raw(status, payload, content_type, extra)

    def send_raw(self, status, payload, content_type, extra=()):
        self.wfile.write(http_answer(status, payload, content_type, extra))
        self.wfile.flush()

    def log_message(self, format, *args):
        pass


class FakeHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # workers that connect at once are not made to wait for a SYN sent again a second later

    def get_request(self):
        request = super().get_request()
        self.service.connections += 1
        return request

    def handle_error(self, request, client_address):
        pass  # clients that give up (a refused certificate, a timeout) are part of the tests

    def shutdown_request(self, request):
        super().shutdown_request(request)
        self.service.closed += 1


class FakeHTTPServer6(FakeHTTPServer):
    address_family = socket.AF_INET6


@contextlib.contextmanager
def running(service, bind="127.0.0.1", tls=None):
    """Serve ``service`` on a free port of ``bind`` (an IPv4 or IPv6 address); ``tls`` is a server-side SSLContext
    for https://."""
    server = (FakeHTTPServer6 if ":" in bind else FakeHTTPServer)((bind, 0), FakeHandler)
    server.service = service
    if tls is not None:
        # The handshake happens on first read, in the handler's thread, not in accept().
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.005}, daemon=True)
    thread.start()
    scheme = "http" if tls is None else "https"
    host = f"[{bind}]" if ":" in bind else bind
    service.url = f"{scheme}://{host}:{server.server_address[1]}{PATH}"
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def service():
    with running(FakeService()) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_proxy_from_this_machine(monkeypatch):
    """The machine's proxy variables must not change what a test sends; tests that want one set it."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)


class LoopbackListener:
    """A TCP listener on 127.0.0.1 that serves each connection on a thread of its own, until left."""

    def __init__(self):
        self.connections = 0
        self.released = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.005)  # so that the accept loop notices release
        self.port = self.listener.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self):
        self.threads[0].start()
        return self

    def __exit__(self, *exc_info):
        self.released.set()
        for thread in list(self.threads):
            thread.join(10)
        self.listener.close()

    def _accept(self):
        while not self.released.is_set():
            try:
                connection, _ = self.listener.accept()
            except socket.timeout:
                continue
            thread = threading.Thread(target=self._serve, args=(connection, self.connections), daemon=True)
            self.connections += 1
            self.threads.append(thread)
            thread.start()

    def _serve(self, connection, number):
        raise NotImplementedError


class FaultServer(LoopbackListener):
    """A TCP server that reads each request, logs it, then acts out ``behaviour(connection, server, request)``.

    The n-th connection gets the n-th behaviour; the last one repeats.
    """

    def __init__(self, *behaviours):
        super().__init__()
        self.behaviours = behaviours
        self.requests = []
        self.url = f"http://127.0.0.1:{self.port}{PATH}"

    def _serve(self, connection, number):
        behaviour = self.behaviours[min(number, len(self.behaviours) - 1)]
        with connection:
            try:
                request = read_request(connection)
                if request:
                    self.requests.append(request)
                behaviour(connection, self, request)
            except OSError:
                pass  # the client gave up first


def read_request(connection):
    """One whole HTTP request, or ``b""`` if the client stops before sending one."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: *([0-9]+)", head, re.I).group(1))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return b""
        body += chunk
    return head + b"\r\n\r\n" + body


# Behaviours for FaultServer: what a server, a proxy or the network can do after a request.


def answer(status, payload, content_type="text/xml; charset=utf-8", extra=()):
    def behaviour(connection, server, request):
        connection.sendall(http_answer(status, payload, content_type, extra))

    return behaviour


def close(connection, server, request):
    pass  # closed without a word


def hang(connection, server, request):
    server.released.wait(30)


def reset(connection, server, request):
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def dribble(connection, server, request):
    # A whole, valid answer, a byte every 20 ms: about 30 s in all.
    for byte in http_answer(200, SAMPLE_RESPONSE):
        if server.released.wait(0.02):
            return
        connection.sendall(bytes([byte]))


def cut_short(connection, server, request):
    connection.sendall(http_answer(200, SAMPLE_RESPONSE, length=len(SAMPLE_RESPONSE) + 500))


def endless(connection, server, request):
    # 21 MiB that would parse if read whole: "<response>", spaces, the rest of the sample.
    head, tail = SAMPLE_RESPONSE.split(b"<response>")
    block = b" " * (1 << 16)
    size = len(head) + len(b"<response>") + 21 * 16 * len(block) + len(tail)
    connection.sendall(http_answer(200, head + b"<response>", length=size))
    for _ in range(21 * 16):
        connection.sendall(block)
    connection.sendall(tail)


def unused_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def eventually(condition, seconds=5.0):
    """Whether ``condition()`` holds within ``seconds``: servers see closes a moment after clients make them."""
    ends = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > ends:
            return False
        time.sleep(0.01)
    return True


def named(count, prefix="n"):
    """Edits of one contact (1009): a bulk run sends them one after another, in input order."""
    return [ie.Contact(1009, name=f"{prefix}{number}") for number in range(count)]


def people(count, prefix="p"):
    """Edits of ``count`` different contacts: a bulk run may send them side by side."""
    return [ie.Contact(PEOPLE[number], name=f"{prefix}{number}") for number in range(count)]


@pytest.fixture
def quick_backoff(monkeypatch):
    """Waits between tries of about 10 ms, so that fault tests take the time of their timeouts only."""
    monkeypatch.setattr(ie._RetryPolicy, "BACKOFF_FIRST", 0.01)


def edit_once(via, credentials, contact, **options):
    """One edit through the function or through a new Session: both must keep the same rules."""
    if via == "function":
        return ie.edit_contact(credentials, contact, **options)
    with ie.Session(credentials, **options) as session:
        return session.edit_contact(contact)


VIAS = ["function", "session"]


def test_fake_service_speaks_like_the_real_one(service):
    """Guards the other tests: the fake must send UTF-8 reason phrases and mirrored codes."""
    port = int(service.url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        body = b"<request/>"
        connection.sendall(
            b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = b""
        while b"</response>" not in answer:
            answer += connection.recv(65536)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == "HTTP/1.1 400 İstek çözümlenemedi".encode("utf-8")
    assert b"content-type: text/xml; charset=utf-8" in answer.lower()
    assert b"<code>400</code>" in answer


# ---------------------------------------------------------------------------
# The module as a whole: what importing it costs, its type hints, its errors
# ---------------------------------------------------------------------------


def test_importing_the_module_loads_none_of_the_command_line_s_own_modules():
    code = (
        "import sys; import iletimerkezi_edit as ie; "
        "ie.build_request(ie.Credentials.from_secret('k', 's'), ie.Contact(1, name='x')); "
        f"ie.parse_response({SAMPLE_RESPONSE!r}); "
        "heavy = ['concurrent.futures', 'asyncio', 'argparse', 'zipfile']; "
        "print(' '.join(name for name in heavy if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=str(HERE), stdout=subprocess.PIPE, check=True)
    assert done.stdout.decode().strip() == ""


def test_type_hints_of_every_public_name_resolve():
    script = """
import inspect, sys, typing
import iletimerkezi_edit as ie
resolved = 0
for name in ie.__all__:
    value = getattr(ie, name)
    if not (inspect.isfunction(value) or inspect.isclass(value)):
        continue  # constants, and the type alias Result
    targets = [value]
    if inspect.isclass(value):
        targets += [member for _, member in inspect.getmembers(value, inspect.isfunction)]
        targets += [member.__func__ for _, member in inspect.getmembers(value, inspect.ismethod)]
    for target in targets:
        typing.get_type_hints(target)
        resolved += 1
hints = typing.get_type_hints(ie.edit_contact)
import ssl
assert hints["ssl_context"] == typing.Optional[ssl.SSLContext], hints["ssl_context"]
assert typing.get_type_hints(ie.Session.__init__)["proxy"] == typing.Optional[str]
print(resolved)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=str(HERE), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert int(done.stdout) > 30


def test_validation_error_is_a_value_error():
    assert issubclass(ie.ValidationError, ValueError)
    assert issubclass(ie.ValidationError, ie.IletiMerkeziError)


def test_errors_survive_pickling_for_multiprocessing():
    import pickle

    for error in (ie.APIError(463, "Böyle bir grup bulunamadı.", 463), ie.AuthenticationError(401, "x", 401),
                  ie.ProxyError("127.0.0.1:3128", 407, "Proxy Authentication Required", "api:443"),
                  ie.ResponseError("not XML", 502), ie.TransportError("no answer"), ie.ValidationError("bad")):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), str(copy), vars(copy)) == (type(error), str(error), vars(error))


# ---------------------------------------------------------------------------
# sign and Credentials
# ---------------------------------------------------------------------------


def test_sign_matches_the_published_test_vector():
    assert ie.sign(KEY, SECRET) == HASH
    assert HASH == hmac.new(b"test-secret", b"test-key", "sha256").hexdigest()


def test_sign_uses_the_secret_as_hmac_key_and_utf8():
    key, secret = "anahtar-ş", "gizli-İ-😀"
    expected = hmac.new(secret.encode("utf-8"), key.encode("utf-8"), "sha256").hexdigest()
    assert ie.sign(key, secret) == expected
    assert ie.sign(key, secret) != hmac.new(key.encode(), secret.encode(), "sha256").hexdigest()


@pytest.mark.parametrize("key, secret, named", [("", SECRET, "key"), (KEY, "", "secret"), (KEY, b"x", "secret"), (1, SECRET, "key")])
def test_sign_rejects_empty_or_non_string_input(key, secret, named):
    with pytest.raises(ie.ValidationError, match=named):
        ie.sign(key, secret)


def test_credentials_from_secret_computes_the_hash():
    assert ie.Credentials.from_secret(KEY, SECRET) == ie.Credentials(KEY, HASH)


def test_credentials_repr_and_str_show_the_key_never_the_hash():
    credentials = ie.Credentials.from_secret(KEY, SECRET)
    for shown in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert KEY in shown
        assert HASH not in shown and SECRET not in shown


def test_credentials_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CREDS.hash = "0" * 64


def test_an_upper_case_hash_is_kept_and_sent_in_lower_case(service):
    # The server compares lowercase hex; the same hash copied in upper case must not become a 401.
    for credentials in (ie.Credentials(KEY, HASH.upper()),
                        ie.Credentials.from_env({"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_HASH": HASH.upper()}),
                        ie.Credentials.from_env({"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_SECRET": SECRET,
                                                 "ILETIMERKEZI_HASH": HASH.upper()})):
        assert credentials.hash == HASH and credentials == CREDS
        assert ie.edit_contact(credentials, ie.Contact(1009, name="x"), url=service.url).status.code == 200
    assert all(f"<hash>{HASH}</hash>".encode() in body for _, _, body in service.requests)


@pytest.mark.parametrize("bad_hash", ["", "abc", "g" * 64, HASH + "0", " " + HASH, SECRET])
def test_malformed_hash_is_rejected_without_echoing_it(bad_hash):
    with pytest.raises(ie.ValidationError, match="Credentials.hash") as caught:
        ie.Credentials(KEY, bad_hash)
    if bad_hash:
        assert bad_hash not in str(caught.value)


@pytest.mark.parametrize("bad_key", ["", " key", "key\n", "k\x00y", 5])
def test_malformed_key_is_rejected(bad_key):
    with pytest.raises(ie.ValidationError, match="Credentials.key"):
        ie.Credentials(bad_key, HASH)


def test_from_env_with_key_and_secret():
    assert ie.Credentials.from_env({"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_SECRET": SECRET}) == CREDS


def test_from_env_with_key_and_ready_hash():
    assert ie.Credentials.from_env({"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_HASH": HASH}) == CREDS


def test_from_env_accepts_secret_and_hash_that_agree_and_refuses_ones_that_do_not():
    env = {"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_SECRET": SECRET, "ILETIMERKEZI_HASH": HASH}
    assert ie.Credentials.from_env(env) == CREDS
    env["ILETIMERKEZI_HASH"] = "0" * 64
    with pytest.raises(ie.ValidationError, match="ILETIMERKEZI_HASH does not match") as caught:
        ie.Credentials.from_env(env)
    assert SECRET not in str(caught.value) and HASH not in str(caught.value)


@pytest.mark.parametrize(
    "env, named",
    [
        ({}, "ILETIMERKEZI_KEY"),
        ({"ILETIMERKEZI_SECRET": SECRET}, "ILETIMERKEZI_KEY"),
        ({"ILETIMERKEZI_KEY": "", "ILETIMERKEZI_SECRET": SECRET}, "ILETIMERKEZI_KEY"),
        ({"ILETIMERKEZI_KEY": KEY}, "ILETIMERKEZI_SECRET or ILETIMERKEZI_HASH"),
        ({"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_HASH": "not-a-hash"}, "ILETIMERKEZI_HASH"),
        ({"ILETIMERKEZI_KEY": " " + KEY, "ILETIMERKEZI_SECRET": SECRET}, "ILETIMERKEZI_KEY"),
    ],
)
def test_from_env_names_the_missing_or_bad_variable(env, named):
    with pytest.raises(ie.ValidationError, match=named):
        ie.Credentials.from_env(env)


def test_from_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("ILETIMERKEZI_KEY", KEY)
    monkeypatch.setenv("ILETIMERKEZI_SECRET", SECRET)
    monkeypatch.delenv("ILETIMERKEZI_HASH", raising=False)
    assert ie.Credentials.from_env() == CREDS


# -- the provider's names (ILETIMERKEZI_API_KEY, ILETIMERKEZI_API_HASH) beside the older ones -----------------

OTHER_KEY, OTHER_SECRET = "other-key", "other-secret"
OTHER_HASH = hmac.new(OTHER_SECRET.encode(), OTHER_KEY.encode(), hashlib.sha256).hexdigest()
SIGNED_BY_OTHER_SECRET = hmac.new(OTHER_SECRET.encode(), KEY.encode(), hashlib.sha256).hexdigest()  # KEY, wrong secret
CREDENTIAL_VALUES = (KEY, SECRET, HASH, OTHER_KEY, OTHER_SECRET, OTHER_HASH, SIGNED_BY_OTHER_SECRET)
API_KEY, API_HASH = "ILETIMERKEZI_API_KEY", "ILETIMERKEZI_API_HASH"
OLD_KEY, OLD_SECRET, OLD_HASH = "ILETIMERKEZI_KEY", "ILETIMERKEZI_SECRET", "ILETIMERKEZI_HASH"


@pytest.mark.parametrize(
    "env",
    [
        {API_KEY: KEY, API_HASH: HASH},  # the provider's names alone
        {API_KEY: KEY, API_HASH: HASH.upper()},
        {OLD_KEY: KEY, OLD_SECRET: SECRET},  # the older names alone
        {OLD_KEY: KEY, OLD_HASH: HASH},
        {API_KEY: KEY, API_HASH: HASH, OLD_KEY: KEY, OLD_HASH: HASH},  # both families, agreeing
        {API_KEY: KEY, API_HASH: HASH, OLD_KEY: KEY, OLD_HASH: HASH.upper()},  # one hash, in either case
        {API_KEY: KEY, API_HASH: HASH, OLD_KEY: KEY, OLD_SECRET: SECRET},  # a secret that signs to the hash
        {API_KEY: KEY, API_HASH: HASH.upper(), OLD_KEY: KEY, OLD_SECRET: SECRET, OLD_HASH: HASH},  # all five
        {API_KEY: KEY, API_HASH: HASH, OLD_SECRET: SECRET},  # the provider's key with the secret that signs it
        {API_KEY: KEY, OLD_SECRET: SECRET},  # one key, one way to its hash: nothing to disagree
        {OLD_KEY: KEY, API_HASH: HASH},
        {API_KEY: "", API_HASH: "", OLD_KEY: KEY, OLD_SECRET: SECRET},  # set but empty is not set
        {API_KEY: KEY, API_HASH: HASH, OLD_KEY: "", OLD_SECRET: "", OLD_HASH: ""},
    ],
    ids=lambda env: "+".join(f"{name[13:]}{'' if value else '(empty)'}" for name, value in env.items()),
)
def test_from_env_reads_either_family_and_both_when_they_agree(monkeypatch, env):
    assert ie.Credentials.from_env(env) == CREDS
    for name in (API_KEY, API_HASH, OLD_KEY, OLD_SECRET, OLD_HASH):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ie.Credentials.from_env() == CREDS  # os.environ, the default, read the same way


def validation_error_of(call):
    """The ValidationError that ``call()`` raises, caught in this frame, which holds nothing else."""
    try:
        call()
    except ie.ValidationError as error:
        return error
    raise AssertionError("no ValidationError")


@pytest.mark.parametrize(
    "env, named",
    [
        ({API_KEY: KEY}, [API_HASH, OLD_SECRET, OLD_HASH]),  # what would complete it
        ({API_HASH: HASH}, [API_KEY, OLD_KEY]),
        ({API_KEY: KEY, API_HASH: "0" * 63}, [API_HASH]),
        ({API_KEY: KEY, API_HASH: HASH + "0"}, [API_HASH]),
        ({API_KEY: KEY, API_HASH: SECRET}, [API_HASH]),  # the secret pasted where the hash goes
        ({API_KEY: KEY + " ", API_HASH: HASH}, [API_KEY]),
        ({API_KEY: "a\x01b", API_HASH: HASH}, [API_KEY]),
        # Both families, disagreeing: the key,
        ({API_KEY: KEY, API_HASH: HASH, OLD_KEY: OTHER_KEY, OLD_HASH: HASH}, [API_KEY, OLD_KEY]),
        ({API_KEY: OTHER_KEY, API_HASH: OTHER_HASH, OLD_KEY: KEY, OLD_SECRET: SECRET}, [API_KEY, OLD_KEY]),
        ({API_KEY: KEY.upper(), API_HASH: HASH, OLD_KEY: KEY, OLD_HASH: HASH}, [API_KEY, OLD_KEY]),
        # the hash,
        ({API_KEY: KEY, API_HASH: HASH, OLD_KEY: KEY, OLD_HASH: OTHER_HASH}, [API_HASH, OLD_HASH]),
        ({API_KEY: KEY, API_HASH: OTHER_HASH, OLD_HASH: HASH}, [API_HASH, OLD_HASH]),
        # a secret that does not sign to the provider's hash (a secret of another key, or another secret),
        ({API_KEY: KEY, API_HASH: HASH, OLD_KEY: KEY, OLD_SECRET: OTHER_SECRET}, [API_HASH, OLD_SECRET]),
        ({API_KEY: KEY, API_HASH: SIGNED_BY_OTHER_SECRET, OLD_SECRET: SECRET}, [API_HASH, OLD_SECRET]),
        ({API_KEY: KEY, API_HASH: OTHER_HASH, OLD_KEY: KEY, OLD_SECRET: OTHER_SECRET}, [API_HASH, OLD_SECRET]),
        # or all three, with one odd one out.
        ({API_KEY: KEY, API_HASH: HASH, OLD_KEY: KEY, OLD_SECRET: SECRET, OLD_HASH: OTHER_HASH}, [OLD_HASH]),
        ({API_KEY: KEY, API_HASH: OTHER_HASH, OLD_KEY: KEY, OLD_SECRET: SECRET, OLD_HASH: HASH}, [API_HASH]),
    ],
)
def test_from_env_refuses_what_it_cannot_use_naming_the_variables_never_their_values(monkeypatch, env, named):
    with pytest.raises(ie.ValidationError) as caught:
        ie.Credentials.from_env(env)
    message = str(caught.value)
    assert all(name in message for name in named), message
    for value in CREDENTIAL_VALUES + (KEY.upper(), HASH.upper(), OTHER_HASH.upper()):
        assert value.lower() not in message.lower(), message
    for name in list(os.environ):
        if name.startswith("ILETIMERKEZI_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    error = validation_error_of(ie.Credentials.from_env)  # from os.environ: no frame holds the values as given
    assert str(error) == message
    shown = shown_with_locals(error)
    assert not any(value in shown for value in (SECRET, HASH, OTHER_SECRET, OTHER_HASH, SIGNED_BY_OTHER_SECRET))


# ---------------------------------------------------------------------------
# build_request: the contact checked and written as XML
# ---------------------------------------------------------------------------


# Strings that hand-written XML gets wrong; each must come back unchanged.
TRICKY_STRINGS = [
    "plain",
    "",
    "  leading and trailing  ",
    "tab\there",
    "new\nline",
    "cr\rhere",
    "crlf\r\nend",
    "\r",
    "\r\n\r\n",
    "]]>",
    "a]]>b]]>c",
    "]]",
    "]",
    "]]]>>",
    "x]]>\ry",
    "<![CDATA[inner]]>",
    "& &amp; &#13; <tag> \"double\" 'single'",
    "Şükrü Çağlar İĞÜÖ ığüşöç",
    "emoji 😀 and 𝄞 non-BMP",
    "\x7f\x85\u2028\ufffd\ue000\U0010ffff",
    "\t\n\r ",
]
TEXT_FIELDS = ["name", "surname", "email", "gsm", "custom_field_value"]
NOT_XML_CHARACTERS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x0e", "\x1f", "\ufffe", "\uffff", "\ud800", "\udfff"]


def contact_with(field, value):
    """A contact whose text field ``field`` holds ``value``."""
    if field == "custom_field_value":
        return ie.Contact(1009, custom_fields=[ie.CustomField(1, value)])
    return ie.Contact(1009, **{field: value})


def sent_text(document, field):
    """The text of ``field`` in a request document, as xml.etree reads it."""
    path = "contact/custom_fields/custom_field/value" if field == "custom_field_value" else "contact/" + field
    element = ET.fromstring(document).find(path)
    assert element is not None, path
    return element.text or ""


def field_path(field):
    return "contact.custom_fields[0].value" if field == "custom_field_value" else "contact." + field


def test_request_document_has_the_documented_shape():
    contact = ie.Contact(
        1009, "API", "Test User 2", "[email protected]", "+905056663325",
        [ie.CustomField(1, "27/09/2024"), ie.CustomField(2, "cip")], [9, 12],
    )
    document = ie.build_request(CREDS, contact)
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<request>')
    root = ET.fromstring(document)
    assert root.tag == "request"
    assert [child.tag for child in root] == ["authentication", "contact"]
    assert root.findtext("authentication/key") == KEY
    assert root.findtext("authentication/hash") == HASH
    element = root.find("contact")
    assert [child.tag for child in element] == ["id", "name", "surname", "email", "gsm", "custom_fields", "groups"]
    assert element.findtext("id") == "1009"
    assert [(f.findtext("id"), f.findtext("value")) for f in element.iter("custom_field")] == [
        ("1", "27/09/2024"), ("2", "cip"),
    ]
    assert [group.text for group in element.find("groups")] == ["9", "12"]


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("value", TRICKY_STRINGS)
def test_every_string_survives_the_round_trip_exactly(field, value):
    assert sent_text(ie.build_request(CREDS, contact_with(field, value)), field) == value


@pytest.mark.parametrize("field", ["name", "surname", "email"])
def test_names_and_email_are_written_as_cdata(field):
    document = ie.build_request(CREDS, contact_with(field, "Şule & <Ali>"))
    assert f"<{field}><![CDATA[Şule & <Ali>]]></{field}>".encode("utf-8") in document


def test_cdata_terminator_is_split_across_sections():
    document = ie.build_request(CREDS, ie.Contact(1, name="a]]>b"))
    assert b"<name><![CDATA[a]]]]><![CDATA[>b]]></name>" in document


def test_carriage_return_is_a_character_reference():
    document = ie.build_request(CREDS, ie.Contact(1, name="a\rb", gsm="1\r2"))
    assert b"\r" not in document
    assert b"<name><![CDATA[a]]>&#13;<![CDATA[b]]></name>" in document
    assert b"<gsm>1&#13;2</gsm>" in document


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("character", NOT_XML_CHARACTERS)
def test_characters_xml_cannot_carry_are_refused_naming_the_field(field, character):
    with pytest.raises(ie.ValidationError) as caught:
        ie.build_request(CREDS, contact_with(field, "ok" + character + "ok"))
    message = str(caught.value)
    assert message.startswith(field_path(field) + ":")
    assert f"U+{ord(character):04X}" in message


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("value", [123, 5.0, b"bytes", ["list"], True])
def test_non_string_text_values_are_refused(field, value):
    with pytest.raises(ie.ValidationError, match=re.escape(field_path(field)) + " must be a string"):
        ie.build_request(CREDS, contact_with(field, value))


GOOD_IDS = [(1, "1"), (1009, "1009"), ("12", "12"), ("007", "7"), (2**63 - 1, str(2**63 - 1))]
BAD_IDS = [True, False, 1.0, 12.5, 0, -1, "0", "00", "-1", "+1", "1.5", "", " 12", "12 ", "12\n",
           "١٢", "１２", "²", None, [1], 2**63, "9" * 25, b"12"]


def contact_with_id(kind, value):
    if kind == "contact.id":
        return ie.Contact(value, name="x")
    if kind == "contact.custom_fields[0].id":
        return ie.Contact(1, custom_fields=[ie.CustomField(value, "x")])
    return ie.Contact(1, groups=[value])


ID_KINDS = ["contact.id", "contact.custom_fields[0].id", "contact.groups[0]"]


@pytest.mark.parametrize("kind", ID_KINDS)
@pytest.mark.parametrize("value, written", GOOD_IDS)
def test_ids_are_written_as_numbers(kind, value, written):
    root = ET.fromstring(ie.build_request(CREDS, contact_with_id(kind, value)))
    path = {"contact.id": "contact/id", "contact.groups[0]": "contact/groups/id"}.get(
        kind, "contact/custom_fields/custom_field/id"
    )
    assert root.findtext(path) == written


@pytest.mark.parametrize("kind", ID_KINDS)
@pytest.mark.parametrize("value", BAD_IDS, ids=repr)
def test_bad_ids_are_refused_naming_the_field(kind, value):
    with pytest.raises(ie.ValidationError, match=re.escape(kind) + " must be a positive integer"):
        ie.build_request(CREDS, contact_with_id(kind, value))


class IndexOnly:
    """An integer of a user's data (numpy.int64 from a pandas column, say) as ids see it: it has __index__."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


def integer_types():
    found = [IndexOnly]
    with contextlib.suppress(ImportError):
        import numpy

        found += [numpy.int64, numpy.int32, numpy.uint16]
    return found


@pytest.mark.parametrize("kind", ID_KINDS)
def test_ids_of_any_integer_type_are_accepted(kind):
    for make in integer_types():
        document = ie.build_request(CREDS, contact_with_id(kind, make(1009)))
        assert b">1009</id>" in document, make


def test_integer_like_values_that_are_not_integers_are_refused():
    refused = [IndexOnly(0), IndexOnly(-5), IndexOnly(2**63)]
    with contextlib.suppress(ImportError):
        import numpy

        refused += [numpy.bool_(True), numpy.float64(1009.0), numpy.int64(0)]
    for value in refused:
        with pytest.raises(ie.ValidationError, match="contact.id must be a positive integer"):
            ie.build_request(CREDS, ie.Contact(value, name="x"))


def test_a_session_edits_a_contact_whose_id_came_from_pandas(service):
    with ie.Session(CREDS, url=service.url) as session:
        assert session.edit_contact(ie.Contact(IndexOnly(1009), name="Pandas")).contact.id == 1009


class RaisingIndex:
    def __index__(self):
        raise ValueError("no")


class BoolIndex:
    def __index__(self):
        return True


@pytest.mark.parametrize("value", [10**5000, RaisingIndex(), BoolIndex(), [[[[1]]]], float("nan")],
                         ids=["huge", "raising __index__", "__index__ gives True", "nested", "nan"])
def test_any_bad_id_is_a_validation_error_and_a_bulk_run_goes_on(service, value):
    with pytest.raises(ie.ValidationError, match="contact.id must be a positive integer"):
        ie.build_request(CREDS, ie.Contact(value, name="x"))
    with ie.Session(CREDS, url=service.url) as session:
        for workers in (1, 3):
            results = session.edit_contacts([ie.Contact(1009, name="a"), ie.Contact(value, name="b"),
                                             ie.Contact(PEOPLE[0], name="c")], workers=workers)
            assert [type(result).__name__ for result in results] == ["Response", "ValidationError", "Response"]


def test_none_leaves_elements_out():
    root = ET.fromstring(ie.build_request(CREDS, ie.Contact(1009)))
    assert [child.tag for child in root.find("contact")] == ["id"]


def test_empty_values_send_empty_elements():
    contact = ie.Contact(1009, name="", surname="", email="", gsm="", custom_fields=[], groups=[])
    element = ET.fromstring(ie.build_request(CREDS, contact)).find("contact")
    assert [child.tag for child in element] == ["id", "name", "surname", "email", "gsm", "custom_fields", "groups"]
    for child in list(element)[1:]:
        assert (child.text or "") == "" and len(child) == 0


@pytest.mark.parametrize(
    "contact, message",
    [
        (ie.Contact(1, groups="9"), "contact.groups must be a list"),
        (ie.Contact(1, groups=9), "contact.groups must be a list"),
        (ie.Contact(1, custom_fields={1: "x"}), "contact.custom_fields must be a list"),
        (ie.Contact(1, custom_fields=[(1, "x")]), r"contact.custom_fields\[0\] must be a CustomField"),
        (ie.Contact(1, groups=[9, "9"]), r"contact.groups\[1\]: group 9 is given more than once"),
        (ie.Contact(1, custom_fields=[ie.CustomField(1, "a"), ie.CustomField("1", "b")]),
         r"contact.custom_fields\[1\].id: custom field 1 is given more than once"),
        ({"id": 1}, "contact must be a Contact"),
    ],
)
def test_malformed_contacts_are_refused(contact, message):
    with pytest.raises(ie.ValidationError, match=message):
        ie.build_request(CREDS, contact)


def test_tuples_are_accepted_as_lists():
    contact = ie.Contact(1, custom_fields=(ie.CustomField(2, "b"),), groups=(9, 12))
    root = ET.fromstring(ie.build_request(CREDS, contact))
    assert [group.text for group in root.find("contact/groups")] == ["9", "12"]


def test_build_request_wants_credentials():
    with pytest.raises(ie.ValidationError, match="credentials must be a Credentials"):
        ie.build_request((KEY, HASH), ie.Contact(1, name="x"))


XML_CHAR = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
UNICODE_POOLS = [
    (0x20, 0x7E), (0x00, 0x1F), (0x7F, 0x9F), (0xA0, 0x17F), (0x2000, 0x206F), (0xD7F0, 0xE010),
    (0xFFF0, 0xFFFF), (0x10000, 0x10FFFF), (0x1F600, 0x1F64F),
]
UNICODE_PIECES = ["]]>", "]]", "\r\n", "\r", "&", "<", ">", "<![CDATA[", "&amp;", "İı", "Şş", "Ğğ"]


def random_text(rng):
    pieces = []
    for _ in range(rng.randint(0, 12)):
        if rng.random() < 0.2:
            pieces.append(rng.choice(UNICODE_PIECES))
        else:
            low, high = rng.choice(UNICODE_POOLS)
            pieces.append(chr(rng.randint(low, high)))
    return "".join(pieces)


def test_random_unicode_is_sent_exactly_or_refused():
    rng = random.Random(7)
    sent = refused = 0
    for _ in range(4000):
        field, value = rng.choice(TEXT_FIELDS), random_text(rng)
        contact = contact_with(field, value)
        if XML_CHAR.fullmatch(value):
            assert sent_text(ie.build_request(CREDS, contact), field) == value, (field, value)
            sent += 1
        else:
            with pytest.raises(ie.ValidationError, match=re.escape(field_path(field))):
                ie.build_request(CREDS, contact)
            refused += 1
    assert sent > 1000 and refused > 1000


# ---------------------------------------------------------------------------
# parse_response: what the server answers, read
# ---------------------------------------------------------------------------


def test_parses_the_providers_sample_response():
    response = ie.parse_response(SAMPLE_RESPONSE, 200)
    assert response == ie.Response(
        ie.Status(200, "İşlem başarılı"),
        ie.Contact(
            1009, "API", "Test User 2", "[email protected]", "+905056663325",
            [ie.CustomField(1, "27/09/2024"), ie.CustomField(2, "cip")], [9, 12],
        ),
    )


def test_parses_bom_cdata_self_closed_and_unknown_elements():
    body = (
        b"\xef\xbb\xbf"
        + """<?xml version="1.0" encoding="UTF-8"?>
<response>
  <status><code> 200 </code><message>İşlem başarılı</message><extra>x</extra></status>
  <contact>
    <id>7</id>
    <name><![CDATA[Enes & <Şule>]]></name>
    <surname/>
    <email></email>
    <unknown><nested>1</nested></unknown>
    <custom_fields/>
    <groups></groups>
  </contact>
  <meta>ignored</meta>
</response>""".encode("utf-8")
    )
    response = ie.parse_response(body)
    assert response.contact == ie.Contact(7, name="Enes & <Şule>", surname="", email="", gsm=None,
                                          custom_fields=[], groups=[])


def test_missing_elements_are_none_and_a_missing_contact_is_none():
    body = b"<response><status><code>200</code></status><contact><id>5</id></contact></response>"
    assert ie.parse_response(body).contact == ie.Contact(5)
    assert ie.parse_response(b"<response><status><code>200</code></status></response>").contact is None


def test_parsed_text_keeps_special_characters():
    contact = {"id": 1, "name": "a]]>b", "surname": "x\ry", "email": "  e@x  ", "gsm": "+905001112233",
               "fields": {1: "&<>\r\n"}, "groups": []}
    parsed = ie.parse_response(response_document(200, contact)).contact
    assert (parsed.name, parsed.surname, parsed.email) == ("a]]>b", "x\ry", "  e@x  ")
    assert parsed.custom_fields == [ie.CustomField(1, "&<>\r\n")]


@pytest.mark.parametrize("code", sorted(set(SERVER_MESSAGES) - {200}))
def test_each_documented_code_raises_api_error_with_english_description(code):
    with pytest.raises(ie.APIError) as caught:
        ie.parse_response(response_document(code), code)
    error = caught.value
    assert (error.code, error.message, error.http_status) == (code, SERVER_MESSAGES[code], code)
    assert error.description and error.description != ie.APIError(999, "").description
    assert str(code) in str(error) and SERVER_MESSAGES[code] in str(error)
    assert isinstance(error, ie.AuthenticationError) == (code == 401)


def test_error_from_wire_facts_example_with_undocumented_code():
    body = """<?xml version="1.0" encoding="UTF-8"?>
<response>
  <status>
    <code>455</code>
    <message>Sipariş bulunamadı</message>
  </status>
</response>
""".encode("utf-8")
    with pytest.raises(ie.APIError) as caught:
        ie.parse_response(body, 455)
    assert (caught.value.code, caught.value.message, caught.value.http_status) == (455, "Sipariş bulunamadı", 455)
    assert "not documented" in caught.value.description


def test_http_200_with_an_error_code_in_the_body_is_an_error():
    with pytest.raises(ie.APIError) as caught:
        ie.parse_response(response_document(465), 200)
    assert (caught.value.code, caught.value.http_status) == (465, 200)


def test_success_body_under_an_error_http_status_is_refused():
    with pytest.raises(ie.ResponseError) as caught:
        ie.parse_response(SAMPLE_RESPONSE, 500)
    assert caught.value.http_status == 500


GARBAGE = {
    "empty": b"",
    "blank": b"  \n ",
    "text": b"Service Unavailable",
    "json": b'{"response": {"status": {"code": 200, "message": "ok"}}}',
    "html": b"<html><head><title>502 Bad Gateway</title></head><body><hr>nginx</body></html>",
    "truncated": SAMPLE_RESPONSE[:120],
    "wrong root": b"<request><status><code>200</code></status></request>",
    "no status": b"<response><contact><id>1</id></contact></response>",
    "no code": b"<response><status><message>x</message></status></response>",
    "empty code": b"<response><status><code/></status></response>",
    "word code": b"<response><status><code>OK</code></status></response>",
    "negative code": b"<response><status><code>-200</code></status></response>",
    "huge code": b"<response><status><code>" + b"9" * 40 + b"</code></status></response>",
    "contact without id": b"<response><status><code>200</code></status><contact><name>x</name></contact></response>",
    "bad contact id": b"<response><status><code>200</code></status><contact><id>abc</id></contact></response>",
    "huge contact id": b"<response><status><code>200</code></status><contact><id>" + b"1" * 30 + b"</id></contact></response>",
    "bad group id": b"<response><status><code>200</code></status><contact><id>1</id><groups><id>x</id></groups></contact></response>",
    "bad field id": b"<response><status><code>200</code></status><contact><id>1</id><custom_fields><custom_field><id/></custom_field></custom_fields></contact></response>",
    "invalid utf-8": b"<response><status><code>200</code><message>\xff\xfe</message></status></response>",
    "unknown encoding": b'<?xml version="1.0" encoding="x-no-such-codec"?><response/>',
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_anything_but_a_response_document_is_a_response_error(name):
    with pytest.raises(ie.ResponseError) as caught:
        ie.parse_response(GARBAGE[name], 502)
    assert caught.value.http_status == 502
    assert "HTTP 502" in str(caught.value)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE response [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
  <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<response><status><code>200</code><message>&f;</message></status></response>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE response [<!ENTITY leak SYSTEM "file:///etc/passwd">]>
<response><status><code>200</code><message>&leak;</message></status></response>
"""
HIDDEN_DOCTYPE = b"""<?xml version="1.0"?><!-- <x --><?pi <!-- ?><!DOCTYPE response [<!ENTITY e "x">]>
<response><status><code>200</code><message>&e;</message></status></response>
"""


SUCCESS_WITH_ENTITY = '<!DOCTYPE response [<!ENTITY ok "200">]><response><status><code>&ok;</code></status></response>'
SUCCESS = "<response><status><code>200</code><message>c</message></status></response>"


@pytest.mark.parametrize(
    "body",
    [
        ('<?xml version="1.0" encoding="UTF-16"?>' + SUCCESS).encode("utf-16"),
        ('<?xml version="1.0" encoding="UTF-16LE"?>' + SUCCESS).encode("utf-16-le"),
        b'<?xml version="1.0" encoding="windows-1254"?>' + SUCCESS_WITH_ENTITY.encode("windows-1254"),
        b'<?xml version="1.0" encoding="ISO-8859-1"?>' + SUCCESS.replace("c", "ç").encode("utf-8"),
        SUCCESS_WITH_ENTITY.encode(),
    ],
    ids=["utf-16", "utf-16 without bom", "turkish code page with a dtd", "latin-1", "harmless dtd"],
)
def test_only_utf8_without_a_dtd_is_parsed(body):
    # Each would parse as a success without the checks: the real server sends UTF-8, and only UTF-8 is read.
    with pytest.raises(ie.ResponseError, match="only UTF-8|DTD"):
        ie.parse_response(body, 200)


def test_doctype_like_text_inside_cdata_or_a_comment_is_accepted():
    body = SAMPLE_RESPONSE.replace(b"<name>API</name>", b"<name><![CDATA[<!DOCTYPE x>]]></name><!-- <!ENTITY -->")
    assert ie.parse_response(body, 200).contact.name == "<!DOCTYPE x>"


@pytest.mark.parametrize("declared", ["UTF-8", "utf-8", "US-ASCII", None])
def test_utf8_and_ascii_declarations_and_a_bom_are_accepted(declared):
    declaration = b"" if declared is None else b'<?xml version="1.0" encoding="%s"?>' % declared.encode()
    body = b"\xef\xbb\xbf" + declaration + SAMPLE_RESPONSE.split(b"?>", 1)[1]
    assert ie.parse_response(body, 200).contact.id == 1009


def just_under_the_cap(head, unit, tail=b""):
    return head + unit * ((ie._MAX_RESPONSE_BYTES - len(head) - len(tail)) // len(unit)) + tail


# Answers of nearly 1 MiB that a hostile or broken server could send: each must be refused (or parsed) in a
# time linear in its size. A regex pre-scan took 47 s on the first three at 128 KiB.
HOSTILE_MIB = {
    "doctype, unterminated processing instructions": just_under_the_cap(b"<!DOCTYPE ", b"<?"),
    "doctype, unterminated comments": just_under_the_cap(b"<!DOCTYPE ", b"<!--"),
    "doctype, unterminated cdata": just_under_the_cap(b"<!DOCTYPE ", b"<![CDATA["),
    "comments, then a doctype": just_under_the_cap(b"<?xml version='1.0'?>", b"<!-- -->", b"<!DOCTYPE r []><r/>"),
    "declaration of endless encodings": just_under_the_cap(b'<?xml version="1.0" ', b"encoding='"),
    "deep nesting": just_under_the_cap(b"<response>", b"<a>"),
    "many groups": just_under_the_cap(b"<response><status><code>200</code></status><contact><id>1009</id><groups>",
                                      b"<id>12</id>", b"</groups></contact></response>"),
    "many undefined entities": just_under_the_cap(b"<response><status><code>", b"&x;"),
}


@pytest.mark.parametrize("name", list(HOSTILE_MIB))
def test_any_answer_up_to_the_cap_is_parsed_or_refused_in_linear_time(name):
    body = HOSTILE_MIB[name]
    assert len(body) <= ie._MAX_RESPONSE_BYTES
    started = time.monotonic()
    with pytest.raises(ie.ResponseError, match="DTD|well-formed|encoding|elements"):
        ie.parse_response(body, 200)
    # It takes some milliseconds here (the benchmark prints the figure); the bound only tells linear from
    # quadratic, which took minutes.
    assert time.monotonic() - started < 10


def test_a_large_but_sane_answer_is_parsed_and_an_absurd_one_refused():
    def with_groups(count):
        groups = b"".join(b"<id>%d</id>" % number for number in range(1, count + 1))
        return SAMPLE_RESPONSE.replace(b"<groups>\n      <id>9</id>\n      <id>12</id>\n    </groups>",
                                       b"<groups>" + groups + b"</groups>")

    assert len(ie.parse_response(with_groups(5000), 200).contact.groups) == 5000
    with pytest.raises(ie.ResponseError, match="more than 20000 elements"):
        ie.parse_response(with_groups(20000), 200)
    sixteen_deep = b"<response><status><code>200</code></status>" + b"<x>" * 15 + b"</x>" * 15 + b"</response>"
    assert ie.parse_response(sixteen_deep, 200).status.code == 200
    with pytest.raises(ie.ResponseError, match="deeper than 16"):
        ie.parse_response(sixteen_deep.replace(b"<x>", b"<x><y>", 1).replace(b"</x>", b"</y></x>", 1), 200)


FUZZ_SEEDS = [
    SAMPLE_RESPONSE,
    response_document(465),
    response_document(200, FakeService().contacts[1009]),
    b"\xef\xbb\xbf" + SAMPLE_RESPONSE.replace(b"<name>API</name>", b"<name><![CDATA[A]]>PI]]></name><surname/>"),
]
FUZZ_TOKENS = [
    b"<", b">", b"&", b"&amp;", b"&#0;", b"&#xD800;", b"&#x10FFFF;", b"&e;", b"]]>", b"<![CDATA[", b"<!--", b"-->",
    b"<?pi ?>", b"<!DOCTYPE response>", b'<!DOCTYPE r [<!ENTITY e "x">]>', b"<!ENTITY e 'x'>",
    b'<?xml version="1.0" encoding="latin-1"?>', b"\x00", b"\xff", b"\xc4", b"\xe2\x80", b"\r\n", b"9" * 25,
    b"-1", b" ", b"</contact>", b"<contact>", b"<id>", b"</id>", b"<status>", b"</status>", b"<code>200</code>",
    b"<code>503</code>", b"<response>", b"</response>", b"<custom_field>", b"<groups>", b"\xd9\xa3",
]


def mutate(rng, document):
    data = bytearray(document)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        where = rng.randrange(len(data) + 1)
        operation = rng.choice([0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 5])
        if operation == 0 and data:
            data[min(where, len(data) - 1)] = rng.randrange(256)
        elif operation == 1:
            data[where:where] = rng.choice(FUZZ_TOKENS)
        elif operation == 2:
            del data[where:where + rng.randint(1, 40)]
        elif operation == 3:
            data[where:where] = data[where:where + rng.randint(1, 80)]
        elif operation == 4:
            del data[where:]
        else:
            data = bytearray(re.sub(rb"[0-9]+", lambda found: str(rng.choice([0, 1, 200, 503, 2**63, 10**30])).encode(),
                                    bytes(data), count=1))
    return bytes(data)


# The default run tries one seed; `pytest -m soak` tries more (24,000 answers each).
@pytest.mark.parametrize("seed", [20261128, *(pytest.param(seed, marks=pytest.mark.soak) for seed in (1, 2, 3, 4))])
def test_mutated_answers_raise_only_documented_errors(seed):
    rng = random.Random(seed)
    outcomes = collections.Counter()
    for case in range(24000):
        body = mutate(rng, rng.choice(FUZZ_SEEDS))
        http_status = rng.choice([None, 200, 200, 200, 503])
        try:
            response = ie.parse_response(body, http_status)
        except (ie.APIError, ie.ResponseError) as error:
            outcomes[type(error).__name__] += 1
            continue
        except Exception as error:  # noqa: BLE001 - anything else is the failure this test looks for
            pytest.fail(f"case {case}: {type(error).__name__}: {error} for {body!r}")
        assert response.status.code == 200 and http_status in (None, 200)
        assert response.contact is None or isinstance(response.contact.id, int)
        outcomes["Response"] += 1
    # The corpus exercises every outcome, so the test can tell when parsing breaks.
    assert min(outcomes[kind] for kind in ("Response", "APIError", "ResponseError")) > 500, outcomes


# ---------------------------------------------------------------------------
# Settings: URL, timeout, retries, TLS context and proxy, checked before anything is sent
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://api.iletimerkezi.com/v1/edit-contact", "must use https://"),
        ("http://example.invalid/v1/edit-contact", "must use https://"),
        ("http://127.0.0.1.example.com/", "must use https://"),
        ("ftp://127.0.0.1/", "must start with https://"),
        ("api.iletimerkezi.com/v1/edit-contact", "must start with https://"),
        ("https:///v1/edit-contact", "no host"),
        ("https://user:pass@api.iletimerkezi.com/v1/edit-contact", "user name or password"),
        ("https://api.iletimerkezi.com:99999/", "invalid port"),
        ("https://api.iletimerkezi.com:0/", "invalid port"),
        ("https://api.iletimerkezi.com:x/", "invalid port"),
        ("https://[::1/v1/edit-contact", "malformed"),
        ("https://" + "a" * 64 + ".com/", "not a valid host name"),
        ("https://api..iletimerkezi.com/", "not a valid host name"),
        ("http://127.0.0.1/yol/ş", "must be ASCII"),
        ("https://iletimerkezi.çom/", "must be ASCII"),
        ("https://api.iletimerkezi.com/v1/edit contact", "white space"),
        ("", "url must not be empty"),
        (None, "url must be a string"),
    ],
)
def test_bad_urls_are_refused_before_connecting(url, message):
    with pytest.raises(ie.ValidationError, match=message):
        ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=url)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "[::1]"])
def test_plain_http_is_allowed_for_loopback_hosts(host):
    # Nothing listens there, so an allowed URL ends in TransportError, not ValidationError.
    with pytest.raises(ie.TransportError):
        ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=f"http://{host}:{unused_port()}{PATH}", timeout=5,
                        retries=0)


@pytest.mark.parametrize(
    "url, where",
    [("https://[::1]/v1/edit-contact", "[::1]:443"), ("http://[::1]/v1/edit-contact", "[::1]:80")],
)
def test_a_url_without_port_uses_the_scheme_default(url, where):
    # http.client alone would read "::1" as host ":" and port 1.
    with pytest.raises(ie.TransportError, match=re.escape(f"no answer from {where}:")):
        ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=url, timeout=5, retries=0)


@pytest.mark.parametrize("timeout", [0, -1, "5", True, None, float("nan"), float("inf")])
def test_bad_timeouts_are_refused(service, timeout):
    with pytest.raises(ie.ValidationError, match="timeout"):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url, timeout=timeout)
    assert service.requests == []


@pytest.mark.parametrize("timeout", [1e10, 86400.001, float("1e308"), threading.TIMEOUT_MAX])
def test_a_timeout_no_platform_can_hold_is_refused(service, timeout):
    for via in VIAS:
        with pytest.raises(ie.ValidationError, match="timeout must be .* at most 86400"):
            edit_once(via, CREDS, ie.Contact(1009, name="x"), url=service.url, timeout=timeout)
    assert service.connections == 0


def test_the_longest_timeout_is_accepted(service):
    assert ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url, timeout=86400).contact.name == "x"


@pytest.mark.parametrize("retries", [-1, 1.0, "2", True, None])
def test_bad_retries_are_refused_before_sending(service, retries):
    with pytest.raises(ie.ValidationError, match="retries"):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url, retries=retries)
    assert service.connections == 0


def test_ssl_context_must_be_an_ssl_context():
    with pytest.raises(ie.ValidationError, match="ssl_context"):
        ie.edit_contact(CREDS, ie.Contact(1, name="x"), ssl_context="no")


@pytest.mark.parametrize(
    "options, named_setting",
    [
        ({"url": "http://example.com/"}, "https://"),
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"ssl_context": "yes"}, "ssl_context"),
    ],
)
def test_a_session_checks_its_settings_when_made(options, named_setting):
    with pytest.raises(ie.ValidationError, match=named_setting):
        ie.Session(CREDS, **options)


PROXY_USER = "şirket\\ali"
PROXY_PASSWORD = "p@ss:wörd/42"
PROXY_CREDENTIALS = "%C5%9Firket%5Cali:p%40ss%3Aw%C3%B6rd%2F42"  # the two above, percent-encoded


@pytest.mark.parametrize(
    "proxy, message",
    [
        ("ftp://127.0.0.1:3128", "must start with http://"),
        ("socks5://127.0.0.1:1080", "must start with http://"),
        ("https://127.0.0.1:3128", "https:// proxies are not supported"),
        ("http://:3128", "no host"),
        (f"http://{PROXY_CREDENTIALS}@:3128", "no host"),
        ("http://127.0.0.1:0", "invalid port"),
        ("http://127.0.0.1:99999", "invalid port"),
        (f"http://{PROXY_CREDENTIALS}@127.0.0.1:x", "invalid port"),
        ("http://127.0.0.1:3128/path", "without a path"),
        ("http://127.0.0.1:3128?x=1", "without a path"),
        (f"http://ali:{PROXY_PASSWORD}\n@127.0.0.1:3128", "control characters"),
        ("http://127.0.0.1:3128\r\nX: y", "control characters"),
        ("http://[::1:3128", "malformed"),
        ("http://vekil.şirket:3128", "ASCII"),
        ("http://ali%3Aveli:x@127.0.0.1:3128", "user name or password"),
        (3128, "must be a string"),
    ],
)
def test_bad_proxies_are_refused_before_connecting_without_echoing_a_password(service, proxy, message):
    for via in VIAS:
        with pytest.raises(ie.ValidationError, match=message) as caught:
            edit_once(via, CREDS, ie.Contact(1009, name="x"), url=service.url, proxy=proxy)
        assert PROXY_PASSWORD not in str(caught.value) and "%40ss" not in str(caught.value)
    assert service.connections == 0


@pytest.mark.parametrize("proxy, message", [
    ("http://pro%0Axy:3128", "host must be a host name"),
    ("http://ali:caf%E9@127.0.0.1:3128", "not UTF-8 once percent-decoded"),
    ("http://127.0.0.1:+80", "invalid port"),
    ("http://127.0.0.1:\u0668\u0660", "invalid port"),
])
def test_proxy_urls_that_would_be_sent_otherwise_than_written_are_refused(service, proxy, message):
    with pytest.raises(ie.ValidationError, match=message):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url, proxy=proxy)
    assert service.connections == 0


@pytest.mark.parametrize("value, message", [("https://127.0.0.1:3128", "https:// proxies"), ("ftp://h:1", "http://")])
def test_a_bad_proxy_in_the_environment_is_a_validation_error_naming_it(monkeypatch, service, value, message):
    monkeypatch.setenv("http_proxy", value)
    with pytest.raises(ie.ValidationError, match=f"http_proxy environment variable.*{message}"):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url, retries=2)
    assert service.connections == 0


# ---------------------------------------------------------------------------
# edit_contact against the local service
# ---------------------------------------------------------------------------


def test_edit_contact_sends_signed_xml_and_returns_the_stored_contact(service):
    contact = ie.Contact(1009, name="Şule ]]> & Ali", surname="Öztürk", custom_fields=[ie.CustomField(3, "x\ry")],
                         groups=[15])
    response = ie.edit_contact(CREDS, contact, url=service.url, timeout=5)
    assert response.status == ie.Status(200, "İşlem başarılı")
    assert response.contact == ie.Contact(
        1009, "Şule ]]> & Ali", "Öztürk", "[email protected]", "+905056663325",
        [ie.CustomField(1, "27/09/2024"), ie.CustomField(2, "cip"), ie.CustomField(3, "x\ry")], [15],
    )
    [(path, headers, body)] = service.requests
    assert path == PATH
    assert headers["Content-Type"] == "text/xml; charset=utf-8"
    assert body == ie.build_request(CREDS, contact)


def test_none_leaves_a_value_and_empty_clears_it(service):
    ie.edit_contact(CREDS, ie.Contact(1009, name="Yeni"), url=service.url)
    stored = service.contacts[1009]
    assert (stored["name"], stored["surname"], stored["groups"]) == ("Yeni", "Test User 2", [9, 12])
    response = ie.edit_contact(CREDS, ie.Contact(1009, surname="", groups=[]), url=service.url)
    assert (response.contact.name, response.contact.surname, response.contact.groups) == ("Yeni", "", [])


@pytest.mark.parametrize(
    "contact, code",
    [
        (ie.Contact(4242, name="x"), 465),
        (ie.Contact(1009, groups=[9, 99]), 463),
        (ie.Contact(1009, gsm="12345"), 466),
        (ie.Contact(1009, name="", surname="", email="", gsm=""), 472),
        (ie.Contact(1009, custom_fields=[ie.CustomField(77, "x")]), 473),
    ],
)
def test_api_refusals_raise_api_error_with_the_mirrored_status(service, contact, code):
    before = json.dumps(service.contacts, sort_keys=True)
    with pytest.raises(ie.APIError) as caught:
        ie.edit_contact(CREDS, contact, url=service.url)
    error = caught.value
    assert (type(error), error.code, error.http_status, error.message) == (ie.APIError, code, code, SERVER_MESSAGES[code])
    assert json.dumps(service.contacts, sort_keys=True) == before


@pytest.mark.parametrize("code", [465, 503])
def test_a_refusal_about_another_contact_is_a_response_error_and_closes_the_connection(service, code):
    other = dict(service.contacts[1009], id=4242)
    with ie.Session(CREDS, url=service.url, retries=0) as session:
        service.canned.append((code, response_document(code, other), "text/xml; charset=utf-8", ()))
        with pytest.raises(ie.ResponseError, match="about contact 4242, not 1009"):
            session.edit_contact(ie.Contact(1009, name="x"))
        assert session.edit_contact(ie.Contact(1009, name="y")).contact.name == "y"
    assert service.connections == 2  # the out-of-step connection was not used again


def test_the_cli_never_prints_a_hash_that_a_successful_answer_repeats(service, run_main):
    echoed = response_document(200, dict(service.contacts[1009], name=HASH)).replace(
        SERVER_MESSAGES[200].encode(), f"you sent {HASH}".encode())
    for extra in ([], ["--json"]):
        service.canned.append((200, echoed, "text/xml; charset=utf-8", ()))
        code, stdout, _ = run_main(["--id", "1009", "--name", "x", "--url", service.url] + extra, CREDENTIAL_ENV)
        assert code == 0 and stdout.count("REDACTED") == 2  # run_main also checks that the hash is nowhere


def test_wrong_hash_raises_authentication_error(service):
    wrong = ie.Credentials.from_secret(KEY, "another-secret")
    with pytest.raises(ie.AuthenticationError) as caught:
        ie.edit_contact(wrong, ie.Contact(1009, name="x"), url=service.url)
    assert (caught.value.code, caught.value.http_status, caught.value.message) == (401, 401, "Üyelik bilgileri hatalı")
    assert wrong.hash not in str(caught.value)


def test_a_401_names_its_three_causes(service):
    with pytest.raises(ie.AuthenticationError) as caught:
        ie.edit_contact(ie.Credentials(KEY, "0" * 64), ie.Contact(1009, name="x"), url=service.url)
    message = str(caught.value)
    assert message.startswith("401 Üyelik bilgileri hatalı (")
    assert 'API access is not allowed in the panel (Settings → Security → Access Permissions → "Allow API access")' \
        in message
    assert "the call came from an IP address the account does not allow" in message
    assert "or the key or hash is wrong" in message
    assert caught.value.description in message and "0" * 64 not in message
    doc = " ".join(ie.AuthenticationError.__doc__.split())
    assert '"Allow API access" is off in the panel (Settings → Security → Access Permissions)' in doc
    assert "an IP address the account does not allow" in doc and "the key or hash is wrong" in doc


def test_wrong_path_raises_404(service):
    with pytest.raises(ie.APIError) as caught:
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url.replace("edit-contact", "edit-contacts"))
    assert caught.value.code == 404


@pytest.mark.parametrize(
    "canned, error, http_status",
    [
        ((400, response_document(400), "text/xml; charset=utf-8", ()), ie.APIError, 400),
        ((503, response_document(503), "text/xml; charset=utf-8", ()), ie.APIError, 503),
        ((200, response_document(465), "text/xml; charset=utf-8", ()), ie.APIError, 200),
        ((502, GARBAGE["html"], "text/html", ()), ie.ResponseError, 502),
        ((200, b"", "text/xml", ()), ie.ResponseError, 200),
        ((302, b"", "text/html", (("Location", "http://127.0.0.1:9/elsewhere"),)), ie.ResponseError, 302),
    ],
    ids=["400", "503", "200-with-465", "html-502", "empty-200", "redirect"],
)
def test_answers_are_mapped_to_errors_with_their_http_status(service, canned, error, http_status):
    service.canned.append(canned)
    with pytest.raises(error) as caught:
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url, retries=0)
    assert type(caught.value) is error and caught.value.http_status == http_status
    assert len(service.requests) == 1  # a redirect is not followed


def test_an_answer_over_one_mebibyte_is_refused(service):
    # Valid XML if read whole: only the cap can refuse it.
    service.canned.append((200, SAMPLE_RESPONSE.replace(b"<response>", b"<response>" + b" " * (1 << 20)), "text/xml", ()))
    with pytest.raises(ie.ResponseError, match="larger than 1048576 bytes"):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url)


def test_refused_connection_is_a_transport_error():
    with pytest.raises(ie.TransportError, match="127.0.0.1"):
        ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=f"http://127.0.0.1:{unused_port()}{PATH}", timeout=5,
                        retries=0)


def test_connection_closed_without_an_answer_is_a_transport_error():
    with FaultServer(close) as server:
        with pytest.raises(ie.TransportError):
            ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=server.url, timeout=5, retries=0)


def test_silent_server_times_out_with_a_transport_error():
    with FaultServer(hang) as server:
        started = time.monotonic()
        with pytest.raises(ie.TransportError, match="timed out"):
            ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=server.url, timeout=0.3, retries=0)
        assert time.monotonic() - started < 5


def test_loopback_http_reaches_the_service(service):
    url = service.url.replace("127.0.0.1", "localhost")
    assert ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=url).status.code == 200


def test_bad_input_sends_nothing(service):
    with pytest.raises(ie.ValidationError, match="contact.name"):
        ie.edit_contact(CREDS, ie.Contact(1009, name="a\x00b"), url=service.url)
    with pytest.raises(ie.ValidationError, match="credentials"):
        ie.edit_contact(None, ie.Contact(1009, name="x"), url=service.url)
    assert service.requests == []


def test_random_unicode_comes_back_from_the_service_unchanged(service):
    rng = random.Random(11)
    sent = 0
    while sent < 200:
        name, value = random_text(rng), random_text(rng)
        if not (name.strip() and XML_CHAR.fullmatch(name + value)):
            continue
        contact = ie.Contact(1009, name=name, custom_fields=[ie.CustomField(2, value)])
        stored = ie.edit_contact(CREDS, contact, url=service.url).contact
        assert (stored.name, stored.custom_fields[1].value) == (name, value)
        sent += 1
    assert len(service.requests) == sent


# ---------------------------------------------------------------------------
# Hostile answers and network faults
# ---------------------------------------------------------------------------


FAULTS = {
    # name: (behaviours, error class or None for success, requests the server sees)
    "hang": ([hang], ie.TransportError, 3),
    "dribble": ([dribble], ie.TransportError, 3),
    "reset": ([reset], ie.TransportError, 3),
    "closed": ([close], ie.TransportError, 3),
    "cut short": ([cut_short], ie.TransportError, 3),
    "503 then success": ([answer(503, response_document(503), extra=RETRY_NOW), answer(200, SAMPLE_RESPONSE)], None, 2),
    "reset then success": ([reset, answer(200, SAMPLE_RESPONSE)], None, 2),
    "always 503": ([answer(503, response_document(503), extra=RETRY_NOW)], ie.APIError, 3),
    "503 in a 200": ([answer(200, response_document(503))], ie.APIError, 3),
    "html 502": ([answer(502, GARBAGE["html"], "text/html")], ie.ResponseError, 3),
    "html 504": ([answer(504, GARBAGE["html"], "text/html")], ie.ResponseError, 3),
    "empty 503": ([answer(503, b"", "text/html")], ie.ResponseError, 3),
    "500 with a readable body": ([answer(500, response_document(500))], ie.APIError, 1),
    "400": ([answer(400, response_document(400))], ie.APIError, 1),
    "401": ([answer(401, response_document(401))], ie.AuthenticationError, 1),
    "465": ([answer(465, response_document(465))], ie.APIError, 1),
    "doctype bomb": ([answer(200, BILLION_LAUGHS)], ie.ResponseError, 1),
    "external entity": ([answer(200, EXTERNAL_ENTITY)], ie.ResponseError, 1),
    "hidden doctype": ([answer(200, HIDDEN_DOCTYPE)], ie.ResponseError, 1),
    "21 MiB": ([endless], ie.ResponseError, 1),
    "json": ([answer(200, GARBAGE["json"], "application/json")], ie.ResponseError, 1),
    "empty": ([answer(200, b"")], ie.ResponseError, 1),
    "redirect": ([answer(302, b"", "text/html", (("Location", "https://api.iletimerkezi.com/v1/edit-contact"),))],
                 ie.ResponseError, 1),
}


# edit_contact() is a one-shot Session: each fault through it again, in the soak run.
@pytest.mark.parametrize("via", [pytest.param("function", marks=pytest.mark.soak), "session"])
@pytest.mark.parametrize("name", list(FAULTS))
def test_every_fault_ends_in_time_with_a_documented_error(quick_backoff, name, via):
    behaviours, error, requests = FAULTS[name]
    timeout = 0.3
    with FaultServer(*behaviours) as server:
        started = time.monotonic()
        if error is None:
            assert edit_once(via, CREDS, ie.Contact(1009, name="x"), url=server.url, timeout=timeout).status.code == 200
        else:
            with pytest.raises(ie.IletiMerkeziError) as caught:
                edit_once(via, CREDS, ie.Contact(1009, name="x"), url=server.url, timeout=timeout)
            assert type(caught.value) is error
        elapsed = time.monotonic() - started
    assert len(server.requests) == requests
    # Each attempt ends by its own deadline; the waits between them are about 10 ms here.
    assert elapsed < requests * timeout + 1.0


def test_timeout_bounds_the_whole_attempt_not_each_read():
    # The dribbling server never pauses longer than 20 ms, so only a deadline for the whole attempt stops it.
    with FaultServer(dribble) as server:
        started = time.monotonic()
        with pytest.raises(ie.TransportError, match="timed out"):
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url, timeout=0.6, retries=0)
        elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 1.6


@contextlib.contextmanager
def unanswered_connects():
    """A port whose accept queue is full, so that Linux drops further SYNs and connect() hangs."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        time.sleep(0.1)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}{PATH}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="relies on Linux dropping SYNs to a full accept queue")
def test_a_connect_that_hangs_is_bounded_by_the_timeout():
    with unanswered_connects() as url:
        started = time.monotonic()
        with pytest.raises(ie.TransportError, match="timed out"):
            ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=url, timeout=0.5, retries=0)
        assert time.monotonic() - started < 2


def test_a_slow_name_lookup_is_bounded_by_the_timeout(monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def slow_getaddrinfo(host, *args, **kwargs):
        if host == "localhost" and not kwargs.get("flags"):
            time.sleep(3)  # a resolver that does not answer
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    started = time.monotonic()
    with pytest.raises(ie.TransportError, match="looking up localhost timed out"):
        ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=f"http://localhost:{unused_port()}{PATH}",
                        timeout=0.3, retries=0)
    assert time.monotonic() - started < 2


def test_a_redirect_is_not_followed_and_its_target_sees_nothing(quick_backoff):
    with running(FakeService()) as second:
        moved = answer(302, b"<html>Moved</html>", "text/html", (("Location", second.url),))
        with FaultServer(moved) as first:
            with pytest.raises(ie.ResponseError) as caught:
                ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=first.url)
        assert caught.value.http_status == 302
        assert len(first.requests) == 1
        assert (second.connections, second.requests) == (0, [])


def test_a_huge_answer_is_refused_without_holding_it_in_memory():
    tracemalloc.start()
    try:
        with FaultServer(endless) as server:
            with pytest.raises(ie.ResponseError, match="larger than 1048576 bytes"):
                ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url, timeout=10)
            peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * (1 << 20)  # the cap and a read buffer, never the 21 MiB


def chunked_answer(status, payload, sizes=(7, 300, 1)):
    head = f"HTTP/1.1 {status} {SERVER_MESSAGES.get(status, 'Hata')}\r\nServer: nginx\r\n"
    head += "Content-Type: text/xml; charset=utf-8\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    chunks, rest = [], payload
    for size in sizes * 20:
        if not rest:
            break
        piece, rest = rest[:size], rest[size:]
        chunks.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    return head.encode("utf-8") + b"".join(chunks) + b"0\r\n\r\n"


RAW_ANSWER_SEEDS = [
    http_answer(200, SAMPLE_RESPONSE),
    chunked_answer(200, SAMPLE_RESPONSE),
    chunked_answer(465, response_document(465)),
    http_answer(503, response_document(503), extra=RETRY_NOW),
    b"HTTP/1.1 100 Continue\r\n\r\n" + http_answer(200, SAMPLE_RESPONSE),
]


def test_mutated_http_answers_end_in_documented_errors():
    rng = random.Random(42)
    raw_answers = [mutate(rng, rng.choice(RAW_ANSWER_SEEDS)) for _ in range(400)]
    replays = [lambda connection, server, request, raw=raw: connection.sendall(raw) for raw in raw_answers]
    outcomes = collections.Counter()
    with FaultServer(*replays) as server:
        for case, raw in enumerate(raw_answers):
            try:
                ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url, timeout=2, retries=0)
                outcomes["Response"] += 1
            except (ie.APIError, ie.TransportError, ie.ResponseError) as error:
                outcomes[type(error).__name__] += 1
            except Exception as error:  # noqa: BLE001 - anything else is the failure this test looks for
                pytest.fail(f"case {case}: {type(error).__name__}: {error} for {raw!r}")
    assert min(outcomes[kind] for kind in ("Response", "APIError", "TransportError", "ResponseError")) > 10, outcomes


# ---------------------------------------------------------------------------
# TLS, against a local HTTPS server with a certificate made at test time
# ---------------------------------------------------------------------------


def make_certificate(folder, name, alt_names):
    """A throwaway self-signed certificate and key, or a skip where the openssl command is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed; it makes the test certificates")
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=" + alt_names],
        check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
    )
    return cert, key


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    return {
        "local": make_certificate(folder, "localhost", "DNS:localhost,IP:127.0.0.1"),
        "elsewhere": make_certificate(folder, "elsewhere", "DNS:elsewhere.example"),
    }


@contextlib.contextmanager
def https_service(certificate):
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    with running(FakeService(), tls=context) as fake:
        yield fake


def trusting(certificate):
    import ssl

    return ssl.create_default_context(cafile=str(certificate[0]))


def test_tls_failure_is_a_transport_error(service):
    https_url = service.url.replace("http://", "https://")
    with pytest.raises(ie.TransportError):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=https_url, timeout=5, retries=0)
    assert service.requests == []


def test_a_self_signed_server_is_refused_by_default_and_not_retried(certificates):
    with https_service(certificates["local"]) as service:
        started = time.monotonic()
        with pytest.raises(ie.TransportError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url, timeout=5)
        assert time.monotonic() - started < 2  # no backoff: a certificate does not get better
        assert (service.connections, service.requests) == (1, [])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_an_ssl_context_that_trusts_the_server_is_used(certificates, host):
    with https_service(certificates["local"]) as service:
        url = service.url.replace("127.0.0.1", host)
        response = ie.edit_contact(CREDS, ie.Contact(1009, name="Güven"), url=url, ssl_context=trusting(certificates["local"]))
        assert response.contact.name == "Güven"
        assert len(service.requests) == 1


def test_the_host_name_is_checked_even_with_a_trusted_certificate(certificates):
    with https_service(certificates["elsewhere"]) as service:
        with pytest.raises(ie.TransportError, match="CERTIFICATE_VERIFY_FAILED|match"):
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url,
                            ssl_context=trusting(certificates["elsewhere"]))
        assert (service.connections, service.requests) == (1, [])


def test_a_tls_handshake_that_never_ends_is_bounded_by_the_timeout(quick_backoff):
    with FaultServer(hang) as server:  # accepts, then never answers the ClientHello
        started = time.monotonic()
        with pytest.raises(ie.TransportError, match="timed out"):
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url.replace("http:", "https:"), timeout=0.4)
        assert time.monotonic() - started < 3 * 0.4 + 1.0
    assert (server.connections, server.requests) == (3, [])


# ---------------------------------------------------------------------------
# Proxies, fork, interim answers, name lookups
# ---------------------------------------------------------------------------


def basic(user, password):
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")


class ConnectProxy(LoopbackListener):
    """A forward proxy that tunnels CONNECT, as squid and tinyproxy do, with the ways a proxy can refuse.

    ``refuse`` answers every CONNECT with that status (``reason`` as its reason phrase); ``act`` replaces the
    answer with a behaviour of its own; ``hosts`` is the proxy's own name resolution. ``connects`` records
    each CONNECT's target and headers.
    """

    def __init__(self, user=None, password=None, refuse=None, reason="Refused", act=None, hosts=None):
        super().__init__()
        self.authorization = None if user is None else basic(user, password)
        self.refuse, self.reason, self.act, self.hosts = refuse, reason, act, hosts or {}
        self.connects = []
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, connection, number):
        with connection:
            try:
                self._tunnel(connection)
            except OSError:
                pass

    def _tunnel(self, connection):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = connection.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        self.connects.append((method, target, headers))
        if self.act is not None:
            return self.act(connection, self)
        if self.authorization is not None and headers.get("Proxy-Authorization") != self.authorization:
            return self._answer(connection, 407, "Proxy Authentication Required", ("Proxy-Authenticate: Basic",))
        if self.refuse is not None:
            return self._answer(connection, self.refuse, self.reason)
        host, port = target.rsplit(":", 1)
        host = host.strip("[]")  # an IPv6 address, as a CONNECT target writes it
        try:
            upstream = socket.create_connection((self.hosts.get(host, host), int(port)), timeout=5)
        except OSError:
            return self._answer(connection, 503, "Service Unavailable")
        with upstream:
            connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            relay(connection, upstream, self.released)

    @staticmethod
    def _answer(connection, status, reason, extra=()):
        body = f"<html><body>{status} {reason}</body></html>".encode("utf-8")
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: text/html", f"Content-Length: {len(body)}",
                "Connection: keep-alive", *extra]
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body)


def relay(one, other, released):
    """Copy bytes both ways until either side closes."""
    import select

    while not released.is_set():
        readable, _, _ = select.select([one, other], [], [], 0.01)
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (other if source is one else one).sendall(data)


@pytest.fixture
def tls_service(certificates):
    with https_service(certificates["local"]) as fake:
        fake.url = fake.url.replace("127.0.0.1", "localhost")
        yield fake


@pytest.fixture
def trusted(certificates):
    return trusting(certificates["local"])


def test_a_proxy_tunnels_https_end_to_end_and_a_session_keeps_the_tunnel(tls_service, trusted):
    with ConnectProxy() as proxy:
        with ie.Session(CREDS, url=tls_service.url, ssl_context=trusted, proxy=proxy.url) as session:
            for contact in named(20):
                assert session.edit_contact(contact).contact.name == contact.name
    port = tls_service.url.split(":")[2].split("/")[0]
    assert [(method, target) for method, target, _ in proxy.connects] == [("CONNECT", f"localhost:{port}")]
    assert (tls_service.connections, len(tls_service.requests)) == (1, 20)


def test_tls_through_the_tunnel_verifies_the_target_and_sends_its_name(certificates, trusted):
    import ssl

    names = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificates["local"]))
    context.sni_callback = lambda sock, name, _: names.append(name)
    with running(FakeService(), tls=context) as service, ConnectProxy() as proxy:
        url = service.url.replace("127.0.0.1", "localhost")
        assert ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=url, ssl_context=trusted, proxy=proxy.url)
        assert names == ["localhost"]
        with pytest.raises(ie.TransportError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=url, proxy=proxy.url)  # the system's CAs
        assert len(proxy.connects) == 2  # a certificate that does not verify is not tried again
        with pytest.raises(ie.TransportError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=url, proxy=proxy.url,
                            ssl_context=trusting(certificates["elsewhere"]))
    assert len(service.requests) == 1


def test_the_proxy_resolves_the_target_and_the_client_looks_up_only_the_proxy(tmp_path, monkeypatch):
    certificate = make_certificate(tmp_path, "api", "DNS:api.iletimerkezi.test")
    looked_up = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    with https_service(certificate) as service, ConnectProxy(hosts={"api.iletimerkezi.test": "127.0.0.1"}) as proxy:
        url = service.url.replace("127.0.0.1", "api.iletimerkezi.test")
        proxy_url = proxy.url.replace("127.0.0.1", "localhost")
        response = ie.edit_contact(CREDS, ie.Contact(1009, name="Ad"), url=url, ssl_context=trusting(certificate),
                                   proxy=proxy_url)
    assert response.contact.name == "Ad"
    assert "api.iletimerkezi.test" not in looked_up and "localhost" in looked_up


def test_proxy_credentials_go_on_the_connect_only(tls_service, trusted, caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    with ConnectProxy(PROXY_USER, PROXY_PASSWORD) as proxy:
        proxy_url = proxy.url.replace("http://", f"http://{PROXY_CREDENTIALS}@")
        with ie.Session(CREDS, url=tls_service.url, ssl_context=trusted, proxy=proxy_url) as session:
            session.edit_contact(ie.Contact(1009, name="x"))
            shown = f"{session!r} {session!s} {session._settings!r} {session._settings.proxy!s}"
    assert proxy.connects[0][2]["Proxy-Authorization"] == basic(PROXY_USER, PROXY_PASSWORD)
    assert all("Proxy-Authorization" not in headers for _, headers, _ in tls_service.requests)
    for secret in (PROXY_PASSWORD, PROXY_CREDENTIALS.split(":")[1]):
        assert secret not in shown and all(secret not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("status", [407, 401, 403])
def test_a_proxy_that_refuses_the_client_raises_proxy_error_and_is_not_retried(tls_service, trusted, status):
    # The reason phrase echoes the password, as a careless proxy might.
    with ConnectProxy(refuse=status, reason=f"Denied for {PROXY_PASSWORD}") as proxy:
        proxy_url = proxy.url.replace("http://", f"http://{PROXY_CREDENTIALS}@")
        for via in VIAS:
            with pytest.raises(ie.ProxyError) as caught:
                edit_once(via, CREDS, ie.Contact(1009, name="x"), url=tls_service.url, ssl_context=trusted,
                          proxy=proxy_url, retries=2)
            error = caught.value
            assert isinstance(error, ie.TransportError) and not isinstance(error, (ie.APIError, ie.ResponseError))
            assert (error.status, error.proxy) == (status, f"127.0.0.1:{proxy.port}")
            assert f"127.0.0.1:{proxy.port}" in str(error) and str(status) in str(error)
            assert PROXY_PASSWORD.lower() not in everything_a_user_sees(error, [])
    assert len(proxy.connects) == 2  # once per call: a wrong password tried again can lock the account
    assert tls_service.connections == 0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_proxy_that_fails_on_its_side_is_retried(quick_backoff, tls_service, trusted, status):
    with ConnectProxy(refuse=status) as proxy:
        with pytest.raises(ie.ProxyError) as caught:
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=tls_service.url, ssl_context=trusted,
                            proxy=proxy.url, retries=2)
    assert caught.value.status == status
    assert len(proxy.connects) == 3
    assert tls_service.connections == 0  # never a direct connection instead


def test_a_tunnel_to_a_closed_port_is_a_proxy_error(quick_backoff, trusted):
    with ConnectProxy() as proxy:
        with pytest.raises(ie.ProxyError, match="503"):
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=f"https://localhost:{unused_port()}{PATH}",
                            ssl_context=trusted, proxy=proxy.url, retries=1)
    assert len(proxy.connects) == 2


def proxy_hangs(connection, proxy):
    proxy.released.wait(30)


def proxy_dribbles(connection, proxy):
    # A tunnel's "200" a byte every 20 ms, forever: only a deadline for the whole attempt stops it.
    import itertools

    for byte in itertools.chain(b"HTTP/1.1 200 Connection established\r\nX-Padding: ", itertools.repeat(ord("x"))):
        if proxy.released.wait(0.02):
            return
        connection.sendall(bytes([byte]))


def proxy_talks_nonsense(connection, proxy):
    connection.sendall(f"SSH-2.0-OpenSSH {PROXY_PASSWORD}\r\n\r\n".encode("utf-8"))


@pytest.mark.parametrize("act", [proxy_hangs, proxy_dribbles, proxy_talks_nonsense])
def test_a_silent_slow_or_strange_proxy_is_a_transport_error_within_the_timeout(quick_backoff, tls_service, trusted,
                                                                                 act):
    with ConnectProxy(act=act) as proxy:
        proxy_url = proxy.url.replace("http://", f"http://{PROXY_CREDENTIALS}@")
        started = time.monotonic()
        with pytest.raises(ie.TransportError) as caught:
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=tls_service.url, ssl_context=trusted,
                            proxy=proxy_url, timeout=0.4, retries=1)
        elapsed = time.monotonic() - started
    assert type(caught.value) is ie.TransportError
    assert PROXY_PASSWORD.lower() not in everything_a_user_sees(caught.value, [])
    assert len(proxy.connects) == 2 and tls_service.connections == 0
    assert elapsed < 2 * 0.4 + 1.0


def test_an_unreachable_proxy_is_retried_and_never_bypassed(quick_backoff, tls_service, trusted, caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    port = unused_port()
    with pytest.raises(ie.TransportError, match=f"through proxy 127.0.0.1:{port}"):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=tls_service.url, ssl_context=trusted,
                        proxy=f"http://127.0.0.1:{port}", retries=2)
    assert len([record for record in caplog.records if "attempt" in record.getMessage()]) == 3
    assert tls_service.connections == 0


def test_a_loopback_http_target_is_tunnelled_too(service):
    with ConnectProxy() as proxy:
        with ie.Session(CREDS, url=service.url, proxy=proxy.url) as session:
            for contact in named(3):
                assert session.edit_contact(contact).contact.name == contact.name
    assert len(proxy.connects) == 1 and service.connections == 1


# -- proxies from the environment ----------------------------------------------


def proxy_environment(monkeypatch, **variables):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    "variables, tunnelled",
    [
        ({"https_proxy": "{proxy}"}, True),
        ({"HTTPS_PROXY": "{proxy}"}, True),
        ({"HTTPS_PROXY": "{hostport}"}, True),  # no scheme: http://, as curl and requests read it
        ({"https_proxy": "{proxy}", "HTTPS_PROXY": "http://127.0.0.1:9"}, True),  # lower case wins
        ({"https_proxy": "", "HTTPS_PROXY": "{proxy}"}, False),  # set but empty in lower case: no proxy
        ({"http_proxy": "{proxy}"}, False),  # for http:// URLs, not https://
        ({"https_proxy": "{proxy}", "no_proxy": "localhost"}, False),
        ({"https_proxy": "{proxy}", "NO_PROXY": " example.com , .localhost"}, False),
        ({"https_proxy": "{proxy}", "no_proxy": "*"}, False),
        ({"https_proxy": "{proxy}", "no_proxy": "calhost,example.com"}, True),  # a label boundary, not a suffix
        ({"https_proxy": "{proxy}", "no_proxy": "localhost:{port}"}, False),  # host:port, as CPython matches
    ],
)
def test_proxy_none_follows_the_environment(monkeypatch, tls_service, trusted, variables, tunnelled):
    with ConnectProxy() as proxy:
        port = tls_service.url.split(":")[2].split("/")[0]
        fill = {"proxy": proxy.url, "hostport": f"127.0.0.1:{proxy.port}", "port": port}
        proxy_environment(monkeypatch, **{name: value.format(**fill) for name, value in variables.items()})
        for via in VIAS:
            assert edit_once(via, CREDS, ie.Contact(1009, name="x"), url=tls_service.url, ssl_context=trusted)
    assert len(proxy.connects) == (2 if tunnelled else 0)
    assert len(tls_service.requests) == 2


@pytest.mark.parametrize(
    "variables, tunnelled",
    [
        ({"http_proxy": "{proxy}"}, True),
        ({"HTTP_PROXY": "{proxy}"}, True),
        ({"HTTP_PROXY": "{proxy}", "REQUEST_METHOD": "POST"}, False),  # httpoxy: a CGI request may have set it
        ({"http_proxy": "{proxy}", "REQUEST_METHOD": "POST"}, True),
        ({"http_proxy": "{proxy}", "no_proxy": "127.0.0.1"}, False),
        ({"https_proxy": "{proxy}"}, False),
    ],
)
def test_loopback_http_urls_follow_http_proxy(monkeypatch, service, variables, tunnelled):
    with ConnectProxy() as proxy:
        proxy_environment(monkeypatch, **{name: value.format(proxy=proxy.url) for name, value in variables.items()})
        assert ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url)
    assert len(proxy.connects) == (1 if tunnelled else 0)


def test_the_environment_is_read_for_every_new_connection_and_an_explicit_proxy_ignores_it(monkeypatch, tls_service,
                                                                                           trusted):
    with ConnectProxy() as proxy, ConnectProxy() as other:
        with ie.Session(CREDS, url=tls_service.url, ssl_context=trusted) as session:
            session.edit_contact(ie.Contact(1009, name="direct"))
            session.close()
        monkeypatch.setenv("https_proxy", proxy.url)
        with ie.Session(CREDS, url=tls_service.url, ssl_context=trusted) as session:
            session.edit_contact(ie.Contact(1009, name="via proxy"))
        monkeypatch.setenv("no_proxy", "*")
        ie.edit_contact(CREDS, ie.Contact(1009, name="explicit"), url=tls_service.url, ssl_context=trusted,
                        proxy=other.url)
        ie.edit_contact(CREDS, ie.Contact(1009, name="none"), url=tls_service.url, ssl_context=trusted, proxy="")
        monkeypatch.delenv("no_proxy")
        ie.edit_contact(CREDS, ie.Contact(1009, name="none again"), url=tls_service.url, ssl_context=trusted,
                        proxy="")
    assert (len(proxy.connects), len(other.connects), len(tls_service.requests)) == (1, 1, 5)


# -- no_proxy: names, CIDR ranges and bare addresses ---------------------------------------------------------

def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")


@pytest.mark.parametrize(
    "host, no_proxy, direct",
    [
        ("127.0.0.1", "10.0.0.0/8,127.0.0.0/8", True),  # a CIDR range, as curl and requests read it
        ("127.0.0.1", "127.0.0.1/32", True),
        ("127.0.0.1", " 192.168.0.0/16 , 127.0.0.0/24 ", True),  # blanks around entries
        ("127.0.0.1", "127.0.0.1", True),  # a bare address
        ("127.0.0.1", "10.0.0.0/8,fd00::/8", False),  # ranges that do not hold it
        ("127.0.0.1", "127.0.0.2/32,::/0", False),  # nor does an IPv6 range, even all of it
        ("127.0.0.1", "127.0.0.0/33,127.0.0.0/x,not/8,[,,300.0.0.0/8,127.0.0.0/8/8,127.0.0.0-127.0.0.9", False),
        ("127.0.0.1", "127.0.0.0/33,, garbage/8 ,127.0.0.0/8", True),  # garbage ignored, the rest still read
        pytest.param("::1", "::1", True, marks=needs_ipv6),  # bare IPv6: urllib alone misses it against "[::1]"
        pytest.param("::1", "[::1]", True, marks=needs_ipv6),
        pytest.param("::1", "::1/128", True, marks=needs_ipv6),
        pytest.param("::1", "fd00::/8,::/64", True, marks=needs_ipv6),
        pytest.param("::1", "fd00::/8", False, marks=needs_ipv6),
        pytest.param("::1", "127.0.0.0/8,::2", False, marks=needs_ipv6),
        ("localhost", "127.0.0.0/8", False),  # a name is never looked up to match a range
        ("localhost", "127.0.0.1,::1,[::1]", False),  # nor an address
        ("localhost", "localhost", True),
    ],
)
@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_takes_cidr_ranges_and_bare_addresses_and_never_looks_names_up(monkeypatch, host, no_proxy, direct,
                                                                                 variable):
    looked_up = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(name, *args, **kwargs):
        looked_up.append(name)
        return real_getaddrinfo(name, *args, **kwargs)

    with running(FakeService(), bind="::1" if host == "::1" else "127.0.0.1") as service, \
            ConnectProxy(hosts={"localhost": "127.0.0.1"}) as proxy:
        url = service.url.replace("127.0.0.1", host) if host == "localhost" else service.url
        monkeypatch.setenv("http_proxy", proxy.url)  # the loopback http:// service: http_proxy serves it
        monkeypatch.setenv(variable, no_proxy)
        monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
        for via in VIAS:
            assert edit_once(via, CREDS, ie.Contact(1009, name="x"), url=url, timeout=5).contact.name == "x"
    port = url.rsplit(":", 1)[1].split("/")[0]
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert [connect[:2] for connect in proxy.connects] == ([] if direct else [("CONNECT", target)] * 2)
    assert len(service.requests) == 2 and service.connections == 2  # each way: one connection, the edit arrives
    if host == "localhost" and not direct:
        assert "localhost" not in looked_up  # the proxy resolves the target; the client only the proxy


# -- fork ----------------------------------------------------------------------


def in_a_child(work):
    """Run ``work()`` in a forked child; return what it returned (a str) or the error it raised, as text."""
    import signal
    import warnings

    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: forking a process that has threads
        pid = os.fork()
    if pid == 0:
        os.close(read_end)
        signal.alarm(10)  # a child that deadlocks dies, and the test fails instead of hanging
        try:
            result = str(work())
        except BaseException as error:
            result = f"{type(error).__name__}: {error}"
        os.write(write_end, result.encode("utf-8"))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode("utf-8")
    os.waitpid(pid, 0)
    return output


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")


@needs_fork
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_after_fork_the_child_opens_its_own_connection_and_the_parents_stays_usable(certificates, tls):
    with contextlib.ExitStack() as stack:
        if tls:
            service = stack.enter_context(https_service(certificates["local"]))
            context = trusting(certificates["local"])
        else:
            service, context = stack.enter_context(running(FakeService())), None
        with ie.Session(CREDS, url=service.url, ssl_context=context, retries=0, timeout=5) as session:
            assert session.edit_contact(ie.Contact(1009, name="parent")).contact.name == "parent"
            for child_name in ("child", "second child"):
                got = in_a_child(lambda name=child_name: session.edit_contact(ie.Contact(1009, name=name)).contact.name)
                assert got == child_name
            assert session.edit_contact(ie.Contact(1009, name="parent again")).contact.name == "parent again"
        names = [ET.fromstring(body).findtext("contact/name") for _, _, body in service.requests]
        assert names == ["parent", "child", "second child", "parent again"]
        assert service.connections == 3  # the parent's, and one for each child


@needs_fork
def test_a_lock_held_by_a_parent_thread_at_fork_does_not_deadlock_the_child(service):
    with ie.Session(CREDS, url=service.url, retries=0, timeout=5) as session:
        session.edit_contact(ie.Contact(1009, name="warm"))
        held, release = threading.Event(), threading.Event()

        def hold():
            with session._lock:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(5)
        try:
            got = in_a_child(lambda: session.edit_contact(ie.Contact(1009, name="child")).contact.name)
        finally:
            release.set()
            holder.join()
        assert got == "child"


@needs_fork
def test_a_name_lookup_in_flight_at_fork_does_not_stall_the_child(monkeypatch, service):
    real_getaddrinfo = socket.getaddrinfo
    slow = threading.Event()

    def getaddrinfo(host, *args, **kwargs):
        if host == "localhost" and not kwargs.get("flags") and not slow.is_set():
            slow.set()
            time.sleep(1)  # the parent's first lookup, still running when it forks (a child has no thread to end it)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = service.url.replace("127.0.0.1", "localhost")
    def edit_in_parent():
        with pytest.raises(ie.TransportError, match="looking up localhost timed out"):
            ie.edit_contact(CREDS, ie.Contact(1009, name="p"), url=url, retries=0, timeout=0.2)

    parent = threading.Thread(target=edit_in_parent)
    parent.start()
    assert slow.wait(5)
    got = in_a_child(lambda: ie.edit_contact(CREDS, ie.Contact(PEOPLE[0], name="c"), url=url, timeout=2).contact.name)
    parent.join()
    assert got == "c"
    assert eventually(lambda: not lookup_threads())  # the parent's lookup ends too, and is shared with no later test


@needs_fork
# The race shows in some trials only: the default run tries 8 times, `pytest -m soak` 100 times.
@pytest.mark.parametrize("trials", [8, pytest.param(100, marks=pytest.mark.soak)])
def test_a_fork_while_another_thread_makes_the_first_session_does_not_hang_the_child(tmp_path, trials):
    # The other thread is importing (encodings.idna, ssl) or loading the CA store: locks no child thread releases.
    script = tmp_path / "trial.py"
    script.write_text(f"""
import os, signal, sys, threading, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {str(HERE)!r})
import iletimerkezi_edit as ie
credentials = ie.Credentials("k", "0" * 64)
worker = threading.Thread(target=lambda: ie.Session(credentials))
worker.start()
pid = os.fork()
if pid == 0:
    signal.alarm(10)
    ie.Session(credentials)
    os._exit(0)
_, status = os.waitpid(pid, 0)
worker.join()
print("ok" if status == 0 else "hung")
""")
    for _ in range(trials):
        done = subprocess.run([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert done.stdout.decode().strip() == "ok", done.stderr.decode()[-500:]


# -- interim answers, and answers about another contact or none ----------------


def answer_each_after(*interims, contact_id=None):
    """Answer every request on the connection with the edited contact, each answer after ``interims`` (1xx lines)."""

    def behaviour(connection, server, request):
        while request:
            name = ET.fromstring(request.partition(b"\r\n\r\n")[2]).findtext("contact/name")
            for status, reason in interims:
                connection.sendall(f"HTTP/1.1 {status} {reason}\r\nLink: </a.css>; rel=preload\r\n\r\n".encode())
            contact = dict(FakeService().contacts[1009], name=name, id=contact_id or 1009)
            connection.sendall(http_answer(200, response_document(200, contact)))
            request = read_request(connection)
            if request:
                server.requests.append(request)

    return behaviour


@pytest.mark.parametrize("interims", [[(102, "Processing")], [(103, "Early Hints")], [(100, "Continue"), (103, "Early"
                                      " Hints"), (102, "İşleniyor")]], ids=["102", "103", "100-103-102"])
@pytest.mark.parametrize("via", VIAS)
def test_interim_answers_are_skipped_and_keep_a_session_in_step(interims, via):
    with FaultServer(answer_each_after(*interims)) as server:
        if via == "function":
            names = [ie.edit_contact(CREDS, contact, url=server.url, retries=0).contact.name for contact in named(3)]
        else:
            with ie.Session(CREDS, url=server.url, retries=0, timeout=2) as session:
                names = [session.edit_contact(contact).contact.name for contact in named(3)]
    assert names == ["n0", "n1", "n2"]
    assert server.connections == (3 if via == "function" else 1)


def test_seventeen_interim_answers_are_still_skipped():
    with FaultServer(answer_each_after(*[(102, "Processing")] * 17)) as server:
        assert ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url, retries=0).contact.name == "x"


def test_an_unasked_protocol_switch_or_endless_interim_answers_are_refused(quick_backoff):
    for interims in ([(101, "Switching Protocols")], [(103, "Early Hints")] * 1001):
        with FaultServer(answer_each_after(*interims)) as server:
            with pytest.raises(ie.ResponseError):
                ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url, retries=2)
        assert len(server.requests) == 1


def test_an_answer_about_another_contact_is_refused_and_its_connection_closed():
    with FaultServer(answer_each_after(contact_id=1010), answer_each_after()) as server:
        with ie.Session(CREDS, url=server.url, retries=0, timeout=2) as session:
            with pytest.raises(ie.ResponseError, match="about contact 1010, not 1009"):
                session.edit_contact(ie.Contact(1009, name="x"))
            assert session.edit_contact(ie.Contact(1009, name="y")).contact.name == "y"
    assert server.connections == 2


def test_a_success_that_names_no_contact_is_refused_and_its_connection_closed():
    bare = b"<response><status><code>200</code><message>ok</message></status></response>"
    with FaultServer(answer(200, bare), answer_each_after()) as server:
        with ie.Session(CREDS, url=server.url, retries=0, timeout=2) as session:
            with pytest.raises(ie.ResponseError, match="names no contact"):
                session.edit_contact(ie.Contact(1009, name="x"))
            assert session.edit_contact(ie.Contact(1009, name="y")).contact.name == "y"
    assert server.connections == 2


def test_a_desynchronised_connection_never_passes_off_an_old_answer_as_new():
    # A server that answers one request twice: the second copy would be read as the next edit's answer.
    def answer_twice(connection, server, request):
        first = dict(FakeService().contacts[1009], id=1009, name="first")
        connection.sendall(http_answer(200, response_document(200, first)) * 2)
        server.released.wait(30)

    with FaultServer(answer_twice, answer_each_after()) as server:
        with ie.Session(CREDS, url=server.url, retries=0, timeout=2) as session:
            assert session.edit_contact(ie.Contact(1009, name="first")).contact.name == "first"
            assert session.edit_contact(ie.Contact(1009, name="second")).contact.name == "second"
    assert server.connections == 2  # the stray answer was seen before sending; the edit went on a new connection


# -- name lookups --------------------------------------------------------------


def lookup_threads():
    return [thread for thread in threading.enumerate() if thread.name == "iletimerkezi_edit-resolve"]


def test_slow_name_lookups_are_shared_and_threads_do_not_pile_up(monkeypatch, quick_backoff, service):
    real_getaddrinfo = socket.getaddrinfo
    calls = []
    release = threading.Event()

    def slow_getaddrinfo(host, *args, **kwargs):
        if host == "localhost" and not kwargs.get("flags"):  # a lookup, not the check for a numeric address
            calls.append(host)
            release.wait(10)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    url = service.url.replace("127.0.0.1", "localhost")
    try:
        with ie.Session(CREDS, url=url, timeout=0.1, retries=2) as session:
            results = session.edit_contacts(people(32), workers=16)
            assert all(isinstance(result, ie.TransportError) and "looking up localhost timed out" in str(result)
                       for result in results)
            assert len(calls) == 1 and len(lookup_threads()) <= 1
    finally:
        release.set()
    assert eventually(lambda: not lookup_threads())
    assert ie.edit_contact(CREDS, ie.Contact(1009, name="after"), url=url).contact.name == "after"
    assert len(calls) == 2  # a finished lookup is not kept: the next connection asks again


def test_a_lookup_thread_that_cannot_start_is_a_transport_error(monkeypatch, service):
    def cannot_start(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", cannot_start)
    url = service.url.replace("127.0.0.1", "localhost")
    with pytest.raises(ie.TransportError, match="cannot start a thread to look up localhost"):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=url, retries=0)
    monkeypatch.undo()
    assert ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=url).contact.name == "x"  # nothing left stuck


# ---------------------------------------------------------------------------
# Retries and backoff
# ---------------------------------------------------------------------------


def test_retries_zero_tries_once_and_more_retries_try_more(quick_backoff):
    for retries in (0, 4):
        with FaultServer(close) as server:
            with pytest.raises(ie.TransportError):
                ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url, timeout=2, retries=retries)
        assert len(server.requests) == retries + 1


@pytest.mark.parametrize("name", ["503", "502", "500", "504"])
def test_http_errors_carry_their_status_after_retries(quick_backoff, name):
    status = int(name)
    body = response_document(503) if status == 503 else GARBAGE["html"]
    with FaultServer(answer(status, body, "text/html" if status != 503 else "text/xml", RETRY_NOW)) as server:
        with pytest.raises(ie.IletiMerkeziError) as caught:
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url, timeout=2)
    assert caught.value.http_status == status
    assert len(server.requests) == 3


def test_the_last_error_is_raised_as_it_was(quick_backoff):
    with FaultServer(hang, answer(503, response_document(503), extra=RETRY_NOW)) as server:
        with pytest.raises(ie.APIError) as caught:
            ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url, timeout=0.3, retries=1)
    assert (caught.value.code, caught.value.http_status, caught.value.message) == (503, 503, SERVER_MESSAGES[503])
    assert len(server.requests) == 2


def waits_logged(records):
    return [float(found) for found in re.findall(r"trying again in ([0-9.]+) s", " ".join(r.getMessage() for r in records))]


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap(monkeypatch, caplog):
    monkeypatch.setattr(ie._RetryPolicy, "BACKOFF_FIRST", 0.04)
    monkeypatch.setattr(ie._RetryPolicy, "BACKOFF_CAP", 0.1)
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    started = time.monotonic()
    with pytest.raises(ie.TransportError):
        ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=f"http://127.0.0.1:{unused_port()}{PATH}", retries=5)
    elapsed = time.monotonic() - started
    waits = waits_logged(caplog.records)
    ceilings = [0.04, 0.08, 0.1, 0.1, 0.1]
    assert len(waits) == 5
    assert all(ceiling / 2 - 0.005 <= wait <= ceiling + 0.005 for wait, ceiling in zip(waits, ceilings)), waits
    assert elapsed >= sum(waits) - 0.03


def test_waits_are_jittered():
    # Clients that failed together should not all come back at the same moment.
    waits = [ie._RetryPolicy(2).wait(ie._Outcome(None, ie.TransportError("x")), 1) for _ in range(1000)]
    assert 0.25 <= min(waits) < 0.27 and 0.48 < max(waits) <= 0.5


def test_retry_waits_neither_follow_nor_disturb_the_global_random_state():
    # Processes forked from one parent, or Lambda SnapStart instances restored from one snapshot, share the
    # state of the random module; waits drawn from it would be the same in each, and they would retry in step.
    saved = random.getstate()
    try:
        draws = []
        for _ in range(2):
            random.seed(13)
            state = random.getstate()
            draws.append([ie._RetryPolicy(2).wait(ie._Outcome(None, ie.TransportError("x")), 1) for _ in range(8)])
            assert random.getstate() == state  # nothing was drawn from it
    finally:
        random.setstate(saved)
    assert draws[0] != draws[1]
    assert all(0.25 <= wait <= 0.5 for wait in draws[0] + draws[1])
    assert isinstance(ie._jitter(), random.SystemRandom)  # os.urandom: no state to share


def test_default_backoff_starts_at_half_a_second(caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    with pytest.raises(ie.TransportError):
        ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=f"http://127.0.0.1:{unused_port()}{PATH}", retries=1)
    [wait] = waits_logged(caplog.records)
    assert 0.25 <= wait <= 0.5


def test_retry_after_is_honoured(caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    busy = answer(503, response_document(503), extra=(("Retry-After", "1"),))
    with FaultServer(busy, answer(200, SAMPLE_RESPONSE)) as server:
        started = time.monotonic()
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url)
        elapsed = time.monotonic() - started
    assert waits_logged(caplog.records) == [1.0]
    assert elapsed >= 1.0 and len(server.requests) == 2


@pytest.mark.parametrize("header, expected", [("5", 0.2), ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("-5", None)])
def test_retry_after_is_capped_and_only_seconds_count(quick_backoff, monkeypatch, caplog, header, expected):
    monkeypatch.setattr(ie._RetryPolicy, "RETRY_AFTER_CAP", 0.2)
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    busy = answer(503, response_document(503), extra=(("Retry-After", header),))
    with FaultServer(busy, answer(200, SAMPLE_RESPONSE)) as server:
        started = time.monotonic()
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url)
        assert time.monotonic() - started < 2
    [wait] = waits_logged(caplog.records)
    if expected is None:  # not seconds: the backoff decides
        assert wait <= 0.01
    else:
        assert wait == expected


# ---------------------------------------------------------------------------
# Secrets and logging
# ---------------------------------------------------------------------------


def request_body(request):
    return request.partition(b"\r\n\r\n")[2].decode("utf-8")


def echo_in_message_as(change):
    """A 400 whose message is the request's body, passed through ``change``."""

    def behaviour(connection, server, request):
        echoed = xml_escape(change(request_body(request))).encode()
        connection.sendall(http_answer(400, response_document(400).replace(SERVER_MESSAGES[400].encode(), echoed)))

    return behaviour


echo_in_message = echo_in_message_as(str)
echo_lowercased_in_message = echo_in_message_as(str.lower)


def echo_in_status_line(connection, server, request):
    connection.sendall(b"HTTP/1.1 " + b" ".join(request.split()) + b"\r\n\r\n")


def echo_in_html(connection, server, request):
    connection.sendall(http_answer(502, b"<html><pre>" + request + b"</pre></html>", "text/html"))


def echo_as_root(connection, server, request):
    connection.sendall(http_answer(200, f"<a{HASH}><status/></a{HASH}>".encode()))


SECRET_SCENARIOS = {
    "refused": None,
    "hang": [hang],
    "reset": [reset],
    "cut short": [cut_short],
    "always 503": [answer(503, response_document(503), extra=RETRY_NOW)],
    "html 502": [answer(502, GARBAGE["html"], "text/html")],
    "401": [answer(401, response_document(401))],
    "doctype bomb": [answer(200, BILLION_LAUGHS)],
    "21 MiB": [endless],
    "echo in message": [echo_in_message],
    "echo lowercased in message": [echo_lowercased_in_message],
    "echo in status line": [echo_in_status_line],
    "echo in html": [echo_in_html],
    "echo as root element": [echo_as_root],
}
ECHOED_IN_ERROR = {"echo in message", "echo lowercased in message", "echo in status line", "echo as root element"}


def everything_a_user_sees(error, records):
    """Every text an error or log record can show: messages, reprs, attributes, causes, the traceback."""
    texts = ["".join(traceback.format_exception(type(error), error, error.__traceback__))]
    link = error
    while link is not None:
        texts += [str(link), repr(link), repr(link.args), repr(getattr(link, "__dict__", {}))]
        link = link.__cause__ or link.__context__
    for record in records:
        texts += [record.getMessage(), repr(record.args), logging.Formatter().format(record)]
    return "\n".join(texts).lower()


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("name", list(SECRET_SCENARIOS))
@pytest.mark.parametrize("credentials", [  # the second, a run over again with another hash, in the soak run only
    pytest.param(ie.Credentials.from_secret(KEY, SECRET), id="from secret"),
    pytest.param(ie.Credentials(KEY, HASH.upper()), id="upper-case hash", marks=pytest.mark.soak)])
def test_no_failure_shows_the_secret_or_the_hash(quick_backoff, caplog, name, credentials, via):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit.bodies")  # the bodies too, switched on by name
    behaviours = SECRET_SCENARIOS[name]
    with contextlib.ExitStack() as stack:
        url = f"http://127.0.0.1:{unused_port()}{PATH}"
        if behaviours is not None:
            url = stack.enter_context(FaultServer(*behaviours)).url
        with pytest.raises(ie.IletiMerkeziError) as caught:
            edit_once(via, credentials, ie.Contact(1009, name="x"), url=url, timeout=0.25, retries=1)
    seen = everything_a_user_sees(caught.value, caplog.records)
    assert SECRET not in seen and HASH not in seen
    # Each attempt's bodies line shows the request with the hash redacted.
    bodies = [record.getMessage().lower() for record in caplog.records if record.name == "iletimerkezi_edit.bodies"]
    assert bodies and all("<hash>redacted</hash>" in line for line in bodies)
    if name in ECHOED_IN_ERROR:  # the echo reached the error, and was redacted there
        assert "redacted" in str(caught.value).lower()


def shown_with_locals(error):
    """What Sentry, ``pytest --showlocals`` or Django's debug page can show of an error: its traceback and those
    of every error chained to it, with the local variables of each frame."""
    formatted = traceback.TracebackException(type(error), error, error.__traceback__, capture_locals=True).format()
    return "".join(formatted).lower()


FRAME_SCENARIOS = dict(
    SECRET_SCENARIOS,
    **{
        "465": [answer(465, response_document(465))],
        "json": [answer(200, GARBAGE["json"], "application/json")],
        "bad input after credentials were made": "bad input",
    },
)


@pytest.mark.parametrize("via", VIAS + ["bulk"])
@pytest.mark.parametrize("name", list(FRAME_SCENARIOS))
@pytest.mark.parametrize("credentials", [  # the second, a run over again with another hash, in the soak run only
    pytest.param(ie.Credentials.from_secret(KEY, SECRET), id="from secret"),
    pytest.param(ie.Credentials(KEY, HASH.upper()), id="upper-case hash", marks=pytest.mark.soak)])
def test_no_frame_of_any_failure_holds_the_secret_or_the_hash(quick_backoff, name, credentials, via):
    scenario = FRAME_SCENARIOS[name]
    contact = ie.Contact(1009, name="a\x00b" if scenario == "bad input" else "x")
    with contextlib.ExitStack() as stack:
        url = f"http://127.0.0.1:{unused_port()}{PATH}"
        if scenario not in (None, "bad input"):
            url = stack.enter_context(FaultServer(*scenario)).url
        if via == "bulk":
            with ie.Session(credentials, url=url, timeout=0.25, retries=1) as session:
                [error] = session.edit_contacts([contact], workers=1)
                # Two contacts side by side: the second's error comes from a worker thread.
                [other] = session.edit_contacts([contact, ie.Contact(PEOPLE[0], name=contact.name)], workers=2)[1:]
            assert isinstance(error, ie.IletiMerkeziError) and isinstance(other, ie.IletiMerkeziError)
            errors = [error, other]
        else:
            with pytest.raises(ie.IletiMerkeziError) as caught:
                edit_once(via, credentials, contact, url=url, timeout=0.25, retries=1)
            errors = [caught.value]
    for error in errors:
        shown = shown_with_locals(error)
        assert "frame" not in shown or "line" in shown  # the format is the one a debugger shows
        assert SECRET not in shown and HASH not in shown, shown


def test_credentials_from_a_bad_environment_leave_no_secret_in_frames(monkeypatch):
    monkeypatch.setenv("ILETIMERKEZI_KEY", KEY)
    monkeypatch.setenv("ILETIMERKEZI_SECRET", SECRET)
    monkeypatch.setenv("ILETIMERKEZI_HASH", "0" * 64)  # does not match: from_env refuses after computing the hash
    with pytest.raises(ie.ValidationError, match="does not match") as caught:
        ie.Credentials.from_env()
    shown = shown_with_locals(caught.value)
    assert SECRET not in shown and HASH not in shown and "0" * 64 not in shown


def test_a_secret_that_is_not_utf8_is_a_validation_error_naming_it_and_stays_out_of_frames(monkeypatch):
    monkeypatch.setenv("ILETIMERKEZI_KEY", KEY)
    secret = b"\xfeifre-test-secret".decode("utf-8", "surrogateescape")  # typed in a cp1254 terminal
    monkeypatch.setattr(os, "environ", dict(os.environ, ILETIMERKEZI_SECRET=secret))

    def raised(call):  # so that the traceback starts here, not in this test's frame, which holds the secret
        try:
            call()
        except ie.ValidationError as error:
            return error
        raise AssertionError("no ValidationError")

    error = raised(ie.Credentials.from_env)
    assert "ILETIMERKEZI_SECRET cannot be encoded as UTF-8" in str(error)
    assert "ifre-test-secret" not in shown_with_locals(error)
    with pytest.raises(ie.ValidationError, match="secret cannot be encoded"):
        ie.sign(KEY, secret)


def test_a_refused_proxy_password_stays_out_of_the_frames_below_the_call(service):
    def refused():
        try:
            ie.Session(CREDS, url=service.url, proxy="http://ali:Hunter2-Sekret@127.0.0.1:3128/path")
        except ie.ValidationError as error:
            return error
        raise AssertionError("accepted")

    error = refused()
    trace, below = error.__traceback__, []
    while trace is not None:
        if trace.tb_frame.f_code.co_name not in ("refused", "__init__"):  # those hold the argument they were given
            below.append(repr(trace.tb_frame.f_locals))
        trace = trace.tb_next
    assert below and not any("Hunter2-Sekret" in local_variables for local_variables in below)


# -- a proxy that repeats its credentials: in its status line, a header, its body, wherever it can ------------

# Proxy users and passwords, as they are (the URL holds them percent-encoded): the pair above, and a Turkish one
# whose "user:password" base64 has padding (it ends "=") while the other's has "==".
PROXY_ACCOUNTS = {"ascii-escaped": (PROXY_USER, PROXY_PASSWORD), "turkish": ("ali.", "Şifre@Çok:Gizli"),
                  "blanks": ("veli", "çok gizli / parola")}  # a form encoder writes its blanks as "+"


def proxy_url_with(proxy, user, password):
    quoted = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
    return proxy.url.replace("http://", f"http://{quoted}@")


def credential_forms(authorization):
    """Every form of the credentials that a CONNECT's ``Proxy-Authorization`` carries, as a proxy could repeat them:
    the header's value, its base64 with and without padding, "user:password", the password as it is,
    percent-encoded (four ways), and its UTF-8 bytes read as Latin-1 (as http.client reads a status line)."""
    token = authorization.partition(" ")[2]
    user_password = base64.b64decode(token).decode("utf-8")
    password = user_password.partition(":")[2]
    forms = {authorization, token, token.rstrip("="), user_password, password, urllib.parse.quote(password, safe=""),
             urllib.parse.quote(password), urllib.parse.quote_plus(password, safe=""), urllib.parse.quote_plus(password),
             password.encode("utf-8").decode("latin-1")}
    return sorted(forms, key=len)


def echo_page(forms):
    return ("<html><body>" + " | ".join(forms) + "</body></html>").encode("utf-8")


def echo_head(status_line, forms, body, extra=()):
    head = [status_line, "Content-Type: text/html", f"Content-Length: {len(body)}",
            f'Proxy-Authenticate: Basic realm="{forms[-1]}"', *(f"X-Echo-{n}: {form}" for n, form in enumerate(forms)),
            *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8")


def echoing_proxy(kind):
    """A ``ConnectProxy`` behaviour that answers the CONNECT (or the request through the tunnel) repeating the
    credentials in every form: ``kind`` says how."""

    def act(connection, proxy):
        forms = credential_forms(proxy.connects[-1][2]["Proxy-Authorization"])
        said = " ".join(forms)
        body = echo_page(forms)
        if kind in ("407", "407 then close", "407 then reset", "407 cut short"):
            data = echo_head(f"HTTP/1.1 407 {said}", forms, body) + body
            connection.sendall(data[:-10] if kind == "407 cut short" else data)
            if kind == "407 then reset":
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if kind == "407":  # kept open, as a proxy that waits for the retry with credentials
                proxy.released.wait(5)
        elif kind == "interim then 407":
            connection.sendall(f"HTTP/1.1 100 {said}\r\nX-Echo: {said}\r\n\r\n".encode("utf-8")
                               + echo_head(f"HTTP/1.1 407 {said}", forms, body) + body)
        elif kind == "101":
            connection.sendall(echo_head(f"HTTP/1.1 101 {said}", forms, b""))
        elif kind == "not HTTP":
            connection.sendall(f"SSH-2.0-OpenSSH {said}\r\n{said}\r\n\r\n".encode("utf-8"))
        elif kind == "bad status":
            connection.sendall(f"HTTP/1.1 4O7 {said}\r\n\r\n".encode("utf-8"))
        elif kind == "header too long":
            connection.sendall(f"HTTP/1.1 407 x\r\nX-Echo: {said}{'x' * 70000}\r\n\r\n".encode("utf-8"))
        elif kind == "200 and more":
            connection.sendall(f"HTTP/1.1 200 {said}\r\n\r\n{said}".encode("utf-8"))
        elif kind.startswith("tunnel "):  # the tunnel opens; then the proxy answers the request itself
            connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            read_request(connection)
            if kind == "tunnel bad status line":
                connection.sendall(f"HTTP/1.1 2OO {said}\r\n\r\n".encode("utf-8"))
            elif kind == "tunnel 502 page":
                connection.sendall(echo_head(f"HTTP/1.1 502 {said}", forms, body) + body)
            elif kind == "tunnel API message":  # a 400 whose message repeats them
                page = response_document(400).replace(SERVER_MESSAGES[400].encode(), xml_escape(said).encode())
                connection.sendall(echo_head(f"HTTP/1.1 400 {said}", forms, page) + page)
            elif kind == "tunnel cut short":
                connection.sendall(echo_head("HTTP/1.1 200 OK", forms, body + b"x" * 100) + body)

    return act


ECHO_KINDS = {  # how the proxy repeats them, and what the caller gets
    "407": ie.ProxyError,
    "407 then close": ie.ProxyError,
    "407 then reset": ie.ProxyError,
    "407 cut short": ie.ProxyError,
    "interim then 407": ie.ProxyError,
    "101": ie.TransportError,
    "not HTTP": ie.TransportError,
    "bad status": ie.TransportError,
    "header too long": ie.TransportError,
    "200 and more": ie.TransportError,
    "tunnel bad status line": ie.TransportError,
    "tunnel 502 page": ie.ResponseError,
    "tunnel API message": ie.APIError,
    "tunnel cut short": ie.TransportError,
}


class Unshown:
    """Holds a value that a frame's locals must not show (here: a proxy URL with its password)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "<unshown>"


def error_of(call):
    """The IletiMerkeziError that ``call()`` raises, caught in this frame, which holds nothing else."""
    try:
        call()
    except ie.IletiMerkeziError as error:
        return error
    raise AssertionError("no error")


def proxy_texts(error, records):
    """All that ``error`` and ``records`` can show: what ``everything_a_user_sees`` finds, the pickle and what it
    rebuilds, the traceback of the chain and the same with each frame's local variables."""
    import pickle

    rebuilt = pickle.loads(pickle.dumps(error))
    texts = [everything_a_user_sees(error, records), shown_with_locals(error),
             "".join(traceback.format_exception(type(error), error, error.__traceback__, chain=True)),
             str(rebuilt), repr(rebuilt), repr(vars(rebuilt)),
             pickle.dumps(error).decode("latin-1"),  # what crosses a process boundary, byte for byte
             pickle.dumps(error, protocol=0).decode("latin-1")]
    return "\n".join(texts).lower()


def assert_no_form_of(forms, text, where=""):
    shown = [form for form in forms if form.lower() in text.lower()]
    assert not shown, f"{where}: {shown}"


@pytest.mark.parametrize("account", list(PROXY_ACCOUNTS))
@pytest.mark.parametrize("kind", list(ECHO_KINDS))
@pytest.mark.parametrize("given", ["argument", pytest.param("environment", marks=pytest.mark.soak)])
def test_no_form_of_the_proxy_credentials_shows_whatever_the_proxy_repeats(quick_backoff, monkeypatch, caplog, service,
                                                                           kind, account, given):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit.bodies")
    with ConnectProxy(act=echoing_proxy(kind)) as proxy:
        url = Unshown(proxy_url_with(proxy, *PROXY_ACCOUNTS[account]))
        if given == "environment":
            monkeypatch.setenv("http_proxy", url.value)  # the loopback http:// service: http_proxy serves it
        chosen = Unshown(url.value if given == "argument" else None)
        error = error_of(lambda: ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url,
                                                 proxy=chosen.value, timeout=2, retries=1))
        del url, chosen
    assert type(error) is ECHO_KINDS[kind], repr(error)
    forms = credential_forms(proxy.connects[0][2]["Proxy-Authorization"])
    assert_no_form_of(forms, proxy_texts(error, caplog.records), kind)
    if kind in ("tunnel bad status line", "tunnel API message"):
        assert "REDACTED" in str(error)  # the echo reached the error, and was taken out there
    assert len(proxy.connects) == (1 if ECHO_KINDS[kind] in (ie.ProxyError, ie.APIError) else 2)  # tried again
    assert service.connections == 0  # the proxy answered for the service, and nothing went around it


def test_each_attempt_logs_one_debug_line(caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    with FaultServer(answer(503, response_document(503), extra=RETRY_NOW), answer(200, SAMPLE_RESPONSE)) as server:
        ie.edit_contact(CREDS, ie.Contact(1009, name="Şule"), url=server.url)
    first, second = caplog.records
    assert {first.levelno, second.levelno, first.name} == {logging.DEBUG, "iletimerkezi_edit"}
    assert re.fullmatch(rf"POST {re.escape(server.url)}, contact 1009, attempt 1 of 3: HTTP 503, APIError 503 \(.*\), "
                        r"trying again in 0\.00 s after [0-9]+ ms", first.getMessage())
    assert re.fullmatch(rf"POST {re.escape(server.url)}, contact 1009, attempt 2 of 3: HTTP 200 after [0-9]+ ms",
                        second.getMessage())
    # No body at this level: the request and answer go to iletimerkezi_edit.bodies (see the bodies tests below).


def test_the_logger_has_a_null_handler_and_is_silent_by_default():
    logger = logging.getLogger("iletimerkezi_edit")
    assert any(isinstance(handler, logging.NullHandler) for handler in logger.handlers)
    code = ("import logging, sys; sys.path.insert(0, '.'); import iletimerkezi_edit as ie; "
            f"ie.edit_contact(ie.Credentials('k', 'a' * 64), ie.Contact(1, name='x'), url='http://127.0.0.1:{unused_port()}/', retries=0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=str(HERE), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert done.returncode == 1 and b"TransportError" in done.stderr and b"attempt" not in done.stderr


PERSONAL = {"name": "Şule Gizlioğlu", "surname": "Saklıdere", "email": "sule.saklidere@example.com",
            "gsm": "+905331234567", "field": "doğum-27/09/1990"}


def personal_contact():
    return ie.Contact(1009, name=PERSONAL["name"], surname=PERSONAL["surname"], email=PERSONAL["email"],
                      gsm=PERSONAL["gsm"], custom_fields=[ie.CustomField(1, PERSONAL["field"])], groups=[9, 12])


def personal_data_in(records):
    """The personal values that any record shows, in its message, its arguments or formatted."""
    texts = [text for record in records
             for text in (record.getMessage(), repr(record.args), logging.Formatter().format(record))]
    return sorted({name for name, value in PERSONAL.items() for text in texts if value.lower() in text.lower()})


@pytest.mark.parametrize("via", VIAS)
def test_a_root_logger_at_debug_shows_each_attempt_but_no_personal_data(caplog, via, service):
    # What AWS Lambda does when the function's log level is DEBUG: the root logger, and its handler, at DEBUG.
    caplog.set_level(logging.DEBUG)
    service.canned.append((503, response_document(503), "text/xml; charset=utf-8", RETRY_NOW))
    response = edit_once(via, CREDS, personal_contact(), url=service.url)
    assert response.contact.name == PERSONAL["name"]  # the answer, too, carried all of it
    lines = [record.getMessage() for record in caplog.records]
    assert [re.sub(r"[0-9]+ ms$", "N ms", line) for line in lines] == [
        f"POST {service.url}, contact 1009, attempt 1 of 3: HTTP 503, APIError 503 ({ie._DESCRIPTIONS[503]}), "
        "trying again in 0.00 s after N ms",
        f"POST {service.url}, contact 1009, attempt 2 of 3: HTTP 200 after N ms",
    ]
    assert personal_data_in(caplog.records) == []
    assert {record.name for record in caplog.records} == {"iletimerkezi_edit"}


@pytest.mark.parametrize("name", [name for name in SECRET_SCENARIOS if name != "refused"])
def test_whatever_the_server_answers_the_attempt_lines_hold_no_personal_data(quick_backoff, caplog, name):
    # Servers that echo the request into a message, a status line or an HTML page, and every failure besides.
    caplog.set_level(logging.DEBUG)
    with FaultServer(*SECRET_SCENARIOS[name]) as server, pytest.raises(ie.IletiMerkeziError):
        ie.edit_contact(CREDS, personal_contact(), url=server.url, timeout=0.25, retries=1)
    attempts = [record for record in caplog.records if " attempt " in record.getMessage()]
    assert len(attempts) == len(server.requests) and all("contact 1009" in r.getMessage() for r in attempts)
    assert personal_data_in(caplog.records) == []


def test_the_attempt_line_names_the_network_error_but_quotes_no_answer(quick_backoff, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ie.TransportError):
        ie.edit_contact(CREDS, ie.Contact(7, name="x"), url=f"http://127.0.0.1:{unused_port()}{PATH}", retries=0)
    def status_line_with_a_name(connection, server, request):  # http.client quotes it in its error
        connection.sendall(f"HTTP/1.1 2OO {PERSONAL['email']}\r\n\r\n".encode())

    with FaultServer(status_line_with_a_name) as server, pytest.raises(ie.TransportError) as caught:
        ie.edit_contact(CREDS, ie.Contact(7, name="x"), url=server.url, retries=0)
    assert PERSONAL["email"] in str(caught.value)  # the caller's error keeps it
    refused, quoted = (record.getMessage() for record in caplog.records)
    assert re.search(r"contact 7, attempt 1 of 1: no answer, TransportError \(ConnectionRefusedError: .+\) after",
                     refused)
    assert re.search(r"contact 7, attempt 1 of 1: no answer, TransportError \(BadStatusLine\) after", quoted)
    assert personal_data_in(caplog.records) == []


def test_the_readme_shows_the_attempt_line_as_it_is_logged(caplog, service):
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    [shown] = re.findall(r"```text\n(POST https://api\.iletimerkezi\.com/.*)\n```", readme)
    caplog.set_level(logging.DEBUG)
    service.canned.append((503, response_document(503), "text/xml; charset=utf-8", RETRY_NOW))
    ie.edit_contact(CREDS, personal_contact(), url=service.url)
    logged = caplog.records[0].getMessage().replace(service.url, ie.API_URL)
    assert re.sub(r"[0-9.]+ (s|ms)\b", r"N \1", logged) == re.sub(r"[0-9.]+ (s|ms)\b", r"N \1", shown)


@pytest.mark.parametrize("inherited", ["root", "iletimerkezi_edit"])
def test_the_bodies_are_logged_only_when_their_own_logger_is_set_to_debug(caplog, service, inherited):
    caplog.set_level(logging.DEBUG, logger=None if inherited == "root" else inherited)
    ie.edit_contact(CREDS, personal_contact(), url=service.url)
    assert [record.name for record in caplog.records] == ["iletimerkezi_edit"]  # DEBUG inherited: no bodies
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit.bodies")  # the switch, on purpose and by name
    ie.edit_contact(CREDS, personal_contact(), url=service.url)
    [attempt] = [record for record in caplog.records if record.name == "iletimerkezi_edit"]
    [bodies] = [record for record in caplog.records if record.name == "iletimerkezi_edit.bodies"]
    assert bodies.levelno == logging.DEBUG and "\n" not in bodies.getMessage()
    assert bodies.getMessage().startswith(f"POST {service.url}, contact 1009, attempt 1 of 3: request '<?xml")
    assert "<key>test-key</key>" in bodies.getMessage() and "<hash>REDACTED</hash>" in bodies.getMessage()
    assert "; answer '<?xml" in bodies.getMessage() and "İşlem başarılı" in bodies.getMessage()
    assert personal_data_in([bodies]) == sorted(PERSONAL)  # in the request and in the answer
    assert personal_data_in([attempt]) == []


def test_with_only_the_bodies_switched_on_each_attempt_still_logs_its_bodies(caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit.bodies")  # the module's own logger stays at WARNING
    logging.getLogger("iletimerkezi_edit").setLevel(logging.WARNING)
    try:
        with FaultServer(echo_in_html, answer(200, SAMPLE_RESPONSE)) as server:
            ie.edit_contact(CREDS, ie.Contact(1009, name="Şule"), url=server.url)
    finally:
        logging.getLogger("iletimerkezi_edit").setLevel(logging.NOTSET)
    first, second = (record.getMessage() for record in caplog.records)
    assert "attempt 1 of 3" in first and "; answer '<html><pre>POST" in first
    assert re.search(r"; ResponseError: .* \(HTTP 502\)$", first)
    assert HASH not in first and first.count("<hash>REDACTED</hash>") == 2  # the request, and its echo in the answer
    assert "attempt 2 of 3" in second and "; answer '<?xml" in second and "Error" not in second


def test_a_long_answer_is_cut_in_the_bodies_line_after_the_hash_is_redacted(caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit.bodies")
    page = b"<html>" + b"x" * (ie._BODY_LOG_LIMIT - 10) + HASH.encode() + b"y" * 5000 + b"</html>"
    with FaultServer(answer(502, page, "text/html")) as server, pytest.raises(ie.ResponseError):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=server.url, retries=0)
    [line] = (record.getMessage() for record in caplog.records)
    assert HASH[:8] not in line and "xREDA" in line
    assert re.search(r"\.\.\. \([0-9]+ more characters\)'; ResponseError", line)


# ---------------------------------------------------------------------------
# Session: kept-alive connections, sharing between threads
# ---------------------------------------------------------------------------


def test_a_session_sends_every_edit_on_one_kept_alive_connection(service):
    with ie.Session(CREDS, url=service.url, retries=0) as session:
        assert service.connections == 0  # nothing is opened before the first edit
        names = [session.edit_contact(contact).contact.name for contact in named(5)]
        assert names == ["n0", "n1", "n2", "n3", "n4"]
        assert (service.connections, len(service.requests), service.closed) == (1, 5, 0)
    assert all("close" not in headers.get("Connection", "").lower() for _, headers, _ in service.requests)
    assert eventually(lambda: service.closed == 1)  # leaving the block closed it


def test_the_one_shot_function_asks_for_and_gets_a_connection_per_call(service):
    for contact in named(3):
        ie.edit_contact(CREDS, contact, url=service.url)
    assert service.connections == 3
    assert [headers["Connection"] for _, headers, _ in service.requests] == ["close"] * 3
    assert eventually(lambda: service.closed == 3)


def test_a_session_reuses_its_connection_over_tls(certificates):
    with https_service(certificates["local"]) as service:
        with ie.Session(CREDS, url=service.url, ssl_context=trusting(certificates["local"])) as session:
            for contact in named(4):
                session.edit_contact(contact)
        assert (service.connections, len(service.requests)) == (1, 4)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_connection_the_server_closed_while_idle_is_reopened_without_a_retry(certificates, caplog, tls):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    with contextlib.ExitStack() as stack:
        if tls:
            service = stack.enter_context(https_service(certificates["local"]))
            context = trusting(certificates["local"])
        else:
            service, context = stack.enter_context(running(FakeService())), None
        service.idle_timeout = 0.1  # like nginx's keepalive_timeout, only shorter
        with ie.Session(CREDS, url=service.url, retries=0, ssl_context=context) as session:
            for contact in named(3):
                assert session.edit_contact(contact).contact.name == contact.name
                assert eventually(lambda: service.closed == service.connections)
        assert (service.connections, len(service.requests)) == (3, 3)  # seen closed before sending: nothing resent
    # One attempt per edit, and no reconnect: the close was noticed before anything was sent.
    outcomes = [re.search(r"(attempt .*?) after", record.getMessage()) for record in caplog.records]
    assert [outcome and outcome.group(1) for outcome in outcomes] == ["attempt 1 of 1: HTTP 200"] * 3


def keep_alive_then(drop):
    """Answer the first request and keep the connection open; on the next request, act out ``drop``."""

    def behaviour(connection, server, request):
        connection.sendall(http_answer(200, SAMPLE_RESPONSE))
        request = read_request(connection)
        if request:
            server.requests.append(request)
            drop(connection, server, request)

    return behaviour


@pytest.mark.parametrize("drop", [close, reset], ids=["closed", "reset"])
def test_a_close_that_crosses_the_request_is_resent_once_on_a_new_connection(caplog, drop):
    # The server had decided to close as the request went out: it reads the request, then drops it unanswered.
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    with FaultServer(keep_alive_then(drop)) as server:
        with ie.Session(CREDS, url=server.url, retries=0) as session:
            for _ in range(3):
                assert session.edit_contact(ie.Contact(1009, name="x")).status.code == 200
    assert (server.connections, len(server.requests)) == (3, 5)
    reconnects = [record for record in caplog.records if "closed the idle connection" in record.getMessage()]
    assert len(reconnects) == 2 and all("attempt" not in record.getMessage() for record in reconnects)


def test_a_fresh_connection_closed_unanswered_is_a_failure_not_resent():
    with FaultServer(close) as server:
        with ie.Session(CREDS, url=server.url, retries=0) as session:
            with pytest.raises(ie.TransportError, match="RemoteDisconnected"):
                session.edit_contact(ie.Contact(1009, name="x"))
    assert (server.connections, len(server.requests)) == (1, 1)


def test_a_kept_connection_that_goes_silent_is_a_timeout_not_a_reconnect(caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    with FaultServer(keep_alive_then(hang)) as server:
        with ie.Session(CREDS, url=server.url, retries=0, timeout=0.3) as session:
            session.edit_contact(ie.Contact(1009, name="x"))
            with pytest.raises(ie.TransportError, match="timed out"):
                session.edit_contact(ie.Contact(1009, name="x"))
    assert (server.connections, len(server.requests)) == (1, 2)
    assert not any("reconnecting" in record.getMessage() for record in caplog.records)


def answer_close_and_stay(connection, server, request):
    # Says "Connection: close" but leaves the socket open and unread: only a client that listens opens a new one.
    connection.sendall(http_answer(200, SAMPLE_RESPONSE, connection="close"))
    server.released.wait(30)


def test_an_answer_that_says_connection_close_is_the_last_on_its_connection():
    with FaultServer(answer_close_and_stay) as server:
        with ie.Session(CREDS, url=server.url, retries=0, timeout=2) as session:
            for _ in range(2):
                assert session.edit_contact(ie.Contact(1009, name="x")).status.code == 200
    assert (server.connections, len(server.requests)) == (2, 2)


def test_a_connection_idle_past_the_limit_is_not_reused(monkeypatch, service):
    monkeypatch.setattr(ie, "_IDLE_LIMIT", 0.05)
    service.delays.update((contact.name, 0.02) for contact in people(8))  # so that the workers overlap
    with ie.Session(CREDS, url=service.url) as session:
        session.edit_contacts(people(8), workers=4)
        opened = service.connections
        assert opened > 1
        time.sleep(0.1)
        session.edit_contact(ie.Contact(1009, name="later"))
        assert service.connections == opened + 1
        # Putting the new connection back closed the ones that had passed the limit.
        assert eventually(lambda: service.closed == opened)


def test_idle_connections_left_by_a_burst_are_closed_at_the_next_call(monkeypatch, service):
    service.delays = {f"p{number}": 0.2 for number in range(4)}
    with ie.Session(CREDS, url=service.url) as session:
        session.edit_contacts(people(4), workers=4)
        assert service.connections == 4 and service.closed == 0
        monkeypatch.setattr(ie, "_IDLE_LIMIT", 0.05)
        time.sleep(0.1)
        session.edit_contact(ie.Contact(1009, name="next"))
        assert eventually(lambda: service.closed == 4)
        assert service.connections == 5


def test_a_closed_session_refuses_calls_and_sends_nothing(service):
    session = ie.Session(CREDS, url=service.url)
    session.edit_contact(ie.Contact(1009, name="x"))
    session.close()
    session.close()  # a second close does nothing
    assert repr(session).endswith("closed>")
    for call in (lambda: session.edit_contact(ie.Contact(1009, name="y")), lambda: session.edit_contacts(named(2))):
        with pytest.raises(ie.ValidationError, match="the session is closed"):
            call()
    assert (service.connections, len(service.requests)) == (1, 1)
    assert eventually(lambda: service.closed == 1)


def test_threads_sharing_a_session_each_get_their_own_answer(service):
    # Crossed answers are what sharing a connection unsafely would cause; every thread checks its own names.
    rng = random.Random(7)
    for contact in named(80, "t"):
        service.delays[contact.name] = rng.choice([0, 0, 0.001, 0.003])
    failures = []
    with ie.Session(CREDS, url=service.url, retries=0) as session:

        def work(first):
            for number in range(first, 80, 8):
                name = f"t{number}"
                try:
                    if session.edit_contact(ie.Contact(PEOPLE[number], name=name)).contact.name != name:
                        failures.append(f"{name}: crossed answer")
                except ie.IletiMerkeziError as error:
                    failures.append(f"{name}: {error!r}")

        threads = [threading.Thread(target=work, args=(first,)) for first in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert len(service.requests) == 80 and service.connections <= 8


def test_a_session_wants_credentials_and_never_shows_them():
    with pytest.raises(ie.ValidationError, match="credentials must be a Credentials"):
        ie.Session((KEY, HASH))
    session = ie.Session(ie.Credentials.from_secret(KEY, SECRET))
    assert SECRET not in repr(session) and HASH not in repr(session).lower()
    assert repr(session) == f"<Session {ie.API_URL} open>"


def test_a_session_whose_settings_were_refused_can_still_be_shown(service):
    with pytest.raises(ie.ValidationError) as caught:
        ie.Session(CREDS, url="ftp://example.com/")
    assert "session (no settings)" in shown_with_locals(caught.value)  # it lowercases


# ---------------------------------------------------------------------------
# Bulk edits: Session.edit_contacts and Session.iter_edit_contacts
# ---------------------------------------------------------------------------


def test_bulk_results_keep_input_order_whatever_order_answers_come_in(service):
    contacts = people(12)
    for number, contact in enumerate(contacts):
        service.delays[contact.name] = 0.005 * (12 - number)  # later contacts are answered sooner
    with ie.Session(CREDS, url=service.url) as session:
        for workers in (1, 4):
            results = session.edit_contacts(iter(contacts), workers=workers)
            assert [result.contact.name for result in results] == [contact.name for contact in contacts]


def test_each_contact_ends_in_its_own_result_and_one_failure_stops_nothing(quick_backoff, service):
    service.dropped_names.add("drop")
    contacts = [  # contacts of their own, so that the workers edit them side by side
        ie.Contact(PEOPLE[0], name="first"),
        ie.Contact(4242, name="nobody"),
        ie.Contact(PEOPLE[1], email=7),
        "not a contact",
        ie.Contact(PEOPLE[2], name="drop"),
        ie.Contact(PEOPLE[3], groups=[99]),
        ie.Contact(PEOPLE[4], name="last"),
    ]
    for workers in (1, 3):
        service.requests.clear()
        with ie.Session(CREDS, url=service.url, retries=1) as session:
            results = session.edit_contacts(contacts, workers=workers)
        kinds = [type(result).__name__ for result in results]
        assert kinds == ["Response", "APIError", "ValidationError", "ValidationError", "TransportError", "APIError",
                         "Response"]
        assert (results[1].code, results[5].code) == (465, 463)
        assert "email" in str(results[2]) and "Contact" in str(results[3])
        assert (results[0].contact.name, results[6].contact.name) == ("first", "last")
        # The bad contacts were never sent. The dropped one was tried twice (retries=1); a try that went out on
        # a kept-alive connection is sent once more, since the client cannot tell that drop from an idle close.
        sent = collections.Counter(ET.fromstring(body).findtext("contact/name") for _, _, body in service.requests)
        assert 2 <= sent.pop("drop") <= 4
        assert sent == {"first": 1, "nobody": 1, None: 1, "last": 1}


def test_workers_edit_at_once_each_on_its_own_connection(service):
    contacts = people(16)
    for contact in contacts:
        service.delays[contact.name] = 0.05
    with ie.Session(CREDS, url=service.url) as session:
        assert all(isinstance(result, ie.Response) for result in session.edit_contacts(contacts, workers=4))
    assert service.most_in_flight == 4
    assert service.connections == 4


def test_one_worker_uses_one_connection_and_the_calling_thread(service):
    threads = set()
    with ie.Session(CREDS, url=service.url) as session:
        original = session.edit_contact

        def recording(contact):
            threads.add(threading.current_thread())
            return original(contact)

        session.edit_contact = recording
        session.edit_contacts(people(6))  # six contacts that more workers could edit side by side
    assert threads == {threading.current_thread()}
    assert (service.connections, service.most_in_flight) == (1, 1)


@pytest.mark.parametrize("workers", [0, -1, True, 1.5, None, "4"])
def test_bad_workers_are_refused_before_sending(service, workers):
    with ie.Session(CREDS, url=service.url) as session:
        with pytest.raises(ie.ValidationError, match="workers"):
            session.edit_contacts(named(2), workers=workers)
    assert service.connections == 0


@pytest.mark.parametrize("contacts", [ie.Contact(1009, name="x"), None, 5, "1009"])
def test_contacts_must_be_an_iterable_of_contacts(service, contacts):
    with ie.Session(CREDS, url=service.url) as session:
        with pytest.raises(ie.ValidationError, match="contacts must be an iterable of Contact"):
            session.edit_contacts(contacts)
    assert service.connections == 0


def test_no_contacts_give_no_results_and_no_connection(service):
    with ie.Session(CREDS, url=service.url) as session:
        assert session.edit_contacts([], workers=8) == []
    assert service.connections == 0


def test_edits_of_one_contact_are_applied_in_input_order_whatever_the_workers(service):
    rng = random.Random(7)
    for run in range(5):
        service.requests.clear()
        versions = [ie.Contact(1009, name=f"v{number}") for number in range(8)]
        service.delays.update((contact.name, rng.uniform(0, 0.02)) for contact in versions)
        with ie.Session(CREDS, url=service.url) as session:
            results = session.edit_contacts(versions, workers=8)
        assert [result.contact.name for result in results] == [f"v{number}" for number in range(8)]
        assert service.contacts[1009]["name"] == "v7"
        sent = [ET.fromstring(body).findtext("contact/name") for _, _, body in service.requests]
        assert sent == [f"v{number}" for number in range(8)]


def test_one_contact_waits_for_its_own_earlier_edit_and_its_retries_while_others_run(service, quick_backoff):
    service.unavailable_once.add("a1")  # its first try gets a 503, and is tried again
    contacts = [ie.Contact(1009, name="a1"), ie.Contact(PEOPLE[0], name="b1"), ie.Contact("1009", name="a2"),
                ie.Contact(PEOPLE[1], name="c1"), ie.Contact(1009, name="a3")]
    service.delays.update({"a1": 0.05, "b1": 0.05, "c1": 0.05})
    with ie.Session(CREDS, url=service.url, retries=2) as session:
        results = session.edit_contacts(contacts, workers=4)
    assert [result.contact.name for result in results] == ["a1", "b1", "a2", "c1", "a3"]
    sent = [ET.fromstring(body).findtext("contact/name") for _, _, body in service.requests]
    ones = [name for name in sent if name.startswith("a")]
    assert ones == ["a1", "a1", "a2", "a3"]  # "1009" and 1009 are one contact; the 503 was retried first
    assert service.most_in_flight >= 2  # other contacts ran beside it
    assert service.contacts[1009]["name"] == "a3"


def test_iter_edit_contacts_reads_lazily_and_yields_in_input_order(service):
    read = []

    def source():
        for contact in people(40):
            read.append(contact)
            yield contact

    with ie.Session(CREDS, url=service.url) as session:
        stream = session.iter_edit_contacts(source(), workers=2)
        assert read == []  # nothing is read before the first result is asked for
        first_contact, first_result = next(stream)
        assert first_contact.name == "p0" and first_result.contact.name == "p0"
        assert len(read) <= 4 * 2 + 1  # a bounded window, not the whole input
        rest = list(stream)
    assert [contact.name for contact, _ in rest] == [f"p{number}" for number in range(1, 40)]
    assert all(result.contact.name == contact.name for contact, result in rest)


def worker_threads():
    return [thread for thread in threading.enumerate() if thread.name == "iletimerkezi_edit-worker"]


@pytest.mark.parametrize("leave", ["break", "close"])
def test_leaving_the_stream_early_sends_nothing_new_and_leaves_no_thread(service, leave):
    service.delays.update((contact.name, 0.05) for contact in people(200))
    with ie.Session(CREDS, url=service.url) as session:
        stream = session.iter_edit_contacts(people(200), workers=4)
        for number, (_, result) in enumerate(stream):
            assert isinstance(result, ie.Response)
            if number == 2:
                break
        if leave == "close":
            stream.close()
        else:
            del stream  # what leaving a for loop over session.iter_edit_contacts(...) does
        assert not worker_threads()  # in-flight edits ended before the stream let go
        sent = len(service.requests)
        time.sleep(0.2)
        assert len(service.requests) == sent <= 3 + 4 * 4
    assert sent < 200


def test_a_stream_held_after_break_sends_nothing_new(service):
    service.delays.update((contact.name, 0.05) for contact in people(40))
    with ie.Session(CREDS, url=service.url) as session:
        stream = session.iter_edit_contacts(people(40), workers=2)
        for _ in stream:
            break  # the caller keeps ``stream``: nothing closes it yet
        at_break = len(service.requests)
        time.sleep(0.5)
        assert len(service.requests) <= at_break + 2  # the edits in flight (one per worker), and nothing new
        stream.close()
        assert not worker_threads()


def test_iter_edit_contacts_checks_its_arguments_at_once(service):
    with ie.Session(CREDS, url=service.url) as session:
        for contacts, workers in ((people(2), 0), (people(2), True), (ie.Contact(1009), 1), ("1009", 1), (5, 1)):
            with pytest.raises(ie.ValidationError):
                session.iter_edit_contacts(contacts, workers=workers)  # not only when iterated
    with pytest.raises(ie.ValidationError, match="closed"):
        session.iter_edit_contacts(people(2))
    assert service.requests == []


def test_a_defect_in_a_worker_is_raised_in_the_caller_and_leaves_no_thread(service, monkeypatch):
    original = ie.Session.edit_contact

    def broken(self, contact):
        if contact.name == "p3":
            raise RuntimeError("a defect")
        return original(self, contact)

    monkeypatch.setattr(ie.Session, "edit_contact", broken)
    with ie.Session(CREDS, url=service.url) as session:
        with pytest.raises(RuntimeError, match="a defect"):
            session.edit_contacts(people(10), workers=3)
    assert not worker_threads()


def test_a_thread_that_cannot_start_never_escapes_a_bulk_run(monkeypatch, service):
    real_start = threading.Thread.start

    def start(self):
        if self.name.startswith("iletimerkezi_edit"):
            raise RuntimeError("can't start new thread")
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    with ie.Session(CREDS, url=service.url) as session:
        results = session.edit_contacts(people(6), workers=4)
    assert all(isinstance(result, ie.TransportError) for result in results)
    assert service.requests == []


# ---------------------------------------------------------------------------
# Command line: one contact
# ---------------------------------------------------------------------------


SAMPLE_ARGS = ["--id", "1009", "--name", "API", "--surname", "Test User 2", "--email", "a@b.co",
               "--gsm", "+905056663325", "--field", "1=27/09/2024", "--field", "2=cip", "--group", "9", "--group", "12"]


def no_credentials_env():
    """This process's environment without any ILETIMERKEZI_ variable, for a child that must see only the test's."""
    return {name: value for name, value in os.environ.items() if not name.startswith("ILETIMERKEZI_")}


def run_cli(args, env_extra=None, module=False):
    env = no_credentials_env()
    env.update(env_extra or {})
    command = [sys.executable, "-m", "iletimerkezi_edit"] if module else [sys.executable, str(MODULE)]
    done = subprocess.run(command + args, cwd=str(HERE), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60)
    stdout, stderr = done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    for secret in (SECRET, HASH):
        assert secret not in stdout and secret not in stderr
    assert "Traceback" not in stderr
    return done.returncode, stdout, stderr


CREDENTIAL_ENV = {"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_SECRET": SECRET}


@pytest.fixture
def run_main(monkeypatch, capsys):
    """``run_cli`` in this process: ``ie.main(args)`` with the streams captured, for what a real process is not
    needed for (usage errors, --help, dry runs). The same environment rule (only ``env_extra``'s ILETIMERKEZI_
    variables), the same checks, the same ``(code, stdout, stderr)``."""

    def run(args, env_extra=None):
        for name in list(os.environ):
            if name.startswith("ILETIMERKEZI_"):
                monkeypatch.delenv(name)
        for name, value in (env_extra or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = ie.main(list(args))
        stdout, stderr = capsys.readouterr()
        for secret in (SECRET, HASH):
            assert secret not in stdout and secret not in stderr
        assert "Traceback" not in stderr
        return code, stdout, stderr

    return run


@pytest.mark.parametrize("module", [False, True], ids=["script", "module"])
def test_cli_dry_run_prints_the_request_without_credentials_or_network(module):
    code, stdout, stderr = run_cli(["--dry-run"] + SAMPLE_ARGS, module=module)
    assert (code, stderr) == (0, "")
    root = ET.fromstring(stdout.encode("utf-8"))
    assert root.findtext("authentication/key") == "YOUR_API_KEY"
    assert root.findtext("authentication/hash") == "REDACTED"
    contact = root.find("contact")
    assert contact.findtext("surname") == "Test User 2"
    assert [group.text for group in contact.find("groups")] == ["9", "12"]
    assert [f.findtext("value") for f in contact.iter("custom_field")] == ["27/09/2024", "cip"]


def test_cli_dry_run_refuses_two_keys_that_differ_as_a_real_run_would(run_main):
    code, stdout, stderr = run_main(["--dry-run"] + SAMPLE_ARGS, {"ILETIMERKEZI_API_KEY": KEY,
                                                                  "ILETIMERKEZI_KEY": "another-key"})
    assert code == 2 and stdout == "" and "ILETIMERKEZI_API_KEY and ILETIMERKEZI_KEY hold different keys" in stderr
    assert KEY not in stderr and "another-key" not in stderr
    code, stdout, _ = run_main(["--dry-run"] + SAMPLE_ARGS, {"ILETIMERKEZI_API_KEY": KEY})
    assert code == 0 and f"<key>{KEY}</key>" in stdout


def test_cli_dry_run_shows_the_key_but_never_the_hash(run_main):
    code, stdout, _ = run_main(["--dry-run", "--id", "1", "--name", "x"], CREDENTIAL_ENV)
    assert code == 0
    root = ET.fromstring(stdout.encode("utf-8"))
    assert (root.findtext("authentication/key"), root.findtext("authentication/hash")) == (KEY, "REDACTED")


def test_cli_clear_flags_send_empty_elements(run_main):
    code, stdout, _ = run_main(["--dry-run", "--id", "1", "--name", "", "--clear-fields", "--clear-groups"])
    assert code == 0
    contact = ET.fromstring(stdout.encode("utf-8")).find("contact")
    assert [child.tag for child in contact] == ["id", "name", "custom_fields", "groups"]
    assert all(len(child) == 0 and not child.text for child in list(contact)[1:])


def test_main_returns_exit_codes_instead_of_exiting(capsys):
    assert ie.main(["--help"]) == 0
    assert "--dry-run" in capsys.readouterr().out
    assert ie.main(["--id", "nope"]) == 2
    assert ie.main(["--dry-run", "--id", "5", "--gsm", "+905001112233"]) == 0
    assert "<gsm>+905001112233</gsm>" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, env, named",
    [
        (["--id", "1", "--name", "x"], {}, "ILETIMERKEZI_KEY"),
        (["--id", "1", "--name", "x"], {"ILETIMERKEZI_KEY": KEY}, "ILETIMERKEZI_SECRET or ILETIMERKEZI_HASH"),
        (["--id", "0"], CREDENTIAL_ENV, "--id"),
        (["--id", "1", "--group", "x"], CREDENTIAL_ENV, "--group"),
        (["--id", "1", "--field", "novalue"], CREDENTIAL_ENV, "ID=VALUE"),
        (["--id", "1", "--field", "0=x"], CREDENTIAL_ENV, "--field"),
        (["--id", "1", "--group", "9", "--clear-groups"], CREDENTIAL_ENV, "not allowed with"),
        (["--id", "1", "--timeout", "0"], CREDENTIAL_ENV, "timeout"),
        (["--id", "1", "--url", "http://example.com/"], CREDENTIAL_ENV, "https://"),
        (["--id", "1", "--dry-run", "--url", "http://example.com/"], {}, "https://"),
        (["--name", "x"], CREDENTIAL_ENV, "--id"),
        (["--id", "1", "--retries", "-1"], CREDENTIAL_ENV, "--retries"),
        (["--id", "1", "--retries", "two"], CREDENTIAL_ENV, "--retries"),
    ],
)
def test_cli_bad_usage_or_input_exits_2(run_main, args, env, named):
    code, stdout, stderr = run_main(args, env)
    assert (code, stdout) == (2, "")
    assert named in stderr and stderr.count("\n") == 1


def test_cli_edits_the_contact(service):
    code, stdout, stderr = run_cli(SAMPLE_ARGS[:4] + ["--group", "15", "--url", service.url], CREDENTIAL_ENV)
    assert (code, stderr) == (0, "")
    assert stdout.startswith("200 İşlem başarılı\ncontact 1009\n")
    assert "  groups: 15\n" in stdout
    assert service.contacts[1009]["groups"] == [15]


def test_cli_json_output(service):
    code, stdout, _ = run_cli(["--id", "1009", "--name", "Şule", "--json", "--url", service.url],
                              {"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_HASH": HASH})
    assert code == 0
    printed = json.loads(stdout)
    assert printed["status"] == {"code": 200, "message": "İşlem başarılı"}
    assert printed["contact"]["name"] == "Şule"
    assert printed["contact"]["custom_fields"] == [{"id": 1, "value": "27/09/2024"}, {"id": 2, "value": "cip"}]


def test_cli_survives_a_console_that_cannot_show_turkish(service):
    code, stdout, _ = run_cli(["--id", "1009", "--name", "Şule", "--url", service.url],
                              dict(CREDENTIAL_ENV, PYTHONIOENCODING="ascii"))
    assert code == 0
    assert "\\u015eule" in stdout


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "cp1254", "utf-8"])
def test_cli_json_is_valid_json_whatever_the_console_encoding(service, encoding):
    code, stdout, _ = run_cli(["--id", "1009", "--name", "Şule 😀 \\ \"", "--json", "--url", service.url],
                              dict(CREDENTIAL_ENV, PYTHONIOENCODING=encoding))
    assert code == 0
    assert json.loads(stdout)["contact"]["name"] == "Şule 😀 \\ \""
    assert "\\x" not in stdout and "\\U" not in stdout  # Python's escapes are not JSON


def test_cli_json_is_utf8_even_on_a_cp1254_console(service):
    code, stdout, _ = run_cli(["--id", "1009", "--name", "Şule Gönül", "--json", "--url", service.url],
                              dict(CREDENTIAL_ENV, PYTHONIOENCODING="cp1254"))
    assert code == 0 and stdout.isascii()  # \u escapes: ASCII is UTF-8, as RFC 8259 asks of JSON
    assert json.loads(stdout)["contact"]["name"] == "Şule Gönül"


def test_cli_api_refusal_exits_1_with_the_code(service):
    code, stdout, stderr = run_cli(["--id", "4242", "--name", "x", "--url", service.url], CREDENTIAL_ENV)
    assert (code, stdout) == (1, "")
    assert stderr.count("\n") == 1 and "465" in stderr and "Kişi bulunamadı." in stderr


def test_cli_error_stays_one_line_when_the_server_message_has_newlines(service):
    body = response_document(465).replace("Kişi bulunamadı.".encode("utf-8"), "Kişi\n  bulunamadı.".encode("utf-8"))
    service.canned.append((465, body, "text/xml; charset=utf-8", ()))
    code, _, stderr = run_cli(["--id", "1009", "--name", "x", "--url", service.url], CREDENTIAL_ENV)
    assert code == 1 and stderr.count("\n") == 1 and "465 Kişi bulunamadı." in stderr


def test_cli_wrong_credentials_exit_1(service):
    code, _, stderr = run_cli(["--id", "1009", "--name", "x", "--url", service.url],
                              {"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_SECRET": "wrong"})
    assert code == 1 and "401" in stderr


def test_cli_no_answer_exits_3(service):
    code, _, stderr = run_cli(["--id", "1", "--name", "x", "--url", f"http://127.0.0.1:{unused_port()}/", "--retries", "0"],
                              CREDENTIAL_ENV)
    assert code == 3 and stderr.count("\n") == 1
    service.canned.append((502, GARBAGE["html"], "text/html", ()))
    code, _, stderr = run_cli(["--id", "1", "--name", "x", "--url", service.url, "--retries", "0"], CREDENTIAL_ENV)
    assert code == 3 and "HTTP 502" in stderr


@pytest.mark.parametrize("retries, requests", [([], 3), (["--retries", "0"], 1), (["--retries", "4"], 5)])
def test_cli_retries(retries, requests):
    with FaultServer(answer(503, response_document(503), extra=RETRY_NOW)) as server:
        code, stdout, stderr = run_cli(["--id", "1009", "--name", "x", "--url", server.url] + retries, CREDENTIAL_ENV)
    assert (code, stdout) == (1, "") and "503" in stderr and stderr.count("\n") == 1
    assert len(server.requests) == requests


def test_cli_timeout_bounds_each_attempt_and_exits_3():
    with FaultServer(dribble) as server:
        started = time.monotonic()
        code, _, stderr = run_cli(["--id", "1", "--name", "x", "--url", server.url, "--timeout", "0.5", "--retries", "0"],
                                  CREDENTIAL_ENV)
        assert time.monotonic() - started < 5
    assert code == 3 and "timed out" in stderr


def test_cli_verbose_logs_each_attempt_without_the_hash():
    with FaultServer(echo_in_message, answer(503, response_document(503), extra=RETRY_NOW),
                     answer(200, SAMPLE_RESPONSE)) as server:
        code, stdout, stderr = run_cli(["--id", "1009", "--name", "x", "--url", server.url, "-v"], CREDENTIAL_ENV)
    assert code == 1  # the echoing 400 is final
    [line] = stderr.splitlines()[:-1]
    assert line.startswith(f"iletimerkezi-edit: POST {server.url}, contact 1009, attempt 1 of 3: HTTP 400, APIError 400 (")
    assert "<" not in line  # no body with -v; -vv adds them (see the next test)
    with FaultServer(answer(503, response_document(503), extra=RETRY_NOW), answer(200, SAMPLE_RESPONSE)) as server:
        code, stdout, stderr = run_cli(["--id", "1009", "--name", "x", "--url", server.url, "--verbose"], CREDENTIAL_ENV)
    assert code == 0 and stdout.startswith("200 İşlem başarılı")
    assert re.findall(r"attempt ([0-9]) of 3: HTTP ([0-9]+)", stderr) == [("1", "503"), ("2", "200")]


def test_cli_v_logs_the_attempts_without_personal_data_and_vv_adds_the_bodies(service, run_main):
    args = ["--id", "1009", "--name", PERSONAL["name"], "--gsm", PERSONAL["gsm"], "--url", service.url]
    code, _, stderr = run_cli(args + ["-v"], CREDENTIAL_ENV)
    assert code == 0 and re.fullmatch(
        rf"iletimerkezi-edit: POST {re.escape(service.url)}, contact 1009, attempt 1 of 3: HTTP 200 after [0-9]+ ms\n",
        stderr)
    code, _, stderr = run_cli(args + ["-vv"], CREDENTIAL_ENV)
    attempt, bodies = stderr.splitlines()
    assert code == 0 and attempt.endswith(" ms") and PERSONAL["gsm"] not in attempt
    assert PERSONAL["name"] in bodies and PERSONAL["gsm"] in bodies and "<hash>REDACTED</hash>" in bodies
    assert "-vv adds the request and answer bodies" in " ".join(run_main(["--help"])[1].split())


def test_the_cli_takes_a_proxy_and_never_prints_its_password(tls_service, certificates, run_main):
    with ConnectProxy(refuse=407, reason=f"No {PROXY_PASSWORD}") as proxy:
        proxy_url = proxy.url.replace("http://", f"http://{PROXY_CREDENTIALS}@")
        code, stdout, stderr = run_cli(["--id", "1009", "--name", "x", "--url", tls_service.url, "--proxy",
                                        proxy_url, "-v"], CREDENTIAL_ENV)
        bad_code, bad_stdout, bad_stderr = run_main(["--id", "1009", "--name", "x", "--dry-run", "--proxy",
                                                    f"ftp://{PROXY_CREDENTIALS}@h:1"])
    assert code == 3 and f"127.0.0.1:{proxy.port}" in stderr and "407" in stderr
    assert bad_code == 2 and "proxy must start with http://" in bad_stderr
    for output in (stdout, stderr, bad_stdout, bad_stderr):
        assert PROXY_PASSWORD not in output and "p%40ss" not in output
    assert len(proxy.connects) == 1


def test_cli_internal_errors_exit_70_in_one_line_without_secrets(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError(f"a defect near {HASH} and {SECRET}")

    monkeypatch.setattr(ie, "edit_contact", broken)
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)
    assert ie.main(["--id", "1009", "--name", "x"]) == 70
    err = capsys.readouterr().err
    assert err.startswith("iletimerkezi-edit: internal error") and err.count("\n") == 1
    assert "RuntimeError" in err and HASH not in err and SECRET not in err


def test_cli_edits_with_only_the_providers_variable_names(service, run_main):
    env = {"ILETIMERKEZI_API_KEY": KEY, "ILETIMERKEZI_API_HASH": HASH}
    code, stdout, stderr = run_main(["--id", "1009", "--name", "Şule", "--url", service.url], env)
    assert (code, stderr) == (0, "") and "contact 1009" in stdout and "name: Şule" in stdout
    [(_, _, body)] = service.requests
    sent = ET.fromstring(body)
    assert (sent.findtext("authentication/key"), sent.findtext("authentication/hash")) == (KEY, HASH)
    assert service.contacts[1009]["name"] == "Şule"
    code, stdout, stderr = run_main(["--dry-run", "--id", "1", "--name", "x"], {"ILETIMERKEZI_API_KEY": KEY})
    root = ET.fromstring(stdout.encode("utf-8"))
    assert (code, stderr) == (0, "")
    assert (root.findtext("authentication/key"), root.findtext("authentication/hash")) == (KEY, "REDACTED")
    code, stdout, stderr = run_main(["--id", "1009", "--name", "x", "--url", service.url],
                                    {"ILETIMERKEZI_API_KEY": KEY, "ILETIMERKEZI_API_HASH": "0" * 64})
    assert (code, stdout) == (1, "") and "0" * 64 not in stderr
    assert stderr.startswith("iletimerkezi-edit: the API refused the edit: 401 Üyelik bilgileri hatalı (")
    assert '"Allow API access"' in stderr and "an IP address the account does not allow" in stderr


@pytest.mark.parametrize("env, named", [
    ({"ILETIMERKEZI_API_KEY": KEY, "ILETIMERKEZI_API_HASH": HASH, "ILETIMERKEZI_KEY": "other-key"},
     "ILETIMERKEZI_API_KEY and ILETIMERKEZI_KEY"),
    ({"ILETIMERKEZI_API_KEY": KEY, "ILETIMERKEZI_API_HASH": HASH, "ILETIMERKEZI_SECRET": "wrong"},
     "ILETIMERKEZI_API_HASH does not match"),
    ({"ILETIMERKEZI_API_KEY": KEY}, "ILETIMERKEZI_API_HASH"),
])
def test_cli_refuses_variables_that_disagree_naming_them_and_sends_nothing(service, run_main, env, named):
    code, stdout, stderr = run_main(["--id", "1009", "--name", "x", "--url", service.url], env)
    assert (code, stdout) == (2, "") and named in stderr and stderr.count("\n") == 1
    assert "other-key" not in stderr and "wrong" not in stderr.replace("what is wrong", "")
    assert service.connections == 0


def test_cli_help_says_a_proxy_password_shows_in_the_process_list(run_main):
    _, stdout, _ = run_main(["--help"])
    text = " ".join(stdout.split())
    assert "shows in the process list (ps)" in text and "set HTTPS_PROXY in the environment instead" in text
    assert "ILETIMERKEZI_API_KEY and ILETIMERKEZI_API_HASH" in text


@pytest.mark.parametrize("kind", ["407", "tunnel bad status line", "tunnel 502 page", "tunnel API message"])
@pytest.mark.parametrize("flags", [["-v"], ["-vv"], ["--json"], ["-vv", "--json"]])
@pytest.mark.parametrize("given", ["--proxy", "environment"])
def test_cli_never_prints_a_form_of_the_proxy_credentials(monkeypatch, service, run_main, kind, flags, given):
    with ConnectProxy(act=echoing_proxy(kind)) as proxy:
        url = proxy_url_with(proxy, *PROXY_ACCOUNTS["turkish"])
        args = ["--id", "1009", "--name", "x", "--url", service.url, "--retries", "0", *flags]
        if given == "environment":
            monkeypatch.setenv("http_proxy", url)
        code, stdout, stderr = run_main(args + (["--proxy", url] if given == "--proxy" else []), CREDENTIAL_ENV)
    assert code == (1 if kind == "tunnel API message" else 3) and stderr
    if "-vv" in flags and kind != "407":
        assert "; answer '" in stderr  # the bodies line is there, the proxy's words in it
    forms = credential_forms(proxy.connects[0][2]["Proxy-Authorization"])
    assert_no_form_of(forms, stdout + stderr, kind)


def test_cli_internal_error_shows_no_form_of_the_proxy_credentials(monkeypatch, capsys, service):
    def broken(sock, proxy, target, deadline):  # a defect that quotes what it was sending
        raise RuntimeError(f"a defect sending {proxy.connect_request(target)!r}")

    monkeypatch.setattr(ie, "_tunnel", broken)
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)
    account = PROXY_ACCOUNTS["turkish"]
    with ConnectProxy() as proxy:
        url = proxy_url_with(proxy, *account)
        forms = credential_forms(basic(*account))
        assert ie.main(["--id", "1009", "--name", "x", "--url", service.url, "--proxy", url]) == 70
        err = capsys.readouterr().err
        assert err.startswith("iletimerkezi-edit: internal error") and "RuntimeError" in err
        assert_no_form_of(forms, err, "--proxy")
        monkeypatch.setenv("http_proxy", url)
        assert ie.main(["--id", "1009", "--name", "x", "--url", service.url]) == 70
        err = capsys.readouterr().err
        assert err.startswith("iletimerkezi-edit: internal error") and "RuntimeError" in err
        assert_no_form_of(forms, err, "http_proxy")


def test_cli_interrupted_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ie, "edit_contact", interrupted)
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)
    assert ie.main(["--id", "1009", "--name", "x"]) == 130
    assert capsys.readouterr().err == "iletimerkezi-edit: interrupted\n"


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry run", "edit"])
def test_cli_output_closed_early_after_success_exits_0_quietly(service, dry_run):
    # As with "| head -0": the reader is gone before anything is written.
    args = ["--id", "1009", "--name", "Kapalı", "--json"] + (["--dry-run"] if dry_run else ["--url", service.url])
    env = dict(no_credentials_env(), **CREDENTIAL_ENV)
    child = subprocess.Popen([sys.executable, str(MODULE), *args], cwd=str(HERE), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()
    _, stderr = child.communicate(timeout=60)
    assert (child.returncode, stderr.decode()) == (0, "")
    assert len(service.requests) == (0 if dry_run else 1)


def run_cli_shell(command, service_url=""):
    env = dict({name: value for name, value in os.environ.items()
                if not name.startswith("ILETIMERKEZI_") and name != "PYTHONUNBUFFERED"}, **CREDENTIAL_ENV)
    script = command.replace("CLI", f"{sys.executable} {MODULE}").replace("URL", service_url)
    done = subprocess.run(["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return done.stdout.decode(), done.stderr.decode()


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash to close and redirect streams")
def test_cli_closed_or_full_outputs_keep_the_documented_exit_codes(service):
    cases = {
        "CLI --id 1009 --name a --url URL >&-; echo $?": "0",
        "CLI --dry-run --id 1009 --name a >&-; echo $?": "0",
        "CLI --help | head -0; echo ${PIPESTATUS[0]}": "0",
        "CLI --version | head -0; echo ${PIPESTATUS[0]}": "0",
        "CLI --id 4242 --name a --url URL 2>&-; echo $?": "1",
        "CLI --id 1009 --name a --url ftp://x 2>&-; echo $?": "2",
        f"CLI --id 1009 --name a --retries 0 --url http://127.0.0.1:{unused_port()}/x 2>&-; echo $?": "3",
    }
    for command, code in cases.items():
        stdout, stderr = run_cli_shell(command, service.url)
        assert (stdout.strip().splitlines()[-1], stderr) == (code, ""), command
    if os.path.exists("/dev/full"):
        stdout, stderr = run_cli_shell("CLI --dry-run --id 1009 --name a > /dev/full; echo $? >&2")
        assert stderr.splitlines() == ["iletimerkezi-edit: the output could not be written: [Errno 28] No space left "
                                       "on device", "74"]


# ---------------------------------------------------------------------------
# Command line: bulk edits from a file (--input)
# ---------------------------------------------------------------------------


def report_of(path, cut=0):
    """The report's lines; ``cut`` of them may be cut short (a run killed while writing one), no more."""
    entries, unreadable = [], 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            unreadable += 1
    assert unreadable <= cut
    return entries


def sent_names(service):
    return [ET.fromstring(body).findtext("contact/name") for _, _, body in service.requests]


EXCEL_CSV = (  # as Excel writes it in a Turkish locale: BOM, semicolons, CRLF, quotes around what needs them
    "\ufeffid;Name ; surname;GSM;groups;field:1;field:2\r\n"
    "5000;Şule;\"Yılmaz; Öz\";+905051112233;9, 12;27/09/2024;\r\n"
    "5001;\"Ali \"\"Veli\"\"\r\nİkinci satır\";;;;;cip\r\n"
    "5002;;;;15;;\r\n"
    ";;;;;;\r\n"
    "abc;x;;;;;\r\n"
    "5003;\"a\x01b\";;;;;\r\n"
)


def test_cli_edits_every_record_of_a_csv_as_excel_writes_it(service, tmp_path):
    source = tmp_path / "kişiler.csv"
    source.write_bytes(EXCEL_CSV.encode("utf-8"))
    code, stdout, stderr = run_cli(["--input", str(source), "--url", service.url, "--workers", "3"], CREDENTIAL_ENV)
    assert code == 1  # two bad records
    assert stdout == ""
    assert stderr.strip().endswith("5 records: 3 succeeded, 2 failed (2 ValidationError)")
    report = sorted(report_of(str(source) + ".report.jsonl"), key=lambda entry: entry["line"])
    assert [(entry["line"], entry["id"], entry["ok"]) for entry in report] == [
        (2, 5000, True), (3, 5001, True), (5, 5002, True), (7, "abc", False), (8, 5003, False)]
    assert report[3]["error"] == report[4]["error"] == "ValidationError" and "U+0001" in report[4]["message"]
    first = ET.fromstring(next(body for _, _, body in service.requests if b"<id>5000</id>" in body))
    assert first.findtext("contact/surname") == "Yılmaz; Öz" and first.findtext("contact/gsm") == "+905051112233"
    assert [group.text for group in first.find("contact/groups")] == ["9", "12"]
    assert [(field.findtext("id"), field.findtext("value")) for field in first.iter("custom_field")] == [
        ("1", "27/09/2024")]
    second = ET.fromstring(next(body for _, _, body in service.requests if b"<id>5001</id>" in body))
    assert second.findtext("contact/name") == 'Ali "Veli"\r\nİkinci satır'  # sent exactly as written
    assert second.find("contact/surname") is None and second.find("contact/groups") is None  # empty: left alone
    third = ET.fromstring(next(body for _, _, body in service.requests if b"<id>5002</id>" in body))
    assert third.find("contact/custom_fields") is None  # every field: cell empty, so no <custom_fields> at all
    assert len(service.requests) == 3


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_cli_csv_delimiter_is_read_from_the_header_and_lf_works(service, tmp_path, delimiter):
    source = tmp_path / "people.csv"
    rows = [["ID", "name", "field:3"], ["5000", "a, b; c\td", "x"], ["5001", "e", ""]]
    import csv

    with source.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=delimiter, lineterminator="\n").writerows(rows)
    code, _, _ = run_cli(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 0
    assert sorted(sent_names(service)) == ["a, b; c\td", "e"]


def test_cli_edits_json_lines(service, tmp_path):
    source = tmp_path / "people.ndjson"
    source.write_text("\n".join([
        json.dumps({"id": 5000, "name": "Şule", "groups": [9, 12], "custom_fields": {"1": "x"}}, ensure_ascii=False),
        "",
        json.dumps({"id": "5001", "surname": "", "groups": [], "custom_fields": {}}),
        json.dumps({"id": 5002, "name": None, "email": "a@b.co"}),
        "[1, 2]",
        json.dumps({"id": 5003, "nam": "typo"}),
        "{not json",
        json.dumps({"id": 5004, "custom_fields": [{"id": 1, "value": "x"}]}),
    ]) + "\n", encoding="utf-8")
    code, _, stderr = run_cli(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 1 and "7 records: 3 succeeded, 4 failed (4 ValidationError)" in stderr
    report = {entry["line"]: entry for entry in report_of(str(source) + ".report.jsonl")}
    assert sorted(report) == [1, 3, 4, 5, 6, 7, 8]
    assert [line for line, entry in sorted(report.items()) if entry["ok"]] == [1, 3, 4]
    assert "unknown key 'nam'" in report[6]["message"] and "not JSON" in report[7]["message"]
    cleared = ET.fromstring(next(body for _, _, body in service.requests if b"<id>5001</id>" in body))
    assert cleared.findtext("contact/surname") == "" and len(cleared.find("contact/groups")) == 0
    assert len(cleared.find("contact/custom_fields")) == 0
    assert ET.fromstring(next(body for _, _, body in service.requests if b"<id>5002</id>" in body)).find(
        "contact/name") is None


def test_cli_a_csv_line_that_cannot_be_read_is_one_bad_record(service, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n5000,a\n5001," + "x" * 140000 + "\n5002,c\n", encoding="utf-8")
    code, _, stderr = run_cli(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 1 and "3 records: 2 succeeded, 1 failed (1 ValidationError)" in stderr
    assert sorted(sent_names(service)) == ["a", "c"]


@pytest.mark.parametrize(
    "args, header, message",
    [
        (["--input", "-"], "id,name", "--format csv, jsonl or xlsx is needed"),
        (["--input", "{path}", "--name", "x"], "id,name", "--name does not go with --input"),
        (["--input", "{path}"], "id,name,Notlar", "unknown column 'Notlar'"),
        (["--input", "{path}"], "name,gsm", "no id column"),
        (["--input", "{path}"], "id,name,Name", "all fill name"),
        (["--input", "{path}.missing", "--format", "csv"], "id", "cannot read"),
        (["--input", "{path}", "--workers", "0"], "id", "workers must be"),
        (["--input", "{path}", "--proxy", "ftp://h:1"], "id", "proxy must start with http://"),
        (["--id", "1009", "--workers", "2"], "id", "--workers goes with --input"),
        ([], "id", "--id (one contact) or --input (many) is required"),
    ],
)
def test_cli_bulk_usage_and_unreadable_input_exit_2_before_anything_is_sent(service, tmp_path, run_main, args, header,
                                                                          message):
    source = tmp_path / "in.csv"
    source.write_text(header + "\n5000,x\n", encoding="utf-8")
    args = [arg.replace("{path}", str(source)) for arg in args]
    code, _, stderr = run_main(args + ["--url", service.url], CREDENTIAL_ENV)
    assert code == 2 and message in stderr, stderr
    assert service.requests == []


def test_cli_field_columns_named_twice_in_two_spellings_exit_2(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text("id,field:1,field:01\n5000,a,b\n", encoding="utf-8")
    code, _, stderr = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 2 and "all fill field:1" in stderr and service.requests == []


def test_cli_input_that_is_not_utf8_exits_2_naming_the_line_and_sends_nothing(service, tmp_path):
    source = tmp_path / "in.csv"
    good = "".join(f"{PEOPLE[n]},r{n}\n" for n in range(3))
    source.write_bytes(b"id,name\n" + good.encode() + b"x" * 9000 + b"\n5999,\xff\xfe\n")  # the bad bytes come late
    code, _, stderr = run_cli(["--input", str(source), "--url", service.url, "--workers", "1"], CREDENTIAL_ENV)
    assert code == 2 and "line 6 is not valid UTF-8 (at 0xFF" in stderr and "--encoding cp1254" in stderr
    assert service.requests == [] and not Path(str(source) + ".report.jsonl").exists()


def test_cli_reads_stdin_and_reports_to_stderr(service):
    records = "id,name\n5000,a\n5001,b\n"
    env = dict(no_credentials_env(), **CREDENTIAL_ENV)
    done = subprocess.run([sys.executable, str(MODULE), "--input", "-", "--format", "csv", "--url", service.url],
                          input=records.encode(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 0
    lines = done.stderr.decode().splitlines()
    assert sorted(json.loads(line)["line"] for line in lines if line.startswith("{")) == [2, 3]
    assert lines[-1] == "iletimerkezi-edit: 2 records: 2 succeeded, 0 failed"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_cli_progress_never_reads_a_pipe_twice(service, tmp_path):
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "w", encoding="utf-8") as pipe:
            pipe.write("id,name\n5000,a\n5001,b\n")

    feeder = threading.Thread(target=feed)
    feeder.start()
    code, _, stderr = run_cli(["--input", str(fifo), "--url", service.url, "--progress", "--report",
                               str(tmp_path / "report.jsonl")], CREDENTIAL_ENV)
    feeder.join(10)
    assert code == 0 and "2 records: 2 succeeded" in stderr and len(service.requests) == 2


def test_cli_refuses_to_overwrite_a_report_and_resume_skips_what_was_ok(service, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n" + "".join(f"{PEOPLE[n]},r{n}\n" for n in range(6)), encoding="utf-8")
    report = Path(str(source) + ".report.jsonl")
    # A first run: the first edit (line 2) gets a 503 and is not tried again; a later run is killed writing a line.
    command = ["--input", str(source), "--url", service.url, "--workers", "1", "--retries", "0"]
    service.canned.append((503, response_document(503), "text/xml; charset=utf-8", ()))
    code, _, _ = run_cli(command, CREDENTIAL_ENV)
    assert code == 1
    with report.open("a", encoding="utf-8") as cut:
        cut.write('{"line": 5, "id"')
    first_run = len(service.requests)
    code, _, stderr = run_cli(command, CREDENTIAL_ENV)
    assert code == 2 and "--resume" in stderr and "remove it" in stderr and len(service.requests) == first_run
    code, _, stderr = run_cli(command + ["--resume"], CREDENTIAL_ENV)
    assert code == 0 and "6 records: 1 succeeded, 0 failed; 5 skipped, already confirmed in the report" in stderr
    assert sent_names(service)[first_run:] == ["r0"]
    oks = collections.Counter(entry["line"] for entry in report_of(report, cut=1) if entry.get("ok") is True)
    assert oks == {line: 1 for line in range(2, 8)}


@pytest.mark.parametrize("kind", ["407", "tunnel bad status line", "tunnel API message"])
def test_cli_bulk_report_and_failures_hold_no_form_of_the_proxy_credentials(service, tmp_path, run_main, kind):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n" + "".join(f"{PEOPLE[n]},r{n}\n" for n in range(3)), encoding="utf-8")
    report, failed = Path(str(source) + ".report.jsonl"), tmp_path / "failed.csv"
    with ConnectProxy(act=echoing_proxy(kind)) as proxy:
        url = proxy_url_with(proxy, *PROXY_ACCOUNTS["turkish"])
        code, stdout, stderr = run_main(["--input", str(source), "--url", service.url, "--proxy", url, "--workers", "2",
                                         "--retries", "0", "--failed", str(failed), "-vv"], CREDENTIAL_ENV)
    assert code == 1 and "3 records: 0 succeeded, 3 failed" in stderr, stderr
    entries = report_of(report)
    assert len(entries) == 3 and not any(entry.get("ok") for entry in entries)
    forms = credential_forms(proxy.connects[0][2]["Proxy-Authorization"])
    written = report.read_text(encoding="utf-8") + failed.read_text(encoding="utf-8")
    for text in (written, json.dumps(entries, ensure_ascii=False), stdout, stderr):
        assert_no_form_of(forms, text, kind)


def test_cli_resumes_after_a_report_cut_inside_a_turkish_letter(service, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n4242,a\n5000,b\n", encoding="utf-8")
    report = Path(str(source) + ".report.jsonl")
    report.write_bytes('{"line": 2, "id": 4242, "ok": false, "message": "465 Kişi'.encode("utf-8")[:-1])
    code, _, stderr = run_cli(["--input", str(source), "--url", service.url, "--resume"], CREDENTIAL_ENV)
    assert code == 1 and "2 records: 1 succeeded, 1 failed (1 APIError)" in stderr
    assert [entry["line"] for entry in report_of(report, cut=1)] in ([2, 3], [3, 2])


def test_cli_killed_then_resumed_edits_every_record_once(service, tmp_path):
    import signal

    count = 60
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": PEOPLE[n], "name": f"r{n}"}) + "\n" for n in range(count)))
    service.delays.update((f"r{n}", 0.02) for n in range(count))
    report = Path(str(source) + ".report.jsonl")
    env = dict(no_credentials_env(), **CREDENTIAL_ENV)
    command = [sys.executable, str(MODULE), "--input", str(source), "--url", service.url, "--workers", "4"]
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert eventually(lambda: report.exists() and len(report.read_text().splitlines()) >= 10, seconds=30)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    first_run = collections.Counter(sent_names(service))
    confirmed = {entry["line"] for entry in report_of(report, cut=1) if entry["ok"]}
    assert 10 <= len(confirmed) < count
    code, _, _ = run_cli(command[2:] + ["--resume"], CREDENTIAL_ENV)
    assert code == 0
    oks = collections.Counter(entry["line"] for entry in report_of(report, cut=1) if entry.get("ok") is True)
    assert oks == {line: 1 for line in range(1, count + 1)}
    second_run = collections.Counter(sent_names(service)) - first_run
    assert not any(f"r{line - 1}" in second_run for line in confirmed)  # nothing reported ok was sent again
    assert set(second_run) | set(first_run) == {f"r{n}" for n in range(count)}


def test_cli_interrupted_finishes_in_flight_edits_flushes_the_report_and_exits_130(service, tmp_path):
    import signal

    count = 200
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": PEOPLE[n], "name": f"r{n}"}) + "\n" for n in range(count)))
    service.delays.update((f"r{n}", 0.1) for n in range(count))
    report = Path(str(source) + ".report.jsonl")
    env = dict(no_credentials_env(), **CREDENTIAL_ENV)
    child = subprocess.Popen([sys.executable, str(MODULE), "--input", str(source), "--url", service.url,
                              "--workers", "4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert eventually(lambda: report.exists() and len(report.read_text().splitlines()) >= 4, seconds=30)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 130 and b"Traceback" not in stderr
    assert b"interrupted" in stderr
    answered = len(service.requests)
    lines = report_of(report)
    assert len(lines) == answered < count  # every edit that was sent has its line
    assert all(entry["ok"] for entry in lines)


def test_cli_one_worker_interrupted_still_reports_the_edit_in_flight(service, tmp_path):
    import signal

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": PEOPLE[n], "name": f"r{n}"}) + "\n" for n in range(20)))
    service.delays.update((f"r{n}", 0.4) for n in range(20))
    report = Path(str(source) + ".report.jsonl")
    env = dict(no_credentials_env(), **CREDENTIAL_ENV)
    child = subprocess.Popen([sys.executable, str(MODULE), "--input", str(source), "--url", service.url,
                              "--workers", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert eventually(lambda: len(service.requests) >= 2, seconds=30)  # the second edit is in flight
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=30)
    assert child.returncode == 130
    assert eventually(lambda: len(report_of(report)) == len(service.requests))
    assert all(entry["ok"] for entry in report_of(report))


def test_cli_progress_only_on_a_terminal_or_when_asked(service, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n" + "".join(f"{PEOPLE[n]},r{n}\n" for n in range(30)), encoding="utf-8")
    code, _, quiet = run_cli(["--input", str(source), "--url", service.url, "--workers", "1"], CREDENTIAL_ENV)
    assert code == 0 and "\r" not in quiet and quiet.count("\n") == 1  # stderr is a pipe here: the summary only
    service.delays.update((f"r{n}", 0.03) for n in range(30))  # long enough for several redraws
    code, _, shown = run_cli(["--input", str(source), "--url", service.url, "--workers", "1", "--progress",
                              "--report", str(tmp_path / "second.jsonl")], CREDENTIAL_ENV)
    assert code == 0 and re.search(r"\r[0-9]+/30 records, [0-9.]+/s, 0 failed, [0-9]+ min [0-9]+ s left", shown)
    assert shown.rstrip().endswith("30 records: 30 succeeded, 0 failed")


# -- re-runs by fingerprint, interrupts, dry runs and the failures file ----------------------------------------


def test_cli_resume_of_the_next_day_s_file_sends_only_the_inserted_and_the_changed_rows(service, tmp_path, run_main):
    count = 300
    source = tmp_path / "kişiler.csv"
    rows = [f"{PEOPLE[n]},r{n},s{n}\n" for n in range(count)]
    source.write_text("id,name,surname\n" + "".join(rows), encoding="utf-8")
    command = ["--input", str(source), "--url", service.url, "--workers", "8"]
    assert run_main(command, CREDENTIAL_ENV)[0] == 0 and len(service.requests) == count
    # The next day: a row inserted at the top (every line number moves), two rows changed, one id written "05007"
    # (the same contact, the same edit: as sent, it is the same request), the columns' cells trimmed by hand.
    rows.insert(0, f"{PEOPLE[count]},new,top\n")
    rows[1 + 10] = f"{PEOPLE[10]},r10-changed,s10\n"
    rows[1 + 250] = f"{PEOPLE[250]},r250,s250-changed\n"
    rows[1 + 7] = f"0{PEOPLE[7]}, r7 ,s7\n"
    source.write_text("id,name,surname\n" + "".join(rows), encoding="utf-8")
    first_run = len(service.requests)
    code, _, stderr = run_main(command, CREDENTIAL_ENV)  # without --resume: refused, naming both ways out
    assert code == 2 and "--resume" in stderr and "remove it" in stderr and "new and changed records" in stderr
    assert len(service.requests) == first_run
    code, _, stderr = run_main(command + ["--resume"], CREDENTIAL_ENV)
    assert code == 0, stderr
    assert stderr.splitlines()[-1] == (f"iletimerkezi-edit: {count + 1} records: 3 succeeded, 0 failed; "
                                       f"{count - 2} skipped, already confirmed in the report")
    assert sorted(sent_names(service)[first_run:]) == ["new", "r10-changed", "r250"]
    assert service.contacts[PEOPLE[250]]["surname"] == "s250-changed"
    # A third run of the same file sends nothing at all.
    code, _, stderr = run_main(command + ["--resume"], CREDENTIAL_ENV)
    assert code == 0 and f"0 succeeded, 0 failed; {count + 1} skipped" in stderr
    assert len(service.requests) == first_run + 3


def test_cli_resume_after_a_503_on_an_older_edit_keeps_the_newer_one(service, tmp_path, run_main):
    contact = PEOPLE[901]
    source = tmp_path / "in.csv"
    source.write_text(f"id,name\n{contact},flaky-old\n{PEOPLE[1]},other\n{contact},new-last\n", encoding="utf-8")
    service.unavailable_once.add("flaky-old")
    command = ["--input", str(source), "--url", service.url, "--workers", "4", "--retries", "0"]
    code, _, stderr = run_main(command, CREDENTIAL_ENV)
    assert code == 1 and "3 records: 2 succeeded, 1 failed (1 APIError)" in stderr
    assert service.contacts[contact]["name"] == "new-last"
    first_run = len(service.requests)
    code, _, stderr = run_main(command + ["--resume"], CREDENTIAL_ENV)
    # new-last was confirmed, but it comes after flaky-old, which was not: it is sent again, after it.
    assert code == 0 and "3 records: 2 succeeded, 0 failed; 1 skipped" in stderr
    assert sent_names(service)[first_run:] == ["flaky-old", "new-last"]
    assert service.contacts[contact]["name"] == "new-last"


def test_cli_resume_sends_a_value_changed_back_to_one_confirmed_days_before(service, tmp_path, run_main):
    # Day 1 sets A, day 2 B, day 3 A again: A's fingerprint is confirmed (day 1), but B came after it.
    contact, other = PEOPLE[903], PEOPLE[904]
    source = tmp_path / "in.csv"
    report = ["--report", str(tmp_path / "report.jsonl")]
    for day, name in enumerate(["A", "B", "A"]):
        source.write_text(f"id,name\n{contact},{name}\n{other},same\n", encoding="utf-8")
        before = len(service.requests)
        code, _, stderr = run_main(["--input", str(source), "--url", service.url] + report + ["--resume"] * bool(day),
                                   CREDENTIAL_ENV)
        assert code == 0 and service.contacts[contact]["name"] == name
        assert sorted(sent_names(service)[before:]) == (sorted([name, "same"]) if day == 0 else [name])
        assert ("1 skipped" in stderr) == bool(day)


def test_cli_resume_skips_a_contact_s_rows_only_while_they_are_its_last_confirmed_edits(service, tmp_path, run_main):
    contact = PEOPLE[905]
    source = tmp_path / "in.csv"
    command = ["--input", str(source), "--url", service.url, "--report", str(tmp_path / "report.jsonl")]
    source.write_text(f"id,name,surname\n{contact},Ali,\n{contact},,Kaya\n", encoding="utf-8")
    assert run_main(command, CREDENTIAL_ENV)[0] == 0
    first_run = len(service.requests)
    code, _, stderr = run_main(command + ["--resume"], CREDENTIAL_ENV)  # both rows, in order: nothing to send
    assert code == 0 and "2 records: 0 succeeded, 0 failed; 2 skipped" in stderr and len(service.requests) == first_run
    source.write_text(f"id,name,surname\n{contact},Ali,\n", encoding="utf-8")  # the first row alone: it waits,
    code, _, stderr = run_main(command + ["--resume"], CREDENTIAL_ENV)  # and at the end of the file it is sent
    assert code == 0 and "1 records: 1 succeeded, 0 failed" in stderr and sent_names(service)[first_run:] == ["Ali"]


def test_cli_resume_after_an_edit_with_no_answer_sends_a_value_changed_back(service, tmp_path, run_main):
    # Day 2's edit is stored but its answer never comes: day 3's A, confirmed on day 1, must be sent again.
    contact = PEOPLE[906]
    source = tmp_path / "in.csv"
    command = ["--input", str(source), "--url", service.url, "--report", str(tmp_path / "report.jsonl"),
               "--retries", "0"]
    source.write_text(f"id,name\n{contact},A\n", encoding="utf-8")
    assert run_main(command, CREDENTIAL_ENV)[0] == 0
    source.write_text(f"id,name\n{contact},B\n", encoding="utf-8")
    service.delays["B"] = 0.6
    code, _, stderr = run_main(command + ["--resume", "--timeout", "0.2"], CREDENTIAL_ENV)
    assert code == 1 and "1 TransportError" in stderr
    assert eventually(lambda: service.contacts[contact]["name"] == "B")  # applied all the same, later
    source.write_text(f"id,name\n{contact},A\n", encoding="utf-8")
    code, _, stderr = run_main(command + ["--resume"], CREDENTIAL_ENV)
    assert code == 0 and "1 records: 1 succeeded" in stderr and service.contacts[contact]["name"] == "A"


def test_resume_holds_back_at_most_a_bounded_number_of_records():
    # Every contact's report history is X then Y, and the file repeats X: each X may yet prove to be followed by
    # Y, so it waits; but never more than a bounded number wait, whatever the file's length.
    history = {5000 + n: ["x%d" % n, "y%d" % n] for n in range(3000)}
    resume = ie._Resume(history)
    read = []

    def records():
        for n in range(3000):
            read.append(n)
            yield ie._Record(n + 2, ie.Contact(5000 + n, name="X"), ["x"]), "x%d" % n

    sent = []
    for record, _ in resume.pending(records(), lambda count: None):
        sent.append(record.line)
        assert len(read) - len(sent) <= ie._MOST_WAITING + 1
    assert sorted(sent) == list(range(2, 3002))


def test_cli_report_on_a_full_disk_exits_74(service, tmp_path, run_main, monkeypatch):
    class FullDisk(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ie, "_open_appending", lambda path, what: FullDisk())
    source = tmp_path / "in.csv"
    source.write_text(f"id,name\n{PEOPLE[907]},a\n", encoding="utf-8")
    code, _, stderr = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 74 and "could not be written: the report: [Errno 28] No space left on device" in stderr


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "rot13", "hex"])
def test_cli_an_encoding_that_cannot_read_the_file_exits_2(service, tmp_path, run_main, encoding):
    source = tmp_path / "in.csv"
    source.write_text(f"id;Ad\n{PEOPLE[908]};Ali\n", encoding="utf-8")
    code, _, stderr = run_main(["--input", str(source), "--encoding", encoding, "--dry-run"])
    assert code == 2 and "--encoding" in stderr and "internal error" not in stderr


def test_cli_a_dry_run_never_replaces_a_failures_file(service, tmp_path, run_main):
    source, failed = tmp_path / "in.csv", tmp_path / "hatalar.csv"
    source.write_text("id,name\n4242,x\n", encoding="utf-8")
    command = ["--input", str(source), "--url", service.url, "--failed", str(failed)]
    assert run_main(command, CREDENTIAL_ENV)[0] == 1 and "4242" in failed.read_text(encoding="utf-8")
    code, _, stderr = run_main(command + ["--resume", "--dry-run"])
    assert code == 2 and "exists" in stderr and "4242" in failed.read_text(encoding="utf-8")


def test_cli_a_date_in_the_gsm_column_is_a_bad_record(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text(f"id,gsm\n{PEOPLE[909]},27/09/2024 00:00:00\n{PEOPLE[910]},27.09.2024\n"
                      f"{PEOPLE[911]},+905051234567\n", encoding="utf-8")
    code, _, stderr = run_main(["--input", str(source), "--dry-run"])
    assert code == 1 and stderr.count("is a date, not a phone number") == 2 and "1 valid, 2 bad" in stderr


def test_cli_partial_rows_of_one_contact_replay_in_order_across_runs(service, tmp_path, run_main):
    contact = PEOPLE[902]
    source = tmp_path / "in.csv"
    source.write_text(f"id,name,surname\n{contact},Ayşe,\n{contact},,Yılmaz\n{PEOPLE[3]},x,\n", encoding="utf-8")
    service.unavailable_once.add("Ayşe")
    command = ["--input", str(source), "--url", service.url, "--workers", "4", "--retries", "0"]
    assert run_main(command, CREDENTIAL_ENV)[0] == 1
    assert (service.contacts[contact]["name"], service.contacts[contact]["surname"]) == ("API", "Yılmaz")
    first_run = len(service.requests)
    code, _, stderr = run_main(command + ["--resume"], CREDENTIAL_ENV)
    assert code == 0 and "3 records: 2 succeeded, 0 failed; 1 skipped" in stderr
    sent = [ET.fromstring(body).find("contact") for _, _, body in service.requests[first_run:]]
    assert [(element.findtext("name"), element.findtext("surname")) for element in sent] == [
        ("Ayşe", None), (None, "Yılmaz")]
    assert (service.contacts[contact]["name"], service.contacts[contact]["surname"]) == ("Ayşe", "Yılmaz")
    code, _, stderr = run_main(command + ["--resume"], CREDENTIAL_ENV)
    assert code == 0 and "3 records: 0 succeeded, 0 failed; 3 skipped" in stderr
    assert len(service.requests) == first_run + 2


def test_cli_resume_with_the_report_of_another_file_skips_only_the_same_edits(service, tmp_path, run_main):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(f"id,name\n{PEOPLE[0]},a\n{PEOPLE[1]},b\n", encoding="utf-8")
    second.write_text(f"id,name\n{PEOPLE[1]},b\n{PEOPLE[0]},a2\n{PEOPLE[2]},c\n", encoding="utf-8")
    report = str(tmp_path / "shared.jsonl")
    assert run_main(["--input", str(first), "--url", service.url, "--report", report], CREDENTIAL_ENV)[0] == 0
    code, _, stderr = run_main(["--input", str(second), "--url", service.url, "--report", report, "--resume"],
                               CREDENTIAL_ENV)
    assert code == 0 and "3 records: 2 succeeded, 0 failed; 1 skipped" in stderr
    assert sorted(sent_names(service)[2:]) == ["a2", "c"]


def interrupted_run(service, tmp_path, rng, number):
    """One real run of a file, stopped by SIGINT or SIGTERM a random moment after its first edit reached the
    server; every edit the server stored and answered 200 must have its ok line."""
    count = 120
    names = [f"i{number}-{n}" for n in range(count)]
    service.delays.update((name, rng.uniform(0.005, 0.03)) for name in names)
    source = tmp_path / f"run{number}.jsonl"
    source.write_text("".join(json.dumps({"id": PEOPLE[n], "name": name}) + "\n" for n, name in enumerate(names)))
    report = Path(str(source) + ".report.jsonl")
    chosen = rng.choice([signal.SIGINT, signal.SIGTERM])
    before = len(service.requests)
    child = subprocess.Popen([sys.executable, str(MODULE), "--input", str(source), "--url", service.url,
                              "--workers", "8"], env=dict(no_credentials_env(), **CREDENTIAL_ENV),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert eventually(lambda: len(service.requests) > before or child.poll() is not None, seconds=30)
        time.sleep(rng.uniform(0, 0.15))
        child.send_signal(chosen)
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    lines = stderr.decode().splitlines()
    entries = report_of(report)
    with service.lock:
        stored = {name for _, name in service.applied if name in set(names)}
    reported_ok = {names[entry["line"] - 1] for entry in entries if entry["ok"]}
    assert stored == reported_ok  # every edit the server stored has its ok line, and no other edit has one
    assert len({entry["line"] for entry in entries}) == len(entries)  # one line per record
    if child.returncode == 0:  # the run ended before the signal: every record done
        assert len(entries) == count and lines[-1].endswith(f"{count} records: {count} succeeded, 0 failed")
        return "finished"
    assert child.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[chosen], lines
    assert b"Traceback" not in stderr
    assert [line for line in lines if "interrupted" in line] == [lines[-1]]
    assert lines[-1] == (f"iletimerkezi-edit: interrupted ({chosen.name}) after {len(entries)} records; "
                         f"{count - len(entries)} records were not done: run the same command with --resume to "
                         "send them")
    return chosen.name


def test_cli_interrupted_runs_lose_no_confirmed_edit(service, tmp_path):
    rng = random.Random(17)
    outcomes = collections.Counter(interrupted_run(service, tmp_path, rng, number) for number in range(4))
    assert outcomes["finished"] < 4


@pytest.mark.soak
def test_cli_many_interrupted_runs_lose_no_confirmed_edit(service, tmp_path):
    rng = random.Random(1717)
    outcomes = collections.Counter(interrupted_run(service, tmp_path, rng, number) for number in range(40))
    assert outcomes["SIGINT"] + outcomes["SIGTERM"] >= 30, outcomes
    assert min(outcomes["SIGINT"], outcomes["SIGTERM"]) >= 10, outcomes


def test_cli_sigterm_while_edits_are_in_flight_waits_for_their_answers_and_reports_them(service, tmp_path):
    count = 30
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": PEOPLE[n], "name": f"late{n}"}) + "\n" for n in range(count)))
    service.delays.update((f"late{n}", 0.5) for n in range(count))  # each answer comes well after the signal
    report = Path(str(source) + ".report.jsonl")
    child = subprocess.Popen([sys.executable, str(MODULE), "--input", str(source), "--url", service.url,
                              "--workers", "8"], env=dict(no_credentials_env(), **CREDENTIAL_ENV),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert eventually(lambda: service.in_flight == 8, seconds=30)
    child.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    child.send_signal(signal.SIGINT)  # a second signal, as an impatient operator sends: the first one's run ends
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 143, stderr
    entries = report_of(report)
    assert sorted(entry["line"] for entry in entries if entry["ok"]) == sorted(
        int(name[4:]) + 1 for _, name in service.applied)
    assert len(service.applied) == 8 and len(entries) == 8
    assert stderr.decode().splitlines()[-1] == (
        "iletimerkezi-edit: interrupted (SIGTERM) after 8 records; 22 records were not done: run the same command "
        "with --resume to send them")


def catches_sigterm(child):
    """Whether ``child`` has a SIGTERM handler of its own yet (Linux: /proc), else whether 1 s has passed."""
    try:
        caught = Path(f"/proc/{child.pid}/status").read_text()
    except OSError:
        time.sleep(1)
        return True
    mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", caught, re.M).group(1), 16)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def test_cli_a_signal_while_stdin_sends_nothing_ends_the_run(service):
    """Before the header or after it, the run waits on a pipe that sends nothing: SIGINT and SIGTERM end it."""
    env = dict(no_credentials_env(), **CREDENTIAL_ENV)
    cases = [(chosen, header) for chosen in ("SIGINT", "SIGTERM") for header in (b"id,name\n", b"")]
    children = []
    try:
        for _, header in cases:  # side by side: each waits for the same 0.3 s
            child = subprocess.Popen([sys.executable, str(MODULE), "--input", "-", "--format", "csv", "--url",
                                      service.url], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
            children.append(child)
            child.stdin.write(header)
            child.stdin.flush()
        # Each waits for its header or its first record, which never come, once it handles SIGTERM itself.
        assert all(eventually(lambda: catches_sigterm(child), seconds=30) for child in children)
        time.sleep(0.2)
        for (chosen, _), child in zip(cases, children):
            child.send_signal(getattr(signal, chosen))
        for (chosen, header), child in zip(cases, children):
            _, stderr = child.communicate(timeout=30)
            assert child.returncode == {"SIGINT": 130, "SIGTERM": 143}[chosen], (chosen, header, stderr)
            last = stderr.decode().splitlines()[-1]
            if header:
                assert last.startswith(f"iletimerkezi-edit: interrupted ({chosen}) after 0 records") and (
                    "--resume" in last)
            else:
                assert last == (f"iletimerkezi-edit: interrupted ({chosen}) before the first record was read; "
                                "nothing was sent")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.communicate()
    assert service.requests == []


DRY_RUN_CSV = "id,name,surname\n5000,a,\nabc,b,\n5002,\"c\x01\",\n5003,d,e,extra\n5004,,f\n"


def test_cli_dry_run_of_a_file_checks_every_record_without_credentials_or_sending(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text(DRY_RUN_CSV, encoding="utf-8")
    code, stdout, stderr = run_main(["--input", str(source), "--dry-run", "--url", service.url])
    assert code == 1 and stdout == ""
    lines = stderr.splitlines()
    assert [line.split(":")[1].strip() for line in lines[:-1]] == ["line 3", "line 4", "line 5"]
    assert "contact.id" in lines[0] and "U+0001" in lines[1] and "4 cells" in lines[2]
    assert lines[-1] == "iletimerkezi-edit: 5 records: 2 valid, 3 bad; nothing was sent (--dry-run)"
    assert service.requests == [] and not Path(str(source) + ".report.jsonl").exists()
    # What a real run refuses, it refuses with the same words.
    code, _, real = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 1 and len(service.requests) == 2
    messages = sorted(entry["message"] for entry in report_of(str(source) + ".report.jsonl") if not entry["ok"])
    assert messages == sorted(line.split(": ", 2)[2] for line in lines[:-1])


def test_cli_dry_run_of_a_valid_file_exits_0_and_of_an_unreadable_one_2(tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n5000,a\n5001,b\n", encoding="utf-8")
    code, _, stderr = run_main(["--input", str(source), "--dry-run"])
    assert code == 0 and stderr == "iletimerkezi-edit: 2 records: 2 valid, 0 bad; nothing was sent (--dry-run)\n"
    assert run_main(["--input", str(tmp_path / "missing.csv"), "--dry-run"])[0] == 2
    source.write_bytes(b"id,name\n5000,\xfe\n")
    code, _, stderr = run_main(["--input", str(source), "--dry-run"])
    assert code == 2 and "not valid UTF-8" in stderr
    source.write_text("name\nx\n", encoding="utf-8")
    assert run_main(["--input", str(source), "--dry-run"])[0] == 2


def test_cli_dry_run_with_a_report_writes_one_that_confirms_nothing(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text(DRY_RUN_CSV, encoding="utf-8")
    report = tmp_path / "checked.jsonl"
    assert run_main(["--input", str(source), "--dry-run", "--report", str(report)])[0] == 1
    entries = report_of(report)
    assert sorted(entry["line"] for entry in entries) == [2, 3, 4, 5, 6]
    assert not any(entry["ok"] for entry in entries)  # nothing was confirmed by the server
    # The operator then runs for real with that report and --resume: every valid record is sent.
    code, _, stderr = run_main(["--input", str(source), "--url", service.url, "--report", str(report), "--resume"],
                               CREDENTIAL_ENV)
    assert code == 1 and "5 records: 2 succeeded, 3 failed (3 ValidationError)" in stderr
    assert collections.Counter(sent_names(service)) == {"a": 1, None: 1}


def test_cli_dry_run_then_the_real_run_is_not_blocked_by_a_report(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n5000,a\n5001,b\n", encoding="utf-8")
    assert run_main(["--input", str(source), "--dry-run"])[0] == 0
    code, _, stderr = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 0 and "2 records: 2 succeeded, 0 failed" in stderr and len(service.requests) == 2


def test_cli_dry_run_with_resume_says_what_the_real_run_would_send(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text(f"id,name\n{PEOPLE[0]},a\n4242,b\nabc,c\n{PEOPLE[0]},d\n{PEOPLE[1]},e\n", encoding="utf-8")
    service.unavailable_once.add("a")
    command = ["--input", str(source), "--url", service.url, "--retries", "0"]
    assert run_main(command, CREDENTIAL_ENV)[0] == 1  # a: 503; 4242: 465; abc: refused; d and e: ok
    code, _, stderr = run_main(command + ["--resume", "--dry-run"])
    assert code == 1
    assert stderr.splitlines()[-1] == ("iletimerkezi-edit: 5 records: 3 valid, 1 bad; nothing was sent (--dry-run); "
                                       "--resume would send 3, refuse 1 and skip 1, already confirmed in the report")
    requests = len(service.requests)
    code, _, stderr = run_main(command + ["--resume"], CREDENTIAL_ENV)
    assert "5 records: 2 succeeded, 2 failed (1 APIError, 1 ValidationError); 1 skipped" in stderr
    assert len(service.requests) - requests == 3  # a, 4242 and d: what the dry run said


def test_cli_failures_file_of_a_cp1254_semicolon_csv_opens_as_it_and_runs_clean_once_fixed(service, tmp_path,
                                                                                          run_main):
    import csv

    source = tmp_path / "kişiler.csv"
    source.write_bytes(("id;name;surname\r\n"
                        "5000;Şule;Öz\r\n"
                        "4242;Ayşe;\"Çelik; Ünlü\"\r\n"
                        "5002;\"İğ\x01\";Gök\r\n"
                        "5003;düşen;Işık\r\n"
                        "5004;Ömer;Ağ\r\n").encode("cp1254"))
    service.dropped_names.add("düşen")  # no answer at all
    failures = tmp_path / "hatalar.csv"
    command = ["--input", str(source), "--encoding", "cp1254", "--url", service.url, "--retries", "0",
               "--failed", str(failures)]
    code, _, stderr = run_main(command, CREDENTIAL_ENV)
    assert code == 1 and "5 records: 2 succeeded, 3 failed (1 APIError, 1 TransportError, 1 ValidationError)" in stderr
    assert os.stat(failures).st_mode & 0o777 == 0o600
    raw = failures.read_bytes()
    assert b"\r\n" in raw and raw.decode("cp1254").startswith("id;name;surname;error\r\n")
    rows = list(csv.reader(raw.decode("cp1254").splitlines(), delimiter=";"))
    assert len(rows) == 4 and all(len(row) == 4 for row in rows)
    assert sorted(row[:3] for row in rows[1:]) == [["4242", "Ayşe", "Çelik; Ünlü"], ["5002", "İğ\x01", "Gök"],
                                             ["5003", "düşen", "Işık"]]
    errors = {row[0]: row[3] for row in rows[1:]}
    assert errors["4242"].startswith("APIError: 465 ") and errors["5002"].startswith("ValidationError: ")
    assert errors["5003"].startswith("TransportError: ")
    # Never overwritten without --resume (another report name, so that the report is not what refuses).
    code, _, stderr = run_main(command + ["--report", str(tmp_path / "r2.jsonl")], CREDENTIAL_ENV)
    assert code == 2 and "failures file" in stderr and "--resume" in stderr and failures.read_bytes() == raw
    assert not (tmp_path / "r2.jsonl").exists()
    # Fixed in Excel (the error column left in place) and run as it is: it runs clean.
    service.dropped_names.clear()
    fixed = raw.decode("cp1254").replace("4242;", "5001;").replace("İğ\x01", "İğ")
    failures.write_bytes(fixed.encode("cp1254"))
    requests = len(service.requests)
    code, _, stderr = run_main(["--input", str(failures), "--encoding", "cp1254", "--url", service.url],
                               CREDENTIAL_ENV)
    assert code == 0 and "3 records: 3 succeeded, 0 failed" in stderr
    assert sorted(sent_names(service)[requests:]) == ["Ayşe", "düşen", "İğ"]
    assert service.contacts[5001]["surname"] == "Çelik; Ünlü"


def test_cli_failures_file_is_0600_even_where_it_existed_and_resume_replaces_it(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n4242,a\n5000,b\n", encoding="utf-8")
    failures = tmp_path / "failed.csv"
    failures.write_text("old\n")
    os.chmod(failures, 0o644)
    command = ["--input", str(source), "--url", service.url, "--failed", str(failures)]
    assert run_main(command, CREDENTIAL_ENV)[0] == 2 and failures.read_text() == "old\n"  # no report yet: this refuses
    assert service.requests == []
    code, _, _ = run_main(command + ["--resume"], CREDENTIAL_ENV)
    assert code == 1 and os.stat(failures).st_mode & 0o777 == 0o600
    assert failures.read_text(encoding="utf-8-sig").splitlines()[1].startswith("4242,a,APIError: 465")


def test_cli_failures_file_of_json_lines_keeps_each_object_with_an_error_key(service, tmp_path, run_main):
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": 4242, "name": "Ayşe", "error": "yesterday's"}, ensure_ascii=False),
             json.dumps({"id": 5000, "name": "ok", "error": "fixed"}),
             "{not json",
             json.dumps({"id": 5001, "name": "x\x01"})]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    failures = tmp_path / "failed.jsonl"
    code, _, stderr = run_main(["--input", str(source), "--url", service.url, "--failed", str(failures)],
                               CREDENTIAL_ENV)
    assert code == 1 and "4 records: 1 succeeded, 3 failed" in stderr  # the error key was ignored on line 2
    assert os.stat(failures).st_mode & 0o777 == 0o600
    assert not failures.read_bytes().startswith(codecs.BOM_UTF8)  # JSON has no BOM: jq and json.loads refuse one
    written = failures.read_text(encoding="utf-8").splitlines()  # as each record ended, not in input order
    assert len(written) == 3 and "{not json" in written
    objects = sorted((json.loads(text) for text in written if text != "{not json"), key=lambda value: value["id"])
    first, last = objects
    assert first == {"id": 4242, "name": "Ayşe", "error": first["error"]}  # yesterday's error replaced
    assert first["error"].startswith("APIError: 465")
    assert last["name"] == "x\x01" and last["error"].startswith("ValidationError: ")


def test_cli_failed_may_name_neither_the_input_nor_the_report(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n5000,a\n4242,b\n", encoding="utf-8")
    report = Path(str(source) + ".report.jsonl")
    assert run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)[0] == 1
    before = report.read_bytes()
    for failed in (str(source), str(report)):
        code, _, stderr = run_main(["--input", str(source), "--url", service.url, "--resume", "--failed", failed],
                                   CREDENTIAL_ENV)
        assert code == 2 and "--failed" in stderr, stderr
    code, _, stderr = run_main(["--input", str(source), "--url", service.url, "--resume", "--report", str(source)],
                               CREDENTIAL_ENV)
    assert code == 2 and "--report" in stderr, stderr
    fresh = tmp_path / "fresh.jsonl"
    code, _, stderr = run_main(["--input", str(source), "--url", service.url, "--report", str(fresh), "--failed",
                                str(fresh)], CREDENTIAL_ENV)
    assert code == 2 and "--failed" in stderr and not fresh.exists()
    assert report.read_bytes() == before and source.read_text() == "id,name\n5000,a\n4242,b\n"
    assert len(service.requests) == 2



# ---------------------------------------------------------------------------
# Command line: spreadsheets as Turkish offices make them
# ---------------------------------------------------------------------------
#
# Files made the ways offices make them (wire-facts.md, "Spreadsheets in Turkish offices"), run end to end against
# the fake service; then the reading functions one by one (encodings, headers, cells, .xlsx, hostile workbooks).


def sent_contacts(service):
    """The <contact> of every request the service was sent, in the order it got them."""
    return [ET.fromstring(body).find("contact") for _, _, body in service.requests]


def contact_sent_for(service, contact_id):
    (contact,) = [contact for contact in sent_contacts(service) if contact.findtext("id") == str(contact_id)]
    return contact


# Excel's "CSV (Comma delimited)" in a Turkish locale: Windows-1254, ";", CRLF. Line 3 holds the first letter that
# is not ASCII (Ş, byte 0xDE), so a run without --encoding must name line 3.
TURKISH_EXCEL_ROWS = [
    ["id", "Ad", "Soyad", "Cep Telefonu", "Gruplar"],
    ["5000", "Ali", "Kaya", "+905051112233", "9"],
    ["5001", "Şule", "Işığı", "905052223344", "9, 12"],
    ["5002", "İlkay Ğ", "Öztürk Şahin", "", "12"],
    ["5003", "Ayşe", "Doğan", "5053334455", ""],
]


def cp1254_csv(rows):
    text = "".join(";".join(f'"{cell}"' if ";" in cell else cell for cell in row) + "\r\n" for row in rows)
    return text.encode("cp1254")


def test_cli_cp1254_csv_is_refused_whole_without_encoding_and_read_exactly_with_it(service, tmp_path, run_main):
    source = tmp_path / "kişiler.csv"
    source.write_bytes(cp1254_csv(TURKISH_EXCEL_ROWS))
    assert b"\xfe" in source.read_bytes() and b"\xdd" in source.read_bytes()  # ş and İ, single bytes
    command = ["--input", str(source), "--url", service.url, "--workers", "1"]
    code, _, stderr = run_main(command, CREDENTIAL_ENV)
    assert code == 2 and f"{source} line 3 is not valid UTF-8 (at 0xDE)" in stderr
    assert "Windows-1254" in stderr and "--encoding cp1254" in stderr and '"CSV UTF-8"' in stderr
    assert service.requests == [] and not Path(str(source) + ".report.jsonl").exists()  # line 2 was not sent either
    code, _, stderr = run_main(command + ["--encoding", "cp1254"], CREDENTIAL_ENV)
    assert code == 0 and "4 records: 4 succeeded, 0 failed" in stderr
    stored = service.contacts
    assert [(stored[n]["name"], stored[n]["surname"]) for n in range(5000, 5004)] == [
        ("Ali", "Kaya"), ("Şule", "Işığı"), ("İlkay Ğ", "Öztürk Şahin"), ("Ayşe", "Doğan")]
    assert stored[5001]["groups"] == [9, 12] and stored[5001]["gsm"] == "905052223344"
    assert stored[5002]["gsm"] == "+905056663325"  # an empty cell left it as it was
    assert sorted(entry["line"] for entry in report_of(str(source) + ".report.jsonl")) == [2, 3, 4, 5]


def test_cli_cp1254_with_its_failures_file_in_cp1254_even_for_messages_it_cannot_spell(service, tmp_path, run_main):
    """The 401 message has arrows (Settings → Security), which cp1254 lacks: the failures file gets "?" for them."""
    source = tmp_path / "kişiler.csv"
    source.write_bytes(cp1254_csv(TURKISH_EXCEL_ROWS[:3]))
    failed = tmp_path / "hatalı.csv"
    code, _, stderr = run_main(["--input", str(source), "--encoding", "cp1254", "--url", service.url,
                                "--failed", str(failed)], {"ILETIMERKEZI_KEY": KEY, "ILETIMERKEZI_SECRET": "wrong"})
    assert code == 1 and "2 records: 0 succeeded, 2 failed (2 AuthenticationError)" in stderr
    text = failed.read_bytes().decode("cp1254")
    lines = text.split("\r\n")
    assert lines[0] == "id;Ad;Soyad;Cep Telefonu;Gruplar;error"
    assert sorted(line.split(";")[1] for line in lines[1:3]) == ["Ali", "Şule"]
    assert "AuthenticationError: 401" in text and "Settings ? Security" in text


def test_cli_a_bom_that_contradicts_encoding_and_empty_or_header_only_files(service, tmp_path, run_main):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffid;Ad\r\n5000;Şule\r\n".encode("utf-8"))
    code, _, stderr = run_main(["--input", str(bom), "--encoding", "cp1254", "--url", service.url], CREDENTIAL_ENV)
    assert code == 2 and "byte order mark" in stderr and "leave --encoding out" in stderr
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    code, _, stderr = run_main(["--input", str(empty), "--url", service.url], CREDENTIAL_ENV)
    assert code == 2 and "the first line must be the header" in stderr
    assert service.requests == []
    header_only = tmp_path / "header.csv"
    header_only.write_bytes("İD;Ad\r\n;;\r\n".encode("utf-8"))
    code, _, stderr = run_main(["--input", str(header_only), "--url", service.url], CREDENTIAL_ENV)
    assert code == 0 and "0 records: 0 succeeded, 0 failed" in stderr and service.requests == []


def test_cli_reads_unicode_text_utf16_with_its_bom_and_tabs_without_options(service, tmp_path, run_main):
    """Excel's "Unicode Text (*.txt)": UTF-16 LE with a BOM, tab-separated, CRLF."""
    text = "İD\tAd\tSoyadı\tCep Telefonu\r\n5000\tŞükrü\tIşığı\t0505 123 45 67\r\n5001\tĞ İ\t\"a\tb\"\t\r\n"
    source = tmp_path / "kişiler.txt"
    source.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    code, _, stderr = run_main(["--input", str(source), "--url", service.url, "--failed",
                                str(tmp_path / "f.txt")], CREDENTIAL_ENV)
    assert code == 1 and "2 records: 1 succeeded, 1 failed (1 APIError)" in stderr  # the fake refuses 0505... (466)
    assert contact_sent_for(service, 5000).findtext("gsm") == "0505 123 45 67"  # other phone forms go as written
    assert (service.contacts[5001]["name"], service.contacts[5001]["surname"]) == ("Ğ İ", "a\tb")
    failed = (tmp_path / "f.txt").read_bytes()
    assert failed.startswith(codecs.BOM_UTF16_LE)  # written as it was read
    assert failed.decode("utf-16").startswith("İD\tAd\tSoyadı\tCep Telefonu\terror\r\n5000\tŞükrü\t")


@pytest.mark.parametrize("name", ["kişiler.TSV", "kişiler.TXT", "kişiler.Csv"])
def test_cli_tsv_and_txt_in_any_case_are_csv_with_the_delimiter_of_the_header(service, tmp_path, run_main, name):
    source = tmp_path / name
    source.write_text("ID;Ad\n5000;a,b\tc\n", encoding="utf-8")
    code, _, _ = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 0 and sent_names(service) == ["a,b\tc"]


def test_cli_turkish_headers_and_capitals(service, tmp_path, run_main):
    header = ["İD", "Ad", "Soyadı", "Cep Telefonu", "Gruplar", "EMAİL", "FİELD:1"]
    rows = [["5000", "Şule", "Yılmaz", "+905051112233", "9, 12", "sule@örnek.com.tr", "27.09.2024"]]
    source = tmp_path / "kişiler.csv"
    source.write_text("".join(";".join(row) + "\r\n" for row in [header, *rows]), encoding="utf-8-sig")
    code, _, stderr = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 0, stderr
    contact = contact_sent_for(service, 5000)
    assert [child.tag for child in contact] == ["id", "name", "surname", "email", "gsm", "custom_fields", "groups"]
    assert (contact.findtext("name"), contact.findtext("surname"), contact.findtext("gsm")) == (
        "Şule", "Yılmaz", "+905051112233")
    assert contact.findtext("email") == "sule@örnek.com.tr"
    assert contact.findtext("custom_fields/custom_field/value") == "27.09.2024"
    assert [group.text for group in contact.find("groups")] == ["9", "12"]


@pytest.mark.parametrize("written", ["İd", "I\u0307d", "İD".lower(), "ID", "iD", "\ufeffId"])
def test_cli_every_spelling_of_id_is_the_id_column(service, tmp_path, run_main, written):
    source = tmp_path / "in.csv"
    source.write_text(f"{written};ADI\n5000;a\n", encoding="utf-8")
    code, _, stderr = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 0, stderr
    assert sent_names(service) == ["a"]


def test_cli_mapped_and_skipped_columns_with_a_trailing_delimiter(service, tmp_path, run_main):
    source = tmp_path / "liste.csv"
    source.write_text("Kimlik No;İsim;Notlar;Şube;\r\n"
                      "5000;Ali;ilk not;Kadıköy;\r\n"
                      "5001;Veli;;Beşiktaş;\r\n"
                      "5002;Ayşe;;;kayıp değer\r\n", encoding="utf-8")
    code, _, stderr = run_main(["--input", str(source), "--url", service.url, "--column", "KİMLİK NO=id",
                                "--column", "Notlar=field:2", "--skip-column", "şube"], CREDENTIAL_ENV)
    assert code == 1 and "3 records: 2 succeeded, 1 failed (1 ValidationError)" in stderr
    assert service.contacts[5000]["fields"][2] == "ilk not" and service.contacts[5000]["name"] == "Ali"
    assert sorted(sent_names(service)) == ["Ali", "Veli"]  # Şube went nowhere; the value under "" is refused
    (bad,) = [entry for entry in report_of(str(source) + ".report.jsonl") if not entry["ok"]]
    assert bad["line"] == 4 and "column 5 has a value but no header" in bad["message"]


@pytest.mark.parametrize("header, options, message", [
    ("id;Ad;Notlar", [], "unknown column 'Notlar' (column 3)"),
    ("id;Ad Soyad", [], "unknown column 'Ad Soyad'"),  # a full name is not the name: the run stops
    ("id;Ad;name", [], "columns 'Ad', 'name' all fill name"),
    ("id;Ad", ["--column", "Telefon=gsm"], "--column names 'Telefon', which is not a column"),
    ("id;Ad", ["--skip-column", "Notlar"], "--skip-column names 'Notlar', which is not a column"),
    ("id;Ad", ["--column", "Ad=telefon"], "'telefon' is not a field"),
    ("Ad;Soyad", [], "has no id column"),
])
def test_cli_headers_that_stop_the_run_before_anything_is_sent(service, tmp_path, run_main, header, options,
                                                              message):
    source = tmp_path / "in.csv"
    source.write_text(header + "\n5000;a;b\n", encoding="utf-8")
    code, _, stderr = run_main(["--input", str(source), "--url", service.url, *options], CREDENTIAL_ENV)
    assert code == 2 and message in stderr, stderr
    if "unknown column" in message:
        assert "--column" in stderr and "--skip-column" in stderr
    assert service.requests == []


def test_cli_scientific_phones_are_bad_records_and_no_break_spaces_are_trimmed(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text("id;Ad;GSM\r\n"
                      "5000;\u00a0Ali\u202f;\u00a0+905051112233\u202f\r\n"
                      "5001;b;5,3257E+09\r\n"
                      "5002;c;9.05056663325E+11\r\n"
                      "5003;d;(0505) 123-4567\r\n", encoding="utf-8")
    code, _, stderr = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 1 and "4 records: 1 succeeded, 3 failed (1 APIError, 2 ValidationError)" in stderr
    assert (service.contacts[5000]["name"], service.contacts[5000]["gsm"]) == ("Ali", "+905051112233")
    assert sorted(sent_names(service)) == ["Ali", "d"]  # the scientific ones were not sent
    assert contact_sent_for(service, 5003).findtext("gsm") == "(0505) 123-4567"
    report = {entry["line"]: entry for entry in report_of(str(source) + ".report.jsonl")}
    for line, shown in ((3, "5,3257E+09"), (4, "9.05056663325E+11")):
        assert report[line]["error"] == "ValidationError" and shown in report[line]["message"]
        assert "format the phone column as Text" in report[line]["message"]


def test_cli_empty_cells_clear_sends_empty_elements(service, tmp_path, run_main):
    source = tmp_path / "in.csv"
    source.write_text("id;Ad;Soyad;Gruplar;field:1\r\n5000;;Kaya;;\r\n", encoding="utf-8")
    code, _, _ = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 0
    body = service.requests[-1][2]
    assert b"<name" not in body and b"<groups" not in body and b"<custom_fields" not in body  # leave: the default
    code, _, _ = run_main(["--input", str(source), "--url", service.url, "--empty-cells", "clear", "--report",
                           str(tmp_path / "clear.jsonl")], CREDENTIAL_ENV)
    assert code == 0
    body = service.requests[-1][2]
    assert b"<name></name>" in body and b"<groups></groups>" in body and b"<value></value>" in body
    field = ET.fromstring(body).find("contact/custom_fields/custom_field")
    assert (field.findtext("id"), field.findtext("value")) == ("1", "")
    assert service.contacts[5000]["name"] == "" and service.contacts[5000]["groups"] == []
    assert service.contacts[5000]["fields"] == {1: "", 2: "cip"} and service.contacts[5000]["surname"] == "Kaya"


def test_cli_json_lines_values_stay_exact(service, tmp_path, run_main):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": 5000, "name": "\u00a0 Ali \u202f", "gsm": "+905051112233"}) + "\n",
                      encoding="utf-8")
    code, _, _ = run_main(["--input", str(source), "--url", service.url, "--empty-cells", "clear"], CREDENTIAL_ENV)
    assert code == 0 and sent_names(service) == ["\u00a0 Ali \u202f"]


def test_cli_stdin_is_decoded_as_it_streams_and_stops_at_a_bad_byte(service, tmp_path):
    """What came before the bad byte was read, sent and reported; nothing after it is sent."""
    report = tmp_path / "report.jsonl"
    env = dict(no_credentials_env(), **CREDENTIAL_ENV)
    child = subprocess.Popen([sys.executable, str(MODULE), "--input", "-", "--format", "csv", "--url", service.url,
                              "--workers", "1", "--report", str(report)], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    good = [f"r{n}" for n in range(8)]  # twice the window of one worker: some are sent while it waits for more
    child.stdin.write(("İD;Ad\r\n" + "".join(f"{PEOPLE[n]};r{n}\r\n" for n in range(8))).encode("utf-8"))
    child.stdin.flush()
    assert eventually(lambda: len(service.requests) >= 4, seconds=30)  # the good lines came in a read of their own
    _, stderr = child.communicate("5100;Şule\r\n5101;sonra\r\n".encode("cp1254"), timeout=30)
    stderr = stderr.decode("utf-8")
    assert child.returncode == 2 and "Traceback" not in stderr
    assert "cannot read the input any further: standard input line 10 is not valid UTF-8 (at 0xDE)" in stderr
    assert "--encoding cp1254" in stderr
    assert sent_names(service) == good  # every record read before the bad byte, none after it
    assert [(entry["line"], entry["ok"]) for entry in report_of(report)] == [(line, True) for line in range(2, 10)]


# -- .xlsx, end to end -------------------------------------------------------------


def turkish_workbook(path):
    """A workbook as a Turkish office keeps contacts: text, a phone typed as a number, dates, an error cell."""
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Kişiler"
    sheet.append(["İD", "Ad", "Soyadı", "Cep Telefonu", "Gruplar", "FİELD:1"])
    sheet.append([5000, "Şule", "Işığı İğdeli", 905051234567, "9, 12", datetime.date(2024, 9, 27)])
    sheet["F2"].number_format = "dd.mm.yyyy"  # a custom code, as a Turkish Excel shows a date
    sheet.append([])  # row 3: empty
    sheet.append([5001, "Ğazal", None, 5325551122.0, 15, datetime.date(2024, 9, 28)])
    sheet["F4"].number_format = "mm-dd-yy"  # built-in format 14
    sheet.append([5002, "Hata", None, "#N/A"])  # an error cell: a bad record
    sheet.append([4242, "Yok"])  # a contact the service does not know: 465
    book.save(path)
    return path


def test_cli_reads_an_xlsx_as_excel_shows_it(service, tmp_path):
    source = turkish_workbook(tmp_path / "kişiler.xlsx")
    failed = tmp_path / "hatalı.csv"
    code, _, stderr = run_cli(["--input", str(source), "--url", service.url, "--failed", str(failed)],
                              CREDENTIAL_ENV)
    assert code == 1 and "4 records: 2 succeeded, 2 failed (1 APIError, 1 ValidationError)" in stderr, stderr
    first, second = service.contacts[5000], service.contacts[5001]
    assert (first["name"], first["surname"], first["gsm"], first["groups"]) == (
        "Şule", "Işığı İğdeli", "905051234567", [9, 12])
    assert first["fields"][1] == "27/09/2024"
    assert (second["name"], second["gsm"], second["groups"], second["fields"][1]) == (
        "Ğazal", "5325551122", [15], "28/09/2024")
    report = {entry["line"]: entry for entry in report_of(str(source) + ".report.jsonl")}
    assert {line: entry["ok"] for line, entry in report.items()} == {2: True, 4: True, 5: False, 6: False}
    assert "cell D5 holds #N/A" in report[5]["message"] and report[6]["code"] == 465
    assert 5002 not in {int(contact.findtext("id")) for contact in sent_contacts(service)}
    data = failed.read_bytes()
    assert data.startswith(codecs.BOM_UTF8)  # CSV UTF-8, as Excel in Turkey opens it by double-click
    lines = data[3:].decode("utf-8").split("\r\n")
    assert lines[0] == "İD;Ad;Soyadı;Cep Telefonu;Gruplar;FİELD:1;error"
    assert sorted(line.split(";")[:2] for line in lines[1:3]) == [["4242", "Yok"], ["5002", "Hata"]]
    assert lines[3:] == [""]


def test_cli_xlsx_empty_cells_clear_clears_the_cells_after_a_rows_last_value(service, tmp_path, run_main):
    """A sheet's row ends at its last value: the empty cells after it are empty cells all the same."""
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.append(["id", "Ad", "Soyad", "Gruplar"])
    book.active.append([5000, None, "Kaya"])  # Ad empty inside the row, Gruplar empty after its end
    source = tmp_path / "temizle.xlsx"
    book.save(source)
    code, _, _ = run_main(["--input", str(source), "--url", service.url, "--empty-cells", "clear"], CREDENTIAL_ENV)
    assert code == 0
    body = service.requests[-1][2]
    assert b"<name></name>" in body and b"<groups></groups>" in body
    assert service.contacts[5000]["groups"] == [] and service.contacts[5000]["surname"] == "Kaya"


def test_cli_xlsx_reads_the_first_sheet_its_user_sees(service, tmp_path, run_main):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    hidden = book.active
    hidden.title = "Liste"
    hidden.append(["id", "Ad"])
    hidden.append([5000, "gizli"])
    hidden.sheet_state = "hidden"
    shown = book.create_sheet("Kişiler")
    shown.append(["id", "Ad"])
    shown.append([5001, "görünen"])
    book.active = 1
    source = tmp_path / "iki.xlsx"
    book.save(source)
    code, _, _ = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 0 and sent_names(service) == ["görünen"]


def hostile_dtd_workbook(path):
    sheet = SHEET_BILLION_LAUGHS + sheet_xml('<row><c t="inlineStr"><is><t>&lol3;</t></is></c></row>').split(b"?>", 1)[1]
    return make_xlsx(path, sheet)


def not_well_formed_workbook(path):
    return make_xlsx(path, sheet_xml('<row r="1"><c t="inlineStr"><is><t>id</t></is></c></row><row r="2"><c>'))


@pytest.mark.parametrize("kind, message", [
    ("gigabyte", "packed more than 100 to 1"),
    ("dtd", "contains a DTD"),
    ("not well-formed", "is not well-formed XML"),
])
def test_cli_hostile_workbooks_are_refused_in_seconds_before_anything_is_sent(service, tmp_path, run_main, request,
                                                                             kind, message):
    source = {"gigabyte": lambda: request.getfixturevalue("gigabyte_of_blanks"), "dtd": lambda: hostile_dtd_workbook(tmp_path / "dtd.xlsx"),
              "not well-formed": lambda: not_well_formed_workbook(tmp_path / "bad.xlsx")}[kind]()
    started = time.monotonic()
    code, _, stderr = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert time.monotonic() - started < 5
    assert code == 2 and message in stderr and "nothing is sent" in stderr, stderr
    assert service.requests == [] and not Path(str(source) + ".report.jsonl").exists()


@pytest.mark.parametrize("name", ["eski.xls", "tablo.ods", "TABLO.XLS"])
def test_cli_xls_and_ods_are_refused_with_how_to_save_them(service, tmp_path, run_main, name):
    source = tmp_path / name
    source.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    code, _, stderr = run_main(["--input", str(source), "--url", service.url], CREDENTIAL_ENV)
    assert code == 2 and "Excel Workbook (.xlsx)" in stderr and '"CSV UTF-8"' in stderr
    assert service.requests == []


# -- progress on a narrow terminal -------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_cli_progress_fits_a_40_column_terminal_and_redraws_in_place(service, tmp_path):
    import fcntl
    import pty
    import select
    import termios

    count = 24
    source = tmp_path / "kişiler.csv"
    source.write_text("id;Ad\n" + "".join(f"{PEOPLE[n]};r{n}\n" for n in range(count)), encoding="utf-8")
    service.delays.update((f"r{n}", 0.05) for n in range(count))  # about 1.2 s: some four redraws
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    attributes = termios.tcgetattr(slave)
    attributes[1] &= ~termios.ONLCR  # "\n" stays "\n": every "\r" seen is the program's own
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    env = dict(no_credentials_env(), **CREDENTIAL_ENV)
    try:
        child = subprocess.Popen([sys.executable, str(MODULE), "--input", str(source), "--url", service.url,
                                  "--workers", "1", "--progress"], env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    written = b""
    ends = time.monotonic() + 30
    try:
        while time.monotonic() < ends:
            if not select.select([master], [], [], 0.5)[0]:
                if child.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(master)
        child.communicate(timeout=30)
    assert child.returncode == 0
    text = written.decode("utf-8")
    drawn = text.split("\r")[1:-1]  # what lies between two "\r": progress lines and the blanks that clear them
    progress = [line for line in drawn if line.strip()]
    assert len(progress) >= 3, text  # redrawn in place, again and again
    assert all("\n" not in line and len(line) <= 39 for line in drawn), drawn
    assert any(re.fullmatch(r"[0-9]+/24, 0 failed, [0-9]+ min [0-9]+ s left *", line) for line in progress), drawn
    assert text.split("\r")[-1] == f"iletimerkezi-edit: {count} records: {count} succeeded, 0 failed\n"


def test_progress_texts_shorten_to_the_width():
    tally = ie._Tally(1000, True)
    tally.done, tally.started = 250, time.monotonic() - 10
    texts = tally._progress_texts(time.monotonic())
    assert texts[0].startswith("250/1000 records, 25.0/s, 0 failed, ") and texts[-1] == "250/1000"
    assert [len(text) for text in texts] == sorted((len(text) for text in texts), reverse=True)
    for width in (79, 39, 20, 9, 5, 0):
        fitted = ie._fitted(texts, width)
        assert len(fitted) <= max(width, 1) and (fitted in texts or fitted == texts[-1][:max(width, 1)])
    assert ie._fitted(texts, 39) == texts[1]


# -- the reading functions, one by one: encodings -----------------------------------

SHEET_FIELDS = ("id", "name", "surname", "email", "gsm", "groups")
SAVE_ADVICE = ("Excel Workbook (.xlsx)", "CSV UTF-8")

CP1254_TEXT = "id;Ad;Soyad\r\n1;Ali;Kaya\r\n2;Şükrü;Işığı\r\n3;Ayşe;Öztürk İğneci\r\n"


def sheet_file(tmp_path, data, name="contacts.csv"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_input_encoding_default_and_boms():
    assert ie._input_encoding(b"id;A", None) == "utf-8-sig"
    assert ie._input_encoding(b"\xef\xbb\xbfid", None) == "utf-8-sig"
    assert ie._input_encoding(b"\xff\xfei\x00", None) == "utf-16"
    assert ie._input_encoding(b"\xfe\xff\x00i", None) == "utf-16"
    assert ie._input_encoding(b"\xff\xfe\x00\x00", None) == "utf-32"


def test_input_encoding_given():
    assert ie._input_encoding(b"id;A", "CP1254") == "cp1254"
    assert ie._input_encoding(b"id;A", "windows-1254") == "cp1254"
    assert ie._input_encoding(b"id;A", "UTF8") == "utf-8-sig"  # a BOM is dropped all the same
    assert ie._input_encoding(b"\xef\xbb\xbfid", "utf-8") == "utf-8-sig"
    assert ie._input_encoding(b"\xff\xfei\x00", "utf-16-le") == "utf-16"  # the BOM is not a character
    assert ie._input_encoding(b"i\x00d\x00", "utf-16-le") == "utf-16-le"


@pytest.mark.parametrize("given", ["cp1254", "utf-16-be", "latin-1"])
def test_input_encoding_contradicting_a_utf16_bom(given):
    with pytest.raises(ie._InputError, match="--encoding") as caught:
        ie._input_encoding(b"\xff\xfei\x00", given)
    assert "leave --encoding out" in str(caught.value)


def test_input_encoding_contradicting_a_utf8_bom():
    with pytest.raises(ie._InputError, match="UTF-8-SIG byte order mark"):
        ie._input_encoding(b"\xef\xbb\xbfid", "cp1254")


@pytest.mark.parametrize("given", ["klingon", "base64", "zlib", "rot13x"])
def test_input_encoding_unknown(given):
    with pytest.raises(ie._InputError, match="--encoding") as caught:
        ie._input_encoding(b"id", given)
    assert "cp1254" in str(caught.value)


def test_cp1254_refused_under_the_default_with_its_line(tmp_path):
    path = sheet_file(tmp_path, CP1254_TEXT.encode("cp1254"))
    encoding = ie._input_encoding(CP1254_TEXT.encode("cp1254")[:4], None)
    with pytest.raises(ie._InputError) as caught:
        ie._check_decodable(path, encoding, True)
    message = str(caught.value)
    assert message.startswith(f"{path} line 3 is not valid UTF-8 (at 0xDE)")  # Ş
    assert "--encoding cp1254" in message and '"CSV UTF-8"' in message and "Windows-1254" in message
    assert "codec" not in message


def test_cp1254_header_byte_is_line_1(tmp_path):
    path = sheet_file(tmp_path, "id;Soyadı\r\n".encode("cp1254"))
    with pytest.raises(ie._InputError, match=r"line 1 is not valid UTF-8 \(at 0xFD\)"):
        ie._check_decodable(path, "utf-8-sig", True)


def test_cp1254_read_exactly_with_cp1254(tmp_path):
    path = sheet_file(tmp_path, CP1254_TEXT.encode("cp1254"))
    encoding = ie._input_encoding(b"id;A", "cp1254")
    ie._check_decodable(path, encoding, False)
    with open(path, encoding=encoding, newline="") as text:
        rows = list(csv.reader(text, delimiter=";"))
    assert rows == [["id", "Ad", "Soyad"], ["1", "Ali", "Kaya"], ["2", "Şükrü", "Işığı"],
                    ["3", "Ayşe", "Öztürk İğneci"]]
    streamed = list(ie._decoded_lines(io.BytesIO(CP1254_TEXT.encode("cp1254")), encoding, False, "stdin"))
    assert "".join(streamed) == CP1254_TEXT
    assert streamed[1] == "1;Ali;Kaya\r\n"  # CRLF kept, as open(newline="") gives it
    assert list(csv.reader(streamed, delimiter=";")) == rows


def test_stdin_refused_at_its_line_after_the_lines_before(tmp_path):
    lines = ie._decoded_lines(io.BytesIO(CP1254_TEXT.encode("cp1254")), "utf-8-sig", True, "standard input")
    with pytest.raises(ie._InputError) as caught:
        next(lines)  # the whole input came in one read: its good lines are not yielded before the error
    assert "standard input line 3 is not valid UTF-8 (at 0xDE)" in str(caught.value)
    good = b"id;Ad\r\n1;Ali\r\n" + "2;Şükrü\r\n".encode("cp1254")
    lines = ie._decoded_lines(TrickleStream(good), "utf-8-sig", True, "standard input")
    assert next(lines) == "id;Ad\r\n"
    assert next(lines) == "1;Ali\r\n"
    with pytest.raises(ie._InputError) as caught:
        next(lines)
    assert str(caught.value).startswith("standard input line 3 is not valid UTF-8 (at 0xDE)")
    assert "--encoding cp1254" in str(caught.value)


def test_other_encoding_failure_has_other_advice(tmp_path):
    path = sheet_file(tmp_path, "id\n1\n".encode("utf-16-le") + b"\x00")  # an odd byte at the end
    with pytest.raises(ie._InputError) as caught:
        ie._check_decodable(path, "utf-16-le", True)
    message = str(caught.value)
    assert "line 3 is not valid utf-16-le" in message and "check --encoding" in message
    assert "Windows-1254" not in message  # not UTF-8 by default: cp1254 is not the likely cure


def test_unicode_text_utf16_with_bom_and_tabs(tmp_path):
    text = "id\tAd\tCep Telefonu\r\n1\tŞükrü\t0505 123 45 67\r\n2\tİlkay\t+905051234567\r\n"
    data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    path = sheet_file(tmp_path, data, "contacts.txt")
    encoding = ie._input_encoding(data[:4], None)
    assert encoding == "utf-16"
    ie._check_decodable(path, encoding, True)
    streamed = list(ie._decoded_lines(io.BytesIO(data), encoding, True, "standard input"))
    assert "".join(streamed) == text  # the BOM is gone
    rows = list(csv.reader(streamed, delimiter="\t"))
    assert rows[2] == ["2", "İlkay", "+905051234567"]


def test_line_numbers_across_chunks_and_line_ends(tmp_path):
    # "\r" ends the first 64 KiB chunk and "\n" starts the next: still one line end
    first = b"x" * (ie._CHUNK - 1) + b"\r"
    data = first + b"\n" + b"a\rb\r\nc\n" * 1000 + b"d\xff\n"
    path = sheet_file(tmp_path, data)
    with pytest.raises(ie._InputError, match=r"line 3002 is not valid UTF-8 \(at 0xFF\)"):
        ie._check_decodable(path, "utf-8-sig", True)
    lines = list(ie._decoded_lines(io.BytesIO(data[:-3]), "utf-8-sig", True, "stdin"))
    assert len(lines) == 3001 and lines[0].endswith("\r\n") and lines[1] == "a\r"
    with pytest.raises(ie._InputError, match="stdin line 3002 "):
        list(ie._decoded_lines(io.BytesIO(data), "utf-8-sig", True, "stdin"))


def test_truncated_character_at_the_end(tmp_path):
    path = sheet_file(tmp_path, b"id\n1\n\xc5")
    with pytest.raises(ie._InputError, match=r"line 3 is not valid UTF-8 \(at 0xC5\)"):
        ie._check_decodable(path, "utf-8-sig", True)


class TrickleStream(io.RawIOBase):
    """Standard input that delivers a byte at a time, splitting every character and every CRLF."""

    def __init__(self, data):
        self.data = data
        self.position = 0

    def readable(self):
        return True

    def read1(self, size=-1):
        chunk = self.data[self.position:self.position + 1]
        self.position += len(chunk)
        return chunk


def test_decoded_lines_from_a_trickle():
    text = "id;Ad\r\n1;Şükrü\r\n2;\"İki\r\nsatır\"\r\n3;son"
    lines = list(ie._decoded_lines(TrickleStream(text.encode()), "utf-8-sig", True, "stdin"))
    assert lines == ["id;Ad\r\n", "1;Şükrü\r\n", "2;\"İki\r\n", "satır\"\r\n", "3;son"]
    assert list(csv.reader(lines, delimiter=";"))[2] == ["2", "İki\r\nsatır"]


class TrickleRaw(io.RawIOBase):
    """A pipe that brings one byte per read, as a slow producer's may."""

    def __init__(self, data):
        self.data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        chunk = self.data.read(1)
        buffer[:len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("bom, codec", [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF32_LE, "utf-32-le")])
def test_stdin_bom_found_however_few_bytes_a_read_brings(monkeypatch, bom, codec):
    text = "İD\tAd\r\n5000\tŞule\r\n"
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BufferedReader(TrickleRaw(bom + text.encode(codec)))))
    lines, encoding, close = ie._open_text("-", None)
    assert encoding in ("utf-16", "utf-32") and "".join(lines) == text
    close()


def test_unreadable_file(tmp_path):
    with pytest.raises(ie._InputError, match="cannot be read"):
        ie._check_decodable(str(tmp_path / "missing.csv"), "utf-8-sig", True)


def test_large_file_in_flat_memory(tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "wb") as out:
        row = "1;Şükrü;Işığı;905051234567\r\n".encode() * 1000
        for _ in range(300):  # about 10 MB
            out.write(row)
    tracemalloc.start()
    ie._check_decodable(str(path), "utf-8-sig", True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 << 20


# -- headers -------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "folded"), [
    ("İD", "id"), ("ID", "id"), ("Id", "id"), ("iD", "id"), ("I\u0307D", "id"), ("EMAİL", "email"),
    ("FİELD:1", "field:1"), ("Adı", "adi"), ("ADI", "adi"), (" Cep\u00a0 Telefonu ", "cep telefonu"),
    ("\ufeffid", "id"), ("SOYADI", "soyadi"), ("Şehir", "şehir"), ("i\u0307d", "id"),
])
def test_fold_header(written, folded):
    assert ie._fold_header(written) == folded


def sheet_columns(header, mapped=None, skipped=()):
    return ie._csv_columns(header, SHEET_FIELDS, mapped or {}, skipped, where="a.csv line 1")


def test_turkish_and_folded_headers():
    header = ["İD", "Ad", "Soyadı", "EMAİL", "Cep Telefonu", "Gruplar", "FİELD:01", "field: 7"]
    assert sheet_columns(header) == ["id", "name", "surname", "email", "gsm", "groups", "field:1", "field:7"]
    assert sheet_columns(["Id", "ADI", "SOYAD", "E-Posta", "GSM", "GRUP"]) == [
        "id", "name", "surname", "email", "gsm", "groups"]
    assert sheet_columns(["ID", "İsim", "Eposta", "Cep No"]) == ["id", "name", "email", "gsm"]
    assert sheet_columns(["id", "E-mail", "Telefon"]) == ["id", "email", "gsm"]
    assert sheet_columns(["id", "Cep"]) == ["id", "gsm"]


def test_unknown_column_stops_the_run():
    with pytest.raises(ie._InputError) as caught:
        sheet_columns(["İD", "Ad", "Notlar", "Ad Soyad"])
    message = str(caught.value)
    assert message.startswith("a.csv line 1: unknown column 'Notlar' (column 3) (and 1 more unknown)")
    assert "--column Notlar=FIELD" in message and "--skip-column Notlar" in message
    assert "field:N" in message and "Cep Telefonu" in message


def test_unknown_column_with_blanks_is_quoted_for_the_shell():
    with pytest.raises(ie._InputError) as caught:
        sheet_columns(["id", "Doğum Tarihi"])
    assert "--column 'Doğum Tarihi=FIELD'" in str(caught.value)
    assert "--skip-column 'Doğum Tarihi'" in str(caught.value)


def test_mapped_and_skipped_columns():
    mapped = ie._column_options(["Notlar=FİELD:07", "kimlik no=ID", "Ad=field:3"], SHEET_FIELDS)
    assert mapped == {"Notlar": "field:7", "kimlik no": "id", "Ad": "field:3"}
    header = ["Kimlik No", "Ad", "NOTLAR", "Şube", "Adı"]
    assert sheet_columns(header, mapped, ["şube"]) == ["id", "field:3", "field:7", None, "name"]


def test_column_option_parsing():
    assert ie._column_option(" Cep Telefonu = GSM ", SHEET_FIELDS) == ("Cep Telefonu", "gsm")
    assert ie._column_option("a=b=gsm", SHEET_FIELDS) == ("a=b", "gsm")  # split at the last "="
    for bad in ("Notlar", "=gsm", "Notlar=phone", "Notlar=field:x", "Notlar="):
        with pytest.raises(ie._InputError, match="--column"):
            ie._column_option(bad, SHEET_FIELDS)
    with pytest.raises(ie._InputError, match="mapped twice"):
        ie._column_options(["Notlar=field:1", "NOTLAR=field:2"], SHEET_FIELDS)


def test_options_naming_a_missing_header():
    with pytest.raises(ie._InputError) as caught:
        sheet_columns(["id", "Ad", "Notlar"], skipped=["Notlr"])
    assert "--skip-column names 'Notlr', which is not a column of a.csv line 1" in str(caught.value)
    assert "'Notlar'" in str(caught.value)
    with pytest.raises(ie._InputError, match="--column names 'Tel'"):
        sheet_columns(["id", "Telefon"], {"Tel": "gsm"})
    with pytest.raises(ie._InputError, match="both to --column and to --skip-column"):
        sheet_columns(["id", "Tel"], {"Tel": "gsm"}, ["TEL"])


def test_no_id_and_two_columns_for_one_field():
    with pytest.raises(ie._InputError, match=r"has no id column.*--column 'HEADER=id'"):
        sheet_columns(["Ad", "Soyad"])
    with pytest.raises(ie._InputError) as caught:
        sheet_columns(["id", "Telefon", "Cep Telefonu"])
    assert "'Telefon', 'Cep Telefonu' all fill gsm" in str(caught.value) and "--skip-column" in str(caught.value)
    assert sheet_columns(["id", "Telefon", "Cep Telefonu"], skipped=["Telefon"]) == ["id", None, "gsm"]


def test_trailing_delimiter():
    header = next(csv.reader(["id;Ad;\r\n"], delimiter=";"))
    assert sheet_columns(header) == ["id", "name", None]
    assert ie._value_under_blank_header(header, ["1", "Ali", " "]) is None
    assert ie._value_under_blank_header(header, ["1", "Ali", "x"]) == 3


# -- cells ---------------------------------------------------------------------------


def test_clean_cell():
    assert ie._clean_cell("\u00a0 Ali\u202f\t") == "Ali"
    assert ie._clean_cell("\u2007905\u3000") == "905"


@pytest.mark.parametrize("text", ["5,3257E+09", "9.05056663325E+11", "9,05057E+11", "5E+09", "5e+09",
                                  " 9,05057e+11 ", "5E09"])
def test_scientific_numbers(text):
    assert ie._is_scientific_number(text)


@pytest.mark.parametrize("text", ["+905051234567", "0505 123 45 67", "(0505) 123-4567", "905051234567", "",
                                  "E+09", "5,3257", "0505E"])
def test_not_scientific_numbers(text):
    assert not ie._is_scientific_number(text)


# -- .xlsx written by openpyxl ------------------------------------------------------------


def patch_member(path, name, old, new):
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    assert old in members[name], members[name][-600:]
    members[name] = members[name].replace(old, new)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)


def sheet_rows(path):
    return list(ie._xlsx_rows(str(path)))


def test_openpyxl_workbook(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["İD", "Ad", "Soyadı", "Cep Telefonu", "Doğum", "Kayıt", "Onay", "Toplam", "Hata", "Oran"])
    sheet.append([17, "Şükrü", "Işığı İğdeli", 905051234567, datetime.date(2024, 9, 27),
                  datetime.date(2024, 9, 28), True, "=1+1", "#N/A", 1.5])
    sheet.append([18, "Ayşe", None, 5325551122, None, None, False, "=2+2", None, 0.1])
    sheet["E2"].number_format = "mm-dd-yy"  # built-in format 14: a Turkish Excel shows 27.09.2024
    sheet["F2"].number_format = "dd.mm.yyyy"  # a custom code
    path = tmp_path / "kişiler.xlsx"
    book.save(path)
    # openpyxl does not calculate: give the first formula the cached value Excel would save, leave the second
    patch_member(path, "xl/worksheets/sheet1.xml", b"<f>1+1</f><v />", b"<f>1+1</f><v>2</v>")
    read = sheet_rows(path)
    assert read[0] == (1, ["İD", "Ad", "Soyadı", "Cep Telefonu", "Doğum", "Kayıt", "Onay", "Toplam", "Hata", "Oran"])
    assert read[1] == (2, ["17", "Şükrü", "Işığı İğdeli", "905051234567", "27/09/2024", "28/09/2024", "TRUE", "2",
                           ie._CellError("I2", "#N/A"), "1.5"])
    number, cells = read[2]
    assert number == 3 and cells[:4] == ["18", "Ayşe", "", "5325551122"] and cells[6] == "FALSE"
    assert isinstance(cells[7], ie._CellError) and "no saved value" in cells[7].text and cells[7].reference == "H3"
    assert cells[9] == "0.1"
    assert ie._csv_columns([str(cell) for cell in read[0][1][:4]], SHEET_FIELDS, {}, ()) == [
        "id", "name", "surname", "gsm"]


def test_openpyxl_datetime_and_time_cells(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "Randevu", "Saat", "Tarih saat"])
    sheet.append([1, datetime.datetime(2024, 9, 27, 14, 30), datetime.time(9, 5, 7),
                  datetime.datetime(2024, 9, 27, 14, 30)])
    sheet["B2"].number_format = "dd.mm.yyyy"  # the format shows no time: neither do we
    sheet["C2"].number_format = "h:mm:ss"
    sheet["D2"].number_format = "dd.mm.yyyy hh:mm"
    path = tmp_path / "randevu.xlsx"
    book.save(path)
    assert sheet_rows(path)[1] == (2, ["1", "27/09/2024", "09:05:07", "27/09/2024 14:30"])


def test_openpyxl_phone_as_float_text(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.append(["id", "gsm"])
    book.active.append([1, 905051234567])
    path = tmp_path / "p.xlsx"
    book.save(path)
    patch_member(path, "xl/worksheets/sheet1.xml", b"<v>905051234567</v>", b"<v>9.05051234567E+11</v>")
    assert sheet_rows(path)[1] == (2, ["1", "905051234567"])


# -- .xlsx written by hand: what openpyxl does not write ---------------------------------------

SHEET_CONTENT_TYPES = b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
SHEET_ROOT_RELS = (b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
             b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
             b'officeDocument" Target="xl/workbook.xml"/></Relationships>')
SHEET_WORKBOOK = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            b'<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            b'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            b'<workbookPr%s/><sheets><sheet name="Sayfa1" sheetId="2" r:id="rId3"/>'
            b'<sheet name="Kapak" sheetId="1" r:id="rId7"/></sheets></workbook>')  # the first <sheet>, not id 1
SHEET_REL = (b'<Relationship Id="%s" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/%s" '
       b'Target="%s"/>')
SHEET_STYLES = (b'<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><numFmts count="2">'
          b'<numFmt numFmtId="164" formatCode="[$-41F]dd\\.mm\\.yyyy;@"/>'
          b'<numFmt numFmtId="165" formatCode="#,##0.00\\ &quot;TL&quot;;[Red]\\-#,##0.00\\ &quot;TL&quot;"/>'
          b'</numFmts><cellStyleXfs count="1"><xf numFmtId="14"/></cellStyleXfs><cellXfs count="4">'
          b'<xf numFmtId="0"/><xf numFmtId="164" applyNumberFormat="1"/><xf numFmtId="165"/><xf numFmtId="49"/>'
          b'</cellXfs></styleSheet>')
SHEET_SHARED = ('<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="4" uniqueCount="4">'
          '<si><t>İD</t></si><si><t xml:space="preserve">Ad </t></si>'
          '<si><r><rPr><b/></rPr><t>Şük</t></r><r><t>rü</t></r><rPh sb="0" eb="1"><t>ｼｭ</t></rPh></si>'
          '<si><t>satır_x000D_\nbir _x005F_x0041_</t></si></sst>').encode()


def make_xlsx(path, sheet, *, shared=SHEET_SHARED, styles=SHEET_STYLES,
              date1904=False, sheet_target=b"worksheets/Sayfa%201.xml",
              sheet_name="xl/worksheets/Sayfa 1.xml"):
    rels = [SHEET_REL % (b"rId3", b"worksheet", sheet_target), SHEET_REL % (b"rId7", b"worksheet", b"worksheets/kapak.xml")]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", SHEET_CONTENT_TYPES)
        archive.writestr("_rels/.rels", SHEET_ROOT_RELS)
        archive.writestr("xl/workbook.xml", SHEET_WORKBOOK % (b' date1904="1"' if date1904 else b""))
        if shared is not None:
            rels.append(SHEET_REL % (b"rId4", b"sharedStrings", b"sharedStrings.xml"))
            archive.writestr("xl/sharedStrings.xml", shared)
        if styles is not None:
            rels.append(SHEET_REL % (b"rId5", b"styles", b"/xl/styles.xml"))
            archive.writestr("xl/styles.xml", styles)
        archive.writestr("xl/_rels/workbook.xml.rels", b'<Relationships xmlns="http://schemas.openxmlformats.org/'
                         b'package/2006/relationships">' + b"".join(rels) + b"</Relationships>")
        archive.writestr(sheet_name, sheet)
        archive.writestr("xl/worksheets/kapak.xml", b'<worksheet xmlns="http://schemas.openxmlformats.org/'
                         b'spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>KAPAK'
                         b"</t></is></c></row></sheetData></worksheet>")
    return path


def sheet_xml(rows_xml, prefix=""):
    namespace = f"xmlns{':' + prefix[:-1] if prefix else ''}"
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<{prefix}worksheet {namespace}="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f"<{prefix}sheetData>{rows_xml}</{prefix}sheetData></{prefix}worksheet>").encode()


def test_handmade_workbook_first_sheet_shared_inline_and_formulas(tmp_path):
    sheet = sheet_xml(
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="D1" t="inlineStr"><is>'
        '<r><t>Not</t></r><r><t>lar</t></r></is></c></row>'
        '<row r="3" spans="1:6"><c r="A3"><v>7</v></c><c r="B3" t="s"><v>2</v></c>'
        '<c r="C3" t="str"><f>B3&amp;"!"</f><v>Şükrü!</v></c><c r="D3" t="s"><v>3</v></c>'
        '<c r="E3" s="1"><v>45562</v></c><c r="F3" s="2"><v>1234.5</v></c></row>'
        '<row r="4"><c r="A4"><f>1/0</f><v>#DIV/0!</v></c><c t="e"><f>1/0</f><v>#DIV/0!</v></c>'
        '<c r="C4" t="d"><v>2024-09-27T00:00:00</v></c><c r="D4" t="s"><v>99</v></c>'
        '<c r="E4" t="b"><f>TRUE()</f><v>0</v></c></row><row r="5"/>')
    path = make_xlsx(tmp_path / "elle.xlsx", sheet)
    read = sheet_rows(path)
    assert read[0] == (1, ["İD", "Ad ", "", "Notlar"])  # blanks are the caller's to strip
    assert read[1] == (3, ["7", "Şükrü", "Şükrü!", "satır\r\nbir _x0041_", "27/09/2024", "1234.5"])
    number, cells = read[2]
    assert number == 4
    assert cells[0] == ie._CellError("A4", "'#DIV/0!', which is not a number")  # t missing: a damaged writer
    assert cells[1] == ie._CellError("B4", "#DIV/0!")
    assert cells[2] == "27/09/2024"
    assert isinstance(cells[3], ie._CellError) and cells[3].reference == "D4" and "shared string" in cells[3].text
    assert cells[4] == "FALSE"
    assert read[3] == (5, [])
    assert len(read) == 4


def test_prefixed_namespace_absolute_target_and_1904(tmp_path):
    sheet = sheet_xml('<x:row><x:c t="inlineStr"><x:is><x:t>id</x:t></x:is></x:c><x:c s="1"><x:v>0</x:v></x:c>'
                      '</x:row><x:row><x:c><x:v>1</x:v></x:c><x:c s="1"><x:v>44100</x:v></x:c></x:row>', "x:")
    path = make_xlsx(tmp_path / "p.xlsx", sheet, date1904=True, shared=None,
                     sheet_target=b"/xl/worksheets/s.xml", sheet_name="xl/worksheets/s.xml")
    assert sheet_rows(path) == [(1, ["id", "01/01/1904"]), (2, ["1", "27/09/2024"])]  # 1462 days after 1900's 45562


def test_date_formats():
    shape = ie._date_shape
    assert shape("dd.mm.yyyy") == (True, False, False)
    assert shape("[$-41F]d mmmm yyyy dddd") == (True, False, False)
    assert shape("dd/mm/yyyy hh:mm:ss") == (True, True, True)
    assert shape("[h]:mm:ss") == (False, True, True)
    assert shape("h:mm AM/PM") == (False, True, False)
    assert shape("mmm") == (True, False, False)
    for code in ("0", "#,##0.00", '0" gün"', "[Red]0.00", "General", "@", "0.00E+00",
                 '_-* #,##0.00 "₺"_-;-* #,##0.00 "₺"_-;_-* "-"?? "₺"_-;_-@_-', "\\d0"):
        assert shape(code) is None, code
    date_only, date_time = ie._DateShape(True, False, False), ie._DateShape(True, True, False)
    assert ie._serial_text(45562.75, date_time, False) == "27/09/2024 18:00"
    assert ie._serial_text(1, date_only, False) == "01/01/1900"
    assert ie._serial_text(60, date_only, False) == "29/02/1900"
    assert ie._serial_text(61, date_only, False) == "01/03/1900"
    assert ie._serial_text(-1, date_only, False) is None
    assert ie._number_text("-1", shape("dd.mm.yyyy"), False, "A1") == "-1"


def test_numbers_as_excel_shows_them():
    def number(text):
        return ie._number_text(text, None, False, "A1")

    assert number("905051234567") == "905051234567"
    assert number("9.05051234567E+11") == "905051234567"
    assert number("5325551122.0") == "5325551122"
    assert number("0.1") == "0.1" and number("1E-3") == "0.001" and number("-0") == "0"
    assert number("1.2345678901234567E+19") == "1.2345678901234567e+19"  # beyond a float's whole numbers


# -- hostile and foreign workbooks ---------------------------------------------------------


def sheet_refused(path, *words):
    started = time.monotonic()
    with pytest.raises(ie._InputError) as caught:
        ie._check_xlsx(str(path))
    assert time.monotonic() - started < 5
    message = str(caught.value)
    for word in words:
        assert word in message, message
    return message


def write_blank_sheet(path, size, compression=zipfile.ZIP_DEFLATED):
    """A workbook whose sheet is ``size`` bytes of blanks, written streaming: small on disk, quick to write."""
    make_xlsx(path, sheet_xml(""))
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()
                 if info.filename != "xl/worksheets/Sayfa 1.xml"}
    with zipfile.ZipFile(path, "w", compression, compresslevel=1) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
        with archive.open("xl/worksheets/Sayfa 1.xml", "w", force_zip64=True) as member:
            member.write(b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">')
            block = b" " * (1 << 20)
            for _ in range(size >> 20):
                member.write(block)
            member.write(b"<sheetData/></worksheet>")
    return path


@pytest.fixture(scope="module")
def gigabyte_of_blanks(tmp_path_factory):
    return write_blank_sheet(tmp_path_factory.mktemp("bomb") / "bomb.xlsx", (1 << 30) + (1 << 20))


def test_gigabyte_of_blanks_refused_in_seconds_and_bounded_memory(gigabyte_of_blanks):
    assert gigabyte_of_blanks.stat().st_size < 8 << 20
    with zipfile.ZipFile(gigabyte_of_blanks) as archive:
        assert archive.getinfo("xl/worksheets/Sayfa 1.xml").file_size > 1 << 30
    tracemalloc.start()
    try:
        message = sheet_refused(gigabyte_of_blanks, "Sayfa 1.xml", "packed more than 100 to 1", "refused",
                                *SAVE_ADVICE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "nothing is sent" in message and peak < 16 << 20


def test_member_larger_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(ie, "_XLSX_MAX_MEMBER", 2 << 20)
    path = write_blank_sheet(tmp_path / "big.xlsx", 3 << 20, zipfile.ZIP_STORED)  # packed 1 to 1
    sheet_refused(path, "unpacks to more than 2 MiB", "refused")


def test_small_members_may_be_very_compressible(tmp_path):
    path = write_blank_sheet(tmp_path / "small.xlsx", 1 << 19)  # 512 KiB of blanks pack some 200 to 1
    assert sheet_rows(path) == []


def patch_sizes(path, member, compressed, unpacked):
    """Make the zip's local and central headers of ``member`` lie about its sizes (zip64 not used)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, offset in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):
        start = data.find(signature)
        while start >= 0:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                if compressed is not None:
                    struct.pack_into("<I", data, start + offset, compressed)
                if unpacked is not None:
                    struct.pack_into("<I", data, start + offset + 4, unpacked)
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


def test_member_lying_about_its_size(tmp_path):
    sheet = sheet_xml('<row r="1"><c t="inlineStr"><is><t>id</t></is></c></row>' + " " * (8 << 20))
    path = make_xlsx(tmp_path / "liar.xlsx", sheet)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("xl/worksheets/Sayfa 1.xml")
    patch_sizes(path, "xl/worksheets/Sayfa 1.xml", None, 1000)  # says 1000 bytes; unpacks to 8 MiB
    sheet_refused(path, "Sayfa 1.xml", "refused")
    path = make_xlsx(tmp_path / "liar2.xlsx", sheet)
    patch_sizes(path, "xl/worksheets/Sayfa 1.xml", info.file_size, None)  # says 1 to 1; packed 1000 to 1
    sheet_refused(path, "Sayfa 1.xml", "refused")


SHEET_BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>')


def test_dtd_in_the_sheet(tmp_path):
    sheet = SHEET_BILLION_LAUGHS + sheet_xml('<row><c t="inlineStr"><is><t>&lol3;</t></is></c></row>').split(b"?>", 1)[1]
    sheet_refused(make_xlsx(tmp_path / "dtd.xlsx", sheet), "Sayfa 1.xml", "contains a DTD", "refused")


def test_dtd_in_shared_strings(tmp_path):
    shared = SHEET_BILLION_LAUGHS + b"<sst><si><t>&lol3;</t></si></sst>"
    sheet_refused(make_xlsx(tmp_path / "dtd.xlsx", sheet_xml(""), shared=shared), "sharedStrings.xml", "contains a DTD")


def test_external_entity_in_styles(tmp_path):
    styles = b'<!DOCTYPE s SYSTEM "file:///etc/passwd"><styleSheet/>'
    sheet_refused(make_xlsx(tmp_path / "x.xlsx", sheet_xml(""), styles=styles), "styles.xml", "contains a DTD")


def test_sheet_not_well_formed(tmp_path):
    sheet = sheet_xml('<row r="1"><c t="inlineStr"><is><t>id</t></is></c></row><row r="2"><c><v>1</c></row>')
    message = sheet_refused(make_xlsx(tmp_path / "bad.xlsx", sheet), "Sayfa 1.xml", "is not well-formed XML", "line 1")
    assert "save it as an Excel Workbook" in message


def test_undefined_entity_is_not_well_formed(tmp_path):
    sheet = sheet_xml('<row><c t="inlineStr"><is><t>&nbsp;</t></is></c></row>')
    sheet_refused(make_xlsx(tmp_path / "e.xlsx", sheet), "not well-formed")


def test_endless_tag_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ie, "_XLSX_MAX_TOKEN", 1 << 20)
    noise = base64.b64encode(os.urandom(3 << 19)).decode()  # 2 MiB that does not pack: no ratio refusal
    sheet = sheet_xml('<row><c t="inlineStr" x="' + noise + '"/></row>')
    sheet_refused(make_xlsx(tmp_path / "t.xlsx", sheet), "longer than 1 MiB")


def test_cells_past_excels_limits(tmp_path):
    sheet_refused(make_xlsx(tmp_path / "c.xlsx", sheet_xml('<row r="1"><c r="XFE1"><v>1</v></c></row>')),
            "past column XFD")
    sheet_refused(make_xlsx(tmp_path / "r.xlsx", sheet_xml('<row r="1048577"><c><v>1</v></c></row>')), "row number")
    sheet_refused(make_xlsx(tmp_path / "d.xlsx", sheet_xml("<a>" * 70 + "</a>" * 70)), "deeper than 64")


@pytest.mark.parametrize(("name", "kind"), [("eski.xls", "Excel 97-2003"), ("tablo.ods", "OpenDocument"),
                                            ("TABLO.XLSB", "Excel binary")])
def test_foreign_spreadsheets_by_name(tmp_path, name, kind):
    path = sheet_file(tmp_path, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, name)
    sheet_refused(path, kind, *SAVE_ADVICE)
    with pytest.raises(ie._InputError, match=kind):
        ie._refuse_foreign_sheet(path)
    ie._refuse_foreign_sheet(str(tmp_path / "kişiler.csv"))


def test_foreign_content_named_xlsx(tmp_path):
    sheet_refused(sheet_file(tmp_path, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "a.xlsx"),
            "Excel 97-2003 (.xls) file or a password-protected workbook", *SAVE_ADVICE)
    sheet_refused(sheet_file(tmp_path, CP1254_TEXT.encode("cp1254"), "b.xlsx"), "not a zip archive", *SAVE_ADVICE)
    ods = tmp_path / "c.xlsx"
    with zipfile.ZipFile(ods, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    sheet_refused(ods, "OpenDocument spreadsheet (.ods)", *SAVE_ADVICE)
    other = tmp_path / "d.xlsx"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    sheet_refused(other, "not an .xlsx workbook", *SAVE_ADVICE)
    sheet_refused(tmp_path / "missing.xlsx", "cannot be read")


def test_first_sheet_a_chart(tmp_path):
    path = make_xlsx(tmp_path / "chart.xlsx", sheet_xml(""))
    patch_member(path, "xl/_rels/workbook.xml.rels", b'relationships/worksheet" Target="worksheets/Sayfa%201.xml"',
                 b'relationships/chartsheet" Target="worksheets/Sayfa%201.xml"')
    sheet_refused(path, "first sheet is not a worksheet")


def test_generator_closes_the_file(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    for number in range(100):
        book.active.append([number, "Ad"])
    path = tmp_path / "g.xlsx"
    book.save(path)
    reading = ie._xlsx_rows(str(path))
    assert next(reading) == (1, ["0", "Ad"])
    reading.close()  # with ResourceWarning an error (setup.cfg), an unclosed file would fail the run


def test_archive_listing_too_many_parts(tmp_path, monkeypatch):
    path = make_xlsx(tmp_path / "many.xlsx", sheet_xml(""))
    with zipfile.ZipFile(path, "a") as archive:
        for number in range(70_000):  # past 65,535: the count is in zip64's end record
            archive.writestr(f"x/{number}", b"")
    with open(path, "rb") as binary:
        assert ie._zip_directory_size(binary)[0] == 70_008
    monkeypatch.setattr(ie, "_XLSX_MAX_ENTRIES", 50_000)
    sheet_refused(path, "lists 70008 parts", "refused", "save it as an Excel Workbook")
    small = make_xlsx(tmp_path / "few.xlsx", sheet_xml(""))
    with open(small, "rb") as binary:
        assert ie._zip_directory_size(binary)[0] == 8


# -- odd but real workbooks and numbers ---------------------------------------------------------------------


def test_a_hidden_first_sheet_is_passed_over(tmp_path):
    path = make_xlsx(tmp_path / "gizli.xlsx", sheet_xml('<row><c t="inlineStr"><is><t>GİZLİ</t></is></c></row>'))
    patch_member(path, "xl/workbook.xml", b'<sheet name="Sayfa1" sheetId="2" r:id="rId3"/>',
                 b'<sheet name="Sayfa1" sheetId="2" state="hidden" r:id="rId3"/>')
    assert sheet_rows(path) == [(1, ["KAPAK"])]  # the second <sheet>: the first one its user sees
    patch_member(path, "xl/workbook.xml", b'<sheet name="Kapak" sheetId="1" r:id="rId7"/>',
                 b'<sheet name="Kapak" sheetId="1" state="veryHidden" r:id="rId7"/>')
    assert sheet_rows(path) == [(1, ["GİZLİ"])]  # every sheet hidden: the first, as Excel would unhide it


def test_rows_and_cells_without_references(tmp_path):
    sheet = sheet_xml('<row><c t="inlineStr"><is><t>id</t></is></c><c r="C1" t="inlineStr"><is><t>Ad</t></is></c>'
                      '<c t="inlineStr"><is><t>Soyad</t></is></c></row><row r="4"><c><v>1</v></c></row><row>'
                      '<c><v>5325551122.0</v></c><c/><c><v>1e20</v></c></row>')
    assert sheet_rows(make_xlsx(tmp_path / "r.xlsx", sheet)) == [
        (1, ["id", "", "Ad", "Soyad"]), (4, ["1"]), (5, ["5325551122", "", "1e+20"])]


def test_numbers_and_dates_a_reviewer_tried():
    def number(text, code=None):
        return ie._number_text(text, None if code is None else ie._date_shape(code), False, "A1")

    assert number("5325551122.0") == "5325551122" and number("905051234567.0") == "905051234567"
    assert number("1e20") == "1e+20" and ie._is_scientific_number("1e+20")  # as a phone: refused, not sent
    assert number("59", "dd.mm.yyyy") == "28/02/1900" and number("60", "dd.mm.yyyy") == "29/02/1900"
    assert number("61", "dd.mm.yyyy") == "01/03/1900" and number("45562", "dd.mm.yyyy") == "27/09/2024"
    assert ie._iso_date_text("1900-02-29", "A1") == "29/02/1900"
    assert ie._iso_date_text("2024-09-27T14:30:00", "A1") == "27/09/2024 14:30"
    assert isinstance(ie._iso_date_text("dün", "A1"), ie._CellError)


# ---------------------------------------------------------------------------
# The README's AWS Lambda handler, run as written
# ---------------------------------------------------------------------------


@pytest.fixture
def load_lambda_function(monkeypatch):
    """Load the README's lambda_function.py as Lambda would: environment first, then the module."""
    loaded = []

    def load(url, credentials=CREDENTIAL_ENV):
        readme = (HERE / "README.md").read_text(encoding="utf-8")
        [code] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
                  if "def lambda_handler" in block and "batchItemFailures" not in block]  # not the SQS consumer's
        for name in list(os.environ):
            if name.startswith("ILETIMERKEZI_"):
                monkeypatch.delenv(name)
        for name, value in {**credentials, "ILETIMERKEZI_URL": url}.items():
            monkeypatch.setenv(name, value)
        module = types.ModuleType("lambda_function")
        exec(compile(code, "README.md (lambda_function.py)", "exec"), module.__dict__)
        loaded.append(module)
        return module

    yield load
    for module in loaded:  # Lambda never closes it; a test run should
        module.SESSION.close()


def test_readme_lambda_handler_edits_the_contact_in_the_event(load_lambda_function, service):
    function = load_lambda_function(service.url)
    assert function.CREDENTIALS == ie.Credentials.from_secret(KEY, SECRET)
    event = {"id": 1009, "name": "Şule", "groups": [9, 15], "custom_fields": {"1": "28/11/2026"}}
    result = function.lambda_handler(event, None)
    assert result["ok"] is True
    assert (result["contact"]["name"], result["contact"]["surname"], result["contact"]["groups"]) == (
        "Şule", "Test User 2", [9, 15])
    assert {"id": 1, "value": "28/11/2026"} in result["contact"]["custom_fields"]
    json.dumps(result)  # Lambda must be able to serialise it
    assert service.contacts[1009]["name"] == "Şule"


@pytest.mark.parametrize(
    "event, error, code",
    [
        ({"id": 1009, "groups": [99]}, "APIError", 463),
        ({"id": 4242, "name": "x"}, "APIError", 465),
        ({"name": "no id"}, "ValidationError", None),
        ({"id": 1009, "name": "a\x00b"}, "ValidationError", None),
    ],
)
def test_readme_lambda_handler_reports_what_retrying_cannot_fix(load_lambda_function, service, event, error, code):
    result = load_lambda_function(service.url).lambda_handler(event, None)
    assert (result["ok"], result["error"], result["code"]) == (False, error, code)
    json.dumps(result)


MALFORMED_EVENTS = {
    "a list": ["not", "an", "object"],
    "a string": "1009",
    "null": None,
    "a number": 1009,
    "an empty object": {},
    "no id": {"name": "Şule"},
    "id null": {"id": None, "name": "Şule"},
    "id a float": {"id": 1009.0, "name": "Şule"},
    "id a bool": {"id": True, "name": "Şule"},
    "id not digits": {"id": "10O9", "name": "Şule"},
    "id zero": {"id": 0, "name": "Şule"},
    "a misspelt key": {"id": 1009, "nmae": "Şule"},
    "an unknown key": {"id": 1009, "name": "Şule", "phone": "+905331234567"},
    "name a number": {"id": 1009, "name": 42},
    "gsm a number": {"id": 1009, "gsm": 905331234567},
    "email an object": {"id": 1009, "email": {"address": "a@b.co"}},
    "custom_fields a list": {"id": 1009, "custom_fields": [{"id": 1, "value": "x"}]},
    "custom_fields a string": {"id": 1009, "custom_fields": "1=x"},
    "a custom field id not a number": {"id": 1009, "custom_fields": {"birthday": "27/09/1990"}},
    "a custom field value a number": {"id": 1009, "custom_fields": {"1": 27}},
    "groups a string": {"id": 1009, "groups": "9,12"},
    "groups an object": {"id": 1009, "groups": {"9": True}},
    "a group not a number": {"id": 1009, "groups": [9, "twelve"]},
    "a group twice": {"id": 1009, "groups": [9, 9]},
    "a NUL in the name": {"id": 1009, "name": "a\x00b"},
}


@pytest.mark.parametrize("name", list(MALFORMED_EVENTS))
def test_readme_lambda_handler_answers_every_malformed_event_and_sends_nothing(load_lambda_function, service, name):
    function = load_lambda_function(service.url)
    result = function.lambda_handler(MALFORMED_EVENTS[name], None)
    assert set(result) == {"ok", "error", "code", "message"}
    assert (result["ok"], result["error"], result["code"]) == (False, "ValidationError", None)
    assert isinstance(result["message"], str) and result["message"]
    json.dumps(result)  # Lambda must be able to serialise it
    assert (service.connections, service.requests) == (0, [])


def test_readme_lambda_handler_names_what_is_wrong_with_an_event(load_lambda_function, service):
    handler = load_lambda_function(service.url).lambda_handler
    assert handler(["not", "an", "object"], None)["message"] == "the event must be a JSON object, got list"
    assert handler({"id": 1009, "nmae": "x"}, None)["message"].startswith("unknown keys in the event: nmae; known: ")
    assert handler({"name": "x"}, None)["message"] == "the event has no id"
    assert handler({"id": 1009, "custom_fields": []}, None)["message"].startswith("custom_fields must be an object")
    assert "contact.custom_fields[0].id" in handler({"id": 1009, "custom_fields": {"x": "y"}}, None)["message"]
    assert service.requests == []


def test_readme_lambda_handler_treats_null_as_leave_it_and_takes_custom_fields_by_id(load_lambda_function, service):
    handler = load_lambda_function(service.url).lambda_handler
    result = handler({"id": "1009", "name": "Ayşe", "surname": None, "email": None, "gsm": None,
                      "custom_fields": {"2": "yeni"}, "groups": None}, None)
    assert result["ok"] is True and result["contact"]["surname"] == "Test User 2"
    assert {"id": 2, "value": "yeni"} in result["contact"]["custom_fields"] and result["contact"]["groups"] == [9, 12]


def test_readme_lambda_handler_reuses_its_connection_on_warm_invocations(load_lambda_function, service):
    service.idle_timeout = 0.3  # the server closes the connection while the function is "frozen"
    function = load_lambda_function(service.url)
    assert service.connections == 0  # loading the module does not connect
    for name in ("Ali", "Ayşe", "Can"):
        assert function.lambda_handler({"id": 1009, "name": name}, None)["contact"]["name"] == name
    assert (service.connections, len(service.requests)) == (1, 3)
    time.sleep(0.5)
    assert function.lambda_handler({"id": 1009, "name": "Deniz"}, None)["ok"] is True
    assert (service.connections, len(service.requests)) == (2, 4)


def test_readme_lambda_handler_fails_the_invocation_when_no_answer_comes(load_lambda_function, quick_backoff):
    function = load_lambda_function(f"http://127.0.0.1:{unused_port()}{PATH}")
    with pytest.raises(ie.TransportError):
        function.lambda_handler({"id": 1009, "name": "x"}, None)


def test_readme_lambda_handler_runs_with_the_providers_variable_names(load_lambda_function, service):
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    assert "set `ILETIMERKEZI_API_KEY` and `ILETIMERKEZI_API_HASH`\nin the function's environment" in readme
    function = load_lambda_function(service.url, {"ILETIMERKEZI_API_KEY": KEY, "ILETIMERKEZI_API_HASH": HASH})
    assert function.CREDENTIALS == CREDS
    assert function.lambda_handler({"id": 1009, "name": "Şule"}, None)["contact"]["name"] == "Şule"
    with pytest.raises(ie.ValidationError, match="ILETIMERKEZI_API_KEY and ILETIMERKEZI_KEY hold different keys"):
        load_lambda_function(service.url, {"ILETIMERKEZI_API_KEY": KEY, "ILETIMERKEZI_API_HASH": HASH,
                                           "ILETIMERKEZI_KEY": "other-key", "ILETIMERKEZI_SECRET": SECRET})


def readme_text():
    """The README with its lines joined: a phrase is found wherever it wraps."""
    return " ".join((HERE / "README.md").read_text(encoding="utf-8").split())


def test_readme_reads_the_providers_credential_names_and_says_both_families_must_agree():
    text = readme_text()
    assert "`Credentials.from_env()` and the command line read `ILETIMERKEZI_API_KEY` and `ILETIMERKEZI_API_HASH`" in text
    assert "or `ILETIMERKEZI_KEY` with `ILETIMERKEZI_SECRET` or `ILETIMERKEZI_HASH`" in text
    assert "Both families may be set only when they agree." in text
    assert "export ILETIMERKEZI_API_KEY=your-api-key export ILETIMERKEZI_API_HASH=the-hash-from-the-panel" in text


def test_readme_errors_table_names_the_three_causes_of_a_401():
    text = readme_text()
    [row] = [line for line in (HERE / "README.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("| `AuthenticationError`")]
    for phrase in ("API access not allowed in the panel", 'Settings → Security → Access Permissions → "Allow API access"',
                   "a call from an IP address the account does not allow", "a wrong key or hash",
                   'turn on "Allow API access"', "allow the IP"):
        assert phrase in row, phrase
    assert ("| 401 | Üyelik bilgileri hatalı | API access not allowed, an IP the account does not allow, "
            "or a wrong key/hash |") in text


def test_readme_says_what_no_client_can_promise():
    text = readme_text()
    [section] = re.findall(r"### What no client can promise (.*?) ###", text)
    assert "An attempt that timed out may still be applied later by the server." in section
    assert '"the last edit in your input stays" holds for the edits the server answered' in section
    assert "After a `TransportError` for a contact, run that edit again (or the file, with `--resume`)." in section
    assert "run the edit again later ([why](#what-no-client-can-promise))" in text  # the errors table links it


def test_readme_says_a_proxy_password_belongs_in_the_environment_and_never_shows():
    text = readme_text()
    assert ("**Give a proxy password in `HTTPS_PROXY`, not `--proxy`**: a command line is visible to other users "
            "in the process list (`ps`, `/proc/PID/cmdline`).") in text
    assert "entries may be addresses or ranges (`10.0.0.0/8`, `fd00::/8`)" in text
    assert ("No form of them (as given, percent-encoded, decoded, or the base64 `Proxy-Authorization` value) appears "
            "in an error, a log line, the output or a report.") in text


def test_the_readme_zip_recipe_ships_byte_code_that_a_read_only_task_folder_uses(tmp_path, service):
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    [options] = re.findall(r"^  python3\.[0-9]+ -m compileall (.+) lambda-package  #", readme, re.MULTILINE)
    assert "(cd lambda-package && zip -qr ../function.zip .)" in readme  # the zip keeps lambda-package/__pycache__/
    task = tmp_path / "task"
    task.mkdir()
    shutil.copy(str(MODULE), str(task))
    (task / "lambda_function.py").write_text(readme_handler_code("lambda_function"), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "compileall", *options.split(), str(task)], check=True, timeout=60)
    for source in task.glob("*.py"):  # unzipping gives the files other times than they were compiled with
        os.utime(str(source), (946684800, 946684800))
    env = dict(os.environ, ILETIMERKEZI_URL=service.url, **CREDENTIAL_ENV)
    done = subprocess.run([sys.executable, "-S", "-B", "-v", "-c", "import lambda_function"], cwd=str(task), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    tag = sys.implementation.cache_tag
    for name in ("iletimerkezi_edit", "lambda_function"):
        assert f"code object from '{task / '__pycache__' / f'{name}.{tag}.pyc'}'".encode() in done.stderr
    assert service.requests == []


# ---------------------------------------------------------------------------
# The README's SQS consumer, run as written
# ---------------------------------------------------------------------------


def readme_handler_code(module):
    """The code of README.md's lambda_function.py or sqs_function.py: its ```python block with a lambda_handler."""
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    [code] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
              if "def lambda_handler" in block and ("batchItemFailures" in block) == (module == "sqs_function")]
    return code


@pytest.fixture
def load_sqs_function(monkeypatch):
    """Load the README's sqs_function.py as Lambda would: environment first, then the module."""
    loaded = []

    def load(url):
        code = readme_handler_code("sqs_function")
        for name, value in {**CREDENTIAL_ENV, "ILETIMERKEZI_URL": url}.items():
            monkeypatch.setenv(name, value)
        module = types.ModuleType("sqs_function")
        exec(compile(code, "README.md (sqs_function.py)", "exec"), module.__dict__)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.SESSION.close()


SQS_QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:contacts"


def sqs_record(message_id, body, group=None, receive_count=1):
    """One record as Lambda's SQS poller hands it over; ``body`` is JSON-encoded unless it is a string already.

    With ``group``, the record comes from a FIFO queue (contacts.fifo) and carries its MessageGroupId.
    """
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": "1764000000000",
        "SenderId": "AIDAEXAMPLEPRODUCER",
        "ApproximateFirstReceiveTimestamp": "1764000000100",
    }
    if group is not None:
        attributes.update(MessageGroupId=group, MessageDeduplicationId="dedup-" + message_id,
                          SequenceNumber=str(18800000000000000000 + len(message_id)))
    return {
        "messageId": message_id,
        "receiptHandle": "AQEB" + message_id,
        "body": text,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode("utf-8")).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": SQS_QUEUE_ARN + (".fifo" if group is not None else ""),
        "awsRegion": "eu-central-1",
    }


def sqs_event(*records):
    return {"Records": list(records)}


def failures(*message_ids):
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


def test_readme_sqs_function_is_set_up_once_and_reads_a_body_as_the_lambda_handler_reads_an_event(
        load_sqs_function, service):
    function = load_sqs_function(service.url)
    assert function.CREDENTIALS == ie.Credentials.from_secret(KEY, SECRET)
    assert service.connections == 0  # loading the module does not connect
    assert function.lambda_handler(sqs_event(), None) == failures()
    # The same rules for a body as for the Lambda handler's event: the same code, word for word.
    lambda_code, sqs_code = readme_handler_code("lambda_function"), readme_handler_code("sqs_function")
    assert sqs_code[sqs_code.index("def contact_from"):] == lambda_code[lambda_code.index("def contact_from"):]
    assert re.search(r"^KEYS = .*$", sqs_code, re.M).group() == re.search(r"^KEYS = .*$", lambda_code, re.M).group()


def test_readme_sqs_function_lists_exactly_the_messages_not_edited(load_sqs_function, service, quick_backoff,
                                                                    caplog):
    service.dropped_names.add("Sessiz")  # this edit's request is closed unanswered, at every try
    function = load_sqs_function(service.url)
    event = sqs_event(
        sqs_record("good", {"id": 1009, "name": "Şule", "groups": [9, 15], "custom_fields": {"1": "28/11/2026"}}),
        sqs_record("not-json", '{"id": 1009, "name": "Gizli"'),
        sqs_record("not-an-object", '["Gizli", 1009]'),
        sqs_record("bad-id", {"id": "10O9", "name": "Gizli"}),
        sqs_record("misspelt-key", {"id": 1009, "nmae": "Gizli"}),
        sqs_record("bad-text", {"id": 1009, "name": "Gizli\x00"}),
        sqs_record("unknown-contact", {"id": 4242, "name": "Gizli"}),
        sqs_record("unknown-group", {"id": 1009, "name": "Gizli", "groups": [99]}),
        sqs_record("unanswered", {"id": PEOPLE[0], "name": "Sessiz"}),
        sqs_record("after", {"id": 1009, "surname": "Yılmaz"}),  # a standard queue: no failure holds it back
    )
    result = function.lambda_handler(event, None)
    assert result == failures("not-json", "not-an-object", "bad-id", "misspelt-key", "bad-text", "unknown-contact",
                              "unknown-group", "unanswered")
    json.dumps(result)
    stored = service.contacts[1009]
    assert (stored["name"], stored["surname"], stored["groups"], stored["fields"][1]) == (
        "Şule", "Yılmaz", [9, 15], "28/11/2026")
    assert PEOPLE[0] not in service.contacts
    # Bodies that are no contact event are never sent; the unanswered edit was tried twice (retries=1), each
    # try that went out on a kept-alive connection maybe once more (the client cannot tell that from an idle close).
    sent = collections.Counter(sent_names(service))
    assert 2 <= sent.pop("Sessiz") <= 4
    assert sent == {"Şule": 1, "Gizli": 2, None: 1}  # unknown contact and unknown group were sent, and refused
    # One warning per failed message, naming it and its error; none holds the body's values.
    warnings = [record for record in caplog.records if record.name == "sqs_function"]
    assert [record.args[:2] for record in warnings] == [
        ("not-json", "JSONDecodeError"), ("not-an-object", "ValidationError"), ("bad-id", "ValidationError"),
        ("misspelt-key", "ValidationError"), ("bad-text", "ValidationError"), ("unknown-contact", "APIError"),
        ("unknown-group", "APIError"), ("unanswered", "TransportError")]
    assert all(record.levelno == logging.WARNING and record.exc_info is None for record in warnings)
    assert not any("Gizli" in record.getMessage() or "Sessiz" in record.getMessage() for record in warnings)


def test_readme_sqs_function_fails_only_the_message_a_bug_hits_and_logs_its_traceback(load_sqs_function, service,
                                                                                       monkeypatch, caplog):
    function = load_sqs_function(service.url)
    edit = function.SESSION.edit_contact

    def buggy(contact):
        if contact.name == "bug":
            raise ZeroDivisionError("a defect")
        return edit(contact)

    monkeypatch.setattr(function.SESSION, "edit_contact", buggy)
    event = sqs_event(sqs_record("m1", {"id": 1009, "name": "before"}), sqs_record("m2", {"id": 1009, "name": "bug"}),
                      sqs_record("m3", {"id": PEOPLE[0], "name": "after"}), {"messageId": "m4", "attributes": {}})
    assert function.lambda_handler(event, None) == failures("m2", "m4")  # m4 has no body at all
    assert sent_names(service) == ["before", "after"]
    bare = {"messageId": "m5", "body": json.dumps({"id": PEOPLE[2], "name": "bare"})}  # no attributes: not FIFO
    assert function.lambda_handler(sqs_event(bare), None) == failures()
    assert sent_names(service)[-1] == "bare"
    [bug, no_body] = [record for record in caplog.records if record.name == "sqs_function"]
    assert (bug.levelno, bug.exc_info[0], no_body.exc_info[0]) == (logging.ERROR, ZeroDivisionError, KeyError)


def test_readme_sqs_function_edits_one_contact_in_batch_order_on_one_connection(load_sqs_function, service):
    function = load_sqs_function(service.url)
    names = ["v1", "w1", "v2", "v3", "w2", "v4"]
    event = sqs_event(*(sqs_record(name, {"id": 1009 if name[0] == "v" else PEOPLE[1], "name": name})
                        for name in names))
    for name in names:
        service.delays[name] = 0.01 * (6 - int(name[1]))  # earlier edits are answered later
    assert function.lambda_handler(event, None) == failures()
    assert sent_names(service) == names
    assert (service.contacts[1009]["name"], service.contacts[PEOPLE[1]]["name"]) == ("v4", "w2")
    assert (service.connections, service.most_in_flight) == (1, 1)


def test_readme_sqs_function_answers_a_redelivered_batch_as_the_first_delivery(load_sqs_function, service):
    function = load_sqs_function(service.url)
    bodies = [{"id": 1009, "name": "Ali", "groups": [12]}, {"id": 4242, "name": "x"}, {"id": PEOPLE[2], "email": ""}]
    answers, states = [], []
    for receive_count in (1, 2):  # e.g. after a function timeout, SQS delivers the whole batch again
        event = sqs_event(*(sqs_record(f"m{number}", body, receive_count=receive_count)
                            for number, body in enumerate(bodies)))
        answers.append(function.lambda_handler(event, None))
        states.append(json.dumps(service.contacts, sort_keys=True, default=str))
    assert answers == [failures("m1"), failures("m1")]
    assert states[0] == states[1]
    assert len(service.requests) == 6  # the edits are sent again, and change nothing


FIFO_FAILURES = {
    "refused": {"id": 1009, "name": "a2", "groups": [99]},  # APIError 463
    "malformed": '{"id": 1009, "name": "a2"',
    "unanswered": {"id": 1009, "name": "a2"},
}


@pytest.mark.parametrize("failure", list(FIFO_FAILURES))
def test_readme_sqs_function_on_a_fifo_queue_holds_back_the_failed_group_only(load_sqs_function, service,
                                                                               quick_backoff, failure):
    if failure == "unanswered":
        service.dropped_names.add("a2")
    function = load_sqs_function(service.url)
    a, b = "1009", str(PEOPLE[0])  # the groups are contact ids, as the README's producer sends them
    event = sqs_event(
        sqs_record("a1", {"id": 1009, "name": "a1"}, group=a),
        sqs_record("b1", {"id": PEOPLE[0], "name": "b1"}, group=b),
        sqs_record("a2", FIFO_FAILURES[failure], group=a),
        sqs_record("b2", {"id": PEOPLE[0], "name": "b2"}, group=b),
        sqs_record("a3", {"id": 1009, "name": "a3"}, group=a),  # would succeed, but must not land before a2
        sqs_record("b3", {"id": PEOPLE[0], "name": "b3"}, group=b),
        sqs_record("a4", {"id": 1009, "surname": "a4"}, group=a),
    )
    assert function.lambda_handler(event, None) == failures("a2", "a3", "a4")
    sent = sent_names(service)
    assert [name for name in sent if name != "a2"] == ["a1", "b1", "b2", "b3"]  # a3 and a4 were not sent
    tries = {"refused": (1, 1), "malformed": (0, 0), "unanswered": (2, 4)}[failure]  # unanswered: as above
    assert tries[0] <= sent.count("a2") <= tries[1]
    assert (service.contacts[1009]["name"], service.contacts[1009]["surname"]) == ("a1", "Test User 2")
    assert service.contacts[PEOPLE[0]]["name"] == "b3"


def test_readme_sqs_function_on_a_fifo_queue_applies_held_back_edits_in_order_when_redelivered(load_sqs_function,
                                                                                               service):
    function = load_sqs_function(service.url)
    first = [sqs_record("a1", {"id": 1009, "name": "a1", "groups": [99]}, group="1009"),
             sqs_record("a2", {"id": 1009, "name": "a2"}, group="1009"),
             sqs_record("a3", {"id": 1009, "name": "a3"}, group="1009")]
    assert function.lambda_handler(sqs_event(*first), None) == failures("a1", "a2", "a3")
    service.groups.add(99)  # the missing group is made; SQS delivers the three again, in order
    again = [dict(record, attributes=dict(record["attributes"], ApproximateReceiveCount="2")) for record in first]
    assert function.lambda_handler(sqs_event(*again), None) == failures()
    assert sent_names(service) == ["a1", "a1", "a2", "a3"]
    assert (service.contacts[1009]["name"], service.contacts[1009]["groups"]) == ("a3", [99])


# ---------------------------------------------------------------------------
# Both README handlers under the real Lambda runtime interface client
# ---------------------------------------------------------------------------
#
# awslambdaric is what AWS's own Python base images run (`python -m awslambdaric
# module.function`). It is a test-only dependency that .ci/run installs where it
# can (it needs Python 3.10 or newer); these tests skip where it is missing. The
# Runtime API it talks to is played here: one event, then a long poll that never
# ends, as Lambda's is between invocations.

RUNTIME_REQUEST_ID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
RUNTIME_FUNCTION_ARN = "arn:aws:lambda:eu-central-1:123456789012:function:edit-contacts"


class RuntimeAPIHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        api = self.server
        if self.path != "/2018-06-01/runtime/invocation/next":
            self.reply(404, b'{"errorMessage": "not found"}')
            return
        with api.lock:
            event, api.events = (api.events[0], api.events[1:]) if api.events else (None, [])
        if event is None:
            api.released.wait(30)  # no further invocation: the test stops the process meanwhile
            self.close_connection = True
            return
        deadline = int(time.time() * 1000) + 60000
        self.reply(200, json.dumps(event).encode("utf-8"), [
            ("Lambda-Runtime-Aws-Request-Id", RUNTIME_REQUEST_ID),
            ("Lambda-Runtime-Deadline-Ms", str(deadline)),
            ("Lambda-Runtime-Invoked-Function-Arn", RUNTIME_FUNCTION_ARN),
            ("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"),
        ])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.posts.append((self.path, body))
        self.reply(202, b'{"status": "OK"}')
        self.server.answered.set()

    def reply(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class RuntimeAPI(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *events):
        super().__init__(("127.0.0.1", 0), RuntimeAPIHandler)
        self.events = list(events)
        self.posts = []
        self.lock = threading.Lock()
        self.answered = threading.Event()
        self.released = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.released.set()
        self.shutdown()
        self.server_close()
        self.thread.join(5)


RUNTIME_CASES = {
    # module: (the event, what the handler must answer, the names the service must have been sent)
    "lambda_function": ({"id": 1009, "name": "Şule", "groups": [9, 15]},
                        lambda answer: answer["ok"] is True and answer["contact"]["name"] == "Şule", ["Şule"]),
    "sqs_function": (sqs_event(sqs_record("m1", {"id": 1009, "name": "Şule"}),
                               sqs_record("m2", {"id": 4242, "name": "x"}), sqs_record("m3", "not json")),
                     lambda answer: answer == failures("m2", "m3"), ["Şule", "x"]),
}


@pytest.mark.skipif(importlib.util.find_spec("awslambdaric") is None,
                    reason="awslambdaric is not installed (.ci/run installs it on Python 3.10 and newer)")
@pytest.mark.parametrize("module", list(RUNTIME_CASES))
def test_readme_handlers_run_under_the_real_lambda_runtime_interface_client(module, service, tmp_path):
    event, expected, names = RUNTIME_CASES[module]
    task_root = tmp_path / "task"  # what the function's zip unpacks to, as /var/task
    task_root.mkdir()
    shutil.copy(MODULE, task_root)
    (task_root / (module + ".py")).write_text(readme_handler_code(module), encoding="utf-8")
    with RuntimeAPI(event) as api:
        handler = module + ".lambda_handler"
        env = dict(os.environ, **CREDENTIAL_ENV, ILETIMERKEZI_URL=service.url, _HANDLER=handler,
                   AWS_LAMBDA_RUNTIME_API="127.0.0.1:%d" % api.server_address[1], LAMBDA_TASK_ROOT=str(task_root),
                   PYTHONPATH=str(task_root), AWS_LAMBDA_FUNCTION_NAME="edit-contacts",
                   AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128", AWS_LAMBDA_FUNCTION_VERSION="$LATEST")
        with open(tmp_path / "runtime.log", "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "awslambdaric", handler], cwd=str(task_root), env=env,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                answered = api.answered.wait(20)
            finally:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        output = (tmp_path / "runtime.log").read_text(encoding="utf-8", errors="replace")
        assert answered, "the runtime posted nothing; its output:\n" + output
        [(path, body)] = api.posts
    assert path == f"/2018-06-01/runtime/invocation/{RUNTIME_REQUEST_ID}/response", (path, body, output)
    assert expected(json.loads(body)), body
    assert sent_names(service) == names


# ---------------------------------------------------------------------------
# Real programs: tinyproxy, squid and nginx, as users meet them
# ---------------------------------------------------------------------------
#
# The stand-ins above act out what wire-facts.md says real programs do; these
# tests run the programs themselves where they are installed (.ci/run installs
# them when it runs as root) and skip where one is missing. Each runs in the
# foreground on free loopback ports with a configuration written here, never
# the system's, and is stopped when the module's tests are done.


def find_program(name):
    """The program's path, looking in the sbin folders too (a user's PATH often leaves them out), or None."""
    found = shutil.which(name)
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        if found is None:
            found = shutil.which(name, path=folder)
    return found


def read_lines(path):
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


class RealProgram:
    """A server started in the foreground, its output in a file; ready once every port in ``ports`` accepts."""

    def __init__(self, command, folder, ports):
        self.command = command
        self.output_path = Path(folder) / "output.log"
        self._output = open(str(self.output_path), "wb")
        self.process = subprocess.Popen(command, cwd=str(folder), stdin=subprocess.DEVNULL, stdout=self._output,
                                        stderr=subprocess.STDOUT)
        ends = time.monotonic() + 15
        for port in ports:  # a program that exits or never listens fails the test, showing its output
            while True:
                if self.process.poll() is not None:
                    self._give_up(f"exited with {self.process.returncode}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > ends:
                        self._give_up(f"does not listen on port {port}")
                    time.sleep(0.02)

    def _give_up(self, what):
        self.stop()
        pytest.fail(f"{' '.join(self.command)} {what}: {self.output()}")

    def output(self):
        return self.output_path.read_bytes().decode("utf-8", "replace")[-3000:]

    def stop(self):
        """SIGTERM (nginx: fast shutdown; squid and tinyproxy: shutdown), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._output.close()


def logged_attempts(records):
    """``["attempt 1 of 3", ...]``, one for each attempt the module logged."""
    found = (re.search(r" attempt ([0-9]+ of [0-9]+)", record.getMessage()) for record in records)
    return ["attempt " + match.group(1) for match in found if match]


def settled(count_now, expected):
    """Whether ``count_now()`` reaches ``expected`` (a program logs a moment after it answers) and stays there."""
    if not eventually(lambda: count_now() >= expected):
        return False
    time.sleep(0.1)
    return count_now() == expected


# -- tinyproxy and squid -------------------------------------------------------


REAL_PROXY_USER = "tunnel"
REAL_PROXY_PASSWORD = "Pa55wordOfTheProxy"  # letters and digits: tinyproxy's config and squid's helper take it as is
WRONG_PASSWORD = "Wr0ngPa55wordForTheProxy"


class RealProxy:
    """A proxy on two ports: ``open_port`` tunnels for anyone on 127.0.0.1, ``auth_port`` wants Basic credentials."""

    kind = ""
    # wire-facts.md: squid answers a wrong password with 407, tinyproxy with 401 (both 407 when none is given);
    # a CONNECT to a closed port gets 503 from squid, 500 from tinyproxy.
    wrong_password_status = 0
    closed_port_status = 0

    def __init__(self, folder):
        self.folder = folder
        self.open_port, self.auth_port = unused_port(), unused_port()
        self.programs = []

    def url(self, port, user=None, password=None):
        credentials = "" if user is None else f"{user}:{password}@"
        return f"http://{credentials}127.0.0.1:{port}"

    def tunnels(self, port):
        """The targets of the CONNECT requests the proxy has logged on ``port``, oldest first."""
        raise NotImplementedError

    def stop(self):
        for program in self.programs:
            program.stop()


class Tinyproxy(RealProxy):
    kind, wrong_password_status, closed_port_status = "tinyproxy", 401, 500

    def __init__(self, folder):
        super().__init__(folder)
        # One tinyproxy per port, as BasicAuth holds for all of a tinyproxy's ports. No ConnectPort line: any port
        # may be tunnelled to. No User line: it keeps the user it was started as, who can write to ``folder``.
        for port, auth in ((self.open_port, ""), (self.auth_port, f"BasicAuth {REAL_PROXY_USER} {REAL_PROXY_PASSWORD}\n")):
            config = folder / f"tinyproxy-{port}.conf"
            config.write_text(
                f"Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nAllow 127.0.0.1\nLogLevel Connect\n"
                f'LogFile "{folder}/tinyproxy-{port}.log"\nPidFile "{folder}/tinyproxy-{port}.pid"\n{auth}',
                encoding="utf-8",
            )
            command = [find_program("tinyproxy"), "-d", "-c", str(config)]  # -d: in the foreground
            self.programs.append(RealProgram(command, folder, [port]))

    def tunnels(self, port):
        # "CONNECT   Nov 29 12:23:54.562 [9220]: Request (file descriptor 5): CONNECT localhost:4443 HTTP/1.1",
        # written as the request arrives.
        found = (re.search(r"Request \(file descriptor [0-9]+\): CONNECT (\S+) HTTP/", line)
                 for line in read_lines(self.folder / f"tinyproxy-{port}.log"))
        return [match.group(1) for match in found if match]


class Squid(RealProxy):
    kind, wrong_password_status, closed_port_status = "squid", 407, 503

    def __init__(self, folder):
        super().__init__(folder)
        run_as = ""
        if os.geteuid() == 0:
            # Squid refuses to run as root: it switches to an unprivileged user, who must be able to write to
            # ``folder`` and run the helper from it (which is why squid's folder is not one of pytest's).
            import pwd

            account = None
            for name in ("proxy", "nobody"):
                with contextlib.suppress(KeyError):
                    account = account or pwd.getpwnam(name)
            run_as = f"cache_effective_user {account.pw_name}\n"
            os.chown(str(folder), account.pw_uid, account.pw_gid)
            os.chmod(str(folder), 0o755)
        helper = folder / "check-password.sh"
        helper.write_text(  # a basic auth helper: "user password" in, "OK" or "ERR" out, a line each
            "#!/bin/sh\nwhile read -r user password; do\n"
            f'  if [ "$user" = "{REAL_PROXY_USER}" ] && [ "$password" = "{REAL_PROXY_PASSWORD}" ]\n'
            "  then echo OK; else echo ERR; fi\n"
            "done\n",
            encoding="utf-8",
        )
        helper.chmod(0o755)
        config = folder / "squid.conf"
        config.write_text(
            f"http_port 127.0.0.1:{self.open_port}\nhttp_port 127.0.0.1:{self.auth_port}\n{run_as}"
            f"pid_filename {folder}/squid.pid\ncache_log {folder}/cache.log\ncoredump_dir {folder}\n"
            "logformat tunnels %>lp %rm %ru %>Hs %un\n"
            f"access_log stdio:{folder}/access.log logformat=tunnels\n"
            "cache deny all\ncache_mem 8 MB\nnetdb_filename none\npinger_enable off\nshutdown_lifetime 0 seconds\n"
            "visible_hostname iletimerkezi-edit-test\nmax_filedescriptors 1024\n"
            f"auth_param basic program {helper}\nauth_param basic children 2 startup=1 idle=1\n"
            "auth_param basic realm test\n"
            f"acl from_here src 127.0.0.1\nacl open_port localport {self.open_port}\n"
            "acl authenticated proxy_auth REQUIRED\n"
            "http_access allow from_here open_port\nhttp_access allow from_here authenticated\n"
            "http_access deny all\n",
            encoding="utf-8",
        )
        # -N: in the foreground. -n: a service name of its own, which names its shared memory segments, so that
        # squids started at once (by another test run, say) do not collide.
        self.service_name = f"iletimerkeziedit{self.open_port}"
        command = [find_program("squid"), "-N", "-n", self.service_name, "-f", str(config)]
        self.programs.append(RealProgram(command, folder, [self.open_port, self.auth_port]))

    def tunnels(self, port):
        # "4443 CONNECT localhost:4443 200 tunnel", written as each tunnel (or refused CONNECT) ends.
        lines = (line.split() for line in read_lines(self.folder / "access.log"))
        return [fields[2] for fields in lines if len(fields) >= 3 and fields[:2] == [str(port), "CONNECT"]]

    def stop(self):
        super().stop()
        for leftover in Path("/dev/shm").glob(f"{self.service_name}-*"):  # there only if squid had to be killed
            leftover.unlink()


@pytest.fixture(scope="module", params=["tinyproxy", "squid"])
def real_proxy(request, tmp_path_factory):
    if find_program(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    if request.param == "tinyproxy":
        proxy = Tinyproxy(tmp_path_factory.mktemp("tinyproxy"))
        yield proxy
        proxy.stop()
        return
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="iletimerkezi-edit-squid-"))
    try:
        proxy = Squid(folder)
        yield proxy
        proxy.stop()
    finally:
        shutil.rmtree(str(folder), ignore_errors=True)


def by_name(service):
    """The service's URL with ``localhost`` for its host, as users write names: the proxy resolves it, TLS checks it."""
    return service.url.replace("127.0.0.1", "localhost")


def test_a_real_proxy_carries_a_session_in_one_kept_tunnel(real_proxy, certificates):
    port = real_proxy.open_port
    with https_service(certificates["local"]) as service:
        before = len(real_proxy.tunnels(port))
        with ie.Session(CREDS, url=by_name(service), ssl_context=trusting(certificates["local"]), retries=0,
                        proxy=real_proxy.url(port)) as session:
            names = [session.edit_contact(contact).contact.name for contact in named(20, "tunnel")]
        assert names == [f"tunnel{number}" for number in range(20)]
        assert (service.connections, len(service.requests)) == (1, 20)
        assert settled(lambda: len(real_proxy.tunnels(port)) - before, 1)
        assert real_proxy.tunnels(port)[-1] == by_name(service).split("/")[2]  # "localhost:port": the proxy resolves it


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_a_real_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(real_proxy, certificates,
                                                                                  monkeypatch, variable):
    port = real_proxy.auth_port
    with https_service(certificates["local"]) as service:
        options = {"url": by_name(service), "ssl_context": trusting(certificates["local"])}
        before = len(real_proxy.tunnels(port))
        # Through the proxy, without credentials: it asks for them (407 from both), so the edit went through it.
        monkeypatch.setenv(variable, real_proxy.url(port))
        with pytest.raises(ie.ProxyError) as caught:
            ie.edit_contact(CREDS, ie.Contact(1009, name="proxied"), **options)
        assert (caught.value.status, caught.value.proxy, service.connections) == (407, f"127.0.0.1:{port}", 0)
        # no_proxy names the host: straight to the service.
        monkeypatch.setenv("no_proxy", "example.com, localhost")
        assert ie.edit_contact(CREDS, ie.Contact(1009, name="direct"), **options).contact.name == "direct"
        assert service.connections == 1
        # Credentials in the variable: through the proxy, one tunnel for a session's edits.
        monkeypatch.delenv("no_proxy")
        monkeypatch.setenv(variable, real_proxy.url(port, REAL_PROXY_USER, REAL_PROXY_PASSWORD))
        with ie.Session(CREDS, **options) as session:
            names = [session.edit_contact(contact).contact.name for contact in named(3, "env")]
        assert names == ["env0", "env1", "env2"]
        assert (service.connections, len(service.requests)) == (2, 4)
    # The proxy saw the refused CONNECT and the session's tunnel, and nothing of the direct edit.
    assert settled(lambda: len(real_proxy.tunnels(port)) - before, 2)


@pytest.mark.parametrize("via", VIAS)
def test_a_real_proxy_refusing_a_wrong_password_is_asked_once_and_the_password_shows_nowhere(
        real_proxy, certificates, caplog, quick_backoff, via):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    port = real_proxy.auth_port
    with https_service(certificates["local"]) as service:
        before = len(real_proxy.tunnels(port))
        with pytest.raises(ie.ProxyError) as caught:
            edit_once(via, CREDS, ie.Contact(1009, name="x"), url=by_name(service), retries=2,
                      ssl_context=trusting(certificates["local"]),
                      proxy=real_proxy.url(port, REAL_PROXY_USER, WRONG_PASSWORD))
        assert service.connections == 0
    error = caught.value
    assert isinstance(error, ie.TransportError)
    assert (error.status, error.proxy) == (real_proxy.wrong_password_status, f"127.0.0.1:{port}")
    assert f"HTTP {error.status}" in str(error) and f"127.0.0.1:{port}" in str(error)
    assert logged_attempts(caplog.records) == ["attempt 1 of 3"]  # a proxy's 4xx is not tried again
    assert settled(lambda: len(real_proxy.tunnels(port)) - before, 1)
    import base64

    seen = everything_a_user_sees(error, caplog.records)
    encoded = base64.b64encode(f"{REAL_PROXY_USER}:{WRONG_PASSWORD}".encode()).decode()
    assert WRONG_PASSWORD.lower() not in seen and encoded.lower() not in seen


def test_a_real_proxy_with_the_right_password_tunnels_and_the_target_never_sees_the_credentials(
        real_proxy, certificates):
    port = real_proxy.auth_port
    proxy = real_proxy.url(port, REAL_PROXY_USER, REAL_PROXY_PASSWORD)
    options = {"ssl_context": trusting(certificates["local"]), "proxy": proxy}
    with https_service(certificates["local"]) as service:
        before = len(real_proxy.tunnels(port))
        with ie.Session(CREDS, url=by_name(service), retries=0, **options) as session:
            names = [session.edit_contact(contact).contact.name for contact in named(3, "auth")]
        assert names == ["auth0", "auth1", "auth2"]
        once = ie.edit_contact(CREDS, ie.Contact(1009, name="once"), url=by_name(service), **options)
        assert once.contact.name == "once"
        assert (service.connections, len(service.requests)) == (2, 4)
        for _, headers, body in service.requests:
            assert not [name for name in headers if name.lower().startswith("proxy-")]
            assert REAL_PROXY_PASSWORD.encode() not in body
    assert settled(lambda: len(real_proxy.tunnels(port)) - before, 2)


def test_a_real_proxy_that_cannot_reach_the_port_answers_5xx_and_it_is_tried_again(real_proxy, caplog, quick_backoff):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    port, closed = real_proxy.open_port, unused_port()
    before = len(real_proxy.tunnels(port))
    with pytest.raises(ie.ProxyError) as caught:  # a loopback http:// target is tunnelled too
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=f"http://127.0.0.1:{closed}{PATH}", retries=2,
                        proxy=real_proxy.url(port))
    assert (caught.value.status, caught.value.proxy) == (real_proxy.closed_port_status, f"127.0.0.1:{port}")
    assert logged_attempts(caplog.records) == ["attempt 1 of 3", "attempt 2 of 3", "attempt 3 of 3"]
    assert settled(lambda: len(real_proxy.tunnels(port)) - before, 3)
    assert real_proxy.tunnels(port)[-3:] == [f"127.0.0.1:{closed}"] * 3


def test_the_cli_goes_through_a_real_proxy_and_keeps_its_password_to_itself(real_proxy, service):
    port = real_proxy.auth_port
    args = ["--id", "1009", "--name", "Vekil", "--url", service.url, "--retries", "0", "-v", "--proxy"]
    code, stdout, stderr = run_cli(args + [real_proxy.url(port, REAL_PROXY_USER, REAL_PROXY_PASSWORD)], CREDENTIAL_ENV)
    assert code == 0 and "Vekil" in stdout, stderr
    code, stdout, stderr = run_cli(args + [real_proxy.url(port, REAL_PROXY_USER, WRONG_PASSWORD)], CREDENTIAL_ENV)
    assert code == 3 and f"HTTP {real_proxy.wrong_password_status}" in stderr, stderr
    assert WRONG_PASSWORD not in stderr + stdout and REAL_PROXY_PASSWORD not in stderr + stdout
    assert len(service.requests) == 1


# -- nginx, the real server's front end: what users meet at api.iletimerkezi.com ---


def slow_body(connection, server, request):
    """The head of a keep-alive answer at once, its body half a second later."""
    head, _, body = http_answer(200, SAMPLE_RESPONSE).partition(b"\r\n\r\n")
    connection.sendall(head + b"\r\n\r\n")
    server.released.wait(0.5)
    connection.sendall(body)


class RealNginx:
    """One nginx, a master and a worker, with a server block for each behaviour, each on a port of its own."""

    PROXIED = {  # server blocks before ``FakeService``
        "plain": "",
        "three_per_connection": "keepalive_requests 3;",
        "idle_briefly": "keepalive_timeout 300ms;",
        # sub_filter drops the upstream's Content-Length: nginx then answers chunked, or without a length.
        "chunked": "sub_filter_types text/xml; sub_filter '<response>' '<response>';",
        "until_close": "sub_filter_types text/xml; sub_filter '<response>' '<response>'; "
                       "chunked_transfer_encoding off;",
    }

    def __init__(self, folder, upstream, slow_upstream, hanging_upstream):
        self.folder = folder
        self.slow_upstream = slow_upstream
        self.reloads = 0
        names = [*self.PROXIED, "upstream_down", "upstream_slow", "head_then_body"]
        self.ports = {name: unused_port() for name in names}

        def block(name, location):
            return f"server {{ listen 127.0.0.1:{self.ports[name]}; location / {{ {location} }} }}"

        blocks = [block(name, f"{settings} proxy_pass {upstream};") for name, settings in self.PROXIED.items()]
        blocks += [
            block("upstream_down", f"proxy_pass http://127.0.0.1:{unused_port()};"),
            block("upstream_slow", f"proxy_read_timeout 300ms; proxy_pass {hanging_upstream};"),
            block("head_then_body", f"proxy_pass {slow_upstream.url[:-len(PATH)]};"),
        ]
        kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        temp_paths = [f"{kind}_temp_path {folder}/{kind};" for kind in kinds]
        lines = [
            # Under root, workers would run as nobody, who cannot enter pytest's folders (private to root).
            "user root;" if os.geteuid() == 0 else "",
            "daemon off;", "master_process on;", "worker_processes 1;",  # a master, to reload
            f"pid {folder}/nginx.pid;", f"error_log {folder}/error.log notice;",
            "events { worker_connections 128; }",
            "http {", *temp_paths,
            "log_format probe '$server_port $connection $connection_requests $status $sent_http_transfer_encoding';",
            f"access_log {folder}/access.log probe;",
            "proxy_http_version 1.1;", 'proxy_set_header Connection "";',
            *blocks,
            "}",
        ]
        (folder / "nginx.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        # -e: the error log before the configuration is read, which otherwise is the system's.
        command = [find_program("nginx"), "-p", str(folder), "-c", str(folder / "nginx.conf"),
                   "-e", str(folder / "error.log")]
        self.program = RealProgram(command, folder, list(self.ports.values()))

    def url(self, name):
        return f"http://127.0.0.1:{self.ports[name]}{PATH}"

    def answers(self, name):
        """``(connection, its request number, status, transfer encoding)`` for each request logged on that port."""
        lines = (line.split() for line in read_lines(self.folder / "access.log"))
        return [(int(f[1]), int(f[2]), int(f[3]), f[4]) for f in lines if f[0] == str(self.ports[name])]

    def reload(self, wait=True):
        """A graceful reload, as on every deploy; ``wait``: until the old workers have closed their connections."""
        self.reloads += 1
        self.program.process.send_signal(signal.SIGHUP)
        if wait:  # each reload retires the one worker there was
            assert eventually(lambda: self._logged("exited with code") >= self.reloads), self.program.output()

    def _logged(self, text):
        return sum(text in line for line in read_lines(self.folder / "error.log"))


@pytest.fixture(scope="module")
def real_nginx(tmp_path_factory):
    if find_program("nginx") is None:
        pytest.skip("nginx is not installed")
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(running(FakeService())).url[:-len(PATH)]
        quick = answer(200, SAMPLE_RESPONSE)
        slow = stack.enter_context(FaultServer(quick, slow_body, quick))
        hanging = stack.enter_context(FaultServer(hang)).url[:-len(PATH)]
        nginx = RealNginx(tmp_path_factory.mktemp("nginx"), upstream, slow, hanging)
        stack.callback(nginx.program.stop)
        yield nginx


def since(before, now):
    return now[len(before):]


def test_nginx_closes_every_third_answer_and_the_session_reconnects_without_a_retry(real_nginx, caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    before = real_nginx.answers("three_per_connection")
    # The premise, read off the wire: nginx says so on a connection's third answer.
    import http.client

    probe = http.client.HTTPConnection("127.0.0.1", real_nginx.ports["three_per_connection"], timeout=5)
    said = []
    for _ in range(3):
        probe.request("POST", PATH, body=b"x")
        reply = probe.getresponse()
        reply.read()
        said.append(reply.getheader("Connection"))
    probe.close()
    assert said == ["keep-alive", "keep-alive", "close"]
    with ie.Session(CREDS, url=real_nginx.url("three_per_connection"), retries=2) as session:
        names = [session.edit_contact(contact).contact.name for contact in named(7, "third")]
    assert names == [f"third{number}" for number in range(7)]
    assert eventually(lambda: len(since(before, real_nginx.answers("three_per_connection"))) == 3 + 7)
    seen = since(before, real_nginx.answers("three_per_connection"))[3:]
    assert [number for _, number, _, _ in seen] == [1, 2, 3, 1, 2, 3, 1]  # each edit sent once, on 3 connections
    assert len({connection for connection, _, _, _ in seen}) == 3
    assert logged_attempts(caplog.records) == ["attempt 1 of 3"] * 7


def test_nginx_closing_an_idle_connection_costs_the_next_edit_no_retry(real_nginx, caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    before = real_nginx.answers("idle_briefly")
    with ie.Session(CREDS, url=real_nginx.url("idle_briefly"), retries=2) as session:
        assert session.edit_contact(ie.Contact(1009, name="önce")).contact.name == "önce"
        time.sleep(0.7)  # nginx closes it at keepalive_timeout 300ms
        assert session.edit_contact(ie.Contact(1009, name="sonra")).contact.name == "sonra"
    assert eventually(lambda: len(since(before, real_nginx.answers("idle_briefly"))) == 2)
    first, second = since(before, real_nginx.answers("idle_briefly"))
    assert first[0] != second[0] and (first[1], second[1]) == (1, 1)  # a new connection, the edit sent once
    assert logged_attempts(caplog.records) == ["attempt 1 of 3"] * 2


def test_nginx_graceful_reloads_between_edits_cost_no_retry(real_nginx, caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    before = real_nginx.answers("plain")
    with ie.Session(CREDS, url=real_nginx.url("plain"), retries=2) as session:
        assert session.edit_contact(ie.Contact(1009, name="r")).contact.name == "r"
        for round_ in range(3):
            real_nginx.reload(wait=True)  # the old worker has closed the kept connection
            assert session.edit_contact(ie.Contact(1009, name=f"waited{round_}")).contact.name == f"waited{round_}"
            real_nginx.reload(wait=False)  # the edit races the old worker's close
            assert session.edit_contact(ie.Contact(1009, name=f"raced{round_}")).contact.name == f"raced{round_}"
    assert logged_attempts(caplog.records) == ["attempt 1 of 3"] * 7
    assert eventually(lambda: len(since(before, real_nginx.answers("plain"))) == 7)
    seen = since(before, real_nginx.answers("plain"))
    assert [seen[index][1] for index in (1, 3, 5)] == [1, 1, 1]  # after a finished reload: a new connection


def test_nginx_closing_after_a_keep_alive_answer_in_flight_at_a_reload_costs_no_retry(real_nginx, caplog):
    # The answer's head leaves before the reload and says keep-alive; the old worker closes right after the body.
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    slow = real_nginx.slow_upstream
    slow.connections = 0  # nginx's first request to it is answered at once, the second late, the rest at once
    before = real_nginx.answers("head_then_body")
    with ie.Session(CREDS, url=real_nginx.url("head_then_body"), retries=2) as session:
        assert session.edit_contact(ie.Contact(1009, name="x")).status.code == 200
        reload = threading.Timer(0.25, real_nginx.reload, kwargs={"wait": False})
        reload.start()
        assert session.edit_contact(ie.Contact(1009, name="x")).status.code == 200
        reload.join()
        assert session.edit_contact(ie.Contact(1009, name="x")).status.code == 200
    assert logged_attempts(caplog.records) == ["attempt 1 of 3"] * 3
    assert eventually(lambda: len(since(before, real_nginx.answers("head_then_body"))) == 3)
    seen = since(before, real_nginx.answers("head_then_body"))
    assert [number for _, number, _, _ in seen] == [1, 2, 1]
    assert slow.connections == 3


def test_nginx_chunked_answers_are_read_on_a_kept_connection(real_nginx, caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    before = real_nginx.answers("chunked")
    with ie.Session(CREDS, url=real_nginx.url("chunked"), retries=2) as session:
        names = [session.edit_contact(contact).contact.name for contact in named(4, "parça")]
        assert names == ["parça0", "parça1", "parça2", "parça3"]
        with pytest.raises(ie.APIError) as caught:  # an API error, chunked too, keeps the connection
            session.edit_contact(ie.Contact(4242, name="yok"))
        assert (caught.value.code, caught.value.http_status) == (465, 465)
        assert session.edit_contact(ie.Contact(1009, name="son")).contact.name == "son"
    assert eventually(lambda: len(since(before, real_nginx.answers("chunked"))) == 6)
    seen = since(before, real_nginx.answers("chunked"))
    assert [(number, status, coding) for _, number, status, coding in seen] == [
        (1, 200, "chunked"), (2, 200, "chunked"), (3, 200, "chunked"), (4, 200, "chunked"), (5, 465, "chunked"),
        (6, 200, "chunked")]
    assert logged_attempts(caplog.records) == ["attempt 1 of 3"] * 6


def test_nginx_answers_without_a_length_are_read_to_the_close(real_nginx, caplog):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    before = real_nginx.answers("until_close")
    with ie.Session(CREDS, url=real_nginx.url("until_close"), retries=2) as session:
        names = [session.edit_contact(contact).contact.name for contact in named(3, "uzun")]
    assert names == ["uzun0", "uzun1", "uzun2"]
    assert eventually(lambda: len(since(before, real_nginx.answers("until_close"))) == 3)
    seen = since(before, real_nginx.answers("until_close"))
    assert [(number, coding) for _, number, _, coding in seen] == [(1, "-")] * 3  # no length: nginx closes after each
    assert logged_attempts(caplog.records) == ["attempt 1 of 3"] * 3


@pytest.mark.parametrize("server, status, retries", [("upstream_down", 502, 2), ("upstream_slow", 504, 1)])
def test_nginx_own_html_5xx_page_is_a_response_error_and_tried_again(real_nginx, caplog, quick_backoff,
                                                                     server, status, retries):
    caplog.set_level(logging.DEBUG, logger="iletimerkezi_edit")
    before = real_nginx.answers(server)
    with pytest.raises(ie.ResponseError) as caught:
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=real_nginx.url(server), retries=retries)
    assert caught.value.http_status == status
    tries = retries + 1
    assert logged_attempts(caplog.records) == [f"attempt {number} of {tries}" for number in range(1, tries + 1)]
    assert eventually(lambda: len(since(before, real_nginx.answers(server))) == tries)
    assert [answered for _, _, answered, _ in since(before, real_nginx.answers(server))] == [status] * tries
