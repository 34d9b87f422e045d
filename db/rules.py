"""The customer rules of domain-rules.md: pure validation and normalisation.

Every function here takes raw values and returns normalised values plus the problems it found;
nothing here touches a database, a network or GraphQL, so every write path (GraphQL, a CLI
import, a test) runs exactly the same checks. Uniqueness is the one rule that needs the
database: it lives with the writes in `db.customers`.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

import disposable_email_domains
import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email


class Code(enum.StrEnum):
    """Why a value was refused; the names match the contract's `UserErrorCode`."""

    REQUIRED = "REQUIRED"
    INVALID = "INVALID"
    TOO_LONG = "TOO_LONG"
    INVALID_EMAIL = "INVALID_EMAIL"
    DISPOSABLE_EMAIL = "DISPOSABLE_EMAIL"
    EMAIL_PLUS_SUFFIX = "EMAIL_PLUS_SUFFIX"
    INVALID_PHONE = "INVALID_PHONE"
    PHONE_NOT_MOBILE = "PHONE_NOT_MOBILE"
    INVALID_COUNTRY = "INVALID_COUNTRY"
    INVALID_STATE = "INVALID_STATE"
    INVALID_ZIP = "INVALID_ZIP"
    TAKEN = "TAKEN"
    NOT_FOUND = "NOT_FOUND"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    INVALID_URL = "INVALID_URL"


class Environment(enum.StrEnum):
    """`production` enforces every rule; `sandbox` turns two e-mail rules into warnings."""

    PRODUCTION = "production"
    SANDBOX = "sandbox"


# The two rules that the sandbox environment reports as warnings instead of refusing.
SANDBOX_LENIENT = frozenset({Code.DISPOSABLE_EMAIL, Code.EMAIL_PLUS_SUFFIX})


@dataclass(frozen=True)
class Problem:
    """One broken rule: the field it concerns (a column, or a write's argument such as
    `verification_id`), a code, a message. `schema/` turns the field into an input path."""

    field: str
    code: Code
    message: str


# The customer's data fields, named as the table's columns, in the order the contract lists them.
DATA_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "street",
    "street2",
    "state",
    "city",
    "zip",
    "country",
)

EXTERNAL_ID_MAX = 255
NAME_MAX = 100
STREET_MAX = 200
ZIP_MAX = 10
US_MIN_DIGITS = 10

_US_ZIP = re.compile(r"\d{5}(-\d{4})?")
_MOBILE_TYPES = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


