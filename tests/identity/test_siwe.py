"""EIP-4361 parsing, formatting and EOA verification: every field, every rule."""

import contextlib
from datetime import UTC, datetime

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.identity import siwe
from gateway.identity.siwe import SiweMessage, parse_message, verify_message

KEY = "0x" + "4c" * 32
ACCOUNT = Account.from_key(KEY)
ADDRESS = ACCOUNT.address

FULL = (
    "https://example.com:8443 wants you to sign in with your Ethereum account:\n"
    f"{ADDRESS}\n\n"
    "I accept the ExampleOrg Terms of Service: https://example.com/tos\n\n"
    "URI: https://example.com/login?next=%2Fhome#top\n"
    "Version: 1\n"
    "Chain ID: 1\n"
    "Nonce: 32891757abcDEF\n"
    "Issued At: 2021-09-30T16:25:24.000Z\n"
    "Expiration Time: 2121-09-30T16:25:24+02:00\n"
    "Not Before: 2021-09-30T16:25:24Z\n"
    "Request ID: some-request:id@1\n"
    "Resources:\n"
    "- ipfs://Qme7ss3ARVgxv6rXqVPiikMJ8u2NLgmgszg13pYrDKEoiu\n"
    "- https://example.com/my-web2-claim.json"
)
MINIMAL = (
    "example.com wants you to sign in with your Ethereum account:\n"
    f"{ADDRESS}\n\n\n"
    "URI: https://example.com\n"
    "Version: 1\n"
    "Chain ID: 1\n"
    "Nonce: abcdefgh\n"
    "Issued At: 2021-09-30T16:25:24Z"
)


def sign(text: str, key: str = KEY) -> str:
    return Account.from_key(key).sign_message(encode_defunct(text=text)).signature.to_0x_hex()


def test_parses_every_field():
    message = parse_message(FULL)
    assert message.scheme == "https"
    assert message.domain == "example.com:8443"
    assert message.address == ADDRESS
    assert message.statement == "I accept the ExampleOrg Terms of Service: https://example.com/tos"
    assert message.uri == "https://example.com/login?next=%2Fhome#top"
    assert message.version == "1"
    assert message.chain_id == 1
    assert message.nonce == "32891757abcDEF"
    assert message.issued_at_datetime == datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)
    assert message.expiration_datetime == datetime(2121, 9, 30, 14, 25, 24, tzinfo=UTC)
    assert message.not_before == "2021-09-30T16:25:24Z"
    assert message.request_id == "some-request:id@1"
    assert message.resources == (
        "ipfs://Qme7ss3ARVgxv6rXqVPiikMJ8u2NLgmgszg13pYrDKEoiu",
        "https://example.com/my-web2-claim.json",
    )


def test_minimal_message_has_no_optional_fields():
    message = parse_message(MINIMAL)
    assert message.scheme is None
    assert message.statement is None
    assert message.expiration_time is None
    assert message.not_before is None
    assert message.request_id is None
    assert message.resources is None


@pytest.mark.parametrize(
    "text",
    [
        FULL,
        MINIMAL,
        MINIMAL.replace("Chain ID: 1", "Chain ID: 0001"),  # the ABNF allows leading zeros
        MINIMAL + "\nRequest ID: ",  # an empty request id is *pchar
        MINIMAL + "\nResources:",  # zero resources
        MINIMAL.replace("2021-09-30T16:25:24Z", "2021-09-30t16:25:24.123456789z"),
        MINIMAL.replace("example.com wants", "user:pw@[2001:db8::1]:8080 wants"),
        MINIMAL.replace("example.com wants", "192.168.0.1 wants"),
        MINIMAL.replace("URI: https://example.com", "URI: urn:uuid:f81d4fae-7dec-11d0-a765"),
        MINIMAL.replace("URI: https://example.com", "URI: did:pkh:eip155:1:" + ADDRESS),
        MINIMAL.replace("2021-09-30T16:25:24Z", "2016-12-31T23:59:60Z"),  # leap second
        MINIMAL.replace("2021-09-30T16:25:24Z", "2024-02-29T00:00:00-23:59"),
    ],
)
def test_to_text_reproduces_the_signed_bytes(text):
    assert parse_message(text).to_text() == text


