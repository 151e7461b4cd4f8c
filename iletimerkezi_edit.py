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
import collections
import contextlib
import dataclasses
import encodings.idna  # noqa: F401  # host checks and name lookups use it: imported now, never during a fork
import functools
import hashlib
import hmac
import http.client
import io
import ipaddress
import logging
import os
import queue
import random
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
import weakref
import xml.etree.ElementTree as ET
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
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

if TYPE_CHECKING:  # the command line's own modules are imported when it runs: a library user never pays for them
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
        self._reason_and_target = (reason, target)
        shown = " ".join(reason.split())[:80]
        super().__init__(f"proxy {proxy} refused the tunnel to {target}: HTTP {status} {shown}".rstrip())

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


class _BoundedTreeBuilder:
    """Expat's handlers for an answer: the element tree, refusing any DTD, a declared encoding other than
    UTF-8, and more elements or deeper nesting than an answer has.

    Expat's own handlers do the refusing, so that no expat version expands an
    entity and no scan of ours can be slower than the parse (expat is linear).
    """

    def __init__(self, http_status: Optional[int]) -> None:
        self._http_status = http_status
        self._builder = ET.TreeBuilder()
        self._depth = self._elements = 0

    def parse(self, body: bytes) -> ET.Element:
        parser = expat.ParserCreate("utf-8")  # overrides any declared encoding
        parser.XmlDeclHandler = self._check_declaration
        parser.StartDoctypeDeclHandler = self._refuse_dtd  # before the internal subset: nothing is declared yet
        parser.EntityDeclHandler = self._refuse_dtd
        parser.UnparsedEntityDeclHandler = self._refuse_dtd
        parser.ExternalEntityRefHandler = self._refuse_dtd
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._builder.data
        parser.buffer_text = True
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
        # Every form the password can be seen in: as decoded, as written in the URL (percent-encoded), and the
        # base64 of "user:password" that goes on the wire, which a proxy may echo in its answer.
        self.secrets: Tuple[str, ...] = ()
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._authorization = "Basic " + token
            self.secrets = tuple(secret for secret in (password, written, token) if secret)

    def __str__(self) -> str:
        return str(_Endpoint("http", self.host, self.port, "/", ""))

    def __repr__(self) -> str:
        return f"<proxy {self}>"

    def redact(self, text: str) -> str:
        return _redact(text, *self.secrets)

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
    """Whether ``host``, an IP address, lies in a range of ``no_proxy`` (``10.0.0.0/8``, ``fd00::/8``)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: ranges are for addresses, and a name is never looked up to match one
    for entry in urllib.request.getproxies_environment().get("no", "").split(","):
        if "/" in entry:
            with contextlib.suppress(ValueError):  # not a range: urllib has matched it as a name already
                if address in ipaddress.ip_network(entry.strip(), strict=False):
                    return True
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

    __slots__ = ("_body_length", "contact_id", "data")

    def __init__(self, data: bytes, body_length: int, contact_id: int) -> None:
        self.data = data
        self._body_length = body_length
        self.contact_id = contact_id

    @classmethod
    def of(cls, endpoint: _Endpoint, credentials: Credentials, contact: Contact, *, keep_alive: bool) -> _Request:
        """The request that edits ``contact``; a bad value raises ``ValidationError`` before the hash is read."""
        contact_id, body = _render_request(_check_credentials(credentials).key, contact, credentials)
        return cls(_request_head(endpoint, len(body), keep_alive=keep_alive) + body, len(body), contact_id)

    @property
    def body(self) -> bytes:
        return self.data[-self._body_length :]

    def __repr__(self) -> str:
        return f"<request for contact {self.contact_id}: {len(self.data)} bytes>"


class _Answer:
    """An HTTP answer as read; ``repr`` leaves out the body, which may echo the request and so the hash."""

    __slots__ = ("body", "retry_after", "status")

    def __init__(self, status: int, retry_after: Optional[str], body: bytes) -> None:
        self.status = status
        self.retry_after = retry_after  # the header as sent, if it was: the retry policy reads it
        self.body = body

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
        if answer.will_close or source.overran:
            self.close()
        else:
            self.idle_since = time.time()
        return _Answer(answer.status, answer.getheader("Retry-After"), body)


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
        answer = _final_answer(source, "CONNECT")
    except (http.client.HTTPException, ResponseError):
        # Its text is whatever the proxy sent, which may echo the request and so the password.
        raise OSError(f"the answer of proxy {proxy} to CONNECT is not HTTP") from None
    answer.close()  # a refusal's body is not read: the connection is closed
    if not 200 <= answer.status < 300:
        raise ProxyError(str(proxy), answer.status, proxy.redact(answer.reason), str(target))
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
            wait: Optional[float], secret: str) -> None:
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
            received = "no answer" if answer is None else _redact(answer.body.decode("utf-8", "replace"), secret)
            if len(received) > _BODY_LOG_LIMIT:
                received = received[:_BODY_LOG_LIMIT] + f"... ({len(received) - _BODY_LOG_LIMIT} more characters)"
            _body_log.debug(
                "%s: request %r; answer %r%s", where, _redact(request.body.decode("utf-8"), secret), received,
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
            self._policy.log(self._settings.endpoint, request, attempt, started, outcome, wait,
                             self._credentials.hash)
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
    with _OneShotSession(credentials, url=url, timeout=timeout, retries=retries, ssl_context=ssl_context,
                         proxy=proxy) as session:
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
                handed = self._hand_out()
                if handed:
                    yield from handed
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
                tag, contact = next(source)
            except StopIteration:
                self._exhausted = True
                return
            except Exception as exc:
                self._exhausted, self._unreadable = True, exc
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

    def _hand_out(self) -> List[Tuple[Tag, Item, Result]]:
        """Take the results that can be handed out now out of ``held``."""
        handed: List[Tuple[Tag, Item, Result]] = []
        if self._ordered:
            self._ready.clear()
            while self._held and self._held[0].result is not None:
                entry = self._held.popleft()
                handed.append((entry.tag, entry.contact, entry.result))  # type: ignore[arg-type]
        else:
            while self._ready:
                entry = self._ready.popleft()
                self._held.remove(entry)
                handed.append((entry.tag, entry.contact, entry.result))  # type: ignore[arg-type]
        return handed

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
        with _logging_to_stderr(args.verbose):
            response = edit_contact(
                Credentials.from_env(), contact, url=args.url, timeout=args.timeout, retries=args.retries,
                proxy=args.proxy,
            )
    except ValidationError as exc:
        return _report(f"invalid input: {exc}", _EXIT_USAGE)
    except APIError as exc:
        return _report(f"the API refused the edit: {exc}", _EXIT_API)
    except IletiMerkeziError as exc:  # TransportError, ResponseError
        return _report(f"no usable answer: {exc}", _EXIT_NO_ANSWER)
    if args.json:
        _write_text(sys.stdout, _format_json(response, getattr(sys.stdout, "encoding", None) or "ascii"))
    else:
        _write_text(sys.stdout, _format_response(response))
    return _EXIT_OK


def _environment_secrets() -> List[str]:
    found = [value for value in map(os.environ.get, (_ENV_SECRET, _ENV_HASH, _ENV_API_HASH)) if value]
    with contextlib.suppress(Exception):
        found.append(Credentials.from_env().hash)
    return found


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
                "json", "dry_run")  # dry_run: until --input learns it


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
    key = os.environ.get(_ENV_API_KEY) or os.environ.get(_ENV_KEY)
    key = _check_key(key, _ENV_API_KEY if os.environ.get(_ENV_API_KEY) else _ENV_KEY) if key else _KEY_PLACEHOLDER
    return _render_request(key, contact, None)[1]


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
# 12. Command line for files: readers, report, resume, progress
# ---------------------------------------------------------------------------

# Custom fields are columns of their own in CSV (field:ID) and an object of id to value in JSON Lines.
_CSV_COLUMNS = ("id", *(field.name for field in _FIELDS if field.kind != "custom_fields"))
_JSONL_KEYS = ("id", *(field.name for field in _FIELDS))
_GROUP_SEPARATORS = re.compile(r"[\s,]+")
_PROGRESS_EVERY = 0.25  # seconds between redraws of the progress line


class _InputError(Exception):
    """The input cannot be read at all, or the options are wrong: exit 2, before or instead of sending."""


def _run_bulk(args: argparse.Namespace) -> int:
    """``--input``: edit every record; one report line each; exit 0, 1, 2 or 130 as the README says."""
    try:
        plan = _BulkPlan(args)
    except (_InputError, ValidationError) as exc:
        return _report(str(exc), _EXIT_USAGE)
    with plan, _logging_to_stderr(args.verbose):
        return plan.run()


class _BulkPlan:
    """Everything ``--input`` needs, checked before the first edit is sent."""

    def __init__(self, args: argparse.Namespace) -> None:
        used = [name for name in _SINGLE_ONLY if getattr(args, name) not in _UNSET]
        if used:
            raise _InputError(f"--{used[0].replace('_', '-')} does not go with --input (see --help)")
        from_stdin = args.input == "-"
        self.format = args.format or _format_of(args.input)
        if not self.format:
            raise _InputError("--format csv or --format jsonl is needed" + (
                " with --input -" if from_stdin else f": {args.input!r} ends in neither .csv nor .jsonl/.ndjson"))
        _check_settings(args.url, args.timeout, args.retries, None, args.proxy)
        self.credentials = Credentials.from_env()
        self.args = args
        self.report_path: Optional[str] = args.report or (None if from_stdin else args.input + ".report.jsonl")
        if self.report_path is None and sys.stderr is None:
            raise _InputError("--report FILE is needed: the report would go to stderr, which is closed")
        self.done: Set[int] = set()
        if args.resume:
            if self.report_path is None:
                raise _InputError("--resume needs --report FILE when the input is stdin")
            self.done = _lines_done(self.report_path)
        elif self.report_path is not None and os.path.exists(self.report_path):
            raise _InputError(f"report {self.report_path} exists: --resume to continue it, or remove it")
        self.total: Optional[int] = None
        self.show_progress = args.progress if args.progress is not None else _is_terminal(sys.stderr)
        if self.show_progress and not from_stdin and _is_regular_file(args.input):  # a pipe can be read once
            with _open_input(args.input) as counting:
                self.total = sum(1 for _ in _records(counting, self.format))
        self.input = _open_input(args.input)
        try:
            self.records = _records(self.input, self.format)  # a CSV header is read and checked here
            self.report_file = sys.stderr if self.report_path is None else _open_report(self.report_path)
        except BaseException:
            self.input.close()
            raise

    def __enter__(self) -> _BulkPlan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.report_file is not sys.stderr:
            self.report_file.close()
        if self.input is not sys.stdin:
            self.input.close()

    def run(self) -> int:
        args = self.args
        tally = _Tally(self.total, len(self.done), self.show_progress)
        pending = ((line, record) for line, record in self.records if line not in self.done)
        with Session(self.credentials, url=args.url, timeout=args.timeout, retries=args.retries,
                     proxy=args.proxy) as session:
            # On threads even for one worker: a Ctrl-C then stops the main thread, not an edit half sent.
            bulk: _Scheduler[int] = _Scheduler(session.edit_contact, args.workers or DEFAULT_WORKERS,
                                               ordered=False, threaded=True)
            results = bulk.run(pending)
            try:
                for line, record, result in results:
                    self._write(line, record, result, tally)
            except KeyboardInterrupt:
                results.close()  # if it came while a line was written: the edits in flight end, then are reported
                self._write_all(bulk.unreported, tally)
                tally.finish()
                return _report("interrupted; the report holds every edit that ended", _EXIT_INTERRUPTED)
            except (OSError, _InputError) as exc:
                results.close()
                self._write_all(bulk.unreported, tally)
                tally.finish()
                return _report(f"cannot read the input any further: {exc}", _EXIT_USAGE)
        tally.finish()
        return _EXIT_OK if not tally.failed else _EXIT_API

    def _write_all(self, results: List[Tuple[int, Item, Result]], tally: _Tally) -> None:
        for line, record, result in sorted(results, key=lambda found: found[0]):
            self._write(line, record, result, tally)

    def _write(self, line: int, record: Item, result: Result, tally: _Tally) -> None:
        import json

        entry: Dict[str, Any] = {"line": line, "id": _record_id(record), "ok": isinstance(result, Response)}
        if isinstance(result, IletiMerkeziError):
            entry.update(error=type(result).__name__, code=getattr(result, "code", None),
                         message=" ".join(str(result).split()))
        if self.report_file is sys.stderr:
            tally.clear()  # the report line takes the progress line's place; the next redraw brings it back
        # Each line is flushed as its edit ends: an interrupted run keeps the record of every confirmed edit.
        self.report_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.report_file.flush()
        tally.add(result)


def _format_of(path: str) -> str:
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    return "jsonl" if lowered.endswith((".jsonl", ".ndjson")) else ""


def _open_input(path: str) -> Any:
    """The input as text: UTF-8, a BOM skipped, line ends kept for the CSV reader."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    try:
        return open(path, encoding="utf-8-sig", newline="")  # closed by _BulkPlan
    except OSError as exc:
        raise _InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _open_report(path: str) -> Any:
    try:
        cut = False
        with open(path, "ab+") as raw:  # its last byte, as bytes: a cut line may end inside a character
            if raw.seek(0, os.SEEK_END):
                raw.seek(-1, os.SEEK_END)
                cut = raw.read(1) != b"\n"
        report = open(path, "a", encoding="utf-8")  # noqa: SIM115  # closed by _BulkPlan
    except OSError as exc:
        raise _InputError(f"cannot write the report {path}: {exc.strerror or exc}") from None
    if cut:  # a line cut short by a kill: the next one starts on a line of its own
        report.write("\n")
    return report