@dataclass
class Checked:
    """The outcome of checking a whole record: normalised values, problems and warnings."""

    values: dict[str, str | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_customer(
    external_customer_id: str | None,
    data: Mapping[str, str | None],
    environment: Environment = Environment.PRODUCTION,
) -> Checked:
    """Check a new customer: its id and its complete data.

    `data` maps the names of `DATA_FIELDS` (`email`, `first_name`, ...) to raw values; a missing
    key counts as null. The result's `values` hold the normalised `external_customer_id` and data.
    """
    external_id, id_problems = check_external_customer_id(external_customer_id)
    checked = check_record(data, environment)
    checked.values["external_customer_id"] = external_id
    checked.problems[:0] = id_problems
    return checked


def check_record(
    data: Mapping[str, str | None], environment: Environment = Environment.PRODUCTION
) -> Checked:
    """Check complete customer data (a new record, or a patch merged into the stored one)."""
    checked = Checked()
    checked.values, problems = check_customer_data(data)
    for problem in problems:
        lenient = environment is Environment.SANDBOX and problem.code in SANDBOX_LENIENT
        (checked.warnings if lenient else checked.problems).append(problem)
    return checked


def in_field_order(problems: list[Problem]) -> list[Problem]:
    """The problems in the order of the input's fields: the id first, then the data fields."""
    order = {name: index for index, name in enumerate(("external_customer_id", *DATA_FIELDS))}
    return sorted(problems, key=lambda p: order.get(p.field, len(order)))


def check_external_customer_id(value: str | None) -> tuple[str | None, list[Problem]]:
    """Trim the client's id and check it: required, at most 255 characters, no blanks."""
    name = "external_customer_id"
    text = _trimmed(value)
    if text is None:
        return None, [Problem(name, Code.REQUIRED, "Give the customer's id from your system.")]
    problems = []
    if len(text) > EXTERNAL_ID_MAX:
        problems.append(
            Problem(
                name,
                Code.TOO_LONG,
                f"The id is {len(text)} characters long; use at most {EXTERNAL_ID_MAX}.",
            )
        )
    if any(ch.isspace() or _is_control(ch) or _is_invisible(ch) for ch in text):
        problems.append(
            Problem(
                name,
                Code.INVALID,
                "The id may not contain spaces, line breaks, control or invisible characters.",
            )
        )
    return text, problems


def check_customer_data(
    data: Mapping[str, str | None],
) -> tuple[dict[str, str | None], list[Problem]]:
    """Normalise and check every data field; the country is read first, as state and zip need it."""
    values: dict[str, str | None] = {}
    problems: list[Problem] = []

    def run(name: str, outcome: tuple[str | None, list[Problem]]) -> None:
        values[name], found = outcome
        problems.extend(found)

    run("country", check_country(data.get("country")))
    country = values["country"]
    # A refused country tells us nothing about which state and zip rules apply, so the
    # US-only checks run only when the country is US, or absent for the state's rule.
    country_known = not any(p.field == "country" for p in problems)
    run("email", check_email(data.get("email")))
    run("phone", check_phone(data.get("phone")))
    run("first_name", check_text("first_name", data.get("first_name"), NAME_MAX))
    run("last_name", check_text("last_name", data.get("last_name"), NAME_MAX))
    run("street", check_text("street", data.get("street"), STREET_MAX))
    run("street2", check_text("street2", data.get("street2"), STREET_MAX))
    run("state", check_state(data.get("state"), country, country_known))
    run("city", check_text("city", data.get("city"), NAME_MAX))
    run("zip", check_zip(data.get("zip"), country))
    return {name: values[name] for name in DATA_FIELDS}, in_field_order(problems)


def check_email(value: str | None) -> tuple[str | None, list[Problem]]:
    """Required; valid syntax; domain lower-cased; no disposable domain; no `+` suffix."""
    name = "email"
    text = _trimmed(value)
    if text is None:
        return None, [Problem(name, Code.REQUIRED, "Give an e-mail address.")]
    try:
        parsed = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        return text, [
            Problem(name, Code.INVALID_EMAIL, f"This is not a valid e-mail address: {error}")
        ]
    problems = []
    if is_disposable_domain(parsed.domain):
        problems.append(
            Problem(
                name,
                Code.DISPOSABLE_EMAIL,
                f"{parsed.domain} hands out disposable addresses; use a permanent address.",
            )
        )
    if "+" in parsed.local_part:
        problems.append(
            Problem(
                name,
                Code.EMAIL_PLUS_SUFFIX,
                "Use the address without its '+' suffix (name@example.com, not "
                "name+tag@example.com).",
            )
        )
    return parsed.normalized, problems


def is_disposable_domain(domain: str) -> bool:
    """True when the domain, or any domain above it, is on the disposable-domain list."""
    labels = domain.lower().split(".")
    return any(
        ".".join(labels[start:]) in disposable_email_domains.blocklist
        for start in range(len(labels))
    )


def fold(text: str) -> str:
    """The form in which text is compared regardless of case (e-mail uniqueness, search)."""
    return text.casefold()


def check_phone(value: str | None) -> tuple[str | None, list[Problem]]:
    """Optional; read as international with `+`, else as US; must be a valid mobile number."""
    name = "phone"
    text = _trimmed(value)
    if text is None:
        return None, []
    international = text.startswith("+")
    body = text[1:] if international else text
    digits = "".join(ch for ch in body if not (ch.isspace() or _is_punctuation(ch)))
    if not digits.isascii() or not digits.isdigit():
        return text, [
            Problem(
                name,
                Code.INVALID_PHONE,
                "A phone number may hold only digits, spaces and punctuation, with an optional "
                "leading '+'.",
            )
        ]
    if not international and len(digits) < US_MIN_DIGITS:
        return text, [
            Problem(
                name,
                Code.INVALID_PHONE,
                "This number is too short to be a US number; add the country code, "
                "such as +44 7400 123456.",
            )
        ]
    try:
        number = phonenumbers.parse(
            "+" + digits if international else digits, None if international else "US"
        )
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        return text, [
            Problem(
                name,
                Code.INVALID_PHONE,
                "This is not a valid phone number; give it with its country code, such as "
                "+12015550123.",
            )
        ]
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        return e164, [
            Problem(
                name,
                Code.PHONE_NOT_MOBILE,
                "This is not a mobile number (it is a landline, VoIP, toll-free or service "
                "number); give a mobile number.",
            )
        ]
    return e164, []


def check_country(value: str | None) -> tuple[str | None, list[Problem]]:
    """Optional; an assigned ISO 3166-1 alpha-2 code, stored upper-case."""
    text = _trimmed(value)
    if text is None:
        return None, []
    code = text.upper()
    if len(code) == 2 and code.isascii() and code.isalpha() and _country_exists(code):
        return code, []
    return text, [
        Problem(
            "country",
            Code.INVALID_COUNTRY,
            "Give the country as its two-letter ISO 3166-1 code, such as US or GB.",
        )
    ]


def check_state(
    value: str | None, country: str | None, country_known: bool = True
) -> tuple[str | None, list[Problem]]:
    """Optional; two letters or digits, upper-case; a US state, DC or territory for the US."""
    text = _trimmed(value)
    if text is None:
        return None, []
    code = text.upper()
    if not (len(code) == 2 and code.isascii() and code.isalnum()):
        return text, [
            Problem(
                "state",
                Code.INVALID_STATE,
                "Give the state as its two-character code, such as NY.",
            )
        ]
    if country_known and country in (None, "US") and code not in _us_states():
        return code, [
            Problem(
                "state",
                Code.INVALID_STATE,
                f"{code} is not a US state, DC or territory code; use one such as NY, DC or PR.",
            )
        ]
    return code, []


def check_zip(value: str | None, country: str | None) -> tuple[str | None, list[Problem]]:
    """Optional; at most 10 characters; 5 digits or ZIP+4 when the country is US."""
    text = _trimmed(value)
    if text is None:
        return None, []
    if len(text) > ZIP_MAX or any(_is_control(ch) for ch in text):
        return text, [
            Problem(
                "zip",
                Code.INVALID_ZIP,
                f"A postal code has at most {ZIP_MAX} characters and no control characters.",
            )
        ]
    if country == "US" and not _US_ZIP.fullmatch(text):
        return text, [
            Problem(
                "zip",
                Code.INVALID_ZIP,
                "A US ZIP code is 5 digits or ZIP+4, such as 10001 or 10001-1234.",
            )
        ]
    return text, []


def check_text(name: str, value: str | None, max_length: int) -> tuple[str | None, list[Problem]]:
    """Optional free text (names, city, street): trimmed, bounded, no control characters."""
    text = _trimmed(value)
    if text is None:
        return None, []
    problems = []
    if len(text) > max_length:
        problems.append(
            Problem(
                name,
                Code.TOO_LONG,
                f"This is {len(text)} characters long; use at most {max_length}.",
            )
        )
    if any(_is_control(ch) for ch in text):
        problems.append(
            Problem(name, Code.INVALID, "Remove the line breaks and control characters.")
        )
    return text, problems


# PostgreSQL's text cannot hold NUL, and no encoding holds a lone surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """The first character of `text` that no column can store (NUL, a lone surrogate), or None."""
    found = _UNSTORABLE.search(text)
    return None if found is None else found.group()


def _trimmed(value: str | None) -> str | None:
    """Strip surrounding white space; an empty or all-blank value counts as absent."""
    if value is None:
        return None
    text = value.strip()
    return text or None


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc"


def _is_invisible(ch: str) -> bool:
    # Format characters (zero-width space, direction marks) make ids that look equal but are
    # not; names keep them, since some scripts need joiners.
    return unicodedata.category(ch) == "Cf"


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


@cache
def _country_exists(code: str) -> bool:
    return pycountry.countries.get(alpha_2=code) is not None


@cache
def _us_states() -> frozenset[str]:
    """The 50 states, DC and the territories (PR, GU, VI, AS, MP, UM)."""
    return frozenset(
        subdivision.code.removeprefix("US-")
        for subdivision in pycountry.subdivisions.get(country_code="US")  # type: ignore[no-untyped-call]
    )
