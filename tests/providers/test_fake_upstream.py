"""The fake upstream outside pytest's event loop: in a thread (sync clients) and as a process."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx

from tests.fake_upstream import run_in_thread


def test_run_in_thread_serves_sync_clients() -> None:
    with run_in_thread() as upstream:
        marker = upstream.script("sync", deltas=["a", "b"], delay=0.001)
        body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": marker}]}
        response = httpx.post(f"{upstream.url}/v1/messages", json=body, timeout=5)
        assert response.status_code == 200
        assert response.text.count("event: content_block_delta") == 2
        assert "event: message_stop" in response.text
        [recorded] = upstream.requests_for("sync")
        assert recorded.completed and len(recorded.delta_times) == 2


def test_runs_as_a_module() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with subprocess.Popen(  # the with closes its stdout pipe (else a ResourceWarning)
        [sys.executable, "-m", "tests.fake_upstream", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            assert "listening" in process.stdout.readline()
            url = f"http://127.0.0.1:{port}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
            response = httpx.post(f"{url}?alt=sse", json={"contents": []}, timeout=5)
            assert response.status_code == 200
            assert '"finishReason": "STOP"' in response.text
        finally:
            process.terminate()
            process.wait(5)