@pytest.mark.parametrize(
    ("text", "error", "line"),
    [
        ("", siwe.InvalidHeader, 1),
        (MINIMAL.replace(" wants you", " want you"), siwe.InvalidHeader, 1),
        (MINIMAL.replace("example.com wants", "exa mple.com wants"), siwe.InvalidHeader, 1),
        (MINIMAL.replace("example.com wants", "1http://example.com wants"), siwe.InvalidHeader, 1),
        (MINIMAL.replace("example.com wants", " wants"), siwe.InvalidDomain, 1),
        (MINIMAL.replace("example.com wants", "https:// wants"), siwe.InvalidDomain, 1),
        (MINIMAL.replace("example.com wants", ":8080 wants"), siwe.InvalidDomain, 1),
        (MINIMAL.replace("example.com wants", "user@:8080 wants"), siwe.InvalidDomain, 1),
        (MINIMAL.replace(ADDRESS, ADDRESS.lower()), siwe.InvalidAddress, 2),
        (MINIMAL.replace(ADDRESS, ADDRESS[:-1]), siwe.InvalidAddress, 2),
        (MINIMAL.replace(ADDRESS, ADDRESS + "0"), siwe.InvalidAddress, 2),
        (MINIMAL.replace(ADDRESS, ADDRESS[2:]), siwe.InvalidAddress, 2),
        (MINIMAL.replace(f"{ADDRESS}\n\n\n", f"{ADDRESS}\n\n"), siwe.UnexpectedLine, 5),
        (MINIMAL.replace(f"{ADDRESS}\n\n\n", f"{ADDRESS}\nstatement\n\n"), siwe.UnexpectedLine, 3),
        (
            MINIMAL.replace(f"{ADDRESS}\n\n\n", f"{ADDRESS}\n\nno blank after\n"),
            siwe.UnexpectedLine,
            5,
        ),
        (
            MINIMAL.replace(f"{ADDRESS}\n\n\n", f'{ADDRESS}\n\nbad "quote"\n\n'),
            siwe.InvalidStatement,
            4,
        ),
        (
            MINIMAL.replace(f"{ADDRESS}\n\n\n", f"{ADDRESS}\n\nnon-ascii é\n\n"),
            siwe.InvalidStatement,
            4,
        ),
        (MINIMAL.replace("URI: https://example.com", "URI: not a uri"), siwe.InvalidURI, 5),
        (
            MINIMAL.replace("URI: https://example.com", "URI: https://exa mple.com"),
            siwe.InvalidURI,
            5,
        ),
        (
            MINIMAL.replace("URI: https://example.com", "URI: https://example.com/%zz"),
            siwe.InvalidURI,
            5,
        ),
        (MINIMAL.replace("URI: ", "Uri: "), siwe.InvalidURI, 5),
        (MINIMAL.replace("Version: 1", "Version: 2"), siwe.InvalidVersion, 6),
        (MINIMAL.replace("Chain ID: 1", "Chain ID: 0x1"), siwe.InvalidChainId, 7),
        (MINIMAL.replace("Chain ID: 1", "Chain ID: "), siwe.InvalidChainId, 7),
        (MINIMAL.replace("Chain ID: 1", "Chain ID: \u0661"), siwe.InvalidChainId, 7),
        (MINIMAL.replace("Nonce: abcdefgh", "Nonce: abcdefg"), siwe.InvalidNonce, 8),
        (MINIMAL.replace("Nonce: abcdefgh", "Nonce: abcd-efgh"), siwe.InvalidNonce, 8),
        (MINIMAL.replace("2021-09-30T16:25:24Z", "2021-09-30 16:25:24Z"), siwe.InvalidTimestamp, 9),
        (MINIMAL.replace("2021-09-30T16:25:24Z", "2021-02-30T16:25:24Z"), siwe.InvalidTimestamp, 9),
        (MINIMAL.replace("2021-09-30T16:25:24Z", "2021-13-01T16:25:24Z"), siwe.InvalidTimestamp, 9),
        (MINIMAL.replace("2021-09-30T16:25:24Z", "2021-09-30T24:00:00Z"), siwe.InvalidTimestamp, 9),
        (MINIMAL.replace("2021-09-30T16:25:24Z", "2021-09-30T16:25:24"), siwe.InvalidTimestamp, 9),
        (
            MINIMAL.replace("2021-09-30T16:25:24Z", "2021-09-30T16:25:24+24:00"),
            siwe.InvalidTimestamp,
            9,
        ),
        (
            MINIMAL.replace("2021-09-30T16:25:24Z", "2021-09-30T16:25:24.Z"),
            siwe.InvalidTimestamp,
            9,
        ),
        (MINIMAL + "\nExpiration Time: tomorrow", siwe.InvalidTimestamp, 10),
        (MINIMAL + "\nExpiration Time: 2021-09-31T00:00:00Z", siwe.InvalidTimestamp, 10),
        (MINIMAL + "\nNot Before: 2021-09-30", siwe.InvalidTimestamp, 10),
        (MINIMAL + "\nRequest ID: has space", siwe.InvalidRequestId, 10),
        (MINIMAL + "\nResources:\n- not a uri", siwe.InvalidResource, 11),
        (MINIMAL + "\nResources:\nhttps://example.com", siwe.InvalidResource, 11),
        (MINIMAL + "\n", siwe.UnexpectedLine, 10),  # no trailing newline in the ABNF
        (MINIMAL + "\nSomething: else", siwe.UnexpectedLine, 10),
        (
            MINIMAL + "\nRequest ID: a\nExpiration Time: 2030-01-01T00:00:00Z",
            siwe.UnexpectedLine,
            11,
        ),
        (MINIMAL.replace("\n", "\r\n"), siwe.InvalidHeader, 1),
        (MINIMAL.replace("Issued At: 2021-09-30T16:25:24Z", ""), siwe.InvalidTimestamp, 9),
        (MINIMAL.rsplit("\n", 1)[0], siwe.UnexpectedLine, 9),
    ],
)
def test_malformed_text_names_the_line(text, error, line):
    with pytest.raises(error) as caught:
        parse_message(text)
    assert caught.value.line == line
    assert caught.value.http_status == 400
    assert caught.value.code.startswith("siwe.malformed")


