"""The customer rules of domain-rules.md, row by row, with no database."""

from __future__ import annotations

import pytest

from db import rules
from db.models import Customer
from db.rules import Code, Environment

VALID = {"email": "ann@example.com"}


def data_problems(**data: str | None) -> list[tuple[str, Code]]:
    _, problems = rules.check_customer_data({**VALID, **data})
    return [(p.field, p.code) for p in problems]


def normalised(name: str, value: str | None) -> str | None:
    values, problems = rules.check_customer_data({**VALID, name: value})
    assert problems == []
    return values[name]


# -- external_customer_id ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [("c-1", "c-1"), ("  ABC_123  ", "ABC_123"), ("x" * 255, "x" * 255), ("Ümlaut.é", "Ümlaut.é")],
)
def test_external_id_accepted_and_trimmed(raw: str, stored: str) -> None:
    assert rules.check_external_customer_id(raw) == (stored, [])


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (None, Code.REQUIRED),
        ("", Code.REQUIRED),
        ("   ", Code.REQUIRED),
        ("x" * 256, Code.TOO_LONG),
        ("a b", Code.INVALID),
        ("a\tb", Code.INVALID),
        ("a\x00b", Code.INVALID),
        ("a\u200bb", Code.INVALID),  # zero-width space
        ("a\u00a0b", Code.INVALID),  # no-break space
    ],
)
def test_external_id_refused(raw: str | None, code: Code) -> None:
    _, problems = rules.check_external_customer_id(raw)
    assert [(p.field, p.code) for p in problems] == [("external_customer_id", code)]


def test_external_id_too_long_and_invalid_reports_both() -> None:
    _, problems = rules.check_external_customer_id("a " * 200)
    assert [p.code for p in problems] == [Code.TOO_LONG, Code.INVALID]


def test_external_id_is_case_sensitive() -> None:
    assert rules.check_external_customer_id("AbC")[0] == "AbC"


# -- email -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann.Lee@Example.COM ", "Ann.Lee@example.com"),  # domain lower-cased, local part kept
        ("o'brien@sub.example.co.uk", "o'brien@sub.example.co.uk"),
    ],
)
def test_email_accepted_and_normalised(raw: str, stored: str) -> None:
    assert normalised("email", raw) == stored


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (None, Code.REQUIRED),
        ("  ", Code.REQUIRED),
        ("not-an-email", Code.INVALID_EMAIL),
        ("ann@", Code.INVALID_EMAIL),
        ("ann@@example.com", Code.INVALID_EMAIL),
        ("ann@localhost", Code.INVALID_EMAIL),
        ("ann@mailinator.com", Code.DISPOSABLE_EMAIL),
        ("ann@MAILINATOR.COM", Code.DISPOSABLE_EMAIL),
        ("ann@eu.mailinator.com", Code.DISPOSABLE_EMAIL),  # a parent domain is on the list
        ("ann+news@example.com", Code.EMAIL_PLUS_SUFFIX),
    ],
)
def test_email_refused(raw: str | None, code: Code) -> None:
    assert data_problems(email=raw) == [("email", code)]


def test_disposable_domain_with_plus_reports_both() -> None:
    assert data_problems(email="a+b@mailinator.com") == [
        ("email", Code.DISPOSABLE_EMAIL),
        ("email", Code.EMAIL_PLUS_SUFFIX),
    ]


def test_fold_ignores_case() -> None:
    assert rules.fold("Ann@Example.com") == rules.fold("ANN@example.COM")
    assert rules.fold("Straße") == rules.fold("STRASSE")


# -- phone -------------------------------------------------------------------------------------

MOBILE = {
    "GB": "+447400123456",
    "DE": "+4915123456789",
    "FR": "+33612345678",
    "IN": "+918123456789",
    "AU": "+61412345678",
    "BR": "+5511961234567",
    "JP": "+819012345678",
    "ES": "+34612345678",
    "US": "+12015550123",  # FIXED_LINE_OR_MOBILE: the US plan does not tell them apart
    "CA": "+15062345678",  # likewise
}
FIXED_LINE = {
    "GB": "+441212345678",
    "DE": "+4930123456",
    "FR": "+33123456789",
    "BR": "+551123456789",
    "JP": "+81312345678",
    "ES": "+34810123456",
    "IT": "+390212345678",
}
VOIP = {
    "GB": "+445612345678",
    "FR": "+33912345678",
    "AU": "+61147101234",
    "JP": "+815012345678",
    "IT": "+395512345678",
    "NL": "+31851234567",
    "CA": "+16002012345",
}
TOLL_FREE = {
    "GB": "+448001234567",
    "DE": "+498001234567890",
    "FR": "+33801234567",
    "IN": "+911800123456",
    "AU": "+611800123456",
    "JP": "+81120123456",
    "US": "+18002345678",
}
OTHER_NOT_MOBILE = {
    "GB premium rate": "+449012345678",
    "GB personal": "+447012345678",
    "GB pager": "+447640123456",
    "GB UAN": "+445512345678",
    "GB shared cost": "+448431234567",
    "US premium rate": "+19002345678",
    "CH voicemail": "+41860123456789",
}


