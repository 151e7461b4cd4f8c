"""Edit a contact in an iletimerkezi.com address book: ``POST /v1/edit-contact``.

One file, standard library only; copy it into a project or ``pip install`` it.

    >>> creds = Credentials.from_secret("my-api-key", "my-secret")
    >>> edit_contact(creds, Contact(1009, name="Enes", groups=[9, 12]))  # doctest: +SKIP
    Response(status=Status(code=200, message='İşlem başarılı'), contact=Contact(...))

In a request, a field left as ``None`` is not sent, so the stored value stays as
it is; ``""`` (or ``[]`` for lists) sends the element empty. ``Session`` is the
one engine: it keeps connections open, and ``edit_contact()`` is a one-shot
session. The command line edits one contact, or every record of a file (``--input``).

The file reads top to bottom in the order data flows; each section uses only those above it:

     1  constants and defaults (written once)
     2  errors, and taking secrets out of them
     3  data classes and the one field table
     4  validation
     5  XML: sign, build, parse (pure)
     6  settings: URL, proxy, timeout, TLS
     7  the wire: connection, proxy tunnel, interim answers, name lookups, deadlines
     8  retry policy and the attempt log line
     9  Session (and edit_contact), fork hooks
    10  bulk scheduler, handed session.edit_contact
    11  command line for one contact
    12  command line for files: readers, report, resume, progress

One edit: Session.edit_contact → build → attempt (wire) → parse → retry policy → back up once.
"""

from __future__ import annotations

import base64
import codecs
import collections
import contextlib
import csv
import dataclasses
import datetime
import encodings.idna  # noqa: F401  # host checks and name lookups use it: imported now, never during a fork
import functools
import hashlib
import hmac
import http.client
import io
import ipaddress
import itertools
import json
import logging
import math
import os
import posixpath
import queue
import random
import re
import shlex
import shutil
import signal
import socket
import ssl
import stat
import struct
import sys
import threading
import time
import unicodedata
import urllib.parse
import urllib.request
import weakref
import xml.etree.ElementTree as ET
import zlib
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Callable,
    Collection,
    Deque,
    Dict,
    Generator,
    Generic,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    NoReturn,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)
from xml.parsers import expat

if TYPE_CHECKING:  # imported where the command line needs them (8 ms each): a library user never pays for them
    import argparse

__all__ = [
    "__version__",
    "API_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_RETRIES",
    "DEFAULT_WORKERS",
    "IletiMerkeziError",
    "ValidationError",
    "APIError",
    "AuthenticationError",
    "TransportError",
    "ProxyError",
    "ResponseError",
    "Credentials",
    "CustomField",
    "Contact",
    "Status",
    "Response",
    "Result",
    "sign",
    "build_request",
    "parse_response",
    "edit_contact",
    "Session",
    "main",
]

__version__ = "0.1.0"

# ---------------------------------------------------------------------------
# 1. Constants and defaults
# ---------------------------------------------------------------------------

API_URL = "https://api.iletimerkezi.com/v1/edit-contact"
DEFAULT_TIMEOUT = 30.0  # seconds one attempt may take, connect to last byte
DEFAULT_RETRIES = 2  # tries after the first, for what the retry policy retries
DEFAULT_WORKERS = 4  # edits at once in a bulk run from the command line
_WINDOW_PER_WORKER = 4  # contacts a bulk run holds at once, per worker

_CONTENT_TYPE = "text/xml; charset=utf-8"
_USER_AGENT = "iletimerkezi_edit/" + __version__
_MAX_RESPONSE_BYTES = 1 << 20  # real answers are under 2 KiB
_READ_SIZE = 1 << 16
_MAX_ID = 2**63 - 1
_MAX_TIMEOUT = 86400.0  # a day; far beyond any real attempt, and within what every platform's timers hold
_MAX_INTERIM_ANSWERS = 1000  # 1xx answers skipped before the final one; the deadline bounds them anyway
_MAX_DEPTH = 16  # elements nested in an answer; real ones nest five
_MAX_ELEMENTS = 20_000  # elements in an answer; real ones have some dozens

# The provider's own tools read the first pair; this module's earlier names are read too.
_ENV_API_KEY = "ILETIMERKEZI_API_KEY"
_ENV_API_HASH = "ILETIMERKEZI_API_HASH"
_ENV_KEY = "ILETIMERKEZI_KEY"
_ENV_SECRET = "ILETIMERKEZI_SECRET"
_ENV_HASH = "ILETIMERKEZI_HASH"
_REDACTED = "REDACTED"  # stands for the hash wherever it could be seen

_SUCCESS = 200
_UNAUTHORIZED = 401
_UNAVAILABLE = 503

_log = logging.getLogger("iletimerkezi_edit")
_log.addHandler(logging.NullHandler())
# Request and answer bodies hold personal data (names, phone numbers, e-mail addresses), so they go to a logger
# of their own, which logs only once its own level is set to DEBUG: a level it inherits (a root logger at DEBUG,
# as AWS Lambda sets it, or "iletimerkezi_edit" at DEBUG) never turns it on. See _RetryPolicy.bodies_wanted().
_body_log = logging.getLogger("iletimerkezi_edit.bodies")
_BODY_LOG_LIMIT = 4096  # characters of an answer body in one log line; real answers are under 2 KiB

# Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ASCII_DIGITS = re.compile("[0-9]+")
_HEX_SHA256 = re.compile("[0-9a-fA-F]{64}")
_URL_FORBIDDEN = re.compile("[\x00-\x20\x7f]")
_HOST_NAME = re.compile("[A-Za-z0-9.:-]+")  # a name, an IPv4 address, or an IPv6 one (its brackets taken off)

_ACCEPTED_ENCODINGS = ("utf-8", "us-ascii")  # what an answer may declare; it is read as UTF-8 whatever it says

# ---------------------------------------------------------------------------
# 2. Errors, and taking secrets out of them
# ---------------------------------------------------------------------------
#
#     IletiMerkeziError             anything this module raises on purpose
#     ├── ValidationError           bad input or settings: nothing was sent; fix the named field (a ValueError)
#     ├── APIError                  the API refused (.code): fix the edit; 503 is retried
#     │   └── AuthenticationError   401: API access off in the panel, an IP not allowed, or a wrong key or hash
#     ├── TransportError            no answer: the edit may or may not have been applied; send it again
#     │   └── ProxyError            the proxy refused the tunnel (.status); 4xx: check its user and password
#     └── ResponseError             an answer that is not a response document about this contact

# English for every status code the provider documents for this call and its
# siblings; the server's own message (Turkish) travels beside it.
_DESCRIPTIONS: Dict[int, str] = {
    200: "success",
    400: "the request XML could not be parsed (bad tag, unclosed tag or unescaped character)",
    401: "API access is not allowed in the panel (Settings → Security → Access Permissions → \"Allow API access\"), "
    "the call came from an IP address the account does not allow, or the key or hash is wrong",
    404: "no such API method: check the URL",
    463: "a group id does not exist",
    465: "contact not found",
    466: "the phone number is invalid",
    472: "at least one of name, surname, gsm and email must be filled",
    473: "custom field not found",
    503: "the service is temporarily unavailable; try again later",
}
_GENERIC_DESCRIPTION = "the API refused the request (status code not documented by the provider)"


class IletiMerkeziError(Exception):
    """Base class of every error this module raises on purpose."""


class ValidationError(IletiMerkeziError, ValueError):
    """Input was rejected before anything was sent; the message names the field or setting."""


class APIError(IletiMerkeziError):
    """The API answered with a status code other than 200.

    ``code`` is the status code from the body, ``message`` the server's own
    (Turkish) text, ``description`` an English explanation, and
    ``http_status`` the HTTP status of the answer (``None`` when unknown).
    """

    def __init__(self, code: int, message: str, http_status: Optional[int] = None) -> None:
        self.code = code
        self.message = message
        self.description = _DESCRIPTIONS.get(code, _GENERIC_DESCRIPTION)
        self.http_status = http_status
        super().__init__(f"{code} {message} ({self.description})" if message else f"{code} ({self.description})")

    def __reduce__(self) -> Tuple[Any, ...]:  # pickled whole, so that it crosses multiprocessing
        return type(self), (self.code, self.message, self.http_status)


class AuthenticationError(APIError):
    """Status 401. Three causes, the first the most common: "Allow API access" is off in the panel (Settings →
    Security → Access Permissions), the call came from an IP address the account does not allow, or the key or
    hash is wrong."""


class TransportError(IletiMerkeziError):
    """No answer arrived: connection refused or reset, DNS or TLS failure, timeout.

    The server may still apply an edit whose answer never came: send it again.
    """


class ProxyError(TransportError):
    """The proxy refused to open a tunnel to the API: its answer to ``CONNECT`` was not 2xx.

    ``proxy`` is the proxy's ``host:port`` and ``status`` the HTTP status it
    answered. A 4xx (407, 401, 403: check the proxy's user and password) is not
    tried again; a 5xx is, like any missing answer.
    """

    def __init__(self, proxy: str, status: int, reason: str, target: str) -> None:
        self.proxy = proxy
        self.status = status
        # ``reason`` is not shown: the standard phrase is, since a proxy may repeat the credentials in its own.
        self._reason_and_target = (http.client.responses.get(status, ""), target)
        super().__init__(f"proxy {proxy} refused the tunnel to {target}: HTTP {status} "
                         f"{self._reason_and_target[0]}".rstrip())

    def __reduce__(self) -> Tuple[Any, ...]:
        return type(self), (self.proxy, self.status, *self._reason_and_target)


class ResponseError(IletiMerkeziError):
    """An answer arrived but is not a valid response document.

    ``http_status`` is the HTTP status of that answer (``None`` when unknown).
    """

    def __init__(self, message: str, http_status: Optional[int] = None) -> None:
        self.http_status = http_status
        self._message = message
        super().__init__(message if http_status is None else f"{message} (HTTP {http_status})")

    def __reduce__(self) -> Tuple[Any, ...]:
        return type(self), (self._message, self.http_status)


def _forget_locals(error: BaseException) -> None:
    """Clear the local variables of the finished frames that ``error`` and the errors chained to it passed through.

    A traceback keeps its frames alive, and debuggers, ``pytest --showlocals``, Sentry and Django's debug page
    show their locals: there the request, with its hash, and an answer that may echo it. The lines stay.
    """
    pending: List[BaseException] = [error]
    seen: Set[int] = set()
    while pending:
        link = pending.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        trace = link.__traceback__
        while trace is not None:
            with contextlib.suppress(RuntimeError):  # a frame still running (the caller's) keeps its own
                trace.tb_frame.clear()
            trace = trace.tb_next
        pending += [chained for chained in (link.__cause__, link.__context__) if chained is not None]


def _redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = re.sub(re.escape(secret), _REDACTED, text, flags=re.IGNORECASE)
    return text


def _scrub(error: BaseException, *secrets: str) -> None:
    """Take ``secrets`` out of ``error`` and cut off any cause that carries one (a server may echo the request)."""
    error.args = tuple(_redact(arg, *secrets) if isinstance(arg, str) else arg for arg in error.args)
    for name, value in list(vars(error).items()):  # .message, and what pickling rebuilds the error from
        if isinstance(value, str):
            setattr(error, name, _redact(value, *secrets))
        elif isinstance(value, tuple):
            setattr(error, name, tuple(_redact(item, *secrets) if isinstance(item, str) else item for item in value))
    linked = error.__cause__ or error.__context__
    while linked is not None:
        shown = f"{linked!s} {linked!r} {linked.args!r}".lower()
        if any(secret and secret.lower() in shown for secret in secrets):
            error.__cause__ = error.__context__ = None
            error.__suppress_context__ = True
            return
        linked = linked.__cause__ or linked.__context__

# ---------------------------------------------------------------------------
# 3. Data classes, one per XML element, and the one field table
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Credentials:
    """An API key and its hash. ``repr`` and ``str`` show the key, never the hash."""

    key: str
    hash: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        _check_key(self.key, "Credentials.key")
        # The server compares lowercase hex: a hash copied in upper case is the same hash.
        object.__setattr__(self, "hash", _check_hash(self.hash, "Credentials.hash").lower())

    @classmethod
    def from_secret(cls, key: str, secret: str) -> Credentials:
        """Credentials for ``key``, with the hash computed from ``secret``."""
        return cls(key, sign(key, secret))

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Credentials:
        """Read the provider's ``ILETIMERKEZI_API_KEY`` and ``ILETIMERKEZI_API_HASH``, or ``ILETIMERKEZI_KEY``
        with ``ILETIMERKEZI_SECRET`` or ``ILETIMERKEZI_HASH``.

        ``environ`` defaults to ``os.environ``. A missing or malformed variable
        raises ``ValidationError`` naming it, never its value. Variables of both
        kinds may be set only when they agree: one key, one hash (a secret must
        sign to it).
        """
        try:
            return cls(*_read_credentials(os.environ if environ is None else environ))
        except ValidationError as error:
            _forget_locals(error)  # the frames that read the secret keep no trace of it
            raise


@dataclasses.dataclass
class CustomField:
    """A ``<custom_field>``: the id of a custom field and the contact's value for it."""

    id: int
    value: str


@dataclasses.dataclass
class Contact:
    """A ``<contact>``.

    In a request, ``None`` means "do not send this element" (leave the stored
    value as it is) and ``""`` / ``[]`` means "send it empty". In a parsed
    response, a missing element is ``None`` and an empty one ``""`` / ``[]``.
    """

    id: int
    name: Optional[str] = None
    surname: Optional[str] = None
    email: Optional[str] = None
    gsm: Optional[str] = None
    custom_fields: Optional[List[CustomField]] = None
    groups: Optional[List[int]] = None


@dataclasses.dataclass(frozen=True)
class Status:
    """A ``<status>``: the API's status code and its (Turkish) message."""

    code: int
    message: str


@dataclasses.dataclass(frozen=True)
class Response:
    """A successful ``<response>``: its status and the contact as stored after the edit."""

    status: Status
    contact: Optional[Contact]


Result = Union[Response, IletiMerkeziError]  # what one edit of a bulk run ended with


class _Field(NamedTuple):
    """An optional element of ``<contact>``, by one name everywhere: the ``Contact`` attribute, the XML tag,
    the CSV column and JSON Lines key, the command line option (``--name``) and the ``--json`` key."""

    name: str
    kind: str  # "text", or one of the two lists: "custom_fields", "groups"
    help: str = ""  # the command line option's help, for a text field
    cdata: bool = False  # sent as CDATA, as the provider documents it for this element


# The one table of Contact's optional fields: the builder, the parser, the readers and the command line read it.
# A new text field is the dataclass attribute and a row here.
_FIELDS = (
    _Field("name", "text", "new name", cdata=True),
    _Field("surname", "text", "new surname", cdata=True),
    _Field("email", "text", "new e-mail address", cdata=True),
    _Field("gsm", "text", "new mobile number, e.g. +905056663325"),
    _Field("custom_fields", "custom_fields"),
    _Field("groups", "groups"),
)
_TEXT_FIELDS = tuple(field for field in _FIELDS if field.kind == "text")

# ---------------------------------------------------------------------------
# 4. Validation: the checks shared by the data classes, the builder, the settings and the command line
# ---------------------------------------------------------------------------


def _read_credentials(env: Mapping[str, str]) -> Tuple[str, str]:
    """The key and the hash that ``env`` holds, checked (see ``Credentials.from_env``)."""
    key = _agreed_key(env)
    hashes: List[Tuple[str, str]] = []  # where each hash came from, and the hash
    secret = env.get(_ENV_SECRET)
    if secret:
        hashes.append((f"the hash of the key under {_ENV_SECRET}", sign(key, _check_utf8(secret, _ENV_SECRET))))
    hashes += [(name, _check_hash(env[name], name).lower()) for name in (_ENV_API_HASH, _ENV_HASH) if env.get(name)]
    if not hashes:
        raise ValidationError(
            f"environment variable {_ENV_API_HASH} (or {_ENV_SECRET} or {_ENV_HASH}) is not set"
        )
    (first_source, first), *others = hashes
    for name, other in others:
        if not hmac.compare_digest(first, other):
            raise ValidationError(f"{name} does not match {first_source}; set only one of them")
    return key, first


def _agreed_key(env: Mapping[str, str]) -> str:
    keys = [(name, _check_key(env[name], name)) for name in (_ENV_API_KEY, _ENV_KEY) if env.get(name)]
    if not keys:
        raise ValidationError(f"environment variable {_ENV_API_KEY} (or {_ENV_KEY}) is not set")
    if len(keys) == 2 and keys[0][1] != keys[1][1]:
        raise ValidationError(f"{_ENV_API_KEY} and {_ENV_KEY} hold different keys; set only one of them")
    return keys[0][1]


def _check_credentials(value: object) -> Credentials:
    if not isinstance(value, Credentials):
        raise ValidationError(f"credentials must be a Credentials, got {type(value).__name__}")
    return value


def _check_str(value: object, where: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{where} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ValidationError(f"{where} must not be empty")
    return value


def _check_utf8(text: str, where: str) -> str:
    # Never echo the value: it may be the secret.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            f"{where} cannot be encoded as UTF-8: was it set from bytes in another encoding (such as cp1254)?"
        ) from None
    return text


def _check_text(value: object, where: str) -> str:
    """A string that XML 1.0 can carry, character for character."""
    text = _check_str(value, where)
    bad = _NOT_XML_CHAR.search(text)
    if bad:
        raise ValidationError(
            f"{where}: character U+{ord(bad.group()):04X} at index {bad.start()} cannot be sent in XML"
        )
    return text


def _check_key(value: object, where: str) -> str:
    key = _check_text(_check_str(value, where, allow_empty=False), where)
    if key != key.strip():
        raise ValidationError(f"{where} has leading or trailing white space")
    return key


def _check_hash(value: object, where: str) -> str:
    # Never echo the value: the hash is as good as a password.
    hash_ = _check_str(value, where, allow_empty=False)
    if not _HEX_SHA256.fullmatch(hash_):
        raise ValidationError(
            f"{where} must be 64 hexadecimal characters (an HMAC-SHA256), got {len(hash_)} characters"
        )
    return hash_


def _check_id(value: object, where: str) -> int:
    """A positive integer: any integer type (``int``, ``numpy.int64``: what has ``__index__``) but ``bool``,
    or a string of ASCII digits."""
    number: Optional[int] = None
    if isinstance(value, str):
        if len(value) <= 19 and _ASCII_DIGITS.fullmatch(value):
            number = int(value)
    elif not isinstance(value, bool) and type(value).__name__ != "bool_":  # numpy 1.x's bool_ has __index__
        index = getattr(type(value), "__index__", None)  # floats and the rest have none
        with contextlib.suppress(Exception):  # some raise from it
            # Called directly: operator.index would quietly turn a bool it returned into 1.
            found = None if index is None else index(value)
            number = int(found) if isinstance(found, int) and not isinstance(found, bool) else None
    if number is None or not 0 < number <= _MAX_ID:
        raise ValidationError(f"{where} must be a positive integer, got {_shown(value)}")
    return number


