"""servers.toml: one table per server, ${VAR} from the environment, and exact messages for every mistake."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError
from core.servers import ServerConfig, load_servers
from tests.conftest import WORKFLOWS

SECRET = "s3cr3t-token-4711"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "servers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_servers(path, env or {})
    return caught.value.problems


def test_a_full_table_is_read_with_the_environment_substituted(tmp_path: Path) -> None:
    ca = Path(ssl.get_default_verify_paths().cafile or "")
    if not ca.is_file():
        pytest.skip("this system has no CA bundle file to stand for a ca_file")
    path = write(
        tmp_path,
        f"""
[servers.home]
url = "http://192.168.1.20:8188/"

[servers.rented]
url = "https://gpu.example.com"
headers = {{ Authorization = "Bearer ${{COMFY_TOKEN}}", "X-Proxy-Key" = "k-${{PROXY_KEY}}-end" }}
query = {{ token = "${{COMFY_TOKEN}}" }}
ca_file = "{ca}"
max_jobs = 2
tags = {{ gpu = "4090" }}
""",
    )
    home, rented = load_servers(path, {"COMFY_TOKEN": SECRET, "PROXY_KEY": "pk"})
    assert home == ServerConfig("home", "http://192.168.1.20:8188")
    assert (home.verify_tls, home.ca_file, home.max_jobs, dict(home.headers)) == (True, None, None, {})
    assert rented.name == "rented" and rented.url == "https://gpu.example.com"
    assert dict(rented.headers) == {"Authorization": f"Bearer {SECRET}", "X-Proxy-Key": "k-pk-end"}
    assert dict(rented.query) == {"token": SECRET}
    assert (rented.ca_file, rented.max_jobs, dict(rented.tags)) == (ca, 2, {"gpu": "4090"})
    assert SECRET not in repr(rented)  # a logged config shows no secret


def test_unknown_key_is_named_with_the_keys_that_exist(tmp_path: Path) -> None:
    path = write(tmp_path, '[servers.a]\nurl = "http://a:8188"\nheader = { X = "1" }\n')
    assert problems(path) == [
        f"{path}: [servers.a]: unknown key 'header'; the keys are url, headers, query, verify_tls, ca_file, "
        "max_jobs, tags."
    ]


def test_bad_url_is_quoted_as_written_without_its_password(tmp_path: Path) -> None:
    path = write(tmp_path, '[servers.a]\nurl = "ftp://user:${PW}@a:8188"\n[servers.b]\nurl = "http://b:99999"\n')
    assert problems(path, {"PW": SECRET}) == [
        f"{path}: [servers.a]: url 'ftp://***@a:8188' is not usable: it must start with http:// or https:// "
        "followed by a host name.",
        f"{path}: [servers.b]: url 'http://b:99999' is not usable: the port must be a number from 1 to 65535.",
    ]


def test_an_unset_variable_is_named_with_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[servers.a]\nurl = "http://a:8188"\nheaders = { Authorization = "Bearer ${COMFY_TOKEN}" }\n'
    )
    expected = (
        f"{path}: [servers.a] headers.Authorization uses ${{COMFY_TOKEN}}, "
        "but the environment variable COMFY_TOKEN is not set."
    )
    assert problems(path) == [expected]
    assert problems(path, {"COMFY_TOKEN": ""}) == [expected]  # empty would send "Bearer " and fail later


@pytest.mark.parametrize(
    ("value", "shown"), [("0", "0"), ("1001", "1001"), ('"4"', "4"), ("2.5", "2.5"), ("true", "True")]
)
def test_bad_max_jobs(tmp_path: Path, value: str, shown: str) -> None:
    path = write(tmp_path, f'[servers.a]\nurl = "http://a:8188"\nmax_jobs = {value}\n')
    assert problems(path) == [f"{path}: [servers.a]: max_jobs must be a whole number from 1 to 1,000; got {shown!r}."]


def test_other_mistakes_each_get_their_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    path = write(
        tmp_path,
        f"""
extra = 1
[servers."bad name"]
url = "http://a:8188"
[servers.b]
headers = {{ "Bad Header" = "x", Good = 5 }}
verify_tls = "no"
[servers.c]
url = "http://c:8188"
ca_file = "missing.pem"
[servers.d]
url = "http://c:8188/"
ca_file = "{bad}"
""",
    )
    assert problems(path) == [
        f"{path}: unknown top-level key 'extra'; only [servers.NAME] tables belong here.",
        f"{path}: [servers.bad name]: a server name is 1 to 32 letters, digits, '-' or '_', not starting with - or _.",
        f'{path}: [servers.b] has no url; add url = "http://host:port".',
        f"{path}: [servers.b]: header name 'Bad Header' is not a valid HTTP header name.",
        f"{path}: [servers.b]: headers.Good must be a string.",
        f"{path}: [servers.b]: verify_tls must be true or false.",
        f"{path}: [servers.c]: ca_file 'missing.pem' is not a file.",
        f"{path}: [servers.d]: ca_file {str(bad)!r} holds no PEM certificate.",
    ]


def test_same_url_twice_and_no_server(tmp_path: Path) -> None:
    path = write(tmp_path, '[servers.a]\nurl = "http://a:8188"\n[servers.b]\nurl = "http://a:8188/"\n')
    assert problems(path) == [f"{path}: [servers.b] has the same url as [servers.a]."]
    empty = write(tmp_path, "# nothing yet\n")
    assert problems(empty) == [f"{empty} has no [servers.NAME] table; add one per ComfyUI server."]


def test_settings_read_servers_file_and_fall_back_to_comfyui_url(tmp_path: Path) -> None:
    base = {"WORKFLOWS_DIR": str(WORKFLOWS), "COMFYUI_URL": "http://x:1,http://u:pw@y:2"}
    shortcut = load_settings(base, require_token=False)
    assert shortcut.servers == (
        ServerConfig("http://x:1", "http://x:1"),
        ServerConfig("http://***@y:2", "http://u:pw@y:2"),
    )
    assert shortcut.comfyui_urls == ("http://x:1", "http://u:pw@y:2")
    path = write(tmp_path, '[servers.gpu]\nurl = "http://gpu:8188"\n')
    from_file = load_settings({**base, "SERVERS_FILE": str(path)}, require_token=False)
    assert [s.name for s in from_file.servers] == ["gpu"]
    with pytest.raises(ConfigError) as caught:
        load_settings({**base, "SERVERS_FILE": str(tmp_path / "nope.toml")}, require_token=False)
    assert caught.value.problems == [f"{tmp_path / 'nope.toml'} cannot be read: No such file or directory."]


def test_a_url_password_and_an_authorization_header_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text('[servers.both]\nurl = "http://me:secret@gpu:8188"\nheaders = { Authorization = "Bearer ${T}" }\n')
    with pytest.raises(ConfigError) as caught:
        load_servers(path, {"T": "tok"})
    assert caught.value.problems == [
        f"{path}: [servers.both]: the url has a user:password and headers has an Authorization; keep one of them."
    ]