def _lines_done(path: str) -> Set[int]:
    """The input lines that an earlier run's report has as ``ok``; lines that do not parse are passed over."""
    import json

    done: Set[int] = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as report:
            for text in report:
                with contextlib.suppress(ValueError):
                    entry = json.loads(text)
                    if isinstance(entry, dict) and entry.get("ok") is True and isinstance(entry.get("line"), int):
                        done.add(entry["line"])
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _InputError(f"cannot read the report {path}: {exc.strerror or exc}") from None
    return done


Record = Tuple[int, Item]  # the line a record starts on, and what it says


def _records(stream: Any, format: str) -> Iterator[Record]:
    """Each record of ``stream``; a CSV header is read and checked before this returns."""
    if format != "csv":
        return _jsonl_records(stream)
    import csv
    import itertools

    try:
        header_line = stream.readline()
    except UnicodeDecodeError as exc:
        raise _InputError(f"the input is not UTF-8: {exc}") from None
    counts = {delimiter: header_line.count(delimiter) for delimiter in (",", ";", "\t")}
    delimiter = max(counts, key=counts.__getitem__) if any(counts.values()) else ","  # Excel in Turkish: ";"
    reader = csv.reader(itertools.chain([header_line], stream), delimiter=delimiter)
    return _csv_records(reader, _csv_columns(next(reader, [])))