def test_oversized_text_is_rejected_before_parsing():
    with pytest.raises(siwe.MalformedMessage, match="longer than"):
        parse_message(MINIMAL + "\nRequest ID: " + "a" * 20000)


def test_verify_returns_the_checksummed_signer():
    assert verify_message(FULL, sign(FULL)) == ADDRESS
    assert (
        verify_message(
            parse_message(MINIMAL), sign(MINIMAL), domain="example.com", nonce="abcdefgh"
        )
        == ADDRESS
    )


def test_verify_accepts_v_as_0_or_1():
    signature = bytes.fromhex(sign(MINIMAL)[2:])
    recid = bytes((signature[64] - 27,))
    assert verify_message(MINIMAL, signature[:64] + recid) == ADDRESS


def test_signature_by_another_key_is_rejected():
    with pytest.raises(siwe.InvalidSignature) as caught:
        verify_message(MINIMAL, sign(MINIMAL, "0x" + "5d" * 32))
    assert caught.value.outcome == "bad_signature"
    assert caught.value.http_status == 401


def test_signature_over_other_text_is_rejected():
    with pytest.raises(siwe.InvalidSignature):
        verify_message(MINIMAL, sign(MINIMAL.replace("abcdefgh", "abcdefgi")))


def test_high_s_signature_is_rejected():
    raw = bytes.fromhex(sign(MINIMAL)[2:])
    s = int.from_bytes(raw[32:64], "big")
    flipped = (
        raw[:32] + (siwe.SECP256K1_N - s).to_bytes(32, "big") + bytes((27 + ((raw[64] - 27) ^ 1),))
    )
    with pytest.raises(siwe.MalformedSignature, match="high"):
        verify_message(MINIMAL, flipped)


