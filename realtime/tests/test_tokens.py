"""Access tokens (realtime/tokens.py): issue and verify (RFC 7519, HS256), expiry, forged
signatures, the wrong ``typ`` or ``iss``, inactive users, and DRF's ``Bearer`` header."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIRequestFactory

from realtime.tokens import (
    ALGORITHM,
    ISSUER,
    JWTAuthentication,
    TokenError,
    issue_token,
    password_fingerprint,
    user_from_token,
    user_id_from_token,
)

pytestmark = pytest.mark.django_db

OTHER_KEY = "not-the-secret-but-long-enough-for-hs256-0123456789"


def signed(claims: dict[str, Any], key: str | None = None, algorithm: str = ALGORITHM) -> str:
    return jwt.encode(claims, key or settings.SECRET_KEY, algorithm=algorithm)


def claims_for(user_id: int, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + 60, "iss": ISSUER, "typ": "access"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_an_issued_token_carries_the_documented_claims_and_verifies(alice: User) -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "JWT_TTL_SECONDS": 120}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        token, ttl = issue_token(alice)
    assert ttl == 120
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, settings.SECRET_KEY, algorithms=[ALGORITHM], issuer=ISSUER)
    assert set(claims) == {"sub", "iat", "exp", "iss", "typ", "pwd"}
    assert claims["pwd"] == password_fingerprint(alice) and len(claims["pwd"]) == 16
    assert (claims["sub"], claims["iss"], claims["typ"]) == (str(alice.pk), "townsquare", "access")
    assert claims["exp"] - claims["iat"] == 120
    assert abs(claims["iat"] - time.time()) < 5
    assert user_id_from_token(token) == alice.pk
    assert user_from_token(token) == alice


@pytest.mark.parametrize(
    ("changes", "key", "code", "detail"),
    [
        ({"exp": int(time.time()) - 10}, None, "token_expired", "the token has expired"),
        ({}, OTHER_KEY, "token_invalid", "the token is not valid"),  # forged signature
        ({"typ": "refresh"}, None, "token_invalid", "the token is not valid"),
        ({"typ": None}, None, "token_invalid", "the token is not valid"),
        ({"iss": "elsewhere"}, None, "token_invalid", "the token is not valid"),
        ({"iss": None}, None, "token_invalid", "the token is not valid"),
        ({"exp": None}, None, "token_invalid", "the token is not valid"),
        ({"sub": "alice"}, None, "token_invalid", "the token is not valid"),
    ],
)
def test_refused_tokens_say_why(
    changes: dict[str, Any], key: str | None, code: str, detail: str
) -> None:
    token = signed(claims_for(1, **changes), key)
    with pytest.raises(TokenError) as refused:
        user_id_from_token(token)
    assert (refused.value.code, refused.value.detail, str(refused.value)) == (code, detail, detail)


@pytest.mark.parametrize("token", ["", "not.a.jwt", "a" * 40])
def test_garbage_is_invalid(token: str) -> None:
    with pytest.raises(TokenError) as refused:
        user_id_from_token(token)
    assert refused.value.code == "token_invalid"


def test_another_algorithm_is_refused_even_with_the_right_key() -> None:
    token = signed(claims_for(1), algorithm="HS384")
    with pytest.raises(TokenError) as refused:
        user_id_from_token(token)
    assert refused.value.code == "token_invalid"
    unsigned = jwt.encode(claims_for(1), "", algorithm="none")
    with pytest.raises(TokenError) as refused:
        user_id_from_token(unsigned)
    assert refused.value.code == "token_invalid"


def test_an_inactive_or_deleted_user_is_refused(alice: User) -> None:
    token, _ = issue_token(alice)
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert user_id_from_token(token) == alice.pk  # the signature is fine; the user is not
    with pytest.raises(TokenError) as refused:
        user_from_token(token)
    assert refused.value.code == "token_invalid"
    assert refused.value.detail == "the token's user does not exist or is inactive"
    alice.delete()
    with pytest.raises(TokenError) as refused:
        user_from_token(token)
    assert refused.value.code == "token_invalid"


def test_drf_authentication_takes_a_bearer_header(alice: User) -> None:
    factory, auth = APIRequestFactory(), JWTAuthentication()
    token, _ = issue_token(alice)
    request = factory.get("/api/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert auth.authenticate(request) == (alice, token)
    # No header, or another scheme: not ours (the next authenticator may take it).
    assert auth.authenticate(factory.get("/api/")) is None
    basic = factory.get("/api/", HTTP_AUTHORIZATION="Basic YWxpY2U6cHc=")
    assert auth.authenticate(basic) is None
    assert auth.authenticate_header(request) == "Bearer"


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Bearer", "Authorization header must be 'Bearer <token>'."),
        ("Bearer a b", "Authorization header must be 'Bearer <token>'."),
        ("Bearer not.a.jwt", "the token is not valid"),
    ],
)
def test_drf_authentication_refuses_malformed_headers(header: str, detail: str) -> None:
    request = APIRequestFactory().get("/api/", HTTP_AUTHORIZATION=header)
    with pytest.raises(AuthenticationFailed) as refused:
        JWTAuthentication().authenticate(request)
    assert refused.value.detail == detail


def test_drf_authentication_says_an_expired_token_expired(alice: User) -> None:
    token = signed(claims_for(alice.pk, exp=int(time.time()) - 10))
    request = APIRequestFactory().get("/api/", HTTP_AUTHORIZATION=f"Bearer {token}")
    with pytest.raises(AuthenticationFailed) as refused:
        JWTAuthentication().authenticate(request)
    assert refused.value.detail == "the token has expired"


def test_a_password_change_refuses_older_tokens_and_not_newer_ones(alice: User) -> None:
    old, _ = issue_token(alice)
    alice.set_password("pw-alice-456")
    alice.save()
    with pytest.raises(TokenError) as refused:
        user_from_token(old)
    assert (refused.value.code, refused.value.detail) == (
        "token_invalid",
        "the token was issued before the password changed",
    )
    new, _ = issue_token(alice)
    assert user_from_token(new) == alice
    # Another save that keeps the hash keeps the tokens.
    alice.first_name = "Alice"
    alice.save()
    assert user_from_token(new) == alice


def test_a_token_without_the_password_claim_is_refused(alice: User) -> None:
    token = signed(claims_for(alice.pk))
    assert user_id_from_token(token) == alice.pk  # well signed, but from before the claim
    with pytest.raises(TokenError) as refused:
        user_from_token(token)
    assert refused.value.code == "token_invalid"