@pytest.mark.parametrize("number", MOBILE.values(), ids=MOBILE.keys())
def test_mobile_numbers_accepted(number: str) -> None:
    assert normalised("phone", number) == number


@pytest.mark.parametrize(
    "number",
    [*FIXED_LINE.values(), *VOIP.values(), *TOLL_FREE.values(), *OTHER_NOT_MOBILE.values()],
    ids=[
        *(f"fixed {k}" for k in FIXED_LINE),
        *(f"voip {k}" for k in VOIP),
        *(f"toll-free {k}" for k in TOLL_FREE),
        *OTHER_NOT_MOBILE,
    ],
)
def test_non_mobile_numbers_refused(number: str) -> None:
    assert data_problems(phone=number) == [("phone", Code.PHONE_NOT_MOBILE)]


@pytest.mark.parametrize(
    "raw",
    ["2015550123", "(201) 555-0123", "1 201 555 0123", "201.555.0123", "+1 (201) 555-0123"],
)
def test_numbers_without_plus_are_read_as_us(raw: str) -> None:
    assert normalised("phone", raw) == "+12015550123"


@pytest.mark.parametrize(
    "raw",
    [
        "+44 7400 123456",
        "+44-7400-123456",
        " +447400123456 ",
        "+44.7400.123.456",
    ],
)
def test_international_numbers_ignore_punctuation(raw: str) -> None:
    assert normalised("phone", raw) == "+447400123456"


@pytest.mark.parametrize(
    "raw",
    [
        "+15551234567",  # the fictional 555 area code
        "555 0123",  # fewer than 10 digits and no +: ask for the country code
        "201555012",
        "07400123456",  # a UK number written nationally reads as US, and is not one
        "+44740012345678",
        "201-555-CALL",
        "+1 201 555 0123 ext 5",
        "12+015550123",
        "+",
    ],
)
def test_invalid_phone_numbers(raw: str) -> None:
    assert data_problems(phone=raw) == [("phone", Code.INVALID_PHONE)]


def test_phone_is_optional_and_blank_is_null() -> None:
    assert normalised("phone", None) is None
    assert normalised("phone", "   ") is None


# -- country, state, zip -----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "stored"), [("us", "US"), (" gb ", "GB"), ("De", "DE")])
def test_country_accepted_upper_case(raw: str, stored: str) -> None:
    assert normalised("country", raw) == stored


@pytest.mark.parametrize("raw", ["USA", "U", "XX", "ZZ", "XK", "1A", "ü1"])
def test_country_refused(raw: str) -> None:
    assert data_problems(country=raw) == [("country", Code.INVALID_COUNTRY)]


@pytest.mark.parametrize(
    ("state", "country", "stored"),
    [
        ("ny", None, "NY"),
        ("DC", "US", "DC"),
        ("pr", "us", "PR"),
        ("GU", None, "GU"),
        ("ON", "CA", "ON"),  # another country: any two characters
        ("13", "JP", "13"),
    ],
)
def test_state_accepted(state: str, country: str | None, stored: str) -> None:
    values, problems = rules.check_customer_data({**VALID, "state": state, "country": country})
    assert (values["state"], problems) == (stored, [])


@pytest.mark.parametrize(
    ("state", "country"),
    [("ZZ", None), ("ON", "US"), ("New York", "US"), ("N", None), ("ABC", "CA"), ("N.", "CA")],
)
def test_state_refused(state: str, country: str | None) -> None:
    assert data_problems(state=state, country=country) == [("state", Code.INVALID_STATE)]


@pytest.mark.parametrize(
    ("zip_code", "country"),
    [
        ("10001", "US"),
        ("10001-1234", "US"),
        ("SW1A 1AA", "GB"),
        ("K1A0B1", None),
        ("1234567890", "DE"),
    ],
)
def test_zip_accepted(zip_code: str, country: str | None) -> None:
    assert data_problems(zip=zip_code, country=country) == []


