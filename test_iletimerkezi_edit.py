"""Tests for iletimerkezi_edit.

Everything runs offline against local servers: ``FakeService`` keeps an address
book and answers like api.iletimerkezi.com (status codes mirrored into the HTTP
status line, Turkish UTF-8 reason phrases, pretty-printed ``text/xml`` bodies);
raw sockets stand in for networks that fail.
"""

import contextlib
import dataclasses
import hmac
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
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


# ---------------------------------------------------------------------------
# A local server that behaves like api.iletimerkezi.com
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


def http_answer(status, payload, content_type="text/xml; charset=utf-8", extra=(), length=None):
    """The bytes of an answer with nginx's headers and the real server's UTF-8 Turkish reason phrase."""
    # http.server would encode the reason phrase as Latin-1; the real server sends UTF-8.
    reason = SERVER_MESSAGES.get(status, "Hata")
    head = [f"HTTP/1.1 {status} {reason}"]
    head += [
        "Server: nginx",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(payload) if length is None else length}",
        "Connection: keep-alive",
        "Cache-Control: no-store, no-cache, must-revalidate",
        "Set-Cookie: PHPSESSID=fake; path=/",
    ]
    head += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + payload


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
        self.canned = []  # (status, body, content_type, extra headers) served before the rules
        self.url = ""
        self.lock = threading.Lock()

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
        stored = self.contacts.get(int(element.findtext("id")))
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
        return 200, edited


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        service = self.server.service
        with service.lock:
            service.requests.append((self.path, dict(self.headers), body))
            status, payload, content_type, extra = service.answer(self.path, body)
        self.send_raw(status, payload, content_type, extra)

    def send_raw(self, status, payload, content_type, extra=()):
        self.wfile.write(http_answer(status, payload, content_type, extra))
        self.wfile.flush()

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def running(service, bind="127.0.0.1"):
    server = http.server.ThreadingHTTPServer((bind, 0), FakeHandler)
    server.daemon_threads = True
    server.service = service
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    service.url = f"http://{bind}:{server.server_address[1]}{PATH}"
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