@pytest.mark.parametrize(
    "signature",
    ["0x", "0x1234", "0x" + "ab" * 64, "0x" + "ab" * 66, "zz", "0xnothex", b"\x00" * 65],
)
def test_wrong_length_or_garbage_signatures_are_rejected(signature):
    with pytest.raises(siwe.MalformedSignature):
        verify_message(MINIMAL, signature)


def test_bad_v_is_rejected():
    raw = bytes.fromhex(sign(MINIMAL)[2:])
    with pytest.raises(siwe.MalformedSignature, match="v must be"):
        verify_message(MINIMAL, raw[:64] + b"\x1d")


def test_domain_and_nonce_expectations():
    with pytest.raises(siwe.DomainMismatch):
        verify_message(MINIMAL, sign(MINIMAL), domain="evil.com")
    with pytest.raises(siwe.NonceMismatch):
        verify_message(MINIMAL, sign(MINIMAL), nonce="zzzzzzzz")


def test_time_window():
    text = MINIMAL + "\nExpiration Time: 2030-01-01T00:00:00Z\nNot Before: 2025-01-01T00:00:00Z"
    signature = sign(text)
    assert verify_message(text, signature, time=datetime(2026, 1, 1, tzinfo=UTC)) == ADDRESS
    with pytest.raises(siwe.ExpiredMessage):
        verify_message(text, signature, time=datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(siwe.NotYetValid):
        verify_message(text, signature, time=datetime(2024, 12, 31, tzinfo=UTC))
    with pytest.raises(siwe.IssuedInFuture):
        verify_message(text, signature, time=datetime(2021, 9, 30, 16, 20, tzinfo=UTC))
    # within the clock skew
    assert verify_message(MINIMAL, sign(MINIMAL), time=datetime(2021, 9, 30, 16, 25, tzinfo=UTC))


def test_checksum_matches_eth_utils():
    from eth_utils import to_checksum_address

    for index in range(200):
        address = "0x" + (index * 0x9E3779B97F4A7C15 % (1 << 160)).to_bytes(20, "big").hex()
        assert siwe.checksum_address(address) == to_checksum_address(address)


# --- property: whatever we format, we parse back to the same message -----------------------

_alnum = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=8, max_size=40
)
_statement = st.text("abcXYZ019 -._~:/?#[]@!$&'()*+,;=", min_size=1, max_size=60)
_times = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001  # hypothesis takes naive bounds
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@settings(max_examples=200, deadline=None)
@given(
    statement=st.one_of(st.none(), _statement),
    nonce=_alnum,
    chain_id=st.integers(min_value=1, max_value=2**63),
    issued=_times,
    expires=st.one_of(st.none(), _times),
    request_id=st.one_of(st.none(), st.text("abc019-._~!$&'()*+,;=:@", max_size=20)),
    resources=st.one_of(
        st.none(),
        st.lists(st.sampled_from(["ipfs://Qm1", "https://a.b/c?d=e", "urn:x:y"]), max_size=3),
    ),
    scheme=st.one_of(st.none(), st.sampled_from(["https", "http", "wss+x"])),
)
def test_format_then_parse_is_identity(
    statement, nonce, chain_id, issued, expires, request_id, resources, scheme
):
    message = SiweMessage(
        scheme=scheme,
        domain="app.example.org:3000",
        address=ADDRESS,
        statement=statement,
        uri="https://app.example.org/login",
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued.isoformat().replace("+00:00", "Z"),
        expiration_time=None if expires is None else expires.isoformat(),
        request_id=request_id,
        resources=None if resources is None else tuple(resources),
    )
    text = message.to_text()
    assert parse_message(text) == message
    assert parse_message(text).to_text() == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_never_escapes_as_another_exception(text):
    with contextlib.suppress(siwe.MalformedMessage):
        parse_message(MINIMAL[:60] + text)
