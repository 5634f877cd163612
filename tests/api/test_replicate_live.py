"""The published ``replicate`` client against a live server, changing nothing but its base URL and token.

The site runs as a real process (daphne, TLS on 127.0.0.1 with a certificate made for the test,
the embedded default: in-process queue workers and the tiny engine, its own database). TLS
because Replicate's client only hands ``https:`` outputs back as files (``FileOutput``); the
client trusts the test certificate through ``SSL_CERT_FILE``, as any httpx client does.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import replicate
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image
from replicate.helpers import FileOutput

from tests.api.conftest import photo_bytes
from tests.e2e.site import ROOT, Site, site_create, site_destroy, wait_until

pytestmark = pytest.mark.slow

MODEL = "mockups/product-mockup"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.fixture(scope="module")
def tiny_models() -> Path:
    from gpu_runtime.tiny import ensure_tiny_models

    folder = Path(os.environ.get("TEST_TINY_MODELS_DIR", ROOT / "var" / "test-models" / "tiny"))
    return ensure_tiny_models(folder)


@pytest.fixture
def live_site(tmp_path, tiny_models) -> Iterator[tuple[Site, str, Path]]:
    """A running site over https with a merchant; yields (site, API key, certificate path)."""
    site = site_create(
        tmp_path,
        extra_env={
            # The embedded default, whatever this test run is configured with.
            "REDIS_URL": "",
            "BROKER_URL": "",
            "CHANNEL_REDIS_URL": "",
            "TINY_MODELS_DIR": str(tiny_models),
            "MOCKUP_ENGINE": "tiny",
        },
    )
    try:
        created = site.manage("createmerchant", "Live Mugs", "--email", "owner@live.test")
        key = created.stdout.strip().splitlines()[-1]
        key_path, cert_path = make_certificate(site.data_dir)
        site.start(
            "web",
            sys.executable,
            "-m",
            "daphne",
            "-e",
            f"ssl:{site.port}:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}",
            "mockups.asgi:application",
        )
        context = ssl.create_default_context(cafile=str(cert_path))

        def answers() -> bool:
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{site.port}/healthz", timeout=2, context=context
                ):
                    return True
            except (urllib.error.URLError, ConnectionError, OSError):
                return False

        wait_until(answers, timeout=120, what="the web process over https")
        yield site, key, cert_path
    finally:
        site_destroy(site)


def test_the_replicate_client_runs_the_model_cancels_and_lists_against_a_live_server(
    live_site, tmp_path, monkeypatch
):
    site, key, cert_path = live_site
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    client = replicate.Client(api_token=key, base_url=f"https://127.0.0.1:{site.port}")
    photo = tmp_path / "mug.png"
    photo.write_bytes(photo_bytes(size=(256, 256)))

    # replicate.run with a file: uploaded to /v1/files, then a prediction with Prefer: wait, polled if need be.
    with photo.open("rb") as image:
        outputs = client.run(MODEL, input={"image": image, "steps": 4})
    assert isinstance(outputs, list) and len(outputs) == 5, site.log("web")[-3000:]
    for output in outputs:
        assert isinstance(output, FileOutput)
        assert output.url.startswith(f"https://127.0.0.1:{site.port}/media/s/")
        picture = Image.open(io.BytesIO(output.read()))
        picture.load()
        assert picture.width > 0 and picture.height > 0

    # Another prediction, canceled.
    with photo.open("rb") as image:
        other = client.models.predictions.create(
            model=MODEL, input={"image": image, "styles": ["forest-moss"]}
        )
    other.cancel()
    other.wait()
    assert other.status == "canceled"

    # Both are listed, newest first.
    listed = [p.id for p in client.predictions.list()]
    assert listed[0] == other.id and len(listed) == 2
    done = client.predictions.get(listed[1])
    assert done.status == "succeeded" and len(done.output) == 5
    assert done.metrics["predict_time"] > 0 and done.progress is not None