def _csv_records(reader: Any, columns: List[str]) -> Iterator[Record]:
    import csv

    read_to = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise _InputError(f"the input is not UTF-8 (line {read_to + 1} or soon after): {exc}") from None
        except csv.Error as exc:  # a NUL byte before 3.11, a cell over csv's size limit: that line alone
            line, read_to = read_to + 1, reader.line_num
            yield line, ValidationError(f"line {line} cannot be read as CSV: {exc}")
            continue
        line, read_to = read_to + 1, reader.line_num
        if all(not cell.strip() for cell in row):
            continue  # a blank line, or one of empty cells
        if len(row) > len(columns):
            yield line, ValidationError(f"line {line} has {len(row)} cells; the header names {len(columns)}")
            continue
        yield line, _csv_contact(dict(zip(columns, row)))


def _csv_columns(header: List[str]) -> List[str]:
    columns = [name.strip().lower() for name in header]
    columns = [f"field:{int(name[6:].strip())}" if name.startswith("field:") and _ASCII_DIGITS.fullmatch(
        name[6:].strip()) else name for name in columns]  # field:01 is field:1
    for name in columns:
        known = name in _CSV_COLUMNS or (name.startswith("field:") and _ASCII_DIGITS.fullmatch(name[6:].strip()))
        if not known:
            raise _InputError(f"unknown column {name[:40]!r} in the CSV header; known: "
                              f"{', '.join(_CSV_COLUMNS)} and field:ID")
    if "id" not in columns:
        raise _InputError("the CSV header has no id column")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise _InputError(f"column {repeated[0]!r} is named twice in the CSV header")
    return columns