def _shown(value: object) -> str:
    """A short ``repr`` for an error message, whatever ``value`` is (a huge int, a deeply nested list)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:  # RecursionError, a repr that raises
        return f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _check_list(value: object, where: str) -> Sequence[Any]:
    if not isinstance(value, (list, tuple)):
        raise ValidationError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _check_count(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValidationError(f"{name} must be a whole number, {least} or more, got {_shown(value)}")
    return value


def _contact_key(contact: object) -> Optional[int]:
    """The contact id that orders edits of one contact, or ``None`` for a contact that cannot be sent at all."""
    if not isinstance(contact, Contact):
        return None
    try:
        return _check_id(contact.id, "contact.id")
    except ValidationError:
        return None

# ---------------------------------------------------------------------------
# 5. XML: sign, build, parse (pure)
# ---------------------------------------------------------------------------


def sign(key: str, secret: str) -> str:
    """Return the request hash: lowercase hex HMAC-SHA256 of ``key`` under ``secret``, both UTF-8."""
    _check_utf8(_check_str(key, "key", allow_empty=False), "key")
    _check_utf8(_check_str(secret, "secret", allow_empty=False), "secret")
    return hmac.new(secret.encode("utf-8"), key.encode("utf-8"), hashlib.sha256).hexdigest()


def build_request(credentials: Credentials, contact: Contact) -> bytes:
    """Return the UTF-8 XML request document that edits ``contact``.

    Every value is checked first; anything that cannot be sent exactly as given
    raises ``ValidationError`` naming the field.
    """
    return _render_request(_check_credentials(credentials).key, contact, credentials)[1]


def parse_response(body: bytes, http_status: Optional[int] = None) -> Response:
    """Parse a response document; return it on status code 200, raise ``APIError`` otherwise.

    ``http_status`` is the HTTP status the document arrived with, if known; it
    is attached to errors, and a success body under a non-2xx status is refused.
    A body that is not a ``<response>`` with a numeric status code raises
    ``ResponseError``.
    """
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
    root = _parse_xml(bytes(body), http_status)
    if root.tag != "response":
        raise ResponseError(f"root element is <{root.tag}>, expected <response>", http_status)
    status = _parse_status(root, http_status)
    if status.code != _SUCCESS:
        error_class = AuthenticationError if status.code == _UNAUTHORIZED else APIError
        raise error_class(status.code, status.message, http_status)
    if http_status is not None and not 200 <= http_status < 300:
        raise ResponseError("the body reports success but the HTTP status does not", http_status)
    contact_element = root.find("contact")
    contact = None if contact_element is None else _parse_contact(contact_element, http_status)
    return Response(status, contact)


# -- building ----------------------------------------------------------------


def _escape(text: str) -> str:
    # ">" too, so that "]]>" never appears in character data; CR as a reference
    # because parsers turn a raw CR (and CRLF) into LF.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _cdata(text: str) -> str:
    """CDATA sections carrying ``text`` exactly: "]]>" split across two, CR as a reference between."""
    pieces = []
    for index, chunk in enumerate(text.split("\r")):
        if index:
            pieces.append("&#13;")
        if chunk:
            pieces.append("<![CDATA[" + chunk.replace("]]>", "]]]]><![CDATA[>") + "]]>")
    return "".join(pieces)


def _render_request(key: str, contact: Contact, credentials: Optional[Credentials]) -> Tuple[int, bytes]:
    """The contact's id, checked, and the request document; ``None`` for ``credentials`` writes ``REDACTED``
    in place of the hash.

    The contact is checked and written first, so that no frame holds the hash when a bad value raises.
    """
    if not isinstance(contact, Contact):
        raise ValidationError(f"contact must be a Contact, got {type(contact).__name__}")
    contact_id = _check_id(contact.id, "contact.id")
    lines = ["  <contact>", f"    <id>{contact_id}</id>"]
    for field in _FIELDS:
        value = getattr(contact, field.name)
        if value is not None:
            lines += _FIELD_RENDERERS[field.kind](field, value)
    lines += ["  </contact>", "</request>", ""]
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<request>\n  <authentication>\n    <key>{_escape(key)}</key>\n'
    # Nothing below can raise: the hash goes straight into the returned bytes.
    return contact_id, (
        head
        + f"    <hash>{_REDACTED if credentials is None else credentials.hash}</hash>\n  </authentication>\n"
        + "\n".join(lines)
    ).encode("utf-8")


def _render_text(field: _Field, value: object) -> List[str]:
    text = _check_text(value, "contact." + field.name)
    return [f"    <{field.name}>{_cdata(text) if field.cdata else _escape(text)}</{field.name}>"]


def _render_custom_fields(_: _Field, custom_fields: object) -> List[str]:
    children: List[str] = []
    seen: Set[int] = set()
    for index, field in enumerate(_check_list(custom_fields, "contact.custom_fields")):
        where = f"contact.custom_fields[{index}]"
        if not isinstance(field, CustomField):
            raise ValidationError(f"{where} must be a CustomField, got {type(field).__name__}")
        field_id = _unique_id(field.id, where + ".id", seen, "custom field")
        value = _escape(_check_text(field.value, where + ".value"))
        children += [
            "      <custom_field>",
            f"        <id>{field_id}</id>",
            f"        <value>{value}</value>",
            "      </custom_field>",
        ]
    return _wrapped("custom_fields", children)


def _render_groups(_: _Field, groups: object) -> List[str]:
    seen: Set[int] = set()
    children = [
        f"      <id>{_unique_id(group, f'contact.groups[{index}]', seen, 'group')}</id>"
        for index, group in enumerate(_check_list(groups, "contact.groups"))
    ]
    return _wrapped("groups", children)


_FIELD_RENDERERS: Dict[str, Callable[[_Field, object], List[str]]] = {
    "text": _render_text,
    "custom_fields": _render_custom_fields,
    "groups": _render_groups,
}


def _unique_id(value: object, where: str, seen: Set[int], kind: str) -> int:
    # The same id twice would leave it to the server which value wins.
    number = _check_id(value, where)
    if number in seen:
        raise ValidationError(f"{where}: {kind} {number} is given more than once")
    seen.add(number)
    return number


def _wrapped(tag: str, children: List[str]) -> List[str]:
    if not children:
        return [f"    <{tag}></{tag}>"]
    return [f"    <{tag}>", *children, f"    </{tag}>"]


# -- parsing -----------------------------------------------------------------


def _expat_refusing_dtds(refuse: Callable[..., NoReturn], encoding: Optional[str] = None) -> expat.XMLParserType:
    """An expat parser that calls ``refuse`` where a DTD begins, before any internal subset: nothing is ever
    declared, so no expat version expands an entity, and no scan of ours can be slower than the parse."""
    parser = expat.ParserCreate(encoding)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.buffer_text = True
    return parser


class _BoundedTreeBuilder:
    """Expat's handlers for an answer: the element tree, refusing any DTD (see ``_expat_refusing_dtds``), a
    declared encoding other than UTF-8, and more elements or deeper nesting than an answer has."""

    def __init__(self, http_status: Optional[int]) -> None:
        self._http_status = http_status
        self._builder = ET.TreeBuilder()
        self._depth = self._elements = 0

    def parse(self, body: bytes) -> ET.Element:
        parser = _expat_refusing_dtds(self._refuse_dtd, "utf-8")  # UTF-8 whatever the answer declares
        parser.XmlDeclHandler = self._check_declaration
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._builder.data
        try:
            parser.Parse(body, True)
        except expat.ExpatError as exc:
            raise ResponseError(f"the response is not well-formed XML: {exc}", self._http_status) from None
        return self._builder.close()

    def _refuse_dtd(self, *_: object) -> NoReturn:
        raise ResponseError("the response contains a DTD (<!DOCTYPE or <!ENTITY>), which is refused",
                            self._http_status)

    def _check_declaration(self, version: str, encoding: Optional[str], standalone: int) -> None:
        if encoding is not None and encoding.lower() not in _ACCEPTED_ENCODINGS:
            raise ResponseError(f"the response declares encoding {encoding[:40]!r}; only UTF-8 is accepted",
                                self._http_status)

    def _start(self, tag: str, attributes: Dict[str, str]) -> None:
        # A real answer has some dozens of elements, five deep. A hostile megabyte of them 300,000 deep,
        # or 260,000 side by side, would take the best part of a second to build and free.
        self._depth += 1
        self._elements += 1
        if self._depth > _MAX_DEPTH or self._elements > _MAX_ELEMENTS:
            raise ResponseError(
                f"the response has more than {_MAX_ELEMENTS} elements or nests them deeper than {_MAX_DEPTH}",
                self._http_status,
            )
        self._builder.start(tag, attributes)

    def _end(self, tag: str) -> None:
        self._depth -= 1
        self._builder.end(tag)


def _parse_xml(body: bytes, http_status: Optional[int]) -> ET.Element:
    """The element tree of ``body``, read by expat as UTF-8 (see ``_BoundedTreeBuilder``)."""
    if not body.strip():
        raise ResponseError("the response body is empty", http_status)
    if b"\x00" in body:  # every UTF-16 or UTF-32 document has them; UTF-8 XML never does
        raise ResponseError("the response contains a NUL byte; only UTF-8 is accepted", http_status)
    return _BoundedTreeBuilder(http_status).parse(body)


def _parse_number(text: Optional[str], where: str, http_status: Optional[int]) -> int:
    if text is None:
        raise ResponseError(f"{where} is missing from the response", http_status)
    digits = text.strip()
    if not _ASCII_DIGITS.fullmatch(digits):
        raise ResponseError(f"{where} in the response is not a number", http_status)
    if len(digits) > 19 or int(digits) > _MAX_ID:
        raise ResponseError(f"{where} in the response is too large", http_status)
    return int(digits)


def _parse_status(root: ET.Element, http_status: Optional[int]) -> Status:
    status = root.find("status")
    if status is None:
        raise ResponseError("the response has no <status>", http_status)
    code = _parse_number(status.findtext("code"), "<status><code>", http_status)
    return Status(code, (status.findtext("message") or "").strip())


def _parse_contact(element: ET.Element, http_status: Optional[int]) -> Contact:
    values: Dict[str, Any] = {}
    for field in _FIELDS:
        child = element.find(field.name)
        if child is not None:
            values[field.name] = _FIELD_PARSERS[field.kind](child, http_status)
    return Contact(_parse_number(element.findtext("id"), "<contact><id>", http_status), **values)


def _parse_text(element: ET.Element, http_status: Optional[int]) -> str:
    return element.text or ""


def _parse_custom_fields(element: ET.Element, http_status: Optional[int]) -> List[CustomField]:
    return [
        CustomField(_parse_number(field.findtext("id"), "<custom_field><id>", http_status),
                    field.findtext("value") or "")
        for field in element.findall("custom_field")
    ]


def _parse_groups(element: ET.Element, http_status: Optional[int]) -> List[int]:
    return [_parse_number(group.text, "<groups><id>", http_status) for group in element.findall("id")]


_FIELD_PARSERS: Dict[str, Callable[[ET.Element, Optional[int]], Any]] = {
    "text": _parse_text,
    "custom_fields": _parse_custom_fields,
    "groups": _parse_groups,
}

# ---------------------------------------------------------------------------
# 6. Settings: URL, proxy, timeout, TLS
# ---------------------------------------------------------------------------


class _Endpoint(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str
    netloc: str  # host and port as the URL wrote them: what urllib.request.proxy_bypass is given

    def __str__(self) -> str:
        return f"{self._bracketed_host}:{self.port}"

    @property
    def _bracketed_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"

    @property
    def host_header(self) -> str:
        default_port = 443 if self.scheme == "https" else 80
        return self._bracketed_host if self.port == default_port else str(self)


class _Proxy:
    """An HTTP proxy to tunnel through; ``repr`` and ``str`` show ``host:port``, never its credentials."""

    __slots__ = ("_authorization", "host", "port", "secrets")

    def __init__(self, host: str, port: int, user: Optional[str], password: Optional[str], written: str) -> None:
        self.host = host
        self.port = port
        self._authorization: Optional[str] = None
        # Every form the credentials can be seen in, to take out of whatever a proxy answers: the password as
        # decoded, as written in the URL, percent-encoded ("/" too or not, a blank as %20 or +), its UTF-8 bytes
        # read as Latin-1 (as http.client reads a status line), and the base64 of "user:password" sent on the
        # wire, padding or none.
        self.secrets: Tuple[str, ...] = ()
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._authorization = "Basic " + token
            plain = password or ""
            encoded = [quote(plain, safe=safe) for quote in (urllib.parse.quote, urllib.parse.quote_plus)
                       for safe in ("", "/")]
            forms = (password, written, *encoded, plain.encode().decode("latin-1"), token.rstrip("="))
            self.secrets = tuple(sorted({form for form in forms if form}, key=len, reverse=True))

    def __str__(self) -> str:
        return str(_Endpoint("http", self.host, self.port, "/", ""))

    def __repr__(self) -> str:
        return f"<proxy {self}>"

    def connect_request(self, target: _Endpoint) -> bytes:
        # Proxy-Authorization goes on the CONNECT only: what follows is TLS to the target.
        authorization = "" if self._authorization is None else f"Proxy-Authorization: {self._authorization}\r\n"
        return (
            f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{authorization}User-Agent: {_USER_AGENT}\r\n\r\n"
        ).encode("ascii")


class _Settings(NamedTuple):
    """What ``edit_contact`` and ``Session`` are given besides credentials, checked."""

    endpoint: _Endpoint
    timeout: float
    retries: int
    context: Optional[ssl.SSLContext]  # None for http://
    proxy: Optional[_Proxy]  # used when proxy_from_environment is False; None: connect directly
    proxy_from_environment: bool


def _check_settings(url: object, timeout: object, retries: object, ssl_context: object, proxy: object) -> _Settings:
    endpoint = _parse_url(url)
    checked_timeout = _check_timeout(timeout)
    checked_retries = _check_count(retries, "retries", 0)
    context = _tls_context(ssl_context) if endpoint.scheme == "https" else None
    checked_proxy = None if proxy is None else _parse_proxy(proxy, "proxy")
    return _Settings(endpoint, checked_timeout, checked_retries, context, checked_proxy, proxy is None)


def _parse_url(url: object) -> _Endpoint:
    text = _check_str(url, "url", allow_empty=False)
    if _URL_FORBIDDEN.search(text):
        raise ValidationError("url must not contain white space or control characters")
    if not text.isascii():
        raise ValidationError("url must be ASCII: percent-encode the path, use the xn-- form of the host")
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError as exc:  # e.g. an unclosed "[" around an IPv6 address
        raise ValidationError(f"url is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise ValidationError(f"url must start with https://, got {text[:40]!r}")
    host = _check_host(parts.hostname, "url")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("url must not contain a user name or password")
    port = _check_port(parts, "url", 443 if scheme == "https" else 80)
    if scheme == "http" and not _is_loopback(host):
        raise ValidationError("url must use https://; plain http:// is allowed only for localhost, 127.0.0.0/8 and ::1")
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return _Endpoint(scheme, host, port, path, parts.netloc)


def _check_host(host: Optional[str], where: str) -> str:
    if not host:
        raise ValidationError(f"{where} has no host")
    try:
        host.encode("idna")
    except UnicodeError:
        raise ValidationError(f"{where} host is not a valid host name: {host[:40]!r}") from None
    return host


def _check_port(parts: Any, where: str, default: int) -> int:
    try:
        port: Optional[int] = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is not None and not parts.netloc.endswith(f":{port}")):  # "+80", "٨٠", "080"
        raise ValidationError(f"{where} has an invalid port")
    return default if port is None else port


def _parse_proxy(value: object, where: str) -> Optional[_Proxy]:
    """``http://[user:password@]host[:port]`` (``http://`` may be left out) as a ``_Proxy``; ``""`` is no proxy.

    Errors name ``where`` and never echo the value, which may hold a password.
    """
    text = _check_str(value, where)
    if not text:
        return None
    if _URL_FORBIDDEN.search(text):
        raise ValidationError(f"{where} must not contain white space or control characters")
    if "://" not in text:
        text = "http://" + text  # as curl and requests read "proxy:3128"
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        raise ValidationError(f"{where} is malformed; expected http://[user:password@]host:port") from None
    _check_proxy_scheme(parts.scheme.lower(), where)
    host = _check_host(parts.hostname, where)
    if not _HOST_NAME.fullmatch(host):
        raise ValidationError(f"{where} host must be a host name or an IP address (ASCII: use the xn-- form)")
    port = _check_port(parts, where, 80)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValidationError(f"{where} must be http://[user:password@]host:port, without a path")
    try:  # %E9 alone is no UTF-8: a password sent otherwise than written would only be refused, again and again
        user = None if parts.username is None else urllib.parse.unquote(parts.username, errors="strict")
        password = None if parts.password is None else urllib.parse.unquote(parts.password, errors="strict")
    except UnicodeDecodeError:
        raise ValidationError(f"{where} has a user name or password that is not UTF-8 once percent-decoded") from None
    if user is not None and (":" in user or _NOT_XML_CHAR.search(user + (password or ""))):
        raise ValidationError(f"{where} has a user name or password that cannot be sent")
    return _Proxy(host, port, user, password, parts.password or "")


def _check_proxy_scheme(scheme: str, where: str) -> None:
    if scheme == "https":
        # urllib.request would speak plain TCP to it and send the CONNECT in clear text.
        raise ValidationError(
            f"{where}: https:// proxies are not supported; use http://host:port "
            "(the tunnel through it is TLS from end to end)"
        )
    if scheme != "http":
        raise ValidationError(f"{where} must start with http://, got scheme {scheme[:20]!r}")


def _environment_proxy(endpoint: _Endpoint) -> Optional[_Proxy]:
    """The proxy that ``urllib.request`` would use for ``endpoint`` (``https_proxy``, ``no_proxy`` and the rest),
    where ``no_proxy`` may also name CIDR ranges, as curl and requests read it."""
    found = urllib.request.getproxies().get(endpoint.scheme)
    if not found or urllib.request.proxy_bypass(endpoint.netloc) or _in_no_proxy_range(endpoint.host):
        return None
    return _parse_proxy(found, f"the {endpoint.scheme}_proxy environment variable")


def _in_no_proxy_range(host: str) -> bool:
    """Whether ``host``, an IP address, is in ``no_proxy`` as a range (``10.0.0.0/8``, ``fd00::/8``) or itself."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: ranges are for addresses, and a name is never looked up to match one
    for entry in urllib.request.getproxies_environment().get("no", "").split(","):
        with contextlib.suppress(ValueError):  # a name: urllib has matched it already
            if address in ipaddress.ip_network(entry.strip().strip("[]"), strict=False):
                return True  # a range, or one address (urllib misses "::1" against the URL's "[::1]")
    return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= _MAX_TIMEOUT:
        raise ValidationError(f"timeout must be a number of seconds above 0 and at most {_MAX_TIMEOUT:g}, "
                              f"got {_shown(timeout)}")
    return float(timeout)


def _tls_context(ssl_context: object) -> ssl.SSLContext:
    if ssl_context is None:
        return _default_ssl_context()
    if not isinstance(ssl_context, ssl.SSLContext):
        raise ValidationError(f"ssl_context must be an ssl.SSLContext, got {type(ssl_context).__name__}")
    return ssl_context


_default_context: List[ssl.SSLContext] = []  # made once: loading the system's CA certificates takes milliseconds
# Held while that load runs: OpenSSL's own locks are not fork-safe, so a fork waits for it (see _before_fork).
_tls_setup = threading.Lock()


def _default_ssl_context() -> ssl.SSLContext:
    with _tls_setup:
        if not _default_context:
            _default_context.append(ssl.create_default_context())
        return _default_context[0]

# ---------------------------------------------------------------------------
# 7. The wire: connection, proxy tunnel, interim answers, name lookups, deadlines
# ---------------------------------------------------------------------------
#
# The standard library does most of the work: urllib.request finds the proxy,
# http.client reads every answer, ssl does TLS. What is our own is what it cannot
# do for a guarantee of this module: http.client.HTTPConnection gives each address
# and each read the whole timeout and looks names up without any (so it cannot
# bound an attempt as a whole), answers a 1xx other than 100 as if it were final,
# and reports a proxy's refusal of CONNECT only as the text of an OSError (so no
# status to decide on retries). So connecting, the CONNECT and the request are
# written here, each against one deadline.

# nginx, the real server, closes a kept-alive connection after 75 s idle by default;
# one idle longer than this is not reused, so that a send seldom races that close.
# Idle time is wall-clock time: the server's clock runs on while this process is
# frozen (a Lambda function between invocations), which time.monotonic() may not count.
_IDLE_LIMIT = 60.0


def _request_head(endpoint: _Endpoint, length: int, *, keep_alive: bool) -> bytes:
    # Every part is checked ASCII without white space by _parse_url.
    return (
        f"POST {endpoint.path} HTTP/1.1\r\n"
        f"Host: {endpoint.host_header}\r\n"
        f"Content-Type: {_CONTENT_TYPE}\r\n"
        f"Content-Length: {length}\r\n"
        "Accept: text/xml\r\n"
        "Accept-Encoding: identity\r\n"
        f"User-Agent: {_USER_AGENT}\r\n"
        + ("" if keep_alive else "Connection: close\r\n")  # HTTP/1.1 keeps connections open unless told
        + "\r\n"
    ).encode("ascii")


class _Request:
    """A request ready to send: head and body. ``repr`` shows what it is for, never its bytes (they hold the hash)."""

    __slots__ = ("_body_length", "contact_id", "data", "keep_alive")

    def __init__(self, data: bytes, body_length: int, contact_id: int, keep_alive: bool) -> None:
        self.data = data
        self._body_length = body_length
        self.contact_id = contact_id
        self.keep_alive = keep_alive  # False: it asks the server to close, so nothing more is sent on the connection

    @classmethod
    def of(cls, endpoint: _Endpoint, credentials: Credentials, contact: Contact, *, keep_alive: bool) -> _Request:
        """The request that edits ``contact``; a bad value raises ``ValidationError`` before the hash is read."""
        contact_id, body = _render_request(_check_credentials(credentials).key, contact, credentials)
        head = _request_head(endpoint, len(body), keep_alive=keep_alive)
        return cls(head + body, len(body), contact_id, keep_alive)

    @property
    def body(self) -> bytes:
        return self.data[-self._body_length :]

    def __repr__(self) -> str:
        return f"<request for contact {self.contact_id}: {len(self.data)} bytes>"


