"""`fnedge serve`: a build behind an OpenAI-compatible HTTP API.

    GET  /health               liveness, and which model is loaded
    GET  /v1/models            the one model served
    POST /v1/chat/completions  a reply, whole or as Server-Sent Events (`"stream": true`)

Standard library only (http.server): nothing extra to install on a Pi or a phone.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain, islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fnedge.errors import FnedgeError
from fnedge.runtime.build import load_build
from fnedge.runtime.engine import Assistant
from fnedge.runtime.openai_chat import (BadRequest, ChatRequest, completion, completion_chunks,
                                        error_body, parse_chat_request)

MAX_BODY_BYTES = 1 << 20  # far more than a 512-token context can hold


class ChatService:
    """One assistant answering one request at a time: there is one model and one KV cache."""

    def __init__(self, assistant: Assistant, model_id: str) -> None:
        self.assistant = assistant
        self.model_id = model_id
        self.created = int(time.time())
        self._lock = threading.Lock()

    def complete(self, request: ChatRequest) -> dict[str, Any]:
        with self._turn(request.max_tokens) as assistant:
            reply = assistant.respond(request.messages, request.tools)
        return completion(reply, self.model_id)

    def stream(self, request: ChatRequest) -> Iterator[dict[str, Any]]:
        """Chunks of a streamed reply; the model stays locked until the iterator ends or is closed.

        The first event is generated before the first chunk is handed out, so a request the
        engine refuses (say, a prompt too long for the context) fails while an error status can
        still be sent."""
        with self._turn(request.max_tokens) as assistant:
            events = assistant.stream(request.messages, request.tools)
            first = list(islice(events, 1))
            catalog = assistant.catalog_for(request.tools)
            yield from completion_chunks(chain(first, events), self.model_id, catalog)

    @contextmanager
    def _turn(self, max_tokens: int | None) -> Iterator[Assistant]:
        with self._lock:
            default = self.assistant.max_tokens
            self.assistant.max_tokens = max_tokens or default
            try:
                yield self.assistant
            finally:
                self.assistant.max_tokens = default


class ChatServer(ThreadingHTTPServer):
    """A thread per connection (daemon threads, so a hung client never blocks exit); the model
    itself is serialized by ChatService."""

    def __init__(self, address: tuple[str, int], service: ChatService) -> None:
        self.service = service
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    server_version = "fnedge"
    routes = {("GET", "/health"): "_health",
              ("GET", "/v1/models"): "_models",
              ("POST", "/v1/chat/completions"): "_chat"}

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._streaming = False
        path = urlsplit(self.path).path.rstrip("/")
        try:
            name = self.routes.get((method, path))
            if name is None:
                if any(p == path for _, p in self.routes):
                    raise BadRequest(f"{path} does not accept {method}", status=405)
                raise BadRequest(f"no such endpoint: {method} {path or '/'}", status=404)
            getattr(self, name)()
        except BadRequest as e:
            self._send_error(e.status, e.message, e.kind)
        except FnedgeError as e:
            self._send_error(400, str(e), "invalid_request_error")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to answer
        except Exception:  # noqa: BLE001 - the trace goes to the server's log, never to the client
            traceback.print_exc(file=sys.stderr)
            self._send_error(500, "internal server error (see the server log)", "server_error")

    def _health(self) -> None:
        self._send_json(200, {"status": "ok", "model": self.server.service.model_id})

    def _models(self) -> None:
        service = self.server.service
        self._send_json(200, {"object": "list", "data": [
            {"id": service.model_id, "object": "model", "created": service.created, "owned_by": "fnedge"}]})

    def _chat(self) -> None:
        request = parse_chat_request(self._read_body())
        service = self.server.service
        if not request.stream:
            self._send_json(200, service.complete(request))
            return
        with closing(service.stream(request)) as chunks:  # closing releases the model lock
            first = next(chunks)  # may raise: then no stream has begun and the error is plain JSON
            self._start_events()
            for chunk in chain([first], chunks):  # an error from here on becomes an error event
                self._send_event(chunk)
            self._send_event("[DONE]")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest("chunked request bodies are not supported: send Content-Length", status=411)
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise BadRequest("a request body with a Content-Length is required", status=411)
        if int(length) > MAX_BODY_BYTES:
            raise BadRequest(f"request body over {MAX_BODY_BYTES} bytes", status=413)
        return self.rfile.read(int(length))

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str, kind: str) -> None:
        if self._streaming:  # headers are out: the error can only be one more event
            self._send_event(error_body(message, kind))
        else:
            self._send_json(status, error_body(message, kind))

    def _start_events(self) -> None:
        # No Content-Length: the stream ends when the connection closes (HTTP/1.0 framing).
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self._streaming = True

    def _send_event(self, data: dict[str, Any] | str) -> None:
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        self.wfile.write(f"data: {text}\n\n".encode("utf-8"))


def make_server(assistant: Assistant, model_id: str, host: str = "127.0.0.1", port: int = 8080) -> ChatServer:
    """A server bound and listening, not yet serving; port 0 picks a free port."""
    try:
        return ChatServer((host, port), ChatService(assistant, model_id))
    except OSError as e:
        raise FnedgeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(build_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, artifact: str | None = None,
          threads: int | None = None, log: Callable[[str], None] = print) -> None:
    """Load the build and answer requests until interrupted."""
    assistant = Assistant.from_build(build_dir, artifact=artifact, threads=threads)
    build = load_build(build_dir, verify=False)  # from_build has verified the files already
    model_id = f"{build.name}/{build.artifact(artifact)['file']}"
    server = make_server(assistant, model_id, host, port)
    bound_host, bound_port = server.server_address[:2]
    log(f"serving {model_id} at http://{bound_host}:{bound_port}/v1 (Ctrl-C stops)")
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            log("stopped")