def _csv_contact(cells: Dict[str, str]) -> Item:
    # A missing column or an empty cell leaves the value as it is; values go as written, ids trimmed.
    texts = {field.name: cells.get(field.name) or None for field in _TEXT_FIELDS}
    groups: List[Any] = [group for group in _GROUP_SEPARATORS.split(cells.get("groups") or "") if group]
    fields: List[Any] = [CustomField(name[6:].strip(), value) for name, value in cells.items()  # type: ignore[arg-type]
                         if name.startswith("field:") and value]
    checked_when_built: Any = (cells.get("id") or "").strip()  # digits in a string, as Contact takes them
    return Contact(checked_when_built, custom_fields=fields or None, groups=groups or None, **texts)


def _jsonl_records(stream: Any) -> Iterator[Record]:
    import json

    line = 0
    while True:
        try:
            text = stream.readline()
        except UnicodeDecodeError as exc:
            raise _InputError(f"the input is not UTF-8 (line {line + 1} or soon after): {exc}") from None
        if not text:
            return
        line += 1
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            yield line, ValidationError(f"line {line} is not JSON: {exc}")
            continue
        yield line, _jsonl_contact(line, value)


def _jsonl_contact(line: int, value: object) -> Item:
    if not isinstance(value, dict):
        return ValidationError(f"line {line} is not a JSON object")
    unknown = sorted(str(key) for key in value if key not in _JSONL_KEYS)
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


