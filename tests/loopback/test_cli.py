"""The command line, run as a user would: ``python -m streamcoord ...`` in a subprocess, its
output on a pipe, or on a pseudo-terminal whose screen a VT100 emulator shows."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import threading
from urllib.parse import quote

import pytest

import streamcoord
from streamcoord._demo import DEMO_ANSWER
from tests.support.eventstream import bedrock_event
from tests.support.fakeserver import Gate, Response, error, gemini_text, openai_text
from tests.support.terminal import Terminal

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEY = "sk-cli-SECRET-0123456789"
SUMMARY = re.compile(r"\[completed\] 4 chunks, \d+ bytes, \d+\.\d s, \d+\.\d chunks/s, first chunk after \d+ ms, "
                     r"no errors")


# The variables a provider reads its key, address or settings from: none leaks in from the machine.
PROVIDER_ENV = re.compile(r"(OPENAI|AZURE|AWS|GOOGLE|GEMINI|BOTO)_|OLLAMA_HOST$")


def environ(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in list(env):
        if name in ("COLUMNS", "LINES") or PROVIDER_ENV.match(name):
            env.pop(name)
    env.update(extra)
    return env


def run(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "streamcoord", *args], capture_output=True, text=True, timeout=timeout,
        cwd=str(ROOT), env=environ(**(env or {})),
    )


def chat_args(server, *extra):
    return ["chat", "--provider", "openai", "--base-url", server.base_url + "/v1", *extra, "Hi"]


def terminal(args, env=None, **kwargs):
    return Terminal([sys.executable, "-m", "streamcoord", *args], env=environ(**(env or {})), cwd=str(ROOT), **kwargs)


# -- help -------------------------------------------------------------------------------------
def option_help(help_text):
    """{"--model": "the model (default: ...)", ...} from argparse's option listing."""
    entries, current = {}, None
    for line in help_text.splitlines():
        match = re.match(r"  (-\S+(?:, -\S+)?)(?: [A-Z]+)?(?:\s{2,}(.*))?$", line)
        if match:
            current = match.group(1).split(",")[-1].strip()
            entries[current] = match.group(2) or ""
        elif current and line.startswith("      "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def test_help_explains_every_chat_option_with_its_default():
    result = run("chat", "--help")
    assert result.returncode == 0, result.stderr
    options = option_help(result.stdout)
    assert set(options) == {"--help", "--provider", "--model", "--base-url", "--api-key", "--metrics", "--region",
                            "--api-version", "--project", "--location", "--access-token"}
    for name in options.keys() - {"--help"}:
        assert "default" in options[name] or "required" in options[name], (name, options[name])
    assert "gpt-4o-mini for openai" in options["--model"]
    assert "OPENAI_API_KEY" in options["--api-key"]
    assert options["--region"].startswith("bedrock:") and "$AWS_REGION" in options["--region"]
    assert "azure_openai" in options["--api-version"] and "$OPENAI_API_VERSION" in options["--api-version"]
    assert "$GOOGLE_CLOUD_PROJECT" in options["--project"] and "$GOOGLE_CLOUD_LOCATION" in options["--location"]
    assert "$AZURE_OPENAI_ENDPOINT" in options["--base-url"] and "$OLLAMA_HOST" in options["--base-url"]
    assert "PROMPT" in result.stdout and "the user message to send" in result.stdout


def test_help_is_plain_text_and_names_both_commands():
    results = {args: run(*args) for args in (("--help",), ("demo", "--help"), ("chat", "--help"))}
    for args, result in results.items():
        assert result.returncode == 0, result.stderr
        assert "`" not in result.stdout, args
    top = results["--help",].stdout
    assert "demo" in top and "chat" in top and "python -m streamcoord demo" in top
    assert "(default: 0.02)" in " ".join(results["demo", "--help"].stdout.split())


# -- chat: stdout is the answer, stderr the rest --------------------------------------------
def test_chat_stdout_is_the_answer_alone_with_and_without_metrics_on_a_pipe(server):
    server.enqueue(openai_text(["Hello", " there"], usage=True), openai_text(["Hello", " there"], usage=True))
    plain = run(*chat_args(server), env={"OPENAI_API_KEY": KEY})
    with_metrics = run(*chat_args(server, "--metrics"), env={"OPENAI_API_KEY": KEY})
    assert plain.returncode == 0 and with_metrics.returncode == 0, (plain.stderr, with_metrics.stderr)
    assert plain.stdout == with_metrics.stdout == "Hello there\n"
    assert plain.stderr == ""
    # stderr is no terminal: no live line, no control characters, one summary line.
    assert SUMMARY.fullmatch(with_metrics.stderr.rstrip("\n")), with_metrics.stderr
    assert server.requests[0].json["messages"] == [{"role": "user", "content": "Hi"}]
    assert server.requests[0].json["model"] == "gpt-4o-mini"


def test_metrics_status_line_is_redrawn_in_place_on_a_terminal_stderr(server):
    release = threading.Event()
    server.enqueue(openai_text(["Hello", " there"], usage=True, stall_after=1, stall=Gate(release)))
    with terminal(chat_args(server, "--api-key", KEY, "--metrics"), stdout="pipe", stderr="tty", columns=120) as term:
        try:
            # on_metrics runs about once a second: two live redraws, then the rest of the answer.
            assert term.wait_for(lambda t: t.text().count("[streaming]") >= 2), term.text()
        finally:
            release.set()
    assert term.returncode == 0, term.text()
    assert bytes(term.piped_stdout) == b"Hello there\n"
    out = term.text()
    assert out.count("\r\x1b[K[streaming] 1 chunk,") >= 2 and out.count("\n") == 1  # one line, redrawn
    assert [SUMMARY.fullmatch(line) is not None for line in term.display()] == [True]


def test_metrics_keep_the_answer_intact_when_stdout_shares_the_terminal(server):
    release = threading.Event()
    server.enqueue(openai_text(["Hello", " there"], usage=True, stall_after=1, stall=Gate(release)))
    with terminal(chat_args(server, "--metrics"), env={"OPENAI_API_KEY": KEY}, columns=100) as term:
        try:
            # While the answer waits, the status line sits below it.
            assert term.wait_for(lambda t: t.display()[-1:] != [] and t.display()[-1].startswith("[streaming]")
                                 and t.display()[0] == "Hello"), term.display()
        finally:
            release.set()
    assert term.returncode == 0, term.text()
    screen = term.display()
    assert screen[0] == "Hello there" and len(screen) == 2 and SUMMARY.fullmatch(screen[1]), screen


# -- chat: keys and errors -------------------------------------------------------------------
def test_api_key_option_reaches_the_provider_and_is_never_printed(server):
    server.enqueue(openai_text(["ok"]), error(401, {"error": {"message": "Incorrect API key provided"}}))
    ok = run(*chat_args(server, "--api-key", KEY))
    assert ok.returncode == 0 and ok.stdout == "ok\n", ok.stderr
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    refused = run(*chat_args(server, f"--api-key={KEY}"))
    unreachable = run("chat", "--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "--api-key", KEY, "Hi")
    misuse = run("chat", "--provider", "openai", "Hi", "--api-kye", KEY)  # a typo: argparse would echo it
    assert refused.returncode == 1 and unreachable.returncode == 1 and misuse.returncode == 2
    for result in (ok, refused, unreachable, misuse):
        assert KEY not in result.stdout + result.stderr
    assert "unrecognized arguments: --api-kye ***" in misuse.stderr


def test_chat_without_a_key_is_one_clear_line():
    result = run("chat", "--provider", "openai", "Hi")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no API key for 'openai'") and "OPENAI_API_KEY" in lines[0]


def test_chat_with_an_unreachable_server_is_one_clear_line():
    result = run("chat", "--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "Hi",
                 env={"OPENAI_API_KEY": KEY})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not reach openai")


def test_chat_without_a_default_model_asks_for_one():
    result = run("chat", "--provider", "groq", "--api-key", KEY, "Hi")
    assert result.returncode == 1
    # The adapter says it (an adapter that can do without one, Azure's on a deployment URL, does not).
    assert result.stderr.startswith("error: groq needs a model: pass --model ") and result.stderr.count("\n") == 1


# -- chat: the cloud providers' flags, each against a loopback server ----------------------
BEDROCK_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
VERTEX_TOKEN = "ya29.cli-ACCESS-token-0123456789"


def bedrock_answer(pieces):
    frames = [bedrock_event("messageStart", {"role": "assistant"})]
    frames += [bedrock_event("contentBlockDelta", {"delta": {"text": p}, "contentBlockIndex": 0}) for p in pieces]
    frames += [bedrock_event("messageStop", {"stopReason": "end_turn"}),
               bedrock_event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}})]
    return Response(parts=tuple(frames), content_type="application/vnd.amazon.eventstream")


