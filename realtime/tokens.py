"""Short-lived JSON Web Tokens (RFC 7519, HS256 via PyJWT) for API clients and sockets.

A token carries ``sub`` (the user id as a string), ``iat``, ``exp``, ``typ="access"`` and
``pwd`` (a fingerprint of the user's password hash, ``password_fingerprint``), signed with
``SECRET_KEY``; its lifetime is ``TOWNSQUARE_REALTIME["JWT_TTL_SECONDS"]``. A password change
changes the fingerprint, so every token issued before it stops verifying (as Django's
``get_session_auth_hash`` ends the other sessions); ``realtime.signout`` closes the sockets
such tokens opened.
It is accepted by the HTTP API (``Authorization: Bearer <token>``) and by sockets
(``Sec-WebSocket-Protocol: townsquare, bearer.<token>`` or, as seed 001, ``?token=<token>``).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils.crypto import constant_time_compare, salted_hmac
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .conf import rt_settings

ALGORITHM = "HS256"
ISSUER = "townsquare"
#: The claim holding ``password_fingerprint(user)`` at issue time.
PASSWORD_CLAIM = "pwd"


class TokenError(Exception):
    """A token was refused. ``code`` is ``token_expired`` or ``token_invalid``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def password_fingerprint(user: AbstractBaseUser) -> str:
    """16 hex digits (64 bits) that change whenever the user's password hash changes.

    HMAC-SHA256 of the stored hash keyed with ``SECRET_KEY`` (Django's ``salted_hmac``, as in
    ``AbstractBaseUser.get_session_auth_hash``, with a salt of our own so the value is not the
    sessions' hash). It names no password: it only tells an old hash from the current one.
    """
    digest = salted_hmac("realtime.tokens.password", user.password, algorithm="sha256")
    return digest.hexdigest()[:16]


def issue_token(user: AbstractBaseUser) -> tuple[str, int]:
    """Return ``(token, lifetime in seconds)`` for ``user``."""
    ttl = rt_settings().JWT_TTL_SECONDS
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user.pk),
        "iat": now,
        "exp": now + ttl,
        "iss": ISSUER,
        "typ": "access",
        PASSWORD_CLAIM: password_fingerprint(user),
    }
    return jwt.encode(claims, settings.SECRET_KEY, algorithm=ALGORITHM), ttl


def user_id_from_token(token: str) -> int:
    """Verify ``token`` and return its user id.

    Raises:
        TokenError: ``token_expired`` past ``exp``; ``token_invalid`` for a bad signature,
            a malformed token, another algorithm, or missing claims.
    """
    return int(_claims(token)["sub"])


def _claims(token: str) -> dict[str, Any]:
    # Verify the signature, the algorithm, the issuer, expiry and the required claims.
    try:
        claims = jwt.decode(
            token,
            settings.SECRET_KEY,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token_expired", "the token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError("token_invalid", "the token is not valid") from exc
    if claims.get("typ") != "access" or not str(claims["sub"]).isdigit():
        raise TokenError("token_invalid", "the token is not valid")
    return claims


def user_from_token(token: str) -> AbstractBaseUser:
    """Return the active user a token names (sync: queries the database).

    Raises:
        TokenError: as ``user_id_from_token``, or ``token_invalid`` for an unknown or
            inactive user, or a token issued before the user's password last changed (its
            ``pwd`` claim is not the current ``password_fingerprint``, or it has none).
    """
    return verify_token(token)[0]


def verify_token(token: str) -> tuple[AbstractBaseUser, str]:
    """``user_from_token``, also returning the token's ``pwd`` claim (the socket keeps it to
    know, at a password change, whether the token that opened it still verifies)."""
    claims = _claims(token)
    user = get_user_model().objects.filter(pk=int(claims["sub"]), is_active=True).first()
    if user is None:
        raise TokenError("token_invalid", "the token's user does not exist or is inactive")
    claim = claims.get(PASSWORD_CLAIM)
    if not isinstance(claim, str) or not constant_time_compare(claim, password_fingerprint(user)):
        raise TokenError("token_invalid", "the token was issued before the password changed")
    return user, claim


class JWTAuthentication(authentication.BaseAuthentication):
    """DRF authentication by ``Authorization: Bearer <token>``."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, str] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            token = header[1].decode("ascii")
            return user_from_token(token), token
        except (UnicodeDecodeError, TokenError) as exc:
            detail = exc.detail if isinstance(exc, TokenError) else "the token is not valid"
            raise exceptions.AuthenticationFailed(detail) from exc

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    """``JWTAuthentication`` in the OpenAPI schema: HTTP bearer, format JWT (RFC 6750).

    Registered by being defined (drf-spectacular's "Extensions" docs); without it the
    schema leaves the token out and ``check --deploy`` warns ``drf_spectacular.W001`` for
    every API view.
    """

    target_class = "realtime.tokens.JWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return build_bearer_security_scheme_object(
            header_name="HTTP_AUTHORIZATION", token_prefix="Bearer", bearer_format="JWT"
        )