class _Answer:
    """An HTTP answer as read; ``repr`` leaves out the body, which may echo the request and so the hash."""

    __slots__ = ("body", "retry_after", "secrets", "status")

    def __init__(self, status: int, retry_after: Optional[str], body: bytes, secrets: Tuple[str, ...] = ()) -> None:
        self.status = status
        self.retry_after = retry_after  # the header as sent, if it was: the retry policy reads it
        self.body = body
        self.secrets = secrets  # the credentials of the proxy it came through, which it may repeat: kept out of logs

    def __repr__(self) -> str:
        return f"<answer: HTTP {self.status}, {len(self.body)} bytes>"


class _Outcome(NamedTuple):
    """What one attempt ended with: the answer, if one came, and the response or the error."""

    answer: Optional[_Answer]
    result: Result

    @property
    def error(self) -> Optional[IletiMerkeziError]:
        return self.result if isinstance(self.result, IletiMerkeziError) else None


def _judge(answer: _Answer, request: _Request) -> _Outcome:
    """What ``answer`` says of ``request``: a success must name the contact that was sent."""
    try:
        response = parse_response(answer.body, answer.status)
    except APIError as error:  # a refusal about another contact is no refusal of this edit
        named = _named_contact(answer.body, answer.status)
        if named is not None and named != request.contact_id:
            return _Outcome(answer, ResponseError(f"the response is about contact {named}, not {request.contact_id}:"
                                                  " the connection is out of step and is closed", answer.status))
        return _Outcome(answer, error)
    except IletiMerkeziError as error:
        return _Outcome(answer, error)
    if response.contact is None:
        return _Outcome(answer, ResponseError("the response reports success but names no contact: it cannot be "
                                              "told to be this edit's", answer.status))
    if response.contact.id != request.contact_id:
        return _Outcome(answer, ResponseError(
            f"the response is about contact {response.contact.id}, not {request.contact_id}: "
            "the connection is out of step and is closed", answer.status))
    return _Outcome(answer, response)


def _named_contact(body: bytes, http_status: int) -> Optional[int]:
    """The contact id an answer names, if it names one that can be read."""
    try:
        text = _parse_xml(body, http_status).findtext("contact/id")
        return None if text is None else _parse_number(text, "<contact><id>", http_status)
    except ResponseError:
        return None


class _Connection:
    """One HTTP/1.1 connection to an endpoint, opened on first use and kept open while the server allows it.

    One thread at a time uses it; ``Session`` hands it out. It belongs to the
    process that opened it: after a fork, the other process opens its own.
    """

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings
        self._sock: Optional[socket.socket] = None
        self._pid = 0
        self._route = str(settings.endpoint)
        self.secrets: Tuple[str, ...] = ()  # the credentials of the proxy it goes through, to keep out of errors
        self.idle_since = 0.0

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def exchange(self, request: _Request, deadline: float) -> Optional[_Answer]:
        """Send ``request`` and read the answer, whatever its status, all before ``deadline``.

        ``None``: this kept-alive connection had been closed by the server before any of an answer arrived; it is
        closed now, and the next call opens a new one. Any failure closes the connection; a network or HTTP
        failure raises ``TransportError``, the one place where they are converted.
        """
        try:
            sock = self._sock
            # A socket opened by another process (a fork without our hooks) is never written to.
            reused = sock is not None and self._pid == os.getpid() and self._is_reusable(sock)
            if sock is None or not reused:
                self.close()
                sock = self._sock = self._open(deadline)
                self._pid = os.getpid()
            return self._round_trip(sock, request, deadline, reused=reused)
        except IletiMerkeziError:  # ours already; a ValidationError is a ValueError too
            self.close()
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:  # 3.10+ raise ValueError on some bad chunks
            self.close()
            raise TransportError(f"no answer from {self._route}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _open(self, deadline: float) -> socket.socket:
        """A connected socket, through the proxy if there is one, TLS done for https://."""
        settings = self._settings
        endpoint = settings.endpoint
        proxy = _environment_proxy(endpoint) if settings.proxy_from_environment else settings.proxy
        self.secrets = () if proxy is None else proxy.secrets
        if proxy is None:
            self._route = str(endpoint)
            sock = _connect(endpoint.host, endpoint.port, deadline)
        else:
            self._route = f"{endpoint} through proxy {proxy}"
            sock = _connect(proxy.host, proxy.port, deadline)
        try:
            if proxy is not None:
                _tunnel(sock, proxy, endpoint, deadline)
            if settings.context is None:
                return sock
            _set_deadline(sock, deadline)  # the handshake as a whole is bounded by the socket's timeout
            return settings.context.wrap_socket(sock, server_hostname=endpoint.host)
        except BaseException:
            sock.close()
            raise

    def _is_reusable(self, sock: socket.socket) -> bool:
        """Whether the idle ``sock`` may carry a request: not idle too long, and nothing arrived, not even a close."""
        if time.time() - self.idle_since > _IDLE_LIMIT:
            return False
        sock.settimeout(0.0)
        try:
            sock.recv(1)  # b"" is the server's close; a byte would be an answer to nothing
        except OSError as exc:
            return _is_would_block(exc)
        return False

    def _round_trip(self, sock: socket.socket, request: _Request, deadline: float, *,
                    reused: bool) -> Optional[_Answer]:
        source = _DeadlineSocket(sock, deadline)
        try:
            _set_deadline(sock, deadline)
            sock.sendall(request.data)
            answer = _final_answer(source, "POST")
        except OSError:  # includes RemoteDisconnected: closed before the status line
            if reused and not source.received and not isinstance(sys.exc_info()[1], socket.timeout):
                self.close()
                return None
            raise
        try:
            body = _read_capped(answer)
        finally:
            # Closes the answer's reader, not the socket. Left to the garbage collector, a failed answer's
            # reader can be finalized first, and the answer's own finalizer then complains on 3.13.
            answer.close()
        if answer.will_close or source.overran or not request.keep_alive:
            self.close()
        else:
            self.idle_since = time.time()
        return _Answer(answer.status, answer.getheader("Retry-After"), body, self.secrets)


def _final_answer(source: _DeadlineSocket, method: str) -> http.client.HTTPResponse:
    """The head of the final answer from ``source``, after any interim 1xx answers (102, 103, ...)."""
    for _ in range(_MAX_INTERIM_ANSWERS + 1):
        answer = http.client.HTTPResponse(source, method=method)  # type: ignore[arg-type]
        try:
            answer.begin()
        except BaseException:
            answer.close()
            raise
        if not 100 <= answer.status < 200:
            return answer
        answer.fp = None  # type: ignore[assignment]  # the next answer reads on from the same buffer
        if answer.status == 101:
            raise ResponseError("the server switched protocols (HTTP 101) though none was asked for", 101)
    raise ResponseError(f"more than {_MAX_INTERIM_ANSWERS} interim (1xx) answers", answer.status)


def _tunnel(sock: socket.socket, proxy: _Proxy, target: _Endpoint, deadline: float) -> None:
    """Ask ``proxy`` on ``sock`` for a tunnel to ``target``; raise ``ProxyError`` if it refuses."""
    _set_deadline(sock, deadline)
    sock.sendall(proxy.connect_request(target))
    source = _DeadlineSocket(sock, deadline)
    try:
        answer: Optional[http.client.HTTPResponse] = _final_answer(source, "CONNECT")
    except (http.client.HTTPException, ResponseError):
        answer = None
    if answer is None:  # raised out here, so that the error quoting the proxy is not even its context
        raise OSError(f"the answer of proxy {proxy} to CONNECT is not HTTP")
    answer.close()  # a refusal's body is not read: the connection is closed
    if not 200 <= answer.status < 300:
        raise ProxyError(str(proxy), answer.status, "", str(target))  # the proxy's own reason is never shown
    if source.overran:  # bytes before the TLS handshake: nothing from this proxy can be trusted to be the target
        raise OSError(f"proxy {proxy} sent more than its answer to CONNECT")


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    """Try each address in turn, all within one deadline (``socket.create_connection`` gives each the whole timeout)."""
    error = OSError(f"no address found for {host}")
    for family, kind, protocol, _, address in _resolver.resolve(host, port, deadline):
        sock = socket.socket(family, kind, protocol)
        try:
            _set_deadline(sock, deadline)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        # Without it, the tail of a request longer than one segment waits for the server's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


class _Lookup:
    """One ``getaddrinfo`` in flight, and its result once it is done."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Union[List[Any], OSError, None] = None


class _Resolver:
    """Name lookups given up at each caller's deadline: the system resolver has no timeout of ours.

    A lookup runs in a thread of its own so that a caller can stop waiting; every
    caller that needs the same host and port while it runs waits for that one,
    so a slow resolver cannot make threads pile up with the number of calls.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Dict[Tuple[str, int], _Lookup] = {}

    def resolve(self, host: str, port: int, deadline: float) -> List[Any]:
        try:
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass  # a name, not an address
        key = (host, port)
        with self._lock:
            lookup = self._in_flight.get(key)
            if lookup is None:
                lookup = _Lookup()
                worker = threading.Thread(
                    target=self._look_up, args=(key, lookup), name="iletimerkezi_edit-resolve", daemon=True
                )
                try:
                    worker.start()
                except RuntimeError as exc:  # "can't start new thread"
                    raise OSError(f"cannot start a thread to look up {host}: {exc}") from None
                self._in_flight[key] = lookup
        if not lookup.done.wait(max(0.0, deadline - time.monotonic())):
            raise socket.timeout(f"looking up {host} timed out")
        if isinstance(lookup.result, OSError):
            raise lookup.result
        return list(lookup.result or ())

    def _look_up(self, key: Tuple[str, int], lookup: _Lookup) -> None:
        try:
            lookup.result = socket.getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM)
        except OSError as exc:
            lookup.result = exc
        finally:
            with self._lock:
                if self._in_flight.get(key) is lookup:
                    del self._in_flight[key]
            lookup.done.set()

    def after_fork_in_child(self) -> None:
        # A lookup in flight at the fork has no thread here, and would never end.
        self._lock = threading.Lock()
        self._in_flight = {}


_resolver = _Resolver()


