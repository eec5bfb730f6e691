"""The OpenAI-compatible backend over real HTTP: a vLLM server on loopback (generate + scores),
and a scripted local server for the failure paths (retries, 500s, refused connections)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fixtures_models import free_port, make_turns

from tipping.cli import main
from tipping.errors import InputError
from tipping.policies import Sampling
from tipping.policies.openai_backend import OpenAIPolicy
from tipping.policies.transformers_backend import TransformersPolicy

SHORT = Sampling(temperature=0.8, top_p=0.95, top_k=50, max_new_tokens=24)


@pytest.mark.vllm
def test_generate_over_http(openai_server):
    policy = OpenAIPolicy(openai_server, "tiny", max_concurrency=4)
    turns = make_turns(4)
    first = policy.generate(turns, SHORT)
    assert policy.generate(turns, SHORT) == first  # seeded per turn
    assert all(c.prompt_tokens > 0 and 1 <= c.completion_tokens <= 24 for c in first)
    assert policy.id == f"openai:{openai_server}#tiny"
    policy.close()


@pytest.mark.vllm
def test_scores_over_http_agree_with_the_transformers_backend(openai_server, tiny_model):
    policy = OpenAIPolicy(openai_server, "tiny")
    turns = make_turns(3)
    remote, local = policy.score_choices(turns, SHORT), TransformersPolicy(tiny_model).score_choices(turns, SHORT)
    for a, b in zip(remote, local):
        assert a.prompt_tokens == b.prompt_tokens
        assert a.aligned == pytest.approx(b.aligned, abs=1e-3) and a.deviant == pytest.approx(b.deviant, abs=1e-3)
    policy.close()


@pytest.mark.vllm
@pytest.mark.parametrize("decision", ["generate", "choice"])
def test_cli_run_over_http(openai_server, tmp_path, decision):
    args = [
        "run",
        "single",
        "--policy",
        f"openai:{openai_server}#tiny",
        "--items",
        "single-test",
        "--limit",
        "2",
        "--rounds",
        "2",
        "--decision",
        decision,
        "--max-new-tokens",
        "16",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["prompt_tokens"] > 0 for r in rows)


# --- failure paths, against a scripted server ----------------------------------------------------

CHAT_OK = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"choice": "comply"}'}}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7},
}


class Scripted:
    """A loopback HTTP server answering POSTs with the given statuses in turn (the last repeats)."""

    def __init__(self, statuses):
        self.statuses, self.paths = list(statuses), []
        self.released = threading.Event()  # "slow" answers wait for it: set only once the test is done
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                scripted.paths.append(self.path)
                status = scripted.statuses.pop(0) if len(scripted.statuses) > 1 else scripted.statuses[0]
                if status == "slow":  # answers, but only after the client has given up (at close)
                    scripted.released.wait()
                    status = 200
                body = json.dumps(CHAT_OK if status == 200 else {"error": "scripted"}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except BrokenPipeError:  # the client timed out and left
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers = []

    def start(*statuses):
        servers.append(Scripted(statuses))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def fast(url: str, **options) -> OpenAIPolicy:
    return OpenAIPolicy(url, "m", backoff=0.01, timeout=5, **options)


def test_retries_500_and_429_then_succeeds(scripted):
    server = scripted(500, 429, 200)
    (completion,) = fast(server.url).generate(make_turns(1), SHORT)
    assert completion.text == '{"choice": "comply"}' and completion.prompt_tokens == 11
    assert server.paths == ["/v1/chat/completions"] * 3


def test_always_500_names_the_server(scripted):
    server = scripted(500)
    with pytest.raises(InputError, match=rf"server {server.url}/chat/completions answered 500 5 times"):
        fast(server.url, retries=5).generate(make_turns(1), SHORT)
    assert len(server.paths) == 5


def test_client_errors_are_not_retried(scripted):
    server = scripted(400)
    with pytest.raises(InputError, match="refused the request: 400"):
        fast(server.url).generate(make_turns(1), SHORT)
    assert len(server.paths) == 1


def test_connection_refused(scripted):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(InputError, match=rf"server {url}/chat/completions could not be reached .* 3 times"):
        fast(url, retries=3).generate(make_turns(1), SHORT)


def test_slow_server_times_out_retries_then_names_the_server(scripted):
    server = scripted("slow", 200)
    (completion,) = OpenAIPolicy(server.url, "m", backoff=0.01, timeout=1).generate(make_turns(1), SHORT)
    assert completion.text == '{"choice": "comply"}'  # the timed-out try was retried
    server = scripted("slow")
    with pytest.raises(InputError, match=rf"server {server.url}/chat/completions could not be reached \(ReadTimeout"):
        OpenAIPolicy(server.url, "m", backoff=0.01, timeout=1, retries=2).generate(make_turns(1), SHORT)


def test_server_without_tokenize_cannot_score(scripted):
    server = scripted(404)
    with pytest.raises(InputError, match=r"this server returns no prompt logprobs .*use --decision generate"):
        fast(server.url).score_choices(make_turns(1), SHORT)
    assert server.paths == ["/tokenize"]
