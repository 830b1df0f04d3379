"""Real HTTP servers for the API-model tests, on 127.0.0.1 only, started and stopped by the tests themselves.

- `transformers serve` (the transformers CLI's OpenAI-compatible server) with a fixture model, as a subprocess;
- `FaultProxy`: a tiny forwarding proxy that answers chosen requests itself with a 429 (Retry-After), a 500 or a
  dropped connection, and counts what reached the real server per distinct request body.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_unavailable() -> str | None:
    """Why `transformers serve` cannot start here (its extra is missing), or None."""
    for mod in ("fastapi", "uvicorn", "openai"):
        try:
            __import__(mod)
        except ImportError:
            return f"transformers serve needs {mod} (pip install 'transformers[serving]')"
    return None


class TransformersServe:
    """`transformers serve MODEL_DIR` on 127.0.0.1:<free port>, CPU, offline; stopped on close."""

    def __init__(self, model_dir: Path, log: Path, timeout_s: float = 120.0) -> None:
        self.model_dir = str(model_dir)
        self.port = free_port()
        exe = Path(sys.executable).with_name("transformers")
        cmd = [str(exe), "serve", self.model_dir, "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu",
               "--dtype", "float32"]
        env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"transformers serve exited with {self.proc.returncode}: {log.read_text()[-800:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.close()
        raise RuntimeError(f"transformers serve did not answer /health in {timeout_s:.0f} s: {log.read_text()[-800:]}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def body_key(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


class FaultProxy:
    """Forwards every request to `upstream` (host, port), except the POSTs whose number (1-based, in arrival
    order) is in `faults`: "429" answers 429 with Retry-After: 1, "500" answers 500, "drop" closes the connection
    without an answer. `forwarded` counts the POST bodies that reached upstream; `seen` lists (n, fault or None)."""

    def __init__(self, upstream: tuple[str, int], faults: dict[int, str]) -> None:
        self.upstream = upstream
        self.faults = dict(faults)
        self.forwarded: Counter = Counter()
        self.seen: list[tuple[int, str | None]] = []
        self.auth_headers: list[str] = []
        self._n = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self, method: str, body: bytes | None) -> None:
                host, port = proxy.upstream
                conn = http.client.HTTPConnection(host, port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                conn.request(method, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._forward("GET", None)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy._n += 1
                    n = proxy._n
                    fault = proxy.faults.get(n)
                    proxy.seen.append((n, fault))
                    proxy.auth_headers.append(self.headers.get("Authorization", ""))
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault in ("429", "500"):
                    msg = json.dumps({"error": {"message": f"injected {fault}"}}).encode()
                    self.send_response(int(fault))
                    if fault == "429":
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                with proxy._lock:
                    proxy.forwarded[body_key(body)] += 1
                self._forward("POST", body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LogprobServer:
    """A minimal OpenAI-compatible completions server that returns what `transformers serve` does not: echoed
    prompt tokens with their log-probabilities (`echo` + `logprobs`, as vLLM and OpenAI's legacy completions do),
    computed by a real transformers model. It exists to test the client's log-probability scoring end to end."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = "logprob-model"
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.requests = 0
        self._lock = threading.Lock()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": srv.name, "object": "model", "max_model_len": 2048}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if self.path != "/v1/completions":
                    self._send(404, {"error": {"message": f"no {self.path}"}})
                    return
                with srv._lock:
                    srv.requests += 1
                    self._send(200, srv.complete(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def complete(self, body: dict) -> dict:
        import torch

        prompt = body["prompt"]
        enc = self.tok(prompt, return_offsets_mapping=True)
        ids = enc["input_ids"]
        with torch.no_grad():
            logits = self.model(torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        nxt = int(logp[-1].argmax())
        text = self.tok.decode([nxt])
        lp = None
        if body.get("echo") and body.get("logprobs") is not None:
            tokens = [prompt[a:b] for a, b in enc["offset_mapping"]]
            values = [None] + [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
            tops = [None] + [{self.tok.decode([int(logp[i - 1].argmax())]): float(logp[i - 1].max())}
                             for i in range(1, len(ids))]
            lp = {"tokens": tokens + [text], "token_logprobs": values + [float(logp[-1, nxt])],
                  "text_offset": [a for a, _ in enc["offset_mapping"]] + [len(prompt)],
                  "top_logprobs": tops + [{text: float(logp[-1, nxt])}]}
        return {"id": "x", "object": "text_completion", "model": self.name,
                "choices": [{"index": 0, "text": (prompt if body.get("echo") else "") + text, "logprobs": lp,
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1,
                          "prompt_tokens_details": {"cached_tokens": 0}}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