def test_bedrock_with_region_signs_for_that_region_or_sends_the_bedrock_api_key(server):
    pytest.importorskip("botocore")
    server.enqueue(bedrock_answer(["Hello", " there"]), bedrock_answer(["ok"]))
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    signed = run("chat", "--provider", "bedrock", "--region", "eu-west-3", "--base-url", server.base_url,
                 "--model", BEDROCK_MODEL, "Hi", env={"AWS_ACCESS_KEY_ID": "AKIDCLI0123", "AWS_SECRET_ACCESS_KEY": secret,
                                                      "AWS_CONFIG_FILE": os.devnull,
                                                      "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    keyed = run("chat", "--provider", "bedrock", "--base-url", server.base_url, "--model", BEDROCK_MODEL,
                "--api-key", KEY, "Hi")
    assert (signed.returncode, signed.stdout, keyed.returncode, keyed.stdout) == (0, "Hello there\n", 0, "ok\n"), (
        signed.stderr, keyed.stderr)
    first, second = server.requests
    assert first.path == second.path == f"/model/{quote(BEDROCK_MODEL, safe='')}/converse-stream"
    assert re.match(r"AWS4-HMAC-SHA256 Credential=AKIDCLI0123/\d{8}/eu-west-3/bedrock/aws4_request,",
                    first.headers["authorization"])
    assert second.headers["authorization"] == f"Bearer {KEY}"
    assert secret not in signed.stderr and KEY not in keyed.stdout + keyed.stderr


def test_azure_deployment_with_api_version_needs_no_model_the_deployment_names_it(server):
    server.enqueue(openai_text(["Hello", " Azure"], usage=True))
    result = run("chat", "--provider", "azure_openai", "--base-url", server.base_url + "/openai/deployments/my-gpt",
                 "--api-version", "2024-10-21", "Hi", env={"AZURE_OPENAI_API_KEY": KEY})
    assert result.returncode == 0 and result.stdout == "Hello Azure\n", result.stderr
    (request,) = server.requests
    assert request.path == "/openai/deployments/my-gpt/chat/completions" and request.json["model"] == "my-gpt"
    assert request.query == {"api-version": "2024-10-21"} and request.headers["api-key"] == KEY
    assert KEY not in result.stderr


def test_a_secret_too_short_to_be_a_key_does_not_garble_the_error_line(server):
    # The library scrubs no value shorter than MIN_SECRET_LENGTH: "t" is in every other word.
    message = "Request had invalid authentication credentials."
    server.enqueue(error(401, {"error": {"code": 401, "message": message, "status": "UNAUTHENTICATED"}}))
    result = run("chat", "--provider", "vertex", "--project", "my-proj", "--location", "us-central1",
                 "--base-url", server.base_url, "--access-token", "t", "Hi")
    assert result.returncode == 1 and result.stderr == f"error: vertex answered HTTP 401: {message}\n"
    assert server.requests[0].headers["authorization"] == "Bearer t"


# No cloud metadata server is asked for credentials (there is none on a test machine).
NO_METADATA = {"AWS_EC2_METADATA_DISABLED": "true", "NO_GCE_CHECK": "True", "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent"}


@pytest.mark.parametrize("args, expected, library_words", [
    (["--provider", "vertex", "--project", "my-proj", "--location", "us-central1"],
     "or pass --access-token", "access_token"),
    (["--provider", "bedrock", "--region", "us-east-1", "--model", "m"],
     "pass a Bedrock API key as --api-key or AWS_BEARER_TOKEN_BEDROCK", "api_key"),
    (["--provider", "azure_openai", "--base-url", "https://r.openai.azure.com/openai/v1", "--api-key", KEY,
      "--api-version", "2024-10-21"], "the v1 endpoint takes no API version: leave --api-version out", "api_version"),
    (["--provider", "openai", "--base-url", "ftp://files.example", "--api-key", KEY],
     "--base-url must start with http:// or https://, not ftp://: e.g. 'https://files.example'", "base_url"),
])
def test_errors_name_the_flags_not_the_library_arguments(args, expected, library_words):
    if "bedrock" in args:
        pytest.importorskip("botocore")
    if "vertex" in args:
        pytest.importorskip("google.auth")
    result = run("chat", *args, "Hi", env=NO_METADATA)
    assert result.returncode == 1 and result.stdout == "", result.stderr
    # One error line; google-auth itself may warn before it (a FutureWarning on Python 3.9).
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert expected in line and library_words not in line, line
    assert KEY not in result.stderr


def test_vertex_with_project_location_and_an_access_token_never_printed(server):
    server.enqueue(gemini_text(["Hello", " Vertex"]),
                   error(401, {"error": {"code": 401, "message": f"bad token {VERTEX_TOKEN}", "status": "UNAUTHENTICATED"}}))
    args = ["chat", "--provider", "vertex", "--project", "my-proj", "--location", "europe-west4",
            "--base-url", server.base_url, "--access-token", VERTEX_TOKEN, "Hi"]
    ok, refused = run(*args), run(*args)
    assert ok.returncode == 0 and ok.stdout == "Hello Vertex\n", ok.stderr
    request = server.requests[0]
    assert request.path == ("/v1/projects/my-proj/locations/europe-west4/publishers/google/models/"
                            "gemini-2.0-flash:streamGenerateContent")
    assert request.headers["authorization"] == f"Bearer {VERTEX_TOKEN}"
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    assert VERTEX_TOKEN not in ok.stdout + ok.stderr + refused.stdout + refused.stderr


BLOCKED_RUN = r"""
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "botocore":
            raise ModuleNotFoundError("No module named 'botocore' (blocked)", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["python -m streamcoord", *sys.argv[1:]]
runpy.run_module("streamcoord", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("args, expected", [
    (["--provider", "azure_openai", "--api-key", KEY], ["needs its address: pass --base-url ",
                                                        "AZURE_OPENAI_ENDPOINT"]),
    (["--provider", "vertex", "--location", "us-central1", "--access-token", KEY],
     ["vertex needs --project (or GOOGLE_CLOUD_PROJECT)"]),
    # On 3.9 the bedrock extra cannot install botocore (it pins urllib3<1.27): the line says so instead.
    (["--provider", "bedrock", "--region", "us-east-1"],
     ["AWS_BEARER_TOKEN_BEDROCK",
      "pip install streamcoord[bedrock]" if sys.version_info >= (3, 10) else "needs Python 3.10 or later"]),
    (["--provider", "openai", "--api-key", KEY, "--region", "us-east-1"], ["--region is a setting of bedrock, not of openai"]),
])
def test_a_provider_without_what_it_needs_is_one_clear_line(args, expected):
    # bedrock: botocore blocked, so without a Bedrock API key nothing can sign the request.
    result = subprocess.run([sys.executable, "-c", BLOCKED_RUN, "chat", *args, "Hi"], capture_output=True, text=True,
                            timeout=60, cwd=str(ROOT), env=environ())
    assert result.returncode == 1 and result.stdout == "", result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and all(part in line for part in expected), line
    assert KEY not in line


# -- providers ------------------------------------------------------------------------------
def test_providers_lists_every_registered_provider_with_its_address_keys_settings_and_extra():
    result = run("providers")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    blocks, name = {}, None
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            name = line
            blocks[name] = ""
        else:
            blocks[name] += " " + " ".join(line.split())
    assert sorted(blocks) == streamcoord.adapter_names()
    for text in blocks.values():
        assert "request POST {base_url}/" in text and "base_url " in text and " key " in text
    assert "request POST {base_url}/chat/completions base_url https://api.openai.com/v1" in blocks["openai"]
    assert "key $OPENAI_API_KEY (required)" in blocks["openai"]
    assert "base_url $OLLAMA_HOST, else http://localhost:11434" in blocks["ollama"]
    bedrock = blocks["bedrock"]
    assert "POST {base_url}/model/{model}/converse-stream" in bedrock
    assert "https://bedrock-runtime.{region}.amazonaws.com" in bedrock and "$AWS_BEARER_TOKEN_BEDROCK" in bedrock
    assert "region= (--region)" in bedrock and "$AWS_REGION" in bedrock and "streamcoord[bedrock]" in bedrock
    vertex = blocks["vertex"]
    assert "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent" in vertex
    assert "project= (--project)" in vertex and "$GOOGLE_CLOUD_LOCATION" in vertex and "streamcoord[vertex]" in vertex
    azure = blocks["azure_openai"]
    assert "$AZURE_OPENAI_ENDPOINT" in azure and "$AZURE_OPENAI_API_KEY" in azure and "api_version= (--api-version)" in azure
    assert "azure_ad_token_provider=" in azure and "--azure-ad-token-provider" not in azure  # a callable: no flag
    # Each address form with its own request: the v1 endpoint, a deployment's URL, the resource endpoint.
    assert "POST {base_url}/chat/completions (base_url https://{resource}.openai.azure.com/openai/v1: the v1" in azure
    assert ("POST {base_url}/chat/completions?api-version={api_version} (base_url "
            "https://{resource}.openai.azure.com/openai/deployments/{deployment}:") in azure
    responses = blocks["azure_openai_responses"]
    assert "POST {base_url}/responses (base_url https://{resource}.openai.azure.com/openai/v1:" in responses
    assert "POST {base_url}/openai/v1/responses (base_url https://{resource}.openai.azure.com:" in responses
    assert "api_version" not in responses  # the v1 API has none: not a setting of the Responses adapter


# -- demo ---------------------------------------------------------------------------------------
def test_demo_wraps_at_word_boundaries_to_the_terminal_and_recovers():
    columns = 60
    with terminal(["demo", "--delay", "0"], columns=columns, rows=200) as term:
        pass
    assert term.returncode == 0, term.text()
    text = term.text().replace("\r\n", "\n")
    assert max(len(line) for line in text.split("\n")) <= columns
    streamed, rest = text.split("[completed]", 1)
    assert "[connection lost; recovered" in streamed
    words = set(DEMO_ANSWER.split()) | set("streamcoord demo: streaming from an embedded local provider "
                                           "(no key, no network)".split())
    streamed = re.sub(r"\[connection lost;.*?\]", "", streamed, flags=re.S)
    assert [w for w in streamed.split() if w not in words] == []  # no word broken across lines
    summary = " ".join(rest[:rest.index("finish_reason=")].split())
    assert summary.endswith(", 1 error, recovered (1 recovery)"), summary
    final = text.split("The final text (stream.text), coherent after the recovery:\n\n", 1)[1].strip()
    assert "\n\n".join(" ".join(p.split("\n")) for p in final.split("\n\n")) == DEMO_ANSWER
