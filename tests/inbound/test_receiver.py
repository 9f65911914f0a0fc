import hashlib
import hmac

from shared.webhooks import verify_signature

# GitHub's published test vector for X-Hub-Signature-256, the same scheme.
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_vector_verifies() -> None:
    assert verify_signature(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE)


def test_any_other_secret_body_or_header_fails() -> None:
    assert not verify_signature(b"It's a Secret to Everybody!", GITHUB_BODY, GITHUB_SIGNATURE)
    assert not verify_signature(GITHUB_SECRET, b"Hello, World", GITHUB_SIGNATURE)
    assert not verify_signature(GITHUB_SECRET, GITHUB_BODY, None)
    assert not verify_signature(GITHUB_SECRET, GITHUB_BODY, "")
    assert not verify_signature(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE.removeprefix("sha256="))
    assert not verify_signature(GITHUB_SECRET, GITHUB_BODY, "sha1=" + GITHUB_SIGNATURE[7:])
    assert not verify_signature(GITHUB_SECRET, GITHUB_BODY, "sha256=ünïcode")


def test_signature_of_our_own_body() -> None:
    body = b'{"id":"abc","status":"completed"}'
    digest = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify_signature(b"s3cret", body, f"sha256={digest}")
    assert verify_signature(b"s3cret", body, f"sha256={digest.upper()}")
    assert not verify_signature(b"s3cret", body + b" ", f"sha256={digest}")