def _set_deadline(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("timed out")
    sock.settimeout(remaining)


class _DeadlineReader(io.RawIOBase):
    """A socket's input in which every read ends by one deadline, so a dribbling server cannot stretch it.

    With ``waiting`` off, a read takes only what has already arrived.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self.received = 0
        self.waiting = True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> Optional[int]:
        if self.waiting:
            _set_deadline(self._sock, self._deadline)
        else:
            self._sock.settimeout(0.0)
        try:
            count = self._sock.recv_into(buffer)
        except OSError as exc:
            if self.waiting or not _is_would_block(exc):
                raise
            return None  # nothing has arrived
        self.received += count
        return count


class _AnswerFile(io.BufferedReader):
    """The buffered input of answers; on closing it notes whether bytes beyond the answer had arrived."""

    overran = False

    def close(self) -> None:
        # http.client closes it when the answer ends. Bytes already there after that belong to no request:
        # the connection is out of step, and the next answer read from it could be this one's stray copy.
        if not self.closed and isinstance(self.raw, _DeadlineReader):
            self.raw.waiting = False
            with contextlib.suppress(OSError):  # a reset after the answer: the next use finds it closed
                self.overran = bool(self.peek(1))
        super().close()


class _DeadlineSocket:
    """All that ``http.client.HTTPResponse`` asks of a socket: a file to read the answer from.

    Every answer read from it shares one buffer, so that a final answer can follow interim ones.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._reader = _DeadlineReader(sock, deadline)
        self._file = _AnswerFile(self._reader)

    @property
    def received(self) -> int:
        return self._reader.received

    @property
    def overran(self) -> bool:
        return self._file.overran

    def makefile(self, mode: str) -> io.BufferedReader:
        return self._file


def _is_would_block(error: OSError) -> bool:
    return isinstance(error, (BlockingIOError, ssl.SSLWantReadError))


def _read_capped(answer: http.client.HTTPResponse) -> bytes:
    """The body, in pieces so that an endless one is refused once past the cap."""
    pieces: List[bytes] = []
    size = 0
    while True:
        piece = answer.read(_READ_SIZE)
        if not piece:
            break
        size += len(piece)
        if size > _MAX_RESPONSE_BYTES:
            raise ResponseError(f"the response is larger than {_MAX_RESPONSE_BYTES} bytes", answer.status)
        pieces.append(piece)
    if answer.length:  # Content-Length promised more than arrived before the connection closed
        raise http.client.IncompleteRead(b"", answer.length)
    return b"".join(pieces)



# ---------------------------------------------------------------------------
# 8. Retry policy and the attempt log line
# ---------------------------------------------------------------------------


class _RetryPolicy:
    """When an edit is sent again, how long to wait first, and what each attempt logs: the whole policy.

    - **Reconnect, not a retry**: a kept-alive connection the server had closed
      while it was idle (nothing of an answer arrived) is replaced and the
      request sent again at once, without counting as an attempt.
    - **Tried again**, up to ``retries`` more times: no answer (``TransportError``),
      but not a certificate that does not verify; a proxy's 5xx, but not its 4xx
      (a wrong password above all: trying again can lock the account); status
      503; an answer under a 5xx HTTP status that is not a response document.
      Everything else is final, and the last error is raised as it was.
    - **The wait** before the n-th retry: the answer's ``Retry-After`` seconds
      (at most ``RETRY_AFTER_CAP``), else a random time between half and all of
      ``min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (n - 1))``, from ``_jitter()``.
    - **Logged**: each attempt, one DEBUG line without personal data (URL,
      contact id, HTTP status, the error's class and code, time taken, the wait);
      the bodies only on ``iletimerkezi_edit.bodies``, set to DEBUG by name.
    """

    BACKOFF_FIRST = 0.5
    BACKOFF_CAP = 8.0
    RETRY_AFTER_CAP = 10.0  # a longer wait would outlast most callers' own time limits

    def __init__(self, retries: int) -> None:
        self.retries = retries

    def wait(self, outcome: _Outcome, attempt: int) -> Optional[float]:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` when ``outcome`` is final."""
        error = outcome.error
        if error is None or attempt > self.retries or not self.is_retryable(error):
            return None
        answer = outcome.answer
        retry_after = None if answer is None else self._retry_after(answer.retry_after)
        if retry_after is not None:
            return retry_after
        ceiling = min(self.BACKOFF_CAP, self.BACKOFF_FIRST * 2 ** min(attempt - 1, 16))
        return _jitter().uniform(ceiling / 2, ceiling)

    @staticmethod
    def is_retryable(error: IletiMerkeziError) -> bool:
        if isinstance(error, ProxyError):
            return error.status >= 500
        if isinstance(error, TransportError):
            # A certificate that does not verify will not verify on the next try either.
            return not isinstance(error.__cause__, ssl.SSLCertVerificationError)
        if isinstance(error, APIError):
            return error.code == _UNAVAILABLE
        if isinstance(error, ResponseError):
            return error.http_status is not None and 500 <= error.http_status < 600
        return False

    def _retry_after(self, value: Optional[str]) -> Optional[float]:
        # Only the delay-seconds form; an HTTP date falls back to the backoff.
        if value is None or not _ASCII_DIGITS.fullmatch(value.strip()):
            return None
        return min(float(value.strip()), self.RETRY_AFTER_CAP)

    @staticmethod
    def reconnecting(endpoint: _Endpoint) -> None:
        _log.debug("POST %s: the server had closed the idle connection; reconnecting", endpoint.url)

    def log(self, endpoint: _Endpoint, request: _Request, attempt: int, started: float, outcome: _Outcome,
            wait: Optional[float], credentials: Credentials) -> None:
        """Log one attempt: a line without personal data at DEBUG, and the bodies only if switched on by name."""
        attempts, bodies = _log.isEnabledFor(logging.DEBUG), self.bodies_wanted()
        if not attempts and not bodies:
            return
        answer, error = outcome.answer, outcome.error
        status = answer.status if answer is not None else getattr(error, "http_status", None)
        said = "no answer" if status is None else f"HTTP {status}"
        if error is not None:
            said += ", " + _error_summary(error)
        if wait is not None:
            said += f", trying again in {wait:.2f} s"
        where = f"POST {endpoint.url}, contact {request.contact_id}, attempt {attempt} of {self.retries + 1}"
        if attempts:
            _log.debug("%s: %s after %d ms", where, said, (time.monotonic() - started) * 1000)
        if bodies:
            received = ("no answer" if answer is None else
                        _redact(answer.body.decode("utf-8", "replace"), credentials.hash, *answer.secrets))
            if len(received) > _BODY_LOG_LIMIT:
                received = received[:_BODY_LOG_LIMIT] + f"... ({len(received) - _BODY_LOG_LIMIT} more characters)"
            _body_log.debug(
                "%s: request %r; answer %r%s", where, _redact(request.body.decode("utf-8"), credentials.hash), received,
                "" if error is None else f"; {type(error).__name__}: {' '.join(str(error).split())}",
            )

    @staticmethod
    def bodies_wanted() -> bool:
        """Whether ``iletimerkezi_edit.bodies`` was itself set to DEBUG (or lower): inheriting DEBUG is not enough."""
        return _body_log.level != logging.NOTSET and _body_log.isEnabledFor(logging.DEBUG)


def _error_summary(error: IletiMerkeziError) -> str:
    """The error's class, with the API's code or the network error: never text taken from the answer."""
    if isinstance(error, APIError):
        return f"{type(error).__name__} {error.code} ({error.description})"
    cause = error.__cause__
    if isinstance(error, TransportError) and cause is not None:
        # An OSError's text comes from the system (refused, reset, timed out, TLS); http.client's errors
        # and ValueError can quote the answer's bytes, so only their class is shown.
        return f"{type(error).__name__} ({type(cause).__name__}{f': {cause}' if isinstance(cause, OSError) else ''})"
    return type(error).__name__


@functools.lru_cache(maxsize=1)
def _jitter() -> random.Random:
    """The random source of the waits: the operating system's (``os.urandom``), which has no state to share.

    The ``random`` module's global generator is one state per process: processes forked from one parent, or
    AWS Lambda SnapStart instances restored from one snapshot, would all draw the same "random" waits and
    retry in lockstep. Whatever seeds it (a caller's ``random.seed()``) would set our waits, too.
    """
    return random.SystemRandom()

# ---------------------------------------------------------------------------
# 9. Session, the one engine (edit_contact is a one-shot session), and fork hooks
# ---------------------------------------------------------------------------


class Session:
    """Edits over kept-alive connections: one round trip per edit once a connection is open.

    Takes the settings of ``edit_contact`` and checks them at once. It connects
    on the first edit, reuses connections, and replaces one the server closed
    while idle without counting that as a retry (an edit is idempotent). Safe to
    share between threads (each thread in a call uses a connection of its own),
    to keep at module level in an AWS Lambda function, and to use on both sides
    of ``os.fork()`` (a child opens connections of its own). ``close()``, or
    leaving a ``with`` block, closes every connection; a closed session refuses
    calls with ``ValidationError``.
    """

    _keep_alive = True  # a one-shot session asks the server to close the connection after its answer

    def __init__(
        self,
        credentials: Credentials,
        *,
        url: str = API_URL,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        ssl_context: Optional[ssl.SSLContext] = None,
        proxy: Optional[str] = None,
    ) -> None:
        self._credentials = _check_credentials(credentials)
        try:
            self._settings = _check_settings(url, timeout, retries, ssl_context, proxy)
        except ValidationError as error:
            _forget_locals(error)  # below this frame: the proxy URL, password and all
            raise
        self._policy = _RetryPolicy(self._settings.retries)
        self._idle: List[_Connection] = []  # most recently used last
        self._lock = threading.Lock()
        self._closed = False
        _sessions.add(self)

    def __repr__(self) -> str:
        settings = getattr(self, "_settings", None)  # a debugger may show a session whose settings were refused
        where = "(no settings)" if settings is None else settings.endpoint.url
        return f"<{type(self).__name__} {where} {'closed' if getattr(self, '_closed', False) else 'open'}>"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every idle connection; ones in use close when their call ends. Calling it again does nothing."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def edit_contact(self, contact: Contact) -> Response:
        """Send the edit and return the parsed answer: the rules, errors and retries of ``edit_contact()``.

        An error leaves with the secrets taken out of it and the locals of the frames it passed through
        cleared: this frame and its callers' hold the hash only inside objects whose ``repr`` hides it.
        """
        if self._closed:
            raise ValidationError("the session is closed")
        request = _Request.of(self._settings.endpoint, self._credentials, contact, keep_alive=self._keep_alive)
        attempt = 1
        while True:
            started = time.monotonic()
            outcome = self._send_once(request, started + self._settings.timeout)
            wait = self._policy.wait(outcome, attempt)
            self._policy.log(self._settings.endpoint, request, attempt, started, outcome, wait, self._credentials)
            if isinstance(outcome.result, Response):
                return outcome.result
            if wait is None:
                raise outcome.result
            time.sleep(wait)
            attempt += 1

    def edit_contacts(self, contacts: Iterable[Contact], workers: int = 1) -> List[Result]:
        """Edit each contact; return one result per contact, in input order.

        A result is the ``Response`` or the ``IletiMerkeziError`` that contact
        ended with (a bad contact gives its ``ValidationError``); one contact's
        failure never stops the others. ``workers`` > 1 edits that many at once,
        each on its own connection; edits of one contact id still go one after
        another, in input order. Bad ``contacts`` or ``workers`` raise
        ``ValidationError`` before anything is sent.
        """
        return [result for _, result in self.iter_edit_contacts(contacts, workers)]

    def iter_edit_contacts(self, contacts: Iterable[Contact], workers: int = 1) -> Iterator[Tuple[Contact, Result]]:
        """Edit each contact as ``contacts`` is read; yield ``(contact, result)`` pairs in input order.

        The streaming form of ``edit_contacts``, with its results and rules:
        ``contacts`` is read lazily and at most a few times ``workers`` edits are
        held at once, so memory stays flat however long the input. Edits of one
        contact id (``"1009"`` and ``1009`` are one) are sent one after another,
        in input order. Leaving the loop early, or closing the generator, sends
        nothing new, lets the edits in flight finish and leaves no thread behind
        (a generator kept after ``break`` sends nothing new either; its idle
        threads end when it is closed or dropped).
        """
        if self._closed:
            raise ValidationError("the session is closed")
        workers = _check_count(workers, "workers", 1)
        if isinstance(contacts, (Contact, str, bytes)) or not hasattr(contacts, "__iter__"):
            raise ValidationError(f"contacts must be an iterable of Contact, got {type(contacts).__name__}")
        scheduler: _Scheduler[None] = _Scheduler(self.edit_contact, workers, ordered=True)
        pairs = scheduler.run((None, contact) for contact in contacts)
        return ((contact, result) for _, contact, result in pairs)  # type: ignore[misc]  # what it was given

    def _send_once(self, request: _Request, deadline: float) -> _Outcome:
        """One attempt on a connection of the pool; its outcome comes back with the secrets taken out."""
        connection = self._take_connection()
        try:
            try:
                answer = connection.exchange(request, deadline)
                while answer is None:  # closed by the server while idle; on the new connection it cannot be
                    self._policy.reconnecting(self._settings.endpoint)
                    answer = connection.exchange(request, deadline)
            except IletiMerkeziError as error:
                outcome = _Outcome(None, error)
            else:
                outcome = _judge(answer, request)
                if isinstance(outcome.error, ResponseError):  # framing or content is off: nothing more is read
                    connection.close()
        finally:
            self._put_back(connection)
        if isinstance(outcome.result, IletiMerkeziError):
            _scrub(outcome.result, self._credentials.hash, *connection.secrets)
            _forget_locals(outcome.result)
        return outcome

    def _take_connection(self) -> _Connection:
        now = time.time()
        with self._lock:
            connection = self._idle.pop() if self._idle else None
            stale = self._take_stale(now)
        for old in stale:
            old.close()
        return _Connection(self._settings) if connection is None else connection

    def _put_back(self, connection: _Connection) -> None:
        now = time.time()
        with self._lock:
            done = self._take_stale(now)
            if connection.is_open and not self._closed:
                self._idle.append(connection)
            else:
                done.append(connection)
        for old in done:
            old.close()

    def _take_stale(self, now: float) -> List[_Connection]:
        """Remove and return the idle connections past the idle limit; the caller closes them outside the lock."""
        stale = [idle for idle in self._idle if now - idle.idle_since > _IDLE_LIMIT]
        if stale:
            self._idle = [idle for idle in self._idle if now - idle.idle_since <= _IDLE_LIMIT]
        return stale

    def _after_fork_in_child(self) -> None:
        # The parent's sockets are shared with it: the child drops its copies without a word on them
        # (close() only releases the descriptor; the parent's connection stays open), and takes a new
        # lock, since the parent's may have been held by a thread that does not exist here.
        self._lock = threading.Lock()
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class _OneShotSession(Session):
    """The session of one ``edit_contact()`` call: it asks the server to close the connection after answering."""

    _keep_alive = False


def edit_contact(
    credentials: Credentials,
    contact: Contact,
    *,
    url: str = API_URL,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    ssl_context: Optional[ssl.SSLContext] = None,
    proxy: Optional[str] = None,
) -> Response:
    """Send the edit on a new connection and return the parsed answer, trying again up to ``retries`` times.

    Raises ``ValidationError`` before connecting if any input is bad,
    ``APIError`` if the API refuses, ``TransportError`` if no answer arrives
    (``ProxyError`` if the proxy refuses the tunnel), ``ResponseError`` if the
    answer is not a response document for this contact. Each attempt, from
    connecting to the last byte, ends within ``timeout`` seconds. Only a missing
    answer, status 503 and an unreadable 5xx answer are tried again; the last
    error is raised as it was. Redirects are not followed. ``ssl_context``
    replaces the default (system CAs, host name checked) for https:// URLs.
    ``proxy`` is ``"http://[user:password@]host:port"``, ``""`` for none, or
    ``None`` to follow ``https_proxy``/``no_proxy`` from the environment. To send
    many edits, a ``Session`` saves a connection each.
    """
    session = _OneShotSession(credentials, url=url, timeout=timeout, retries=retries, ssl_context=ssl_context,
                              proxy=proxy)
    proxy = None  # this frame runs while the edit does: a traceback's locals must not show the proxy's password
    with session:
        return session.edit_contact(contact)


_sessions = weakref.WeakSet()  # type: weakref.WeakSet[Session]  # a comment: 3.7 cannot subscript WeakSet


def _before_fork() -> None:
    _tls_setup.acquire()  # a CA store being loaded by another thread is loaded before the fork


def _after_fork_in_parent() -> None:
    _tls_setup.release()


def _after_fork_in_child() -> None:
    _tls_setup.release()  # this thread took it before the fork
    _resolver.after_fork_in_child()
    for session in list(_sessions):
        session._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)

# ---------------------------------------------------------------------------
# 10. Bulk scheduler, handed session.edit_contact
# ---------------------------------------------------------------------------

Tag = TypeVar("Tag")
# What a bulk run is given: a contact to edit, or a record already refused (its error is its result).
Item = Union[Contact, IletiMerkeziError]


class _Entry(Generic[Tag]):
    """One item of a bulk run, from the moment it is read until its result is handed out."""

    __slots__ = ("contact", "failure", "key", "result", "tag")

    def __init__(self, tag: Tag, contact: Item) -> None:
        self.tag = tag
        self.contact = contact
        self.key = _contact_key(contact)
        self.result: Optional[Result] = contact if isinstance(contact, IletiMerkeziError) else None
        self.failure: Optional[BaseException] = None  # a defect in a worker, raised in the caller's thread


class _Scheduler(Generic[Tag]):
    """Runs ``edit(contact)`` over a stream of tagged items on up to ``workers`` threads.

    Edits of one contact id run one after another in input order; the others run
    side by side, each worker given one edit at a time. At most
    ``_WINDOW_PER_WORKER * workers`` items are held at once (read and not yet
    handed out), so the input is read only as fast as it is edited. ``run``
    yields ``(tag, item, result)`` in input order when ``ordered``, else as each
    edit ends. Setting ``stop`` (a signal handler may) ends reading and sending:
    the edits in flight end and are handed out, then ``run`` returns. When
    ``run`` ends otherwise early (closed, or an exception in the caller), nothing
    new is sent, the edits in flight end, and every result not handed out is left
    in ``unreported``.
    """

    def __init__(self, edit: Callable[[Contact], Response], workers: int, *, ordered: bool,
                 threaded: bool = False) -> None:
        self._edit = edit
        self._workers = workers
        self._ordered = ordered
        self._threaded = threaded or workers > 1  # one worker runs in the caller's thread unless told otherwise
        self.stop = threading.Event()
        self.reading = False  # True while it waits for the next item of the input
        self.unreported: List[Tuple[Tag, Item, Result]] = []
        self._work: queue.SimpleQueue[Optional[_Entry[Tag]]] = queue.SimpleQueue()
        self._finished: queue.SimpleQueue[_Entry[Tag]] = queue.SimpleQueue()
        self._stopping = threading.Event()  # once set, workers send nothing of what is queued
        self._threads: List[threading.Thread] = []
        self._held: Deque[_Entry[Tag]] = collections.deque()  # read and not yet handed out, in input order
        self._ready: Deque[_Entry[Tag]] = collections.deque()  # finished, in the order they finished
        self._behind: Dict[int, Deque[_Entry[Tag]]] = {}  # contact id -> its edits waiting for the one in flight
        self._to_send: Deque[_Entry[Tag]] = collections.deque()  # free to go, waiting for a worker
        self._in_flight = 0
        self._exhausted = False
        self._unreadable: Optional[Exception] = None  # what reading raised: raised once what was read is done

    def run(self, tagged: Iterable[Tuple[Tag, Item]]) -> Generator[Tuple[Tag, Item, Result], None, None]:
        if not self._threaded:  # in the caller's thread, one after another: order is kept by itself
            for tag, contact in tagged:
                yield tag, contact, self._result_of(contact)
                if self.stop.is_set():
                    return
            return
        source = iter(tagged)
        try:
            while True:
                self._read(source)
                self._dispatch()
                entry = self._next_out()
                if entry is not None:
                    yield entry.tag, entry.contact, entry.result  # type: ignore[misc]  # set: it was handed out
                elif not self._held or (self.stop.is_set() and not self._in_flight):
                    if self._unreadable is not None and not self.stop.is_set():
                        raise self._unreadable
                    return
                else:
                    self._settle(self._finished.get())
        finally:
            self._shut_down()

    def _result_of(self, contact: Item) -> Result:
        if isinstance(contact, IletiMerkeziError):
            return contact
        try:
            return self._edit(contact)
        except IletiMerkeziError as error:
            return error

    def _read(self, source: Iterator[Tuple[Tag, Item]]) -> None:
        """Read up to the window; a contact that cannot be sent at all gets its result at once."""
        while not self._exhausted and not self.stop.is_set() and len(self._held) < _WINDOW_PER_WORKER * self._workers:
            try:
                self.reading = True
                tag, contact = next(source)
                self.reading = False
            except StopIteration:
                self.reading, self._exhausted = False, True
                return
            except Exception as exc:
                self.reading, self._exhausted, self._unreadable = False, True, exc
                return
            entry = _Entry(tag, contact)
            self._held.append(entry)
            if entry.key is None:  # refused before anything is sent; nothing to order it with
                entry.result = self._result_of(contact)
                self._ready.append(entry)
            elif entry.key in self._behind:
                self._behind[entry.key].append(entry)
            else:
                self._behind[entry.key] = collections.deque()
                self._to_send.append(entry)

    def _dispatch(self) -> None:
        """Give the edits free to go to idle workers, starting a thread while every one is busy."""
        while self._to_send and self._in_flight < self._workers and not self.stop.is_set():
            if self._in_flight >= len(self._threads):
                thread = threading.Thread(target=self._work_on, name="iletimerkezi_edit-worker", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # "can't start new thread"
                    if self._threads:
                        return  # the threads there are carry on, one edit each
                    entry = self._to_send.popleft()  # with no thread at all, this edit cannot be sent
                    entry.result = TransportError("cannot start a thread to send the edit")
                    self._in_flight += 1
                    self._finished.put(entry)
                    continue
                self._threads.append(thread)
            self._work.put(self._to_send.popleft())
            self._in_flight += 1

    def _work_on(self) -> None:
        while True:
            entry = self._work.get()
            if entry is None:
                return
            if not self._stopping.is_set():  # once stopping, what is queued is not sent
                try:
                    entry.result = self._result_of(entry.contact)
                except BaseException as exc:  # a defect or an interrupt: the caller's thread raises it
                    entry.failure = exc
            self._finished.put(entry)

    def _settle(self, entry: _Entry[Tag]) -> None:
        """Take a finished edit: the next edit of its contact is free to go."""
        self._in_flight -= 1
        if entry.failure is not None:
            raise entry.failure
        assert entry.key is not None  # only contacts with an id are sent
        waiting = self._behind[entry.key]
        if waiting:
            self._to_send.append(waiting.popleft())
        else:
            del self._behind[entry.key]
        self._ready.append(entry)
        self._dispatch()

    def _next_out(self) -> Optional[_Entry[Tag]]:
        """The next result that can be handed out now, taken out of ``held``; one at a time, so that one the
        caller never took stays in ``held`` (and so in ``unreported``) when it leaves early."""
        if self._ordered:
            self._ready.clear()
            return self._held.popleft() if self._held and self._held[0].result is not None else None
        if not self._ready:
            return None
        entry = self._ready.popleft()
        self._held.remove(entry)
        return entry

    def _shut_down(self) -> None:
        """No more sending; wait for the edits in flight; keep every result not handed out."""
        self._stopping.set()
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join()
        self.unreported += [(entry.tag, entry.contact, entry.result) for entry in self._held
                            if entry.result is not None]
        self._held.clear()

# ---------------------------------------------------------------------------
# 11. Command line for one contact
# ---------------------------------------------------------------------------

_EXIT_OK = 0
_EXIT_API = 1
_EXIT_USAGE = 2
_EXIT_NO_ANSWER = 3
_EXIT_INTERNAL = 70  # EX_SOFTWARE from sysexits.h: a defect in this module, not an outcome of the edit
_EXIT_OUTPUT_LOST = 74  # EX_IOERR: the output could not be written (a full disk), whatever the edit did
_EXIT_INTERRUPTED = 130  # 128 + SIGINT
_EXIT_TERMINATED = 143  # 128 + SIGTERM

_KEY_PLACEHOLDER = "YOUR_API_KEY"

_CLI_EPILOG = f"""\
credentials come from the environment: {_ENV_API_KEY} and {_ENV_API_HASH} (the panel's Settings → Security →
API Access), or {_ENV_KEY} plus {_ENV_SECRET} or {_ENV_HASH}.
an omitted option leaves the stored value as it is; an empty one (--name '') sends it empty.
exit codes: 0 success, 1 the API refused, 2 bad usage or input, 3 no usable answer,
70 an internal error (a defect: please report it), 74 the output could not be written,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""


def _run_single(args: argparse.Namespace) -> int:
    try:
        contact = _contact_from_args(args)
        if args.dry_run:
            _check_settings(args.url, args.timeout, args.retries, None, args.proxy)
            _write_bytes(sys.stdout, _dry_run_request(contact))
            return _EXIT_OK
        credentials = Credentials.from_env()
        with _logging_to_stderr(args.verbose):
            response = edit_contact(credentials, contact, url=args.url, timeout=args.timeout, retries=args.retries,
                                    proxy=args.proxy)
    except ValidationError as exc:
        return _report(f"invalid input: {exc}", _EXIT_USAGE)
    except APIError as exc:
        return _report(f"the API refused the edit: {exc}", _EXIT_API)
    except IletiMerkeziError as exc:  # TransportError, ResponseError
        return _report(f"no usable answer: {exc}", _EXIT_NO_ANSWER)
    shown = (_format_json(response, getattr(sys.stdout, "encoding", None) or "ascii") if args.json else
             _format_response(response))
    _write_text(sys.stdout, _redact(shown, credentials.hash))  # a server that repeats the request echoes it
    return _EXIT_OK


def _environment_secrets(argv: Optional[Sequence[str]] = None) -> List[str]:
    """What an internal error must not show: the credentials, and every form of those of a proxy it could use
    (from the environment or ``--proxy``)."""
    found = [value for value in map(os.environ.get, (_ENV_SECRET, _ENV_HASH, _ENV_API_HASH)) if value]
    with contextlib.suppress(Exception):
        found.append(Credentials.from_env().hash)
    proxies = list(urllib.request.getproxies().values())
    with contextlib.suppress(Exception, SystemExit):  # parsed once already: this parse succeeds, silently
        proxies.append(_argument_parser().parse_args(argv).proxy)
    for value in proxies:
        with contextlib.suppress(Exception):  # not a proxy URL, or none
            found += _parse_proxy(value, "proxy").secrets  # type: ignore[union-attr]
    return sorted(found, key=len, reverse=True)  # the longest first: none is cut by a shorter one inside it


def _add_contact_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", type=_id_argument, help="the contact's id (or --input for many contacts)")
    for field in _TEXT_FIELDS:
        parser.add_argument(f"--{field.name}", help=field.help)
    fields = parser.add_mutually_exclusive_group()
    fields.add_argument(
        "--field", action="append", dest="fields", type=_field_argument, metavar="ID=VALUE",
        help="set custom field ID to VALUE (repeatable)",
    )
    fields.add_argument("--clear-fields", action="store_true", help="send an empty <custom_fields> element")
    groups = parser.add_mutually_exclusive_group()
    groups.add_argument(
        "--group", action="append", dest="groups", type=_id_argument, metavar="ID",
        help="the contact's groups (repeatable)",
    )
    groups.add_argument("--clear-groups", action="store_true", help="send an empty <groups> element")
    parser.add_argument("--json", action="store_true", help="print the returned status and contact as JSON")


# Options that describe the one contact of a single edit: refused with --input, which reads contacts from a file.
_SINGLE_ONLY = ("id", *(field.name for field in _TEXT_FIELDS), "fields", "groups", "clear_fields", "clear_groups",
                "json")


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=API_URL, help="endpoint (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds each attempt may take, connect to last byte (default: %(default)g)")
    parser.add_argument(
        "--retries", type=_retries_argument, default=DEFAULT_RETRIES, metavar="N",
        help="tries again after no answer, 503 or an unreadable 5xx answer (default: %(default)s)",
    )
    parser.add_argument(
        "--proxy", metavar="URL",
        help="tunnel through this proxy, http://[user:password@]host:port; '' for none "
        "(default: https_proxy and no_proxy from the environment). A password given here shows in the process "
        "list (ps): set HTTPS_PROXY in the environment instead",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="log each attempt to stderr, without personal data; -vv adds the request and answer bodies "
        "(the hash is never shown)",
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="send nothing and need no credentials: print the request XML (hash replaced), or with --input "
        "check every record",
    )


def _single_contact_problem(args: argparse.Namespace) -> str:
    if args.id is None:
        return "--id (one contact) or --input (many) is required"
    used = [name for name in _BULK_ONLY if getattr(args, name) not in _UNSET]
    if used:
        return f"--{used[0].replace('_', '-')} goes with --input"
    return ""


def _workers_argument(text: str) -> int:
    return _converted(lambda: _check_count(int(text) if _ASCII_DIGITS.fullmatch(text) else text[:40], "workers", 1))


def _retries_argument(text: str) -> int:
    return _converted(lambda: _check_count(int(text) if _ASCII_DIGITS.fullmatch(text) else text[:40], "retries", 0))


def _id_argument(text: str) -> int:
    return _converted(lambda: _check_id(text, "id"))


def _converted(check: Callable[[], int]) -> int:
    """The checked value, or argparse's error for a bad option value."""
    import argparse

    try:
        return check()
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _field_argument(text: str) -> CustomField:
    import argparse

    field_id, separator, value = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected ID=VALUE, got {text[:40]!r}")
    return CustomField(_id_argument(field_id), value)


def _contact_from_args(args: argparse.Namespace) -> Contact:
    texts = {field.name: getattr(args, field.name) for field in _TEXT_FIELDS}
    return Contact(id=args.id, custom_fields=[] if args.clear_fields else args.fields,
                   groups=[] if args.clear_groups else args.groups, **texts)


@contextlib.contextmanager
def _logging_to_stderr(verbosity: int) -> Iterator[None]:
    """``-v``: the attempt lines; ``-vv``: the bodies too (personal data, so only when asked for twice)."""
    if not verbosity:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("iletimerkezi-edit: %(message)s"))
    loggers = [_log] + ([_body_log] if verbosity > 1 else [])
    levels = [logger.level for logger in loggers]
    _log.addHandler(handler)  # the bodies logger's records reach it through propagation
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        _log.removeHandler(handler)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _dry_run_request(contact: Contact) -> bytes:
    """The request with the environment's key (a placeholder where none is set) and ``REDACTED`` for the hash;
    two keys that differ are refused, as a real run would refuse them."""
    given = any(os.environ.get(name) for name in (_ENV_API_KEY, _ENV_KEY))
    return _render_request(_agreed_key(os.environ) if given else _KEY_PLACEHOLDER, contact, None)[1]


def _format_response(response: Response) -> str:
    lines = [f"{response.status.code} {response.status.message}".rstrip()]
    contact = response.contact
    if contact is not None:
        lines.append(f"contact {contact.id}")
        for field in _FIELDS:
            value = getattr(contact, field.name)
            if value is not None:
                lines.append(f"  {field.name}: {_FIELD_FORMATS[field.kind](value)}")
    return "\n".join(lines) + "\n"


_FIELD_FORMATS: Dict[str, Callable[[Any], str]] = {
    "text": str,
    "custom_fields": lambda fields: ", ".join(f"{field.id}={field.value}" for field in fields),
    "groups": lambda groups: ", ".join(map(str, groups)),
}


def _format_json(response: Response, encoding: str) -> str:
    """JSON as RFC 8259 has it, UTF-8: Turkish letters as they are on a UTF-8 output, ``\\u`` escapes (ASCII,
    so UTF-8 too) on any other."""
    import codecs
    import json

    try:
        utf8 = codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        utf8 = False
    return json.dumps(dataclasses.asdict(response), ensure_ascii=not utf8, indent=2) + "\n"


def _write_text(stream: Any, text: str) -> None:
    # A console that cannot show Turkish letters gets escapes, not a crash.
    if stream is None:  # started with the stream closed (">&-"): there is nowhere to write
        return
    try:
        try:
            stream.write(text)
        except UnicodeEncodeError:
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        stream.flush()
    except BrokenPipeError:
        _reader_gone(stream)
    except OSError as exc:  # a full disk, say: said once on stderr, then the interpreter's own flush is spared
        _reader_gone(stream)
        raise _OutputLost(exc) from None


def _write_bytes(stream: Any, data: bytes) -> None:
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        _write_text(stream, data.decode("utf-8"))
        return
    try:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    except BrokenPipeError:
        _reader_gone(stream)
    except OSError as exc:
        _reader_gone(stream)
        raise _OutputLost(exc) from None


class _OutputLost(Exception):
    """The output could not be written, for a reason other than a reader that went away."""


def _reader_gone(stream: Any) -> None:
    """The output was closed early (``| head -0``): what was done stands, and nothing more can be said there.

    What is still buffered goes to the null device, so that the interpreter's last flush cannot fail either.
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)


def _report(message: str, exit_code: int) -> int:
    one_line = " ".join(message.split())  # the server's text may hold newlines
    with contextlib.suppress(_OutputLost):  # stderr itself is lost: the exit code still tells
        _write_text(sys.stderr, f"iletimerkezi-edit: {one_line}\n")
    return exit_code

# ---------------------------------------------------------------------------
# 12. Command line for files: readers, report, resume, failures, progress
# ---------------------------------------------------------------------------
#
# A run reads records one at a time (CSV, a sheet's rows, JSON Lines), decides which to send (--resume), hands
# them to the scheduler, and writes a report line per record as it ends, and a failures file (--failed).
# Everything that can stop the run (options, the header, an encoding, a hostile workbook) is checked before
# the first edit is sent.

_GROUP_SEPARATORS = re.compile(r"[\s,]+")
_DATE_SHAPED = re.compile(r"[0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{4}( [0-9:]+)?")  # what a sheet made of a phone
_PROGRESS_EVERY = 0.25  # seconds between redraws of the progress line
_ERROR_COLUMN = "error"  # the failures file's last column (JSON Lines: key); ignored on input, so it runs as is
# Custom fields are columns of their own in CSV (field:ID) and an object of id to value in JSON Lines.
_CSV_COLUMNS = ("id", *(field.name for field in _FIELDS if field.kind != "custom_fields"))
_JSONL_KEYS = ("id", *(field.name for field in _FIELDS))
_FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".xlsx": "xlsx",
            ".xlsm": "xlsx"}
_SIGNAL_EXITS = {"SIGINT": _EXIT_INTERRUPTED, "SIGTERM": _EXIT_TERMINATED}


class _InputError(Exception):
    """The input cannot be read at all, or the options are wrong: exit 2, before or instead of sending."""


class _Record(NamedTuple):
    """One record of the input."""

    line: int  # the line it starts on; a sheet's row number
    item: Item  # the contact, or the error that refused it before anything was sent
    raw: Any  # as it stood: the CSV row's cells (List[str]) or the JSON Lines text (str), for --failed


class _Layout(NamedTuple):
    """How the input was written, so that a failures file can be written the same way."""

    format: str  # "csv", "jsonl" or "xlsx"
    encoding: str  # the codec it was read with; a failures file is written in it
    delimiter: str
    line_end: str
    header: List[str]  # CSV and sheets: the header row as written


# -- reading spreadsheets: encodings ------------------------------------------------

_CHUNK = 1 << 16  # bytes read at a time: memory stays flat whatever the file's size
_CP1254_ADVICE = ('Excel\'s "CSV" in Turkey is Windows-1254: run again with --encoding cp1254, '
                  'or save the sheet as "CSV UTF-8"')
_OTHER_ENCODING_ADVICE = ('check --encoding: Excel\'s "CSV" in Turkey is cp1254, "CSV UTF-8" is utf-8, '
                          '"Unicode Text" is utf-16')
# A BOM is the file saying what it is: (bytes, codec that reads it and drops the BOM, --encoding names that agree).
# UTF-32 LE comes before UTF-16 LE because its BOM starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", ("utf-32", "utf-32-le")),
    (codecs.BOM_UTF32_BE, "utf-32", ("utf-32", "utf-32-be")),
    (codecs.BOM_UTF8, "utf-8-sig", ("utf-8", "utf-8-sig")),
    (codecs.BOM_UTF16_LE, "utf-16", ("utf-16", "utf-16-le")),
    (codecs.BOM_UTF16_BE, "utf-16", ("utf-16", "utf-16-be")),
)


def _input_encoding(head: bytes, given: Optional[str]) -> str:
    """The codec to read a CSV with, from its first (at least 4) bytes and ``--encoding`` (None: not given).

    A BOM decides when no --encoding is given. An --encoding that contradicts a BOM is refused rather than
    obeyed or overruled: the two disagree, and either guess could send mojibake names to the API.
    """
    name = None if given is None else _codec_name(given)
    for bom, reader, agreeing in _BOMS:
        if head.startswith(bom):
            if name is not None and name not in agreeing:
                raise _InputError(f"--encoding {given}: the file starts with a {reader.upper()} byte order mark "
                                  f"(BOM), so it is not {given}; leave --encoding out, or give --encoding {reader}")
            return reader
    if name is None or name == "utf-8":
        return "utf-8-sig"  # reads a file with or without the BOM "CSV UTF-8" writes
    return name


def _codec_name(given: str) -> str:
    try:
        name = codecs.lookup(given).name
    except LookupError:
        raise _InputError(f"--encoding {given[:40]!r} is not an encoding Python knows; Excel's \"CSV\" in "
                          f"Turkey is cp1254, \"CSV UTF-8\" is utf-8, \"Unicode Text\" is utf-16") from None
    try:
        decoded: object = codecs.getincrementaldecoder(name)("strict").decode(b"", True)
    except Exception:  # rot13 and the like: codecs from str to str, which cannot read bytes
        decoded = None
    if not isinstance(decoded, str) or not codecs.lookup(name)._is_text_encoding:  # base64, zlib, hex: bytes to bytes
        raise _InputError(f"--encoding {given[:40]!r} is not a text encoding; Excel's \"CSV\" in Turkey is cp1254")
    return name


class _LineEnds:
    """Counts line ends as csv and ``open(newline="")`` see them: \\n, \\r\\n and a lone \\r, across pieces."""

    def __init__(self) -> None:
        self.count = 0
        self.after_cr = False  # the last piece ended with \r: a \n starting the next one is the same line end

    def feed(self, text: str) -> None:
        if not text:
            return
        ends = text.count("\n") + text.count("\r") - text.count("\r\n")
        if self.after_cr and text[0] == "\n":
            ends -= 1
        self.count += ends
        self.after_cr = text[-1] == "\r"


def _bad_byte_error(where: str, line: int, bad: bytes, encoding: str, is_default: bool) -> _InputError:
    shown = " ".join(f"0x{byte:02X}" for byte in bad[:4]) or "the end of the file"
    label = "UTF-8" if encoding == "utf-8-sig" else encoding
    advice = _CP1254_ADVICE if is_default and encoding == "utf-8-sig" else _OTHER_ENCODING_ADVICE
    return _InputError(f"{where} line {line} is not valid {label} (at {shown}); {advice}")


def _text_before_bad_byte(encoding: str, state: Tuple[bytes, int], chunk: bytes) -> Tuple[str, bytes]:
    """Decode ``chunk`` again a byte at a time from ``state``: the text before its first bad byte, and that byte.

    Only on the error path, where 64 KiB of one-byte calls cost milliseconds; a decoder's own error
    positions are relative to bytes it buffered, which differ from codec to codec.
    """
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    decoder.setstate(state)
    pieces: List[str] = []
    for index in range(len(chunk)):
        try:
            pieces.append(decoder.decode(chunk[index:index + 1]))
        except UnicodeDecodeError as exc:
            return "".join(pieces), exc.object[exc.start:exc.end]
        except UnicodeError:  # "UTF-16 stream does not start with BOM": no one byte is to blame
            return "".join(pieces), chunk[index:index + 2]
    return "".join(pieces), b""


def _decoded_pieces(read: Callable[[int], bytes], encoding: str, is_default: bool, where: str,
                    lines: _LineEnds) -> Iterator[str]:
    """The text of a byte stream, decoded as it arrives; ``lines`` counts the line ends of what was yielded."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    while True:
        chunk = read(_CHUNK)
        state = decoder.getstate()
        try:
            text = decoder.decode(chunk, not chunk)
        except UnicodeError as exc:  # UnicodeDecodeError, or the UTF-16 codecs' own for a missing BOM
            at_end = exc.object[exc.start:] if isinstance(exc, UnicodeDecodeError) else b""
            before, bad = _text_before_bad_byte(encoding, state, chunk) if chunk else ("", at_end)
            lines.feed(before)
            raise _bad_byte_error(where, lines.count + 1, bad, encoding, is_default) from None
        lines.feed(text)
        if text:
            yield text
        if not chunk:
            return


def _check_decodable(path: str, encoding: str, is_default: bool) -> None:
    """Read the whole file through ``encoding`` in 64 KiB chunks; the first bad byte raises naming its line.

    ``is_default``: the encoding was not chosen with --encoding, so a UTF-8 failure suggests cp1254.
    """
    lines = _LineEnds()
    try:
        with open(path, "rb") as binary:
            for _ in _decoded_pieces(binary.read, encoding, is_default, path, lines):
                pass
    except OSError as exc:
        raise _InputError(f"{path} cannot be read: {exc.strerror or exc}") from None


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


def _decoded_lines(binary: BinaryIO, encoding: str, is_default: bool, where: str) -> Iterator[str]:
    """Lines of a byte stream (standard input) decoded as they arrive, line ends kept as ``open(newline="")``.

    A bad byte raises ``_InputError`` naming its line; lines before it have been yielded already.
    """
    read: Callable[[int], bytes] = getattr(binary, "read1", binary.read)  # read1: a line is not held for 64 KiB
    waiting: List[str] = []  # text after the last line end; joined only when a line end arrives (no quadratic)
    for text in _decoded_pieces(read, encoding, is_default, where, _LineEnds()):
        if "\n" not in text and "\r" not in text:
            waiting.append(text)
            continue
        text = "".join(waiting) + text
        position = 0
        for match in _LINE.finditer(text):
            if match.end() == len(text) and text.endswith("\r"):
                break  # a \n may follow in the next piece
            yield match.group()
            position = match.end()
        waiting = [text[position:]] if position < len(text) else []
    rest = "".join(waiting)
    if rest:
        yield rest


# -- headers ---------------------------------------------------------------------

_TURKISH_I = str.maketrans({"İ": "i", "I": "i", "ı": "i"})  # before casefold, which makes İ into i + U+0307
_FIELD_COLUMN = re.compile(r"field\s*:\s*([0-9]+)")
_TURKISH_HEADERS = (  # as a Turkish sheet writes them; matched folded
    ("name", ("Ad", "Adı", "İsim")),
    ("surname", ("Soyad", "Soyadı")),
    ("email", ("E-posta", "Eposta", "E-mail")),
    ("gsm", ("Telefon", "Cep", "Cep Telefonu", "Cep No", "GSM")),
    ("groups", ("Grup", "Gruplar")),
)


def _fold_header(name: str) -> str:
    """``name`` as headers are compared: NFC, Turkish I's folded, case-folded, blanks trimmed and collapsed."""
    text = unicodedata.normalize("NFC", name).replace("\ufeff", "").translate(_TURKISH_I)  # NFC: I + U+0307 is İ
    return " ".join(text.casefold().replace("i\u0307", "i").split())  # "İD".lower() is "i\u0307d"


def _canonical_field(folded: str, known: Sequence[str]) -> Optional[str]:
    """The field a folded name is, ``field:01`` as ``field:1``; None when it is none of them."""
    if folded in known:
        return folded
    match = _FIELD_COLUMN.fullmatch(folded)
    return f"field:{int(match.group(1))}" if match else None


def _fields_help(known: Sequence[str]) -> str:
    return f"{', '.join(known)} or field:N (N: the custom field's id)"


def _column_option(text: str, known: Sequence[str]) -> Tuple[str, str]:
    """One ``--column 'HEADER=FIELD'``: (HEADER as written, stripped; the field, canonical).

    Split at the last "=", since no field name has one and a header may.
    """
    header, equals, field = text.rpartition("=")
    canonical = _canonical_field(_fold_header(field), known)
    if not equals or not header.strip():
        raise _InputError(f"--column {shlex.quote(text[:60])}: give it as --column 'HEADER=FIELD', "
                          f"e.g. --column 'Cep Telefonu=gsm'")
    if canonical is None:
        raise _InputError(f"--column {shlex.quote(text[:60])}: {field.strip()[:40]!r} is not a field; "
                          f"FIELD is one of {_fields_help(known)}")
    return header.strip(), canonical


def _column_options(texts: Sequence[str], known: Sequence[str]) -> Dict[str, str]:
    """Every ``--column``, keyed by HEADER as written; one header mapped twice is refused."""
    mapped: Dict[str, str] = {}
    folded: Dict[str, str] = {}
    for text in texts:
        header, field = _column_option(text, known)
        earlier = folded.setdefault(_fold_header(header), header)
        if earlier in mapped and mapped[earlier] != field:
            raise _InputError(f"--column: header {header[:40]!r} is mapped twice, to {mapped[earlier]} and "
                              f"{field}; keep one --column for it")
        mapped[earlier] = field
    return mapped


def _header_meanings(known: Sequence[str], mapped: Mapping[str, str],
                     skipped: Collection[str]) -> Dict[str, Optional[str]]:
    """Folded header -> the field it fills, None to ignore: options first, then field names, then Turkish names."""
    meanings: Dict[str, Optional[str]] = {}
    for field, names in _TURKISH_HEADERS:
        if field in known:
            meanings.update((_fold_header(name), field) for name in names)
    meanings.update((name, name) for name in known)
    meanings.update((_fold_header(header), field) for header, field in mapped.items())
    meanings.update((_fold_header(header), None) for header in skipped)
    return meanings


def _unknown_columns_error(where: str, unknown: List[Tuple[int, str]], known: Sequence[str]) -> _InputError:
    column, written = unknown[0]
    header = written.strip()[:40]
    others = f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""
    turkish = "; ".join(f"{'/'.join(names)} → {field}" for field, names in _TURKISH_HEADERS)
    return _InputError(
        f"{where}: unknown column {header!r} (column {column}){others}; a misspelt column must not leave values "
        f"unchanged in silence, so the run stops. Map it with --column {shlex.quote(header + '=FIELD')} "
        f"(FIELD: {_fields_help(known)}) or ignore it with --skip-column {shlex.quote(header)}. "
        f"Turkish headers understood: {turkish}")


def _check_options_match(header: List[str], mapped: Mapping[str, str], skipped: Collection[str],
                         where: str) -> None:
    present = {_fold_header(cell) for cell in header}
    for option, names in (("--column", list(mapped)), ("--skip-column", list(skipped))):
        for name in names:
            if _fold_header(name) not in present:
                listed = ", ".join(repr(cell.strip()[:40]) for cell in header if cell.strip())
                raise _InputError(f"{option} names {name[:40]!r}, which is not a column of {where}; "
                                  f"its columns are {listed}")
    both = {_fold_header(name) for name in mapped} & {_fold_header(name) for name in skipped}
    if both:
        raise _InputError(f"{sorted(both)[0]!r} is given both to --column and to --skip-column; keep one")


def _csv_columns(header: List[str], known: Sequence[str], mapped: Mapping[str, str], skipped: Collection[str],
                 where: str = "the header") -> List[Optional[str]]:
    """Per header cell, the field it fills, or None for a column ignored (--skip-column, or an empty header cell).

    ``known``: the plain field names (field:N is always understood); ``mapped``: HEADER -> field from
    ``_column_options``; ``skipped``: --skip-column headers. ``where`` begins every message, e.g. "a.csv line 1".
    """
    _check_options_match(header, mapped, skipped, where)
    meanings = _header_meanings(known, mapped, skipped)
    columns: List[Optional[str]] = []
    unknown: List[Tuple[int, str]] = []
    for number, written in enumerate(header, 1):
        folded = _fold_header(written)
        field = meanings[folded] if folded in meanings else _canonical_field(folded, known)
        if folded and folded not in meanings and field is None:
            unknown.append((number, written))
        columns.append(field)
    if unknown:
        raise _unknown_columns_error(where, unknown, known)
    if "id" not in columns:
        raise _InputError(f"{where} has no id column (the contact's id); name one id, or map one with "
                          f"--column 'HEADER=id'")
    filled: Dict[str, int] = {}
    for field in columns:
        if field is not None:
            filled[field] = filled.get(field, 0) + 1
    for field, count in filled.items():
        if count > 1:
            twice = [header[index].strip()[:40] for index, name in enumerate(columns) if name == field]
            raise _InputError(f"{where}: columns {', '.join(map(repr, twice))} all fill {field}; ignore all but "
                              f"one with --skip-column, or map one elsewhere with --column")
    return columns


def _value_under_blank_header(header: List[str], row: Sequence[str]) -> Optional[int]:
    """The 1-based column of the first value under an empty header cell (a bad record), or None."""
    for number, (name, cell) in enumerate(zip(header, row), 1):
        if not _fold_header(name) and _clean_cell(cell):
            return number
    return None


# -- cells -------------------------------------------------------------------------

_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+")


def _clean_cell(text: str) -> str:
    """``text`` without blanks around it; str.strip() already removes U+00A0 and U+202F (3.7 to 3.13)."""
    return text.strip()


def _is_scientific_number(text: str) -> bool:
    """True for what a spreadsheet made of a long number (``9,05057E+11``): its digits are gone for good."""
    return _SCIENTIFIC.fullmatch(_clean_cell(text)) is not None


# -- .xlsx -------------------------------------------------------------------------

_XLSX_MAX_MEMBER = 1 << 30  # bytes one part may unpack to; also what shared strings may take in memory
_XLSX_MAX_RATIO = 100  # unpacked bytes per packed byte, counted as unpacked...
_XLSX_RATIO_FLOOR = 1 << 20  # ...once past this, so a tiny, very compressible part passes
_XLSX_MAX_TOKEN = 16 << 20  # bytes expat may hold for one unfinished tag or comment
_XLSX_MAX_DEPTH = 64  # elements nested; a sheet nests 7
_XLSX_MAX_ROWS = 1 << 20  # Excel's own limits: 1,048,576 rows, 16,384 columns (XFD)
_XLSX_MAX_COLUMNS = 1 << 14
_XLSX_MAX_ROW_CHARS = 16 << 20  # characters of new text one row may carry
_XLSX_MAX_ENTRIES = 100_000  # parts a zip may list; a workbook has some dozens, one with images some thousands
_XLSX_MAX_DIRECTORY = 16 << 20  # bytes of the zip's list of parts
_XLSX_MAX_STYLES = 1 << 20  # number formats and cell formats; Excel allows 64,000
_SAVE_ADVICE = ('open it and save it as an Excel Workbook (.xlsx) or as "CSV UTF-8" (LibreOffice: '
                '"Excel 2007-365" or "Text CSV" with character set UTF-8)')
_FOREIGN_SHEETS = {".xls": "an Excel 97-2003 workbook", ".xlsb": "an Excel binary workbook",
                   ".ods": "an OpenDocument spreadsheet", ".numbers": "a Numbers document"}
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and any password-protected .xlsx
_CELL_REFERENCE = re.compile(r"([A-Za-z]{1,3})([0-9]{1,7})")
_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")  # _x000D_ is a CR; _x005F_ escapes "_"
_FORMAT_TIME_BRACKETS = re.compile(r"\[(h+|m+|s+)\]", re.IGNORECASE)  # [h]:mm elapsed time keeps its letters
_FORMAT_LITERALS = re.compile(r'"[^"]*"|\\.|_.|\*.|\[[^\]]*\]|am/pm|a/p', re.IGNORECASE)


class _CellError:
    """A cell with no value to send, e.g. Excel's ``#N/A``: its row is a bad record."""

    __slots__ = ("reference", "text")

    def __init__(self, reference: str, text: str) -> None:
        self.reference = reference  # e.g. "C7"
        self.text = text  # Excel's error text (#N/A, #DIV/0!), or what is wrong instead of a value

    def __repr__(self) -> str:
        return f"_CellError({self.reference!r}, {self.text!r})"

    def __str__(self) -> str:
        return f"cell {self.reference} holds {self.text}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CellError) and (self.reference, self.text) == (other.reference, other.text)

    def __hash__(self) -> int:
        return hash((self.reference, self.text))


class _DateShape(NamedTuple):
    """What a date or time number format shows, in the DD/MM/YYYY HH:MM:SS the provider's examples use."""

    date: bool
    time: bool
    seconds: bool


_BUILTIN_DATES = {
    14: _DateShape(True, False, False), 15: _DateShape(True, False, False), 16: _DateShape(True, False, False),
    17: _DateShape(True, False, False), 18: _DateShape(False, True, False), 19: _DateShape(False, True, True),
    20: _DateShape(False, True, False), 21: _DateShape(False, True, True), 22: _DateShape(True, True, False),
    45: _DateShape(False, True, True), 46: _DateShape(False, True, True), 47: _DateShape(False, True, True),
}


def _size_text(size: int) -> str:
    return f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"


def _refuse_foreign_sheet(path: str) -> None:
    """Refuse .xls, .xlsb, .ods and .numbers by name, with how to save the file in a form that is read."""
    suffix = posixpath.splitext(path.replace("\\", "/"))[1].lower()
    if suffix in _FOREIGN_SHEETS:
        raise _InputError(f"{path} is {_FOREIGN_SHEETS[suffix]}, which is not read; {_SAVE_ADVICE}")


def _date_shape(code: str) -> Optional[_DateShape]:
    """What a custom number format code shows: letters inside quotes, brackets and escapes do not count."""
    letters = _FORMAT_LITERALS.sub("", _FORMAT_TIME_BRACKETS.sub(r"\1", code)).lower()
    hours, seconds = "h" in letters, "s" in letters
    date = "d" in letters or "y" in letters or ("m" in letters and not hours and not seconds)
    if not date and not hours and not seconds:
        return None
    return _DateShape(date, hours or seconds, seconds)


def _serial_date(days: int, date1904: bool) -> str:
    if date1904:
        day = datetime.date(1904, 1, 1) + datetime.timedelta(days)
    elif days >= 61:
        day = datetime.date(1899, 12, 30) + datetime.timedelta(days)
    elif days in (0, 60):  # Excel shows a day 0 and a 29 February 1900 (Lotus 1-2-3's leap year)
        return "00/01/1900" if days == 0 else "29/02/1900"
    else:
        day = datetime.date(1899, 12, 31) + datetime.timedelta(days)
    return f"{day.day:02}/{day.month:02}/{day.year:04}"


def _serial_text(value: float, shape: _DateShape, date1904: bool) -> Optional[str]:
    """A date serial as DD/MM/YYYY [HH:MM[:SS]] per ``shape``; None where Excel would show #### instead."""
    if not 0 <= value < 2958466:
        return None
    days = math.floor(value)
    seconds = round((value - days) * 86400)
    if seconds == 86400:
        days, seconds = days + 1, 0
    try:
        date_text = _serial_date(days, date1904) if shape.date else ""
    except OverflowError:  # past 9999 in the 1904 system
        return None
    if not shape.time:
        return date_text
    clock = f"{seconds // 3600:02}:{seconds // 60 % 60:02}" + (f":{seconds % 60:02}" if shape.seconds else "")
    return f"{date_text} {clock}" if date_text else clock


def _number_text(text: str, shape: Optional[_DateShape], date1904: bool, reference: str) -> Union[str, _CellError]:
    """A number cell as Excel shows it: a whole number without ".0", a date per its format, else repr()."""
    try:
        value = float(text)
    except ValueError:
        return _CellError(reference, f"{text.strip()[:20]!r}, which is not a number")
    if shape is not None:
        shown = _serial_text(value, shape, date1904)
        if shown is not None:
            return shown
    if value.is_integer() and abs(value) < 2 ** 53:  # every whole number a float holds exactly
        return str(int(value))
    return repr(value)


def _iso_date_text(text: str, reference: str) -> Union[str, _CellError]:
    """A ``t="d"`` cell (ISO 8601, written by some tools) as DD/MM/YYYY, with the time when it has one."""
    match = re.match(r"\s*([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)?", text)
    if match is None:
        return _CellError(reference, f"{text.strip()[:30]!r}, which is not a date")
    year, month, day, hour, minute, second = match.groups()
    shown = f"{day}/{month}/{year}"
    if hour is not None and (hour, minute, second or "00") != ("00", "00", "00"):
        shown += f" {hour}:{minute}" + (f":{second}" if second and second != "00" else "")
    return shown


def _unescape(text: str) -> str:
    """OOXML's ``_xHHHH_`` escapes in strings back to their characters (Excel writes a CR as ``_x000D_``)."""
    if "_x" not in text:
        return text

    def character(match: re.Match[str]) -> str:
        code = int(match.group(1), 16)
        return match.group() if 0xD800 <= code <= 0xDFFF else chr(code)  # no lone surrogates into a str

    return _OOXML_ESCAPE.sub(character, text)


def _column_letters(number: int) -> str:
    letters = ""
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - 64
    return number


class _CountingFile(io.FileIO):
    """The workbook file, counting the bytes read from it.

    zipfile reads a member's packed bytes from this file as its decompressor needs them, so the count
    moving while one member is read is what that member really consumed, whatever its header claims.
    """

    consumed = 0

    def read(self, size: int = -1) -> bytes:  # FileIO's may return None; ours never
        data = super().read(size)
        self.consumed += len(data or b"")
        return data or b""


class _XmlHandler:
    """What a streaming parse of one part calls; tags and attribute names arrive with any prefix."""

    def start(self, tag: str, attributes: Dict[str, str]) -> None:
        pass

    def end(self, tag: str) -> None:
        pass

    def text(self, data: str) -> None:
        pass


def _local(name: str) -> str:
    return name.rpartition(":")[2]  # "x:row" is "row": the prefix is the writer's choice


class _Workbook:
    """An open .xlsx: its parts, read in bounded chunks and parsed by hardened expat."""

    def __init__(self, path: str) -> None:
        self.path = path
        import zipfile  # only the command line reads workbooks: a library user never pays for it

        self.file = _CountingFile(path, "rb")
        try:
            self.archive = zipfile.ZipFile(self.file)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            self.file.close()
            raise _InputError(f"{path} is not an .xlsx workbook (it is not a zip archive) or is damaged; "
                              f"{_SAVE_ADVICE}") from None
        self.names = {name.lower(): name for name in self.archive.namelist()}

    def close(self) -> None:
        self.archive.close()
        self.file.close()

    def has(self, name: str) -> bool:
        return name.lower() in self.names

    def _refuse(self, name: str, problem: str) -> _InputError:
        return _InputError(f"{self.path}: the part {name[:80]} {problem}; the workbook is refused and nothing is "
                           f"sent. If it comes from a spreadsheet you trust, {_SAVE_ADVICE}")

    def chunks(self, name: str) -> Iterator[bytes]:
        """The unpacked bytes of part ``name``, refused past 1 GiB or 100 to 1, counted as they are unpacked."""
        try:
            with self.archive.open(self.names[name.lower()]) as member:
                packed_at_start, unpacked = self.file.consumed, 0
                while True:
                    chunk = member.read(_CHUNK)
                    if not chunk:
                        return
                    unpacked += len(chunk)
                    packed = self.file.consumed - packed_at_start
                    if unpacked > _XLSX_MAX_MEMBER:
                        raise self._refuse(name, f"unpacks to more than {_size_text(_XLSX_MAX_MEMBER)}")
                    if unpacked > _XLSX_RATIO_FLOOR and unpacked > _XLSX_MAX_RATIO * max(packed, 1):
                        raise self._refuse(name, f"is packed more than {_XLSX_MAX_RATIO} to 1 (a zip bomb?)")
                    yield chunk
        except (sys.modules["zipfile"].BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            raise self._refuse(name, f"cannot be unpacked ({exc})") from None
        except RuntimeError as exc:  # zipfile's word for an encrypted member
            raise self._refuse(name, f"cannot be unpacked ({exc}); save it without a password") from None

    def check_packing(self, name: str) -> None:
        """Unpack part ``name`` once without parsing: size and ratio are refused at inflate speed (~1 GiB/s)."""
        for _ in self.chunks(name):
            pass

    def parse(self, name: str, handler: _XmlHandler) -> Iterator[None]:
        """Feed part ``name`` to expat chunk by chunk, yielding after each; a DTD or bad XML is refused."""
        parser = self._parser(name, handler)
        fed = 0
        try:
            for chunk in self.chunks(name):
                parser.Parse(chunk, False)
                fed += len(chunk)
                if fed - parser.CurrentByteIndex > _XLSX_MAX_TOKEN:  # what expat holds of an unfinished token
                    raise self._refuse(name, f"has a tag, comment or attribute longer than "
                                             f"{_size_text(_XLSX_MAX_TOKEN)}")
                yield
            parser.Parse(b"", True)
        except expat.ExpatError as exc:
            raise self._refuse(name, f"is not well-formed XML ({exc})") from None
        yield

    def _parser(self, name: str, handler: _XmlHandler) -> expat.XMLParserType:
        return _PartParser(self, name, handler).create()

    def read_part(self, name: str, handler: _XmlHandler) -> None:
        for _ in self.parse(name, handler):
            pass


class _PartParser:
    """Expat's handlers for one part of a workbook: tags without their prefix, nesting bounded, any DTD refused."""

    def __init__(self, book: _Workbook, name: str, handler: _XmlHandler) -> None:
        self._book = book
        self._name = name
        self._handler = handler
        self._depth = 0

    def create(self) -> expat.XMLParserType:
        parser = _expat_refusing_dtds(self._refuse_dtd)  # a part is UTF-8 or UTF-16 as declared: expat reads both
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._handler.text
        return parser

    def _refuse_dtd(self, *_: object) -> NoReturn:
        raise self._book._refuse(self._name, "contains a DTD (<!DOCTYPE or <!ENTITY>), which is refused")

    def _start(self, tag: str, attributes: Dict[str, str]) -> None:
        self._depth += 1
        if self._depth > _XLSX_MAX_DEPTH:
            raise self._book._refuse(self._name, f"nests elements deeper than {_XLSX_MAX_DEPTH}")
        self._handler.start(_local(tag), attributes)

    def _end(self, tag: str) -> None:
        self._depth -= 1
        self._handler.end(_local(tag))


class _RelationshipsReader(_XmlHandler):
    """A .rels part: relationship id -> (type, target)."""

    def __init__(self) -> None:
        self.targets: Dict[str, Tuple[str, str]] = {}

    def start(self, tag: str, attributes: Dict[str, str]) -> None:
        if tag == "Relationship" and attributes.get("TargetMode") != "External" and len(self.targets) < 65536:
            self.targets[attributes.get("Id", "")] = (attributes.get("Type", ""), attributes.get("Target", ""))


class _WorkbookReader(_XmlHandler):
    """xl/workbook.xml: the relationship id of the first <sheet> not hidden (else the first), and whether dates
    count from 1904. A hidden sheet (a lookup table) is not the first sheet its user sees."""

    def __init__(self) -> None:
        self.first_sheet: Optional[str] = None
        self.first_visible = False
        self.date1904 = False

    def start(self, tag: str, attributes: Dict[str, str]) -> None:
        if tag == "sheet" and not self.first_visible:
            visible = attributes.get("state", "visible") not in ("hidden", "veryHidden")
            if self.first_sheet is None or visible:
                self.first_sheet = next((value for key, value in attributes.items()
                                         if ":" in key and _local(key) == "id"), "")  # r:id, whatever the prefix
                self.first_visible = visible
        elif tag == "workbookPr":
            self.date1904 = attributes.get("date1904", "").lower() in ("1", "true")


class _StylesReader(_XmlHandler):
    """xl/styles.xml: custom number format codes, and each cell format's number format id."""

    def __init__(self) -> None:
        self.codes: Dict[int, str] = {}
        self.cell_formats: List[int] = []
        self.in_cell_formats = False

    def start(self, tag: str, attributes: Dict[str, str]) -> None:
        if len(self.codes) + len(self.cell_formats) > _XLSX_MAX_STYLES:
            raise _InputError(f"the workbook has more than {_XLSX_MAX_STYLES} number or cell formats; "
                              f"{_SAVE_ADVICE}")
        if tag == "numFmt":
            self.codes[_whole(attributes.get("numFmtId"))] = attributes.get("formatCode", "")
        elif tag == "cellXfs":
            self.in_cell_formats = True
        elif tag == "xf" and self.in_cell_formats:
            self.cell_formats.append(_whole(attributes.get("numFmtId")))

    def end(self, tag: str) -> None:
        if tag == "cellXfs":
            self.in_cell_formats = False

    def date_shapes(self) -> List[Optional[_DateShape]]:
        return [_date_shape(self.codes[number]) if number in self.codes else _BUILTIN_DATES.get(number)
                for number in self.cell_formats]


def _whole(text: Optional[str]) -> int:
    return int(text) if text and text.isdigit() and len(text) < 10 else 0  # isdigit: ASCII here, from XML


class _SharedStringsReader(_XmlHandler):
    """xl/sharedStrings.xml: every <si> as text, runs joined, phonetic guides (<rPh>) left out."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.strings: List[str] = []
        self.parts: List[str] = []
        self.collecting = False
        self.phonetic = 0
        self.memory = 0  # bytes the strings take, as sys.getsizeof counts them

    def start(self, tag: str, attributes: Dict[str, str]) -> None:
        if tag == "t":
            self.collecting = not self.phonetic
        elif tag == "rPh":
            self.phonetic += 1
        elif tag == "si":
            self.parts = []

    def end(self, tag: str) -> None:
        if tag == "t":
            self.collecting = False
        elif tag == "rPh":
            self.phonetic -= 1
        elif tag == "si":
            text = _unescape("".join(self.parts))
            self.parts = []
            self.memory += sys.getsizeof(text) + 8  # 8: its place in the list
            self.strings.append(text)

    def text(self, data: str) -> None:
        if self.collecting:
            self.parts.append(data)
            self.memory += len(data)
            if self.memory > _XLSX_MAX_MEMBER:  # they must all be kept: cells refer to them by index
                raise _InputError(f"{self.path}: the shared strings would take more than "
                                  f"{_size_text(_XLSX_MAX_MEMBER)} of memory; the workbook is refused")


_SparseRow = Tuple[int, List[Tuple[int, Union[str, _CellError]]]]  # row number; (column, value) of non-empty cells


class _SheetReader(_XmlHandler):
    """A worksheet, streaming: finished rows collect in ``rows`` (sparse) until taken."""

    def __init__(self, path: str, strings: List[str], shapes: List[Optional[_DateShape]], date1904: bool) -> None:
        self.path, self.strings, self.shapes, self.date1904 = path, strings, shapes, date1904
        self.rows: List[_SparseRow] = []
        self.row_number = 0
        self.cells: List[Tuple[int, Union[str, _CellError]]] = []
        self.row_chars = 0
        self.column = 0
        self.cell_type = ""
        self.cell_style = 0
        self.parts: List[str] = []
        self.collecting = self.in_inline = self.has_value = self.has_formula = False
        self.phonetic = 0

    def _refuse(self, problem: str) -> _InputError:
        return _InputError(f"{self.path} row {self.row_number}: {problem}; the workbook is refused and nothing "
                           f"is sent")

    def start(self, tag: str, attributes: Dict[str, str]) -> None:
        if tag == "c":
            self._start_cell(attributes)
        elif tag == "v":
            self.collecting, self.has_value = True, True
        elif tag == "t":
            self.collecting = self.in_inline and not self.phonetic
        elif tag == "is":
            self.in_inline = True
        elif tag == "rPh":
            self.phonetic += 1
        elif tag == "f":
            self.has_formula = True
        elif tag == "row":
            self._start_row(attributes.get("r"))

    def _start_row(self, number: Optional[str]) -> None:
        self.row_number = _whole(number) if number else self.row_number + 1
        if not 0 < self.row_number <= _XLSX_MAX_ROWS:
            raise self._refuse(f"row number {str(number)[:20]!r} is not one of Excel's 1 to {_XLSX_MAX_ROWS}")
        self.cells, self.row_chars, self.column = [], 0, 0

    def _start_cell(self, attributes: Dict[str, str]) -> None:
        reference = attributes.get("r")
        if reference is None:
            self.column += 1
        else:
            match = _CELL_REFERENCE.fullmatch(reference)
            if match is None:
                raise self._refuse(f"cell reference {reference[:20]!r} is not a cell of a sheet")
            self.column = _column_number(match.group(1))
        if self.column > _XLSX_MAX_COLUMNS or len(self.cells) >= _XLSX_MAX_COLUMNS:
            raise self._refuse(f"a cell lies past column XFD, Excel's last ({_XLSX_MAX_COLUMNS})")
        self.cell_type, self.cell_style = attributes.get("t", "n"), _whole(attributes.get("s"))
        self.parts, self.has_value, self.has_formula, self.in_inline = [], False, False, False

    def text(self, data: str) -> None:
        if self.collecting:
            self.parts.append(data)
            self.row_chars += len(data)
            if self.row_chars > _XLSX_MAX_ROW_CHARS:
                raise self._refuse(f"the row holds more than {_XLSX_MAX_ROW_CHARS >> 20} Mi characters")

    def end(self, tag: str) -> None:
        if tag in ("v", "t"):
            self.collecting = False
        elif tag == "rPh":
            self.phonetic -= 1
        elif tag == "is":
            self.in_inline = False
        elif tag == "c":
            value = self._cell_value()
            if value != "":
                self.cells.append((self.column, value))
        elif tag == "row":
            self.rows.append((self.row_number, self.cells))
            self.cells = []

    def _cell_value(self) -> Union[str, _CellError]:
        reference = f"{_column_letters(self.column)}{self.row_number}"
        text = "".join(self.parts)
        if self.cell_type == "inlineStr":
            return _unescape(text)
        if self.has_formula and not text and self.cell_type != "str":  # openpyxl writes <f> with an empty <v/>
            return _CellError(reference, "a formula with no saved value (open and save the workbook in Excel or "
                                         "LibreOffice so it is calculated)")
        if not self.has_value:
            return ""
        return self._typed_value(self.cell_type, text, reference)

    def _typed_value(self, kind: str, text: str, reference: str) -> Union[str, _CellError]:
        if kind == "s":
            index = _whole(text.strip()) if text.strip().isdigit() else -1
            if 0 <= index < len(self.strings):
                return self.strings[index]
            return _CellError(reference, "a shared string the workbook does not have (a damaged file?)")
        if kind == "str":
            return _unescape(text)
        if kind == "b":
            return "TRUE" if text.strip().lower() in ("1", "true") else "FALSE"
        if kind == "e":
            return _CellError(reference, text.strip()[:20] or "an error")
        if kind == "d":
            return _iso_date_text(text, reference)
        if not text.strip():
            return ""
        shape = self.shapes[self.cell_style] if self.cell_style < len(self.shapes) else None
        return _number_text(text, shape, self.date1904, reference)

    def take_rows(self) -> Iterator[Tuple[int, List[Union[str, _CellError]]]]:
        """The rows finished so far, dense: by column position, gaps filled with ""."""
        rows, self.rows = self.rows, []
        for number, cells in rows:
            dense: List[Union[str, _CellError]] = [""] * max((column for column, _ in cells), default=0)
            for column, value in cells:
                dense[column - 1] = value
            yield number, dense


def _relationships(book: _Workbook, part: str) -> Dict[str, Tuple[str, str]]:
    """The relationships of ``part``: id -> (type, the target's part name)."""
    folder, base = posixpath.split(part)
    rels = posixpath.join(folder, "_rels", base + ".rels")
    if not book.has(rels):
        return {}
    reader = _RelationshipsReader()
    book.read_part(rels, reader)
    resolved: Dict[str, Tuple[str, str]] = {}
    for key, (kind, target) in reader.targets.items():
        target = urllib.parse.unquote(target)  # "Sheet%201.xml"
        name = target[1:] if target.startswith("/") else posixpath.join(folder, target)
        resolved[key] = (kind, posixpath.normpath(name))
    return resolved


def _zip_directory_size(binary: BinaryIO) -> Tuple[int, int]:
    """(entries, bytes) of a zip's central directory, from its end records; (0, 0) where none is found.

    zipfile builds an object of some 500 bytes for every entry when it opens an archive, before any
    limit of ours can count: an archive of millions of empty entries is refused from these numbers first.
    """
    size = binary.seek(0, io.SEEK_END)
    binary.seek(max(0, size - (1 << 16) - 22))  # the end record, after a comment of at most 64 KiB
    tail = binary.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return 0, 0
    entries, directory = struct.unpack_from("<HI", tail, at + 10)
    if (entries != 0xFFFF and directory != 0xFFFFFFFF) or at < 20 or tail[at - 20:at - 16] != b"PK\x06\x07":
        return entries, directory
    binary.seek(struct.unpack_from("<Q", tail, at - 12)[0])  # the zip64 end record, where its locator says
    record = binary.read(56)
    if len(record) < 56 or not record.startswith(b"PK\x06\x06"):
        return entries, directory
    entries, directory = struct.unpack_from("<QQ", record, 32)
    return entries, directory


def _open_xlsx(path: str) -> _Workbook:
    _refuse_foreign_sheet(path)
    try:
        with open(path, "rb") as binary:
            magic = binary.read(8)
            entries, directory = _zip_directory_size(binary)
    except OSError as exc:
        raise _InputError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if magic == _OLE2_MAGIC:
        raise _InputError(f"{path} is an Excel 97-2003 (.xls) file or a password-protected workbook, which is "
                          f"not read; {_SAVE_ADVICE}, without a password")
    if entries > _XLSX_MAX_ENTRIES or directory > _XLSX_MAX_DIRECTORY:
        raise _InputError(f"{path}: the zip archive lists {entries} parts in {_size_text(directory)}; a workbook "
                          f"has some dozens, so it is refused and nothing is sent. {_SAVE_ADVICE[0].upper()}"
                          f"{_SAVE_ADVICE[1:]}")
    book = _Workbook(path)
    if book.has("mimetype") and not book.has("xl/workbook.xml"):
        book.close()
        raise _InputError(f"{path} is an OpenDocument spreadsheet (.ods), which is not read; {_SAVE_ADVICE}")
    return book


def _workbook_part(book: _Workbook) -> str:
    for kind, name in _relationships(book, "").values():
        if kind.endswith("/officeDocument") and book.has(name):
            return name
    if book.has("xl/workbook.xml"):
        return "xl/workbook.xml"
    raise _InputError(f"{book.path} is a zip archive but not an .xlsx workbook (it has no xl/workbook.xml); "
                      f"{_SAVE_ADVICE}")


def _first_sheet(book: _Workbook) -> Tuple[_SheetReader, str]:
    """A reader for the workbook's first sheet, shared strings and styles read; and the sheet's part name."""
    workbook_part = _workbook_part(book)
    workbook = _WorkbookReader()
    book.read_part(workbook_part, workbook)
    related = _relationships(book, workbook_part)
    kind, sheet = related.get(workbook.first_sheet or "", ("", ""))
    if not kind.endswith("/worksheet") or not book.has(sheet):
        raise _InputError(f"{book.path}: the first sheet is not a worksheet of cells (a chart?) or is missing; "
                          f"move the contacts to the first sheet and save again")
    parts = {kind.rpartition("/")[2]: name for kind, name in related.values() if book.has(name)}
    for name in (sheet, parts.get("sharedStrings")):  # the big parts: a bomb is refused before parsing
        if name:
            book.check_packing(name)
    strings = _SharedStringsReader(book.path)
    if "sharedStrings" in parts:
        book.read_part(parts["sharedStrings"], strings)
    styles = _StylesReader()
    if "styles" in parts:
        book.read_part(parts["styles"], styles)
    return _SheetReader(book.path, strings.strings, styles.date_shapes(), workbook.date1904), sheet


def _xlsx_rows(path: str) -> Generator[Tuple[int, List[Union[str, _CellError]]], None, None]:
    """The first sheet's rows in order: (row number, cells as Excel shows them, by column, gaps "").

    Starts with the header row; rows of empty cells are yielded too. A hostile or damaged workbook raises
    ``_InputError`` as soon as it is seen: run through it all once (``_check_xlsx``) before sending.
    """
    book = _open_xlsx(path)
    try:
        reader, sheet = _first_sheet(book)
        for _ in book.parse(sheet, reader):
            yield from reader.take_rows()
    finally:
        book.close()


def _check_xlsx(path: str) -> None:
    """Read the whole workbook once, so that a hostile or damaged one is refused before anything is sent."""
    for _ in _xlsx_rows(path):
        pass


# -- reading records -------------------------------------------------------------


def _format_of(path: str, given: Optional[str]) -> str:
    if given:
        return given
    suffix = os.path.splitext(path.lower())[1]
    if suffix not in _FORMATS:
        raise _InputError("--format csv, jsonl or xlsx is needed" + (
            " with --input -" if path == "-" else
            f": {path!r} ends in none of {', '.join(sorted(_FORMATS))}"))
    return _FORMATS[suffix]


def _open_records(args: argparse.Namespace) -> Tuple[_Layout, Iterator[_Record], Callable[[], None]]:
    """The input's layout, its records, and what closes it. A regular file is checked whole first: a bad byte
    or a hostile workbook stops the run before anything is sent."""
    path = args.input
    _refuse_foreign_sheet(path)
    form = _format_of(path, args.format)
    if form != "csv" and args.encoding is not None:
        raise _InputError(f"--encoding applies to CSV; {'JSON Lines are UTF-8' if form == 'jsonl' else 'a workbook'}"
                          " says its own")
    if form == "xlsx":
        if path == "-":
            raise _InputError("a workbook cannot be read from standard input: give its path to --input")
        _check_xlsx(path)
        sheet = _xlsx_rows(path)
        layout, records = _sheet_records(sheet, args, _Layout("xlsx", "utf-8-sig", ";", "\r\n", []), path)
        return layout, records, sheet.close
    stream, encoding, close = _open_text(path, args.encoding if form == "csv" else "utf-8")
    try:
        if form == "jsonl":
            return _Layout("jsonl", encoding, "", "\n", []), _jsonl_records(stream), close
        header_line = next(stream, "")
        delimiter = _delimiter_of(header_line)
        layout = _Layout("csv", encoding, delimiter, "\r\n" if header_line.endswith("\r\n") else "\n", [])
        rows = _csv_rows(itertools.chain([header_line], stream), delimiter)
        layout, records = _sheet_records(rows, args, layout, "the CSV header" if path == "-" else path)
        return layout, records, close
    except BaseException:
        close()
        raise


def _open_text(path: str, given: Optional[str]) -> Tuple[Iterator[str], str, Callable[[], None]]:
    """Lines of the input with their line ends, and the encoding to write it back in (a UTF-8 BOM only where it
    had one). A regular file is decoded whole once before this returns; a pipe (standard input, a named pipe) can
    be read only once, so it is decoded as it streams."""
    try:
        if path == "-" or not _is_regular_file(path):
            binary: Any = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115  # closed by caller
            head = _read_head(binary)  # peek() would return what one read brings: a pipe may bring 1 byte
            encoding = _input_encoding(head, given)
            lines = _decoded_lines(_HeadFirst(head, binary), encoding, given is None,  # type: ignore[arg-type]
                                   "standard input" if path == "-" else path)
            return lines, _written_as(encoding, head), (lambda: None) if path == "-" else binary.close
        with open(path, "rb") as start:
            head = start.read(4)
        encoding = _input_encoding(head, given)
        _check_decodable(path, encoding, given is None)
        stream = open(path, encoding=encoding, newline="")  # noqa: SIM115  # closed by the returned callable
    except OSError as exc:
        raise _InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return stream, _written_as(encoding, head), stream.close


def _written_as(encoding: str, head: bytes) -> str:
    return "utf-8" if encoding == "utf-8-sig" and not head.startswith(codecs.BOM_UTF8) else encoding


def _read_head(binary: BinaryIO) -> bytes:
    """The first 4 bytes of a stream (fewer only at its end), however few each read brings: a BOM is up to 4."""
    head = b""
    while len(head) < 4:
        chunk = binary.read(4 - len(head))
        if not chunk:
            break
        head += chunk
    return head


class _HeadFirst:
    """A byte stream whose first bytes were read to find a BOM: they come first again, then the rest."""

    def __init__(self, head: bytes, binary: BinaryIO) -> None:
        self._head = head
        self._read: Callable[[int], bytes] = getattr(binary, "read1", binary.read)

    def read1(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._read(size)

    read = read1  # what _decoded_lines falls back to; never called while read1 is there


def _delimiter_of(header_line: str) -> str:
    counts = {delimiter: header_line.count(delimiter) for delimiter in (",", ";", "\t")}
    return max(counts, key=counts.__getitem__) if any(counts.values()) else ","  # Excel in Turkish: ";"


def _csv_rows(lines: Iterator[str], delimiter: str) -> Iterator[Tuple[int, Union[List[str], ValidationError]]]:
    """Each CSV row with the line it starts on; a line csv cannot read is an error of its own."""
    reader = csv.reader(lines, delimiter=delimiter)
    read_to = 0
    while True:
        try:
            row: Union[List[str], ValidationError] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a NUL byte before 3.11, a cell over csv's size limit: that line alone
            row = ValidationError(f"line {read_to + 1} cannot be read as CSV: {exc}")
        line, read_to = read_to + 1, reader.line_num
        yield line, row


SheetRow = Tuple[int, Union[List[Any], ValidationError]]  # a row's line and its cells (str or _CellError)


def _sheet_records(rows: Iterator[Any], args: argparse.Namespace, layout: _Layout,
                   where: str) -> Tuple[_Layout, Iterator[_Record]]:
    """The header of ``rows`` read and checked now, and the records after it."""
    first = next(rows, None)
    while first is not None and not isinstance(first[1], ValidationError) and not any(
            str(cell).strip() for cell in first[1]):
        first = next(rows, None)  # blank lines above the header
    if first is None or isinstance(first[1], ValidationError):
        raise _InputError(f"{where}: the first line must be the header (id, name, ...); it is empty or unreadable")
    header = [str(cell) for cell in first[1]]
    skipped = [*args.skip_column, *(cell for cell in header if _fold_header(cell) == _ERROR_COLUMN)]
    columns = _csv_columns(header, _CSV_COLUMNS, _column_options(args.column, _CSV_COLUMNS), skipped,
                           f"{where} line {first[0]}")
    width = len(header) if layout.format == "xlsx" else 0  # a sheet's row ends at its last value: the rest is empty
    return layout._replace(header=header), _row_records(rows, header, columns, args.empty_cells == "clear", width)


def _row_records(rows: Iterator[SheetRow], header: List[str], columns: List[Optional[str]],
                 clear: bool, width: int = 0) -> Iterator[_Record]:
    for line, row in rows:
        if isinstance(row, ValidationError):
            yield _Record(line, row, [])
            continue
        if len(row) < width:
            row = [*row, *[""] * (width - len(row))]
        raw = [str(cell) for cell in row]
        if all(not cell.strip() for cell in raw):
            continue  # a blank line, or one of empty cells
        yield _Record(line, _row_item(line, row, header, columns, clear), raw)


def _row_item(line: int, row: List[Any], header: List[str], columns: List[Optional[str]], clear: bool) -> Item:
    errors = [cell for cell in row if isinstance(cell, _CellError)]
    if errors:
        return ValidationError(f"line {line}: {errors[0]}; fix the cell in the sheet")
    extra = [cell for cell in row[len(columns):] if cell.strip()]
    if extra:
        return ValidationError(f"line {line} has {len(row)} cells; the header names {len(columns)}")
    blank = _value_under_blank_header(header, row)
    if blank is not None:
        return ValidationError(f"line {line}: column {blank} has a value but no header; name the column")
    cells = {name: _clean_cell(cell) for name, cell in zip(columns, row) if name is not None}
    gsm = cells.get("gsm", "")
    if _DATE_SHAPED.fullmatch(gsm):
        return ValidationError(f"line {line}: gsm {gsm!r} is a date, not a phone number; check the column, and "
                               "format it as Text")
    if _is_scientific_number(gsm):
        return ValidationError(f"line {line}: gsm {gsm!r} was turned into a number by the spreadsheet and its digits "
                               "are lost; format the phone column as Text and type the numbers again")
    return _csv_contact(cells, clear)


def _csv_contact(cells: Dict[str, str], clear: bool) -> Contact:
    """The contact a row describes. An empty cell leaves the value as it is, or with ``clear`` sends it empty."""
    def given(value: Optional[str]) -> Optional[str]:
        return value if value or (clear and value is not None) else None

    texts = {field.name: given(cells.get(field.name)) for field in _TEXT_FIELDS}
    groups_cell = given(cells.get("groups"))
    groups: Optional[List[Any]] = None if groups_cell is None else [
        group for group in _GROUP_SEPARATORS.split(groups_cell) if group]
    fields: List[Any] = [CustomField(name[6:], value) for name, value in cells.items()  # type: ignore[arg-type]
                         if name.startswith("field:") and given(value) is not None]
    checked_when_built: Any = cells.get("id", "")  # digits in a string, as Contact takes them
    return Contact(checked_when_built, custom_fields=fields or None, groups=groups, **texts)


def _jsonl_records(stream: Iterator[str]) -> Iterator[_Record]:
    for line, text in enumerate(stream, 1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            yield _Record(line, ValidationError(f"line {line} is not JSON: {exc}"), text)
            continue
        yield _Record(line, _jsonl_contact(line, value), text)


def _jsonl_contact(line: int, value: object) -> Item:
    if not isinstance(value, dict):
        return ValidationError(f"line {line} is not a JSON object")
    unknown = sorted(str(key) for key in value if key not in _JSONL_KEYS and key != _ERROR_COLUMN)
    if unknown:
        return ValidationError(f"line {line} has an unknown key {unknown[0][:40]!r}; known: {', '.join(_JSONL_KEYS)}")
    fields = value.get("custom_fields")
    if isinstance(fields, dict):
        fields = [CustomField(key, field_value) for key, field_value in fields.items()]
    elif fields is not None and fields != []:
        return ValidationError(f"line {line}: custom_fields must be an object of id to value")
    values = {field.name: value.get(field.name) for field in _FIELDS}
    values["custom_fields"] = fields
    checked_when_built: Any = value.get("id")
    return Contact(checked_when_built, **values)


# -- what a re-run sends: fingerprints and --resume ------------------------------


def _fingerprint(item: Item) -> Optional[str]:
    """What tells one edit from another across runs: the contact id and every value as it would be sent.

    ``None`` for a record that cannot be sent, which no report line can confirm.
    """
    if not isinstance(item, Contact):
        return None
    try:
        body = _render_request("", item, None)[1]  # no key: a new key tomorrow is the same edit
    except ValidationError:
        return None
    return hashlib.sha256(body).hexdigest()[:32]


Pending = Tuple[_Record, Optional[str]]  # a record to send, and its fingerprint
_UNCERTAIN = "?"  # in a contact's history: an edit was sent and failed, and may or may not have been applied
_MOST_WAITING = 1024  # records --resume holds back at once; past that the oldest are sent (sending is always safe)


class _Resume:
    """Which records a re-run sends: every one but those that would leave a contact as the report says it is.

    The report holds, per contact, the fingerprints it confirmed (``"ok": true``) in the order they were
    confirmed. A contact's records are skipped only while they are the last edits confirmed for it, in that
    order, so an edit confirmed long ago and overwritten since (a value changed back) is sent again. From a
    contact's first record that is not skipped onward, every later one is sent, in file order, even one
    confirmed before: an older edit never lands after a newer one, and partial rows replay in order. A record
    that may yet turn out to be one of those last edits waits (a few of one contact's, never the file); it is
    sent, in order, once it is clear that it is not, or at the end of the input.
    """

    def __init__(self, history: Dict[int, List[str]]) -> None:
        self._history = history
        self._read: Dict[int, List[str]] = {}  # the fingerprints of a contact's records read so far, none sent
        self._waiting: Dict[int, List[Pending]] = {}  # those read since the last ones skipped for good
        self._sending: Set[int] = set()  # contacts whose every later record is sent
        self._count = 0  # how many records wait, over every contact

    def pending(self, records: Iterable[Pending], skipped: Callable[[int], None]) -> Iterator[Pending]:
        """The records to send, in file order per contact; ``skipped(n)`` is told of those skipped for good."""
        for record, fingerprint in records:
            yield from self._take(record, fingerprint, skipped)
            while self._count > _MOST_WAITING:  # a file that repeats old edits must not be held whole
                yield from self._send_from(next(iter(self._waiting)), None)
        waiting, self._waiting = self._waiting, {}
        for held in sorted(waiting.values(), key=lambda held: held[0][0].line):
            yield from held

    def _take(self, record: _Record, fingerprint: Optional[str], skipped: Callable[[int], None]) -> List[Pending]:
        key = _contact_key(record.item)
        if key is None:
            return [(record, fingerprint)]  # refused before sending: it gets its error again
        if key in self._sending or fingerprint is None:
            return self._send_from(key, (record, fingerprint))
        history = self._history.get(key, [])
        read = self._read.setdefault(key, [])
        read.append(fingerprint)
        self._waiting.setdefault(key, []).append((record, fingerprint))
        self._count += 1
        if history[-len(read):] == read:  # what was read ends what was confirmed: skipped for good
            done = len(self._waiting.pop(key))
            self._count -= done
            skipped(done)
            if len(read) == len(history):  # no longer run of confirmed edits is left to match
                self._sending.add(key)
                del self._read[key]
            return []
        if _occurs(read, history[:-1]):  # may still prove to end a longer run of confirmed edits
            return []
        return self._send_from(key, None)

    def _send_from(self, key: int, pending: Optional[Pending]) -> List[Pending]:
        """Send what waits for ``key`` (and ``pending``), and every later record of it."""
        self._sending.add(key)
        self._read.pop(key, None)
        released = self._waiting.pop(key, [])
        self._count -= len(released)
        return released + ([] if pending is None else [pending])

    @classmethod
    def from_report(cls, path: str) -> _Resume:
        """Each contact's confirmed fingerprints, in report order, with a mark where an edit sent failed; lines
        that do not parse are passed over."""
        history: Dict[int, List[str]] = {}
        try:
            with open(path, encoding="utf-8", errors="replace") as report:
                for text in report:
                    with contextlib.suppress(ValueError):
                        entry = json.loads(text)
                        if isinstance(entry, dict) and entry.get("ok") in (True, False) and isinstance(
                                entry.get("fingerprint"), str) and type(entry.get("id")) is int:
                            # A failure of an edit that was sent may still have been applied (no answer, an
                            # attempt that timed out): after it, nothing confirmed before counts.
                            confirmed = entry["fingerprint"] if entry["ok"] else _UNCERTAIN
                            history.setdefault(entry["id"], []).append(confirmed)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _InputError(f"cannot read the report {path}: {exc.strerror or exc}") from None
        return cls(history)


def _occurs(part: List[str], whole: List[str]) -> bool:
    return any(whole[start:start + len(part)] == part for start in range(len(whole) - len(part) + 1))


# -- what a run writes: the report, the failures file, progress and the summary ----


def _open_appending(path: str, what: str) -> Any:
    """``path`` to append to, on a line of its own after a line a kill cut short; readable by its owner only."""
    try:
        cut = False
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)  # names and phone numbers: KVKK
        with open(descriptor, "ab+", closefd=False) as raw:  # its last byte, as bytes: a cut may split a letter
            if raw.seek(0, os.SEEK_END):
                raw.seek(-1, os.SEEK_END)
                cut = raw.read(1) != b"\n"
        stream = open(descriptor, "a", encoding="utf-8")  # noqa: SIM115  # closed by the run
    except OSError as exc:
        raise _InputError(f"cannot write the {what} {path}: {exc.strerror or exc}") from None
    if cut:
        stream.write("\n")
    return stream


class _Report:
    """A JSON Lines line per record as it ends, flushed at once: a run cut short keeps every confirmed edit."""

    def __init__(self, path: Optional[str], tally: _Tally) -> None:
        self._stream = sys.stderr if path is None else _open_appending(path, "report")
        self._tally = tally

    def write(self, record: _Record, fingerprint: Optional[str], result: Optional[Result], *,
              dry_run: bool = False) -> None:
        """``dry_run``: the record was checked (``result`` its error, or ``None``), not sent: never ``"ok"``, so
        that a --resume with this report sends it."""
        entry: Dict[str, Any] = {"line": record.line, "id": _record_id(record.item),
                                 "ok": not dry_run and isinstance(result, Response), "fingerprint": fingerprint}
        if dry_run:
            entry.update(dry_run=True, valid=result is None)
        if isinstance(result, IletiMerkeziError):
            entry.update(error=type(result).__name__, code=getattr(result, "code", None),
                         message=" ".join(str(result).split()))
        if self._stream is sys.stderr:
            self._tally.clear()  # the report line takes the progress line's place; the next redraw brings it back
        try:
            self._stream.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._stream.flush()
        except OSError as exc:  # a full disk, a reader of stderr gone: exit 74, as for any output lost
            raise _OutputLost(f"the report: {exc}") from None

    def close(self) -> None:
        if self._stream is not sys.stderr:
            self._stream.close()


def _record_id(item: Item) -> Optional[Union[int, str]]:
    if not isinstance(item, Contact):
        return None
    key = _contact_key(item)
    return key if key is not None else (str(item.id)[:40] if item.id is not None else None)


class _FailuresFile:
    """``--failed``: every record that did not succeed, as it stood in the input, with its error last.

    CSV keeps the input's header, delimiter, line ends and encoding (a workbook's is CSV UTF-8 with a BOM and
    ";", which Excel in Turkey opens by double-click), JSON Lines its object; the ``error`` column or key is
    ignored on input, so the file runs again as it is once fixed. It holds personal data: created 0600, and an
    existing one is replaced only by a run with --resume.
    """

    def __init__(self, path: str, layout: _Layout, replace: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
        try:
            descriptor = os.open(path, flags, 0o600)
        except FileExistsError:
            raise _InputError(f"failures file {path} exists: remove it, give --failed another name, or add --resume "
                              "(which replaces it with this run's failures)") from None
        except OSError as exc:
            raise _InputError(f"cannot write the failures file {path}: {exc.strerror or exc}") from None
        with contextlib.suppress(AttributeError, OSError):  # an existing file keeps its mode on O_TRUNC
            os.fchmod(descriptor, 0o600)
        self._layout = layout
        # JSON Lines are UTF-8 without a BOM (JSON forbids one); a CSV keeps the input's encoding. errors="replace":
        # the cells were read strictly in that encoding, so only an error message (the 401 text's arrows, a server's
        # message) can hold a character it lacks; that character becomes "?".
        encoding = "utf-8" if layout.format == "jsonl" else layout.encoding
        self._stream = open(descriptor, "w", encoding=encoding, errors="replace", newline="")  # noqa: SIM115
        self._error_at = len(layout.header)
        if layout.format != "jsonl":
            self._csv = csv.writer(self._stream, delimiter=layout.delimiter, lineterminator=layout.line_end)
            header = list(layout.header)
            folded = [_fold_header(cell) for cell in header]
            self._error_at = folded.index(_ERROR_COLUMN) if _ERROR_COLUMN in folded else len(header)
            self._write_row(header, _ERROR_COLUMN)

    def write(self, record: _Record, error: IletiMerkeziError) -> None:
        message = f"{type(error).__name__}: {' '.join(str(error).split())}"
        try:
            if self._layout.format == "jsonl":
                self._stream.write(_jsonl_with_error(record.raw, message))
            else:
                self._write_row(list(record.raw), message)
            self._stream.flush()
        except OSError as exc:
            raise _OutputLost(f"the failures file: {exc}") from None

    def _write_row(self, cells: List[str], error: str) -> None:
        cells += [""] * (self._error_at + 1 - len(cells))
        cells[self._error_at] = error
        self._csv.writerow(cells)

    def close(self) -> None:
        self._stream.close()


def _jsonl_with_error(text: str, message: str) -> str:
    """The JSON Lines record with an ``error`` key; a line that is not an object is copied as it was."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return text if text.endswith("\n") else text + "\n"
    value[_ERROR_COLUMN] = message
    return json.dumps(value, ensure_ascii=False) + "\n"


class _Tally:
    """Counts for the summary, and the progress line while stderr is a terminal (or --progress)."""

    def __init__(self, total: Optional[int], shown: bool) -> None:
        self.total = total
        self.shown = shown
        self.done = self.succeeded = self.skipped = 0
        self.failed: Dict[str, int] = {}
        self.started = self.drawn = time.monotonic()
        self.width = 0

    def skip(self, count: int) -> None:
        """``count`` records skipped, confirmed by an earlier run."""
        self.done += count
        self.skipped += count

    def add(self, result: Result) -> None:
        """One record done."""
        self.done += 1
        if isinstance(result, Response):
            self.succeeded += 1
        else:
            kind = type(result).__name__
            self.failed[kind] = self.failed.get(kind, 0) + 1
        now = time.monotonic()
        if self.shown and now - self.drawn >= _PROGRESS_EVERY:
            self.drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        columns = _columns()
        text = _fitted(self._progress_texts(now), columns - 1)  # the last column would wrap on some terminals
        self.width = min(max(self.width, len(text)), columns - 1)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write("\r" + text.ljust(self.width))
            sys.stderr.flush()

    def _progress_texts(self, now: float) -> List[str]:
        """The progress line, longest first, then shorter forms for narrower terminals."""
        rate = (self.done - self.skipped) / max(now - self.started, 1e-9)
        count = f"{self.done}" + ("" if self.total is None else f"/{self.total}")
        failed = f"{sum(self.failed.values())} failed"
        left = ""
        if self.total is not None and rate > 0:
            seconds = max(self.total - self.done, 0) / rate
            left = f"{int(seconds // 60)} min {int(seconds % 60)} s left"
        texts = [f"{count} records, {rate:.1f}/s, {failed}" + (f", {left}" if left else ""),
                 f"{count}, {failed}" + (f", {left}" if left else ""), f"{count}, {failed}", count]
        return texts

    def clear(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if self.width:
                sys.stderr.write("\r" + " " * self.width + "\r")
                self.width = 0

    def summary(self) -> str:
        failed = sum(self.failed.values())
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.failed.items()))
        summary = (f"{self.done} records: {self.succeeded} succeeded, {failed} failed"
                   + (f" ({kinds})" if kinds else ""))
        if self.skipped:
            summary += f"; {self.skipped} skipped, already confirmed in the report"
        return summary


def _columns() -> int:
    """The terminal's width for stderr, or 80 where it is no terminal (--progress into a file)."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return shutil.get_terminal_size().columns


def _fitted(texts: List[str], width: int) -> str:
    """The first of ``texts`` no wider than ``width``, else the last cut to it."""
    for text in texts:
        if len(text) <= width:
            return text
    return texts[-1][:max(width, 1)]

# -- the run: checked before anything is sent, then every record, interrupts included --


class _StopReading(Exception):
    """Raised by the signal handler into a read that waits for input, so that a silent pipe cannot hold a stop."""


class _Interrupts:
    """SIGINT and SIGTERM during a run: stop reading and sending; the edits in flight end and get their lines.

    The handler only sets the scheduler's flag (and ends a read waiting for input): raised anywhere else, as
    Python's default KeyboardInterrupt is, it could fall between taking a finished edit and writing its line.
    """

    def __init__(self, scheduler: Union[_Scheduler[Any], _Startup]) -> None:
        self._scheduler = scheduler
        self.name: Optional[str] = None  # the signal that stopped the run
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():  # where Python runs signal handlers
            for name in _SIGNAL_EXITS:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: object) -> None:
        self.name = self.name or signal.Signals(number).name
        self._scheduler.stop.set()
        if self._scheduler.reading:
            raise _StopReading


class _Startup:
    """What a signal stops before the run starts (a header that a silent pipe never sends): anything it reads."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reading = True


class _BulkPlan:
    """Everything ``--input`` needs, checked before the first edit is sent."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        _check_bulk_options(args)
        from_stdin = args.input == "-"
        self.credentials = None if args.dry_run else Credentials.from_env()
        self.report_path = _report_path(args)
        self.resume = _Resume.from_report(self.report_path) if args.resume and self.report_path else None
        self.layout, self.records, self._close_input = _open_records(args)
        self.tally = _Tally(None, args.progress if args.progress is not None else _is_terminal(sys.stderr))
        self.closing: List[Callable[[], None]] = [self._close_input]
        try:
            replace = args.resume and not args.dry_run  # a dry run never wipes a real run's failures
            self.failures = None if args.failed is None else _FailuresFile(args.failed, self.layout, replace)
            if self.failures is not None:
                self.closing.append(self.failures.close)
            self.report = None if args.dry_run and args.report is None else _Report(self.report_path, self.tally)
            if self.report is not None:
                self.closing.append(self.report.close)
            if self.tally.shown and not from_stdin and _is_regular_file(args.input):  # a pipe can be read once
                self.tally.total = _count_records(args)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for close in reversed(self.closing):
            close()
        self.closing = []

    def run(self) -> int:
        return self._check_all() if self.args.dry_run else self._edit_all()

    def _edit_all(self) -> int:
        args = self.args
        assert self.credentials is not None  # read unless this is a dry run
        with Session(self.credentials, url=args.url, timeout=args.timeout, retries=args.retries,
                     proxy=args.proxy) as session:
            # On threads even for one worker: a signal then stops the main thread, not an edit half sent.
            scheduler: _Scheduler[Tuple[_Record, Optional[str]]] = _Scheduler(
                session.edit_contact, args.workers or DEFAULT_WORKERS, ordered=False, threaded=True)
            results = scheduler.run(self._to_send())
            with _Interrupts(scheduler) as interrupts:
                try:
                    for (record, fingerprint), _, result in results:
                        self._record(record, fingerprint, result)
                except BaseException:
                    results.close()  # the edits in flight end, then are reported
                    for (record, fingerprint), _, result in sorted(scheduler.unreported, key=lambda x: x[0][0].line):
                        self._record(record, fingerprint, result)
                    raise
        return self._finish(interrupts.name)

    def _to_send(self) -> Iterator[Tuple[Pending, Item]]:
        return ((pending, pending[0].item) for pending in self._pending())

    def _pending(self) -> Iterator[Pending]:
        """The records to send (in a dry run, to check), with their fingerprints; --resume's skips counted."""
        fingerprinted = ((record, _fingerprint(record.item)) for record in self.records)
        if self.resume is None:
            return fingerprinted
        return self.resume.pending(fingerprinted, self.tally.skip)

    def _record(self, record: _Record, fingerprint: Optional[str], result: Result) -> None:
        assert self.report is not None  # a real run always has one
        self.report.write(record, fingerprint, result)
        if self.failures is not None and isinstance(result, IletiMerkeziError):
            self.failures.write(record, result)
        self.tally.add(result)

    def _finish(self, stopped_by: Optional[str]) -> int:
        tally = self.tally
        tally.clear()
        _report(tally.summary(), _EXIT_OK)
        if stopped_by is None:
            return _EXIT_OK if not tally.failed else _EXIT_API
        total = tally.total
        if total is None and _is_regular_file(self.args.input):
            total = _count_records(self.args)
        left = ("the rest of the input was not read" if total is None else
                f"{max(total - tally.done, 0)} records were not done")
        return _report(f"interrupted ({stopped_by}) after {tally.done} records; {left}: run the same command with "
                       "--resume to send them", _SIGNAL_EXITS[stopped_by])

    def _check_all(self) -> int:
        """``--dry-run``: every record read and checked as a real run would, nothing sent."""
        valid = bad = 0
        for record, fingerprint in self._pending():
            error = record.item if isinstance(record.item, IletiMerkeziError) else (
                None if fingerprint is not None else _contact_problem(record.item))  # rendered once if valid
            valid, bad = (valid + 1, bad) if error is None else (valid, bad + 1)
            if error is not None:
                _report(f"line {record.line}: {error}", _EXIT_OK)
                if self.failures is not None:
                    self.failures.write(record, error)
            if self.report is not None:
                self.report.write(record, fingerprint, error, dry_run=True)
        skipped = self.tally.skipped
        summary = f"{valid + bad + skipped} records: {valid} valid, {bad} bad; nothing was sent (--dry-run)"
        if self.resume is not None:
            summary += (f"; --resume would send {valid}, refuse {bad} and skip {skipped}, already confirmed in the "
                        "report")
        return _report(summary, _EXIT_API if bad else _EXIT_OK)


def _contact_problem(contact: Contact) -> Optional[ValidationError]:
    try:
        _render_request("", contact, None)
    except ValidationError as error:
        return error
    return None


def _check_bulk_options(args: argparse.Namespace) -> None:
    used = [name for name in _SINGLE_ONLY if getattr(args, name) not in _UNSET]
    if used:
        raise _InputError(f"--{used[0].replace('_', '-')} does not go with --input (see --help)")
    _check_settings(args.url, args.timeout, args.retries, None, args.proxy)
    if args.failed is not None and args.input != "-" and _same_file(args.failed, args.input):
        raise _InputError("--failed names the input itself; give the failures file a name of its own")


def _same_file(path: str, other: str) -> bool:
    """Whether two paths name one file, whether or not it exists yet (a link, a hard link, ./x and x)."""
    if os.path.realpath(path) == os.path.realpath(other):
        return True
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def _report_path(args: argparse.Namespace) -> Optional[str]:
    """The report's path (``None``: stderr), refusing one an earlier run left unless asked to go on with it."""
    from_stdin = args.input == "-"
    path: Optional[str] = args.report or (None if from_stdin else args.input + ".report.jsonl")
    if path is None and sys.stderr is None and not args.dry_run:
        raise _InputError("--report FILE is needed: the report would go to stderr, which is closed")
    if args.resume and path is None:
        raise _InputError("--resume needs --report FILE when the input is stdin")
    if path is not None and not from_stdin and _same_file(path, args.input):
        raise _InputError("--report names the input itself; give the report a name of its own")
    if path is not None and args.failed is not None and _same_file(path, args.failed):
        raise _InputError("--failed names the report; give the failures file a name of its own")
    writes = not args.dry_run or args.report is not None
    if path is not None and writes and not args.resume and os.path.exists(path):
        raise _InputError(
            f"report {path} exists: add --resume to send only what it does not confirm (new and changed records, "
            "those that failed or had no answer, and every later record of their contacts), or remove it (or give "
            "--report another name) to send every record")
    return path


def _count_records(args: argparse.Namespace) -> int:
    _, records, close = _open_records(args)
    try:
        return sum(1 for _ in records)
    finally:
        close()


def _is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _run_bulk(args: argparse.Namespace) -> int:
    """``--input``: edit (or with --dry-run check) every record; one report line each; exit 0, 1, 2, 130 or 143."""
    starting = _Interrupts(_Startup())
    try:
        with starting:  # a SIGTERM too ends a run still waiting for its header: one line, 143
            plan = _BulkPlan(args)
    except _StopReading:
        assert starting.name is not None  # set by the handler that raised it
        return _report(f"interrupted ({starting.name}) before the first record was read; nothing was sent",
                       _SIGNAL_EXITS[starting.name])
    except (_InputError, ValidationError) as exc:
        return _report(str(exc), _EXIT_USAGE)
    try:
        with _logging_to_stderr(args.verbose):
            return plan.run()
    except _InputError as exc:  # the input became unreadable after some records: those are reported
        plan.tally.clear()
        _report(plan.tally.summary(), _EXIT_OK)
        return _report(f"cannot read the input any further: {exc}", _EXIT_USAGE)
    finally:
        plan.close()


def _add_file_options(group: Any) -> None:
    group.add_argument("--input", metavar="FILE",
                       help="edit every record of FILE (.csv, .txt, .tsv, .xlsx or .jsonl); - for stdin")
    group.add_argument("--format", choices=("csv", "jsonl", "xlsx"), help="the input's format (default: from its name)")
    group.add_argument("--encoding", metavar="NAME",
                       help="the CSV's encoding, e.g. cp1254 for Excel's \"CSV\" in Turkey (default: UTF-8, or "
                       "UTF-16 where the file starts with its byte order mark)")
    group.add_argument("--column", action="append", default=[], metavar="HEADER=FIELD",
                       help="read column HEADER as FIELD: id, name, surname, email, gsm, groups or field:N "
                       "(repeatable)")
    group.add_argument("--skip-column", action="append", default=[], metavar="HEADER",
                       help="ignore column HEADER (repeatable)")
    group.add_argument("--empty-cells", choices=("leave", "clear"),
                       help="an empty cell leaves the stored value as it is, or clears it (default: leave)")
    group.add_argument("--workers", type=_workers_argument, metavar="N",
                       help=f"edits at once (default: {DEFAULT_WORKERS})")
    group.add_argument("--report", metavar="FILE",
                       help="JSON Lines, one line per record (default: the input's name + .report.jsonl)")
    group.add_argument("--resume", action="store_true",
                       help="send only what the report does not confirm as ok (new, changed, failed), and append")
    group.add_argument("--failed", metavar="FILE",
                       help="write the records that did not succeed here, as in the input, with an error column")
    progress = group.add_mutually_exclusive_group()
    progress.add_argument("--progress", action="store_true", default=None, help="show progress on stderr")
    progress.add_argument("--no-progress", action="store_false", dest="progress", help="never show progress")


# Options that go with --input only; an option left unset holds one of _UNSET.
_BULK_ONLY = ("workers", "format", "encoding", "column", "skip_column", "empty_cells", "report", "resume", "failed",
              "progress")
_UNSET: Tuple[object, ...] = (None, False, [])
# -- the entry point -----------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        return _report("interrupted", _EXIT_INTERRUPTED)
    except _OutputLost as exc:
        return _report(f"the output could not be written: {exc}", _EXIT_OUTPUT_LOST)
    except Exception as exc:  # a defect: one line, as every other outcome, and a code of its own
        message = f"internal error (a defect; please report it): {type(exc).__name__}: {exc}"
        return _report(_redact(message, *_environment_secrets(argv)), _EXIT_INTERNAL)


def _run(argv: Optional[Sequence[str]]) -> int:
    try:
        args = _argument_parser().parse_args(argv)
    except BrokenPipeError:  # --help or --version into a reader that went away
        _reader_gone(sys.stdout)
        return _EXIT_OK
    except SystemExit as exc:  # argparse has already printed usage or help
        _write_text(sys.stdout, "")  # flushed now, so that "--help | head -0" ends quietly too
        return exc.code if isinstance(exc.code, int) else _EXIT_USAGE
    if args.input is not None:
        return _run_bulk(args)
    single = _single_contact_problem(args)
    if single:
        return _report(single + " (see --help)", _EXIT_USAGE)
    return _run_single(args)


def _argument_parser() -> argparse.ArgumentParser:
    import argparse

    class OneLineErrorParser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:  # usage errors, too, are one line
            self.exit(_EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")

    parser = OneLineErrorParser(
        prog="iletimerkezi-edit",
        description="Edit a contact in an iletimerkezi.com address book.",
        epilog=_CLI_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_contact_options(parser)
    _add_connection_options(parser)
    _add_file_options(parser.add_argument_group("many contacts from a file (see the README's Syncing a file)"))
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser



if __name__ == "__main__":
    sys.exit(main())