@contextlib.contextmanager
def raw_server(behaviour):
    """A one-connection TCP server whose conversation is ``behaviour(connection)``."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    released = threading.Event()

    def serve():
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            behaviour(connection, released)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}{PATH}"
    finally:
        released.set()
        listener.close()
        thread.join(5)


def read_request(connection):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: *([0-9]+)", head, re.I).group(1))
    while len(body) < length:
        body += connection.recv(65536)
    return data


def unused_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


# ---------------------------------------------------------------------------
# build_request
# ---------------------------------------------------------------------------


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


def test_validation_error_is_a_value_error():
    assert issubclass(ie.ValidationError, ValueError)
    assert issubclass(ie.ValidationError, ie.IletiMerkeziError)


# ---------------------------------------------------------------------------
# parse_response
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


def test_wrong_hash_raises_authentication_error(service):
    wrong = ie.Credentials.from_secret(KEY, "another-secret")
    with pytest.raises(ie.AuthenticationError) as caught:
        ie.edit_contact(wrong, ie.Contact(1009, name="x"), url=service.url)
    assert (caught.value.code, caught.value.http_status, caught.value.message) == (401, 401, "Üyelik bilgileri hatalı")
    assert wrong.hash not in str(caught.value)


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
    with raw_server(lambda connection, released: read_request(connection)) as url:
        with pytest.raises(ie.TransportError):
            ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=url, timeout=5, retries=0)


def test_silent_server_times_out_with_a_transport_error():
    def hang(connection, released):
        read_request(connection)
        released.wait(10)

    with raw_server(hang) as url:
        started = time.monotonic()
        with pytest.raises(ie.TransportError, match="timed out"):
            ie.edit_contact(CREDS, ie.Contact(1, name="x"), url=url, timeout=0.3, retries=0)
        assert time.monotonic() - started < 5


def test_tls_failure_is_a_transport_error(service):
    https_url = service.url.replace("http://", "https://")
    with pytest.raises(ie.TransportError):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=https_url, timeout=5, retries=0)
    assert service.requests == []


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


def test_loopback_http_reaches_the_service(service):
    url = service.url.replace("127.0.0.1", "localhost")
    assert ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=url).status.code == 200


@pytest.mark.parametrize("timeout", [0, -1, "5", True, None, float("nan"), float("inf")])
def test_bad_timeouts_are_refused(service, timeout):
    with pytest.raises(ie.ValidationError, match="timeout"):
        ie.edit_contact(CREDS, ie.Contact(1009, name="x"), url=service.url, timeout=timeout)
    assert service.requests == []


def test_ssl_context_must_be_an_ssl_context():
    with pytest.raises(ie.ValidationError, match="ssl_context"):
        ie.edit_contact(CREDS, ie.Contact(1, name="x"), ssl_context="no")


def test_bad_input_sends_nothing(service):
    with pytest.raises(ie.ValidationError, match="contact.name"):
        ie.edit_contact(CREDS, ie.Contact(1009, name="a\x00b"), url=service.url)
    with pytest.raises(ie.ValidationError, match="credentials"):
        ie.edit_contact(None, ie.Contact(1009, name="x"), url=service.url)
    assert service.requests == []


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

SAMPLE_ARGS = ["--id", "1009", "--name", "API", "--surname", "Test User 2", "--email", "a@b.co",
               "--gsm", "+905056663325", "--field", "1=27/09/2024", "--field", "2=cip", "--group", "9", "--group", "12"]


def run_cli(args, env_extra=None, module=False):
    env = {name: value for name, value in os.environ.items() if not name.startswith("ILETIMERKEZI_")}
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


def test_cli_dry_run_shows_the_key_but_never_the_hash():
    code, stdout, _ = run_cli(["--dry-run", "--id", "1", "--name", "x"], CREDENTIAL_ENV)
    assert code == 0
    root = ET.fromstring(stdout.encode("utf-8"))
    assert (root.findtext("authentication/key"), root.findtext("authentication/hash")) == (KEY, "REDACTED")


def test_cli_clear_flags_send_empty_elements():
    code, stdout, _ = run_cli(["--dry-run", "--id", "1", "--name", "", "--clear-fields", "--clear-groups"])
    assert code == 0
    contact = ET.fromstring(stdout.encode("utf-8")).find("contact")
    assert [child.tag for child in contact] == ["id", "name", "custom_fields", "groups"]
    assert all(len(child) == 0 and not child.text for child in list(contact)[1:])


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
    ],
)
def test_cli_bad_usage_or_input_exits_2(args, env, named):
    code, stdout, stderr = run_cli(args, env)
    assert (code, stdout) == (2, "")
    assert named in stderr and stderr.count("\n") == 1


def test_cli_no_answer_exits_3(service):
    code, _, stderr = run_cli(["--id", "1", "--name", "x", "--url", f"http://127.0.0.1:{unused_port()}/", "--retries", "0"],
                              CREDENTIAL_ENV)
    assert code == 3 and stderr.count("\n") == 1
    service.canned.append((502, GARBAGE["html"], "text/html", ()))
    code, _, stderr = run_cli(["--id", "1", "--name", "x", "--url", service.url, "--retries", "0"], CREDENTIAL_ENV)
    assert code == 3 and "HTTP 502" in stderr


def test_main_returns_exit_codes_instead_of_exiting(capsys):
    assert ie.main(["--help"]) == 0
    assert "--dry-run" in capsys.readouterr().out
    assert ie.main(["--id", "nope"]) == 2
    assert ie.main(["--dry-run", "--id", "5", "--gsm", "+905001112233"]) == 0
    assert "<gsm>+905001112233</gsm>" in capsys.readouterr().out
