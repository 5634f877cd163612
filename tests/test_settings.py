"""Settings come from the environment, fail loudly on bad values and pass Django's deploy checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mockups.settings import database_from_url

ROOT = Path(__file__).resolve().parents[1]


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def production_env(tmp_path: Path) -> dict[str, str]:
    secret = tmp_path / "secret"
    secret.write_text("x" * 20 + "-production-secret-key-with-enough-entropy-0123456789")
    return {
        "SECRET_KEY_FILE": str(secret),
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": "postgres://mockups:pw@db.internal:5432/mockups?sslmode=require",
        "REDIS_URL": "redis://cache.internal:6379/0",
        "ALLOWED_HOSTS": "mockups.example.com",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_COOKIES": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "BEHIND_TLS_PROXY": "1",
        "MOCKUP_ENGINE": "sdxl",
    }


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = run_manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_choose_postgres_redis_and_external_workers(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['HOST'], s.DATABASES['default']['OPTIONS']); "
        "print(s.CHANNEL_LAYERS['default']['BACKEND'], s.BROKER_URL, s.EMBEDDED_WORKER, s.SECRET_KEY[:20])"
    )
    result = run_manage(production_env(tmp_path), "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert "django.db.backends.postgresql db.internal {'sslmode': 'require'}" in result.stdout
    assert (
        "channels_redis.core.RedisChannelLayer redis://cache.internal:6379/0 False xxxxxxxxxxxxxxxxxxxx"
        in result.stdout
    )


def test_a_rabbitmq_url_can_be_the_broker(tmp_path):
    env = {**production_env(tmp_path), "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F"}
    code = "import dramatiq; print(type(dramatiq.get_broker()).__name__)"
    result = run_manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("RabbitmqBroker")


def test_nothing_configured_means_the_embedded_default(tmp_path):
    env = {"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": "", "REDIS_URL": "", "BROKER_URL": ""}
    code = (
        "from django.conf import settings as s; import dramatiq; "
        "print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'], s.EMBEDDED_WORKER, "
        "type(dramatiq.get_broker()).__name__, s.MOCKUP_ENGINE)"
    )
    result = run_manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == [
        "django.db.backends.sqlite3",
        "channels.layers.InMemoryChannelLayer",
        "True",
        "StubBroker",
        "tiny",
    ]
    assert (tmp_path / "data" / "secret_key").exists()


def test_compiled_kernels_are_kept_under_the_data_folder_unless_torch_is_told_otherwise(tmp_path):
    code = "import os; print(os.environ['TORCHINDUCTOR_CACHE_DIR'])"
    kept = run_manage(
        {"DATA_DIR": str(tmp_path / "data"), "TORCHINDUCTOR_CACHE_DIR": ""}, "shell", "-c", code
    )
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip().splitlines()[-1] == str(tmp_path / "data" / "cache" / "torch-compile")

    chosen = run_manage(
        {"DATA_DIR": str(tmp_path), "TORCHINDUCTOR_CACHE_DIR": "/srv/kernels"}, "shell", "-c", code
    )
    assert chosen.stdout.strip().splitlines()[-1] == "/srv/kernels"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"UPLOAD_MAX_BYTES": "lots"}, "UPLOAD_MAX_BYTES='lots' is not an integer"),
        ({"DATABASE_URL": "mysql://x/y"}, "scheme 'mysql' is not supported"),
        ({"MOCKUP_ENGINE": "dalle"}, "must be 'tiny' or 'sdxl'"),
        ({"SECRET_KEY_FILE": "/nonexistent/secret"}, "cannot be read"),
    ],
)
def test_a_bad_setting_fails_loudly_with_its_name(tmp_path, env, message):
    result = run_manage({"DATA_DIR": str(tmp_path), **env}, "check")
    assert result.returncode != 0
    assert message in result.stderr


def test_database_urls_are_parsed():
    assert database_from_url("sqlite:////tmp/x.db")["NAME"] == "/tmp/x.db"
    pg = database_from_url("postgresql://u:p%40ss@h:6543/db")
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "u",
        "p@ss",
        "h",
        "6543",
        "db",
    )