def _record_id(record: Item) -> Optional[Union[int, str]]:
    if not isinstance(record, Contact):
        return None
    key = _contact_key(record)
    return key if key is not None else (str(record.id)[:40] if record.id is not None else None)


def _is_regular_file(path: str) -> bool:
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _Tally:
    """Counts for the summary, and the progress line while stderr is a terminal (or --progress)."""

    def __init__(self, total: Optional[int], skipped: int, shown: bool) -> None:
        self.total = None if total is None else total - skipped
        self.skipped = skipped
        self.shown = shown
        self.done = self.succeeded = 0
        self.failed: Dict[str, int] = {}
        self.started = self.drawn = time.monotonic()
        self.width = 0

    def add(self, result: Result) -> None:
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
        rate = self.done / max(now - self.started, 1e-9)
        text = f"{self.done}" + ("" if self.total is None else f"/{self.total}") + f" records, {rate:.1f}/s"
        text += f", {sum(self.failed.values())} failed"
        if self.total is not None and rate > 0:
            left = max(self.total - self.done, 0) / rate
            text += f", {int(left // 60)} min {int(left % 60)} s left"
        self.width = max(self.width, len(text))
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write("\r" + text.ljust(self.width))
            sys.stderr.flush()

    def clear(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if self.width:
                sys.stderr.write("\r" + " " * self.width + "\r")
                self.width = 0

    def finish(self) -> None:
        self.clear()
        failed = sum(self.failed.values())
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.failed.items()))
        summary = f"{self.done} records: {self.succeeded} succeeded, {failed} failed" + (f" ({kinds})" if kinds else "")
        if self.skipped:
            summary += f"; {self.skipped} skipped, already ok in the report"
        _report(summary, _EXIT_OK)


def _add_file_options(group: Any) -> None:
    group.add_argument("--input", metavar="FILE", help="edit every record of FILE (CSV or JSON Lines); - for stdin")
    group.add_argument("--format", choices=("csv", "jsonl"), help="the input's format (default: from its extension)")
    group.add_argument("--workers", type=_workers_argument, metavar="N",
                       help=f"edits at once (default: {DEFAULT_WORKERS})")
    group.add_argument("--report", metavar="FILE",
                       help="JSON Lines, one line per record (default: the input's name + .report.jsonl)")
    group.add_argument("--resume", action="store_true", help="skip the records the report has as ok, and append to it")
    progress = group.add_mutually_exclusive_group()
    progress.add_argument("--progress", action="store_true", default=None, help="show progress on stderr")
    progress.add_argument("--no-progress", action="store_false", dest="progress", help="never show progress")


# Options that go with --input only; an option left unset holds one of _UNSET.
_BULK_ONLY = ("workers", "format", "report", "resume", "progress")
_UNSET = (None, False)


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
        return _report(_redact(message, *_environment_secrets()), _EXIT_INTERNAL)


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