@pytest.mark.parametrize(
    ("zip_code", "country"),
    [
        ("1000", "US"),
        ("10001-12", "US"),
        ("ABCDE", "US"),
        ("100011234", "US"),
        ("12345678901", "GB"),
    ],
)
def test_zip_refused(zip_code: str, country: str | None) -> None:
    assert data_problems(zip=zip_code, country=country) == [("zip", Code.INVALID_ZIP)]


def test_refused_country_skips_the_us_only_checks() -> None:
    assert data_problems(country="XX", state="ZZ", zip="1") == [("country", Code.INVALID_COUNTRY)]


# -- free text ---------------------------------------------------------------------------------

TEXT_LIMITS = {
    "first_name": 100,
    "last_name": 100,
    "city": 100,
    "street": 200,
    "street2": 200,
}


@pytest.mark.parametrize(("name", "limit"), TEXT_LIMITS.items())
def test_text_at_limit_accepted_and_trimmed(name: str, limit: int) -> None:
    assert normalised(name, "  " + "é" * limit + "  ") == "é" * limit


@pytest.mark.parametrize(("name", "limit"), TEXT_LIMITS.items())
def test_text_over_limit_refused(name: str, limit: int) -> None:
    assert data_problems(**{name: "x" * (limit + 1)}) == [(name, Code.TOO_LONG)]


@pytest.mark.parametrize("name", TEXT_LIMITS)
def test_text_with_control_characters_refused(name: str) -> None:
    assert data_problems(**{name: "Ann\nLee"}) == [(name, Code.INVALID)]


@pytest.mark.parametrize("name", [*TEXT_LIMITS, "state", "zip", "country", "phone"])
def test_blank_optional_value_is_null(name: str) -> None:
    assert normalised(name, " \t ") is None


# -- whole records -----------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_in_field_order() -> None:
    checked = rules.check_customer(
        " ",
        {
            "email": "a+b@mailinator.com",
            "phone": "+15551234567",
            "first_name": "x" * 101,
            "last_name": "L\x07",
            "street": "s" * 201,
            "street2": "\x00",
            "state": "ZZ",
            "city": "c" * 101,
            "zip": "1",
            "country": "US",
        },
    )
    assert [(p.field, p.code) for p in checked.problems] == [
        ("external_customer_id", Code.REQUIRED),
        ("email", Code.DISPOSABLE_EMAIL),
        ("email", Code.EMAIL_PLUS_SUFFIX),
        ("phone", Code.INVALID_PHONE),
        ("first_name", Code.TOO_LONG),
        ("last_name", Code.INVALID),
        ("street", Code.TOO_LONG),
        ("street2", Code.INVALID),
        ("state", Code.INVALID_STATE),
        ("city", Code.TOO_LONG),
        ("zip", Code.INVALID_ZIP),
    ]
    assert all(p.message and "Traceback" not in p.message for p in checked.problems)


def test_sandbox_turns_disposable_and_plus_into_warnings() -> None:
    checked = rules.check_customer(
        "c-1", {"email": "a+b@mailinator.com", "phone": "+15551234567"}, Environment.SANDBOX
    )
    assert [(p.field, p.code) for p in checked.warnings] == [
        ("email", Code.DISPOSABLE_EMAIL),
        ("email", Code.EMAIL_PLUS_SUFFIX),
    ]
    # every other rule still applies
    assert [p.code for p in checked.problems] == [Code.INVALID_PHONE]
    assert checked.values["email"] == "a+b@mailinator.com"


def test_production_refuses_what_sandbox_warns_about() -> None:
    checked = rules.check_customer("c-1", {"email": "a+b@mailinator.com"})
    assert checked.warnings == []
    assert [p.code for p in checked.problems] == [Code.DISPOSABLE_EMAIL, Code.EMAIL_PLUS_SUFFIX]


def test_a_valid_record_is_normalised() -> None:
    checked = rules.check_customer(
        " c-1 ",
        {
            "email": " Ann@Example.COM ",
            "phone": "(201) 555-0123",
            "first_name": " Ann ",
            "last_name": "",
            "state": "ny",
            "zip": "10001",
            "country": "us",
        },
    )
    assert checked.problems == []
    assert checked.values == {
        "external_customer_id": "c-1",
        "email": "Ann@example.com",
        "phone": "+12015550123",
        "first_name": "Ann",
        "last_name": None,
        "street": None,
        "street2": None,
        "state": "NY",
        "city": None,
        "zip": "10001",
        "country": "US",
    }


def test_data_fields_are_the_customer_columns() -> None:
    """db/ names a customer's data as its table does; schema/translate.py makes GraphQL names."""
    columns = set(Customer.model_fields)
    assert set(rules.DATA_FIELDS) <= columns
    assert all(name == name.lower() for name in rules.DATA_FIELDS)
