"""Settings come from the environment: parsed in a fresh interpreter for each case."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "k3J9-vQ2_mZ8pL5xW1nR7tY4bH6cF0dS9aE2gU8iO3-Lr5Tq7Wz1Xc4Vb8Nm2",
    "ALLOWED_HOSTS": "playground.example.com",
    "CLERK_PUBLISHABLE_KEY": "pk_live_Y2xlcmsucGxheWdyb3VuZC5leGFtcGxlLmNvbSQ",
    "CLERK_SECRET_KEY": "sk_live_not_a_real_key",
    "CLERK_AUTHORIZED_PARTIES": "https://playground.example.com",
}


def _run(code: str, env: dict[str, str], *, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CLERK_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "CORS_ORIGIN", "ALLOWED_HOSTS", "PORT", "HOST"):
        clean.pop(name, None)
    clean.update({"DJANGO_SETTINGS_MODULE": "playground.settings", "DATA_DIR": str(tmp_path)})
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings(env: dict[str, str], tmp_path: Path) -> dict:
    # Reading ``django.conf.settings`` executes the settings module; ``django.setup()`` (the apps,
    # ~3x the CPU) adds nothing to what is parsed. ``test_check_runs_clean`` loads the apps.
    code = (
        "import json; from django.conf import settings as s;"
        "print(json.dumps({'db': s.DATABASES['default'], 'layer': s.CHANNEL_LAYERS['default'],"
        "'cors': s.CORS_ALLOWED_ORIGINS, 'port': s.PORT, 'host': s.HOST, 'debug': s.DEBUG},"
        " default=str))"
    )
    result = _run(code, env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_embedded_defaults(tmp_path: Path) -> None:
    parsed = _settings({}, tmp_path)
    assert parsed["db"]["ENGINE"] == "django.db.backends.sqlite3"
    assert parsed["db"]["NAME"] == str(tmp_path / "playground.sqlite3")
    assert parsed["layer"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert parsed["cors"] == ["http://localhost:3000"]
    assert (parsed["host"], parsed["port"]) == ("127.0.0.1", 3001)


def test_database_url_postgres(tmp_path: Path) -> None:
    parsed = _settings(
        {"DATABASE_URL": "postgres://pg:s3cret@db.internal:5433/playground"}, tmp_path
    )
    db = parsed["db"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"], db["PASSWORD"]) == (
        "db.internal",
        5433,
        "playground",
        "pg",
        "s3cret",
    )


def test_redis_url_selects_channels_redis(tmp_path: Path) -> None:
    parsed = _settings({"REDIS_URL": "redis://:pw@cache.internal:6380/2"}, tmp_path)
    layer = parsed["layer"]
    assert layer["BACKEND"] == "playground.redis_layer.WaitingRedisChannelLayer"
    (host,) = layer["CONFIG"]["hosts"]
    assert host["address"] == "redis://:pw@cache.internal:6380/2"
    # No client read/write timeout: a 5 s one closed idle sockets with 1011 (BZPOPMIN blocks 5 s)
    # and one made redis-py write through asyncio.wait_for (see tests/foundation/test_layers.py).
    assert host["socket_timeout"] is None
    assert host["socket_keepalive"] is True
    assert layer["CONFIG"]["capacity"] >= 1000  # the default 100 drops messages under load


def test_cors_port_and_host(tmp_path: Path) -> None:
    parsed = _settings(
        {"CORS_ORIGIN": "https://a.example,https://b.example", "PORT": "8080", "HOST": "0.0.0.0"},
        tmp_path,
    )
    assert parsed["cors"] == ["https://a.example", "https://b.example"]
    assert (parsed["host"], parsed["port"]) == ("0.0.0.0", 8080)


def test_production_without_secret_key_is_a_clear_error(tmp_path: Path) -> None:
    env = dict(PROD_ENV)
    del env["DJANGO_SECRET_KEY"]
    result = _run("import django; django.setup()", env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    result = _run(
        "import sys; from django.core.management import execute_from_command_line;"
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        PROD_ENV,
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_runs_clean_in_debug(tmp_path: Path) -> None:
    # With DJANGO_DEBUG=0 this is PROD_ENV, whose ``check --deploy --fail-level WARNING`` above
    # runs every check ``check`` runs, and more.
    env = dict(PROD_ENV, DJANGO_DEBUG="1")
    result = _run(
        "from django.core.management import execute_from_command_line;"
        "execute_from_command_line(['manage.py', 'check'])",
        env,
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_env_example_as_dot_env_gives_the_embedded_defaults(tmp_path: Path) -> None:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    assert "PORT" in pairs and "DATABASE_URL" in pairs
    parsed = _settings(pairs, tmp_path)
    assert parsed["db"]["ENGINE"] == "django.db.backends.sqlite3"
    assert parsed["layer"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert (parsed["host"], parsed["port"], parsed["debug"]) == ("127.0.0.1", 3001, True)


def _commented_defaults() -> dict[str, str]:
    """``# NAME=value`` lines of .env.example: the defaults it documents."""
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            pairs[match[1]] = match[2]
    return pairs


def test_env_example_documents_every_variable_the_settings_read() -> None:
    documented = set(
        re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    )
    read = set()
    for path in [*(ROOT / "playground").glob("*.py"), *(ROOT / "comparisons").rglob("*.py")]:
        source = path.read_text()
        read |= set(re.findall(r"""env\.\w+\(\s*["']([A-Z][A-Z0-9_]*)["']""", source))
        read |= set(re.findall(r"""environ\.get\(\s*["']([A-Z][A-Z0-9_]*)["']""", source))
    assert read - {"DJANGO_SETTINGS_MODULE"} <= documented, sorted(read - documented)


def test_env_example_commented_values_are_the_real_defaults(tmp_path: Path) -> None:
    """Uncommenting every ``# NAME=value`` line of .env.example changes no setting (production
    mode, where the security defaults apply)."""
    code = (
        "import json; from django.conf import settings as s;"
        "print(json.dumps({k: getattr(s, k) for k in dir(s) if k.isupper()}, default=str,"
        " sort_keys=True))"
    )
    pairs = {k: v for k, v in _commented_defaults().items() if k != "DATA_DIR"}
    assert "PLAYGROUND_HEARTBEAT_STALE_SECONDS" in pairs
    results = []
    for env in (PROD_ENV, {**PROD_ENV, **pairs}):
        result = _run(code, env, tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr
        results.append(json.loads(result.stdout))
    defaults, documented = results
    differ = {
        k: (defaults[k], documented.get(k)) for k in defaults if defaults[k] != documented.get(k)
    }
    assert differ == {}
