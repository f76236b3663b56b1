"""JWT verification: pinned algorithms, required claims, roles, and the key sources (secret, PEM, JWKS)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr, ValidationError

from cqrs_shared.auth import AuthError, TokenVerifier, mint_token
from cqrs_shared.envelopes import utc_now
from cqrs_shared.settings import AuthMode, AuthSettings

SECRET = "a-test-secret-long-enough-for-hs256-signatures"
HS = AuthSettings(auth_mode=AuthMode.JWT, jwt_secret=SecretStr(SECRET))


def claims(**overrides: object) -> dict[str, object]:
    now = utc_now()
    base: dict[str, object] = {
        "sub": "alice",
        "roles": ["orders:write"],
        "iss": "cqrs-platform",
        "aud": "cqrs-platform",
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    base.update(overrides)
    return base


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_a_valid_token_yields_the_subject_and_roles() -> None:
    principal = TokenVerifier(HS).verify(bearer(jwt.encode(claims(), SECRET, algorithm="HS256")))
    assert principal.subject == "alice"
    assert principal.roles == frozenset({"orders:write"})
    principal.require("orders:write")
    with pytest.raises(AuthError) as exc:
        principal.require("customers:erase")
    assert exc.value.forbidden


@pytest.mark.parametrize(
    ("token_claims", "message"),
    [
        (claims(exp=utc_now() - timedelta(minutes=5)), "expired"),
        (claims(iss="someone-else"), "issuer"),
        (claims(aud="another-api"), "audience"),
        (claims(roles="orders:write"), "roles"),
        ({k: v for k, v in claims().items() if k != "exp"}, "exp"),
        ({k: v for k, v in claims().items() if k != "sub"}, "sub"),
    ],
)
def test_tokens_with_bad_claims_are_unauthorized(token_claims: dict[str, object], message: str) -> None:
    with pytest.raises(AuthError) as exc:
        TokenVerifier(HS).verify(bearer(jwt.encode(token_claims, SECRET, algorithm="HS256")))
    assert not exc.value.forbidden
    assert message in exc.value.message.lower()


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer a.b.c", "token-without-scheme"])
def test_missing_or_malformed_headers_are_unauthorized(header: str | None) -> None:
    with pytest.raises(AuthError) as exc:
        TokenVerifier(HS).verify(header)
    assert not exc.value.forbidden


def test_a_token_signed_with_another_secret_or_unsigned_is_refused() -> None:
    for token in (
        jwt.encode(claims(), "another-secret-that-is-also-long-enough-32", algorithm="HS256"),
        jwt.encode(claims(), "", algorithm="none"),
    ):
        with pytest.raises(AuthError):
            TokenVerifier(HS).verify(bearer(token))


def hs256_signed_with(key: bytes, body: dict[str, object]) -> str:
    """An HS256 token using `key` as the HMAC secret, built by hand (PyJWT rightly refuses to)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    payload = {k: int(v.timestamp()) if hasattr(v, "timestamp") else v for k, v in body.items()}
    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing_input = f"{part(header)}.{part(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_rs256_with_a_pem_public_key_and_no_algorithm_confusion(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    settings = AuthSettings(
        auth_mode=AuthMode.JWT, jwt_algorithm="RS256", jwt_public_key_file=tmp_path / "key.pem"
    )
    verifier = TokenVerifier(settings)
    assert verifier.verify(bearer(jwt.encode(claims(), rsa_key, algorithm="RS256"))).subject == "alice"
    # The classic confusion: an HS256 token "signed" with the public key must not pass as RS256.
    forged = hs256_signed_with(pem, claims())
    with pytest.raises(AuthError):
        verifier.verify(bearer(forged))


def test_rs256_with_a_jwks_file_picks_the_key_by_kid(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    (tmp_path / "jwks.json").write_text(
        json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})
    )
    verifier = TokenVerifier(
        AuthSettings(auth_mode=AuthMode.JWT, jwt_algorithm="RS256", jwt_jwks_file=tmp_path / "jwks.json")
    )
    good = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.verify(bearer(good)).subject == "alice"
    unknown = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k2"})
    with pytest.raises(AuthError):
        verifier.verify(bearer(unknown))


def test_minted_development_tokens_verify() -> None:
    token = mint_token(
        SECRET, subject="dev", roles=["a", "b"], issuer="cqrs-platform", audience="cqrs-platform"
    )
    assert TokenVerifier(HS).verify(bearer(token)).roles == frozenset({"a", "b"})


def test_jwt_mode_without_key_material_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET is required"):
        AuthSettings(auth_mode=AuthMode.JWT)
    with pytest.raises(ValidationError, match="RS256"):
        AuthSettings(auth_mode=AuthMode.JWT, jwt_algorithm="RS256")


def test_disabled_auth_admits_anyone_with_every_role() -> None:
    principal = TokenVerifier(AuthSettings(auth_mode=AuthMode.DISABLED)).verify(None)
    assert principal.subject == "anonymous"
    principal.require("customers:erase")  # raises AuthError if any role were missing


def test_a_remembered_token_still_expires_and_a_changed_one_is_verified_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(HS.model_copy(update={"jwt_leeway_seconds": 0}))
    token = jwt.encode(claims(exp=utc_now() + timedelta(seconds=60)), SECRET, algorithm="HS256")
    decoded: list[str] = []
    decode = jwt.decode

    def counting_decode(*args: object, **kwargs: object) -> object:
        decoded.append("x")
        return decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting_decode)
    assert verifier.verify(bearer(token)).subject == "alice"
    assert verifier.verify(bearer(token)).subject == "alice"
    assert decoded == ["x"], "the second use of the same token was verified again"
    # One character changed (the signature's last): verified in full, and refused.
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(AuthError, match="not valid"):
        verifier.verify(bearer(tampered))
    # Past its `exp`, the remembered token is checked again, and refused.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 120)
    monkeypatch.setattr("jwt.api_jwt.datetime", _FutureDatetime)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(bearer(token))


class _FutureDatetime(datetime):
    """PyJWT's clock two minutes ahead, as `time.time` is in the test above."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]  # a plain datetime is all PyJWT needs
        return datetime.now(tz) + timedelta(seconds=120)


def test_the_remembered_tokens_are_bounded() -> None:
    verifier = TokenVerifier(HS)
    tokens = [
        jwt.encode(claims(sub=f"user-{i}"), SECRET, algorithm="HS256")
        for i in range(TokenVerifier.CACHE_SIZE + 10)
    ]
    for token in tokens:
        verifier.verify(bearer(token))
    assert len(verifier._verified) == TokenVerifier.CACHE_SIZE
    assert tokens[0] not in verifier._verified and tokens[-1] in verifier._verified
