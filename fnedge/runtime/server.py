"""`fnedge serve`: a build behind an OpenAI-compatible HTTP API.

    GET  /health               liveness, and which model is loaded
    GET  /v1/models            the one model served; its id is the build's name
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
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain, islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fnedge.errors import FnedgeError
from fnedge.runtime.build import load_build
from fnedge.runtime.engine import Assistant
from fnedge.runtime.openai_chat import (BadRequest, ChatRequest, completion, completion_chunks,
                                        error_body, parse_chat_request, require_trained_tools)

DEFAULT_PORT = 8000
MAX_BODY_BYTES = 1 << 20  # far more than a 512-token context can hold
DRAIN_BYTES = 8 * MAX_BODY_BYTES  # what we read of a refused body before giving up on the client
SOCKET_TIMEOUT_S = 30.0  # a client that stops sending (or reading) frees its thread, and the model


class ChatService:
    """One assistant answering one request at a time: there is one model and one KV cache."""

    def __init__(self, assistant: Assistant, model_id: str) -> None:
        self.assistant = assistant
        self.model_id = model_id
        self.created = int(time.time())
        self._lock = threading.Lock()

    def complete(self, request: ChatRequest) -> dict[str, Any]:
        self._check(request)
        with self._turn(request.max_tokens) as assistant:
            reply = assistant.respond(request.messages, request.tools, request.tool_choice)
        return completion(reply, self.model_id)

    def stream(self, request: ChatRequest) -> Iterator[dict[str, Any]]:
        """Chunks of a streamed reply; the model stays locked until the iterator ends or is closed.

        The first event is generated before the first chunk is handed out, so a request the
        engine refuses (say, a prompt too long for the context) fails while an error status can
        still be sent."""
        self._check(request)
        with self._turn(request.max_tokens) as assistant:
            events = assistant.stream(request.messages, request.tools, request.tool_choice)
            first = list(islice(events, 1))
            catalog = assistant.catalog_for(request.tools)
            yield from completion_chunks(chain(first, events), self.model_id, catalog)

    def _check(self, request: ChatRequest) -> None:
        """What the request asks of this model in particular (parse_chat_request knows no model)."""
        if not self.assistant.generalist:
            require_trained_tools(request.tools, self.assistant.catalog)
        n_ctx = getattr(self.assistant.backend, "n_ctx", None)
        if request.max_tokens is not None and n_ctx is not None and request.max_tokens > n_ctx:
            raise BadRequest(f"'max_tokens' is {request.max_tokens}, over the model's context of {n_ctx} tokens")

    @contextmanager
    def _turn(self, max_tokens: int | None) -> Iterator[Assistant]:
        with self._lock:
            default, overrun = self.assistant.max_tokens, self.assistant.call_overrun
            self.assistant.max_tokens = max_tokens or default
            if max_tokens:  # a client's max_tokens is a hard limit, as OpenAI's is
                self.assistant.call_overrun = 0
            try:
                yield self.assistant
            finally:
                self.assistant.max_tokens, self.assistant.call_overrun = default, overrun


class ChatServer(ThreadingHTTPServer):
    """A thread per connection (daemon threads, so a hung client never blocks exit); the model
    itself is serialized by ChatService."""

    request_queue_size = 128  # a burst of clients waits in the backlog instead of being refused

    def __init__(self, address: tuple[str, int], service: ChatService) -> None:
        self.service = service
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    server_version = "fnedge"
    timeout = SOCKET_TIMEOUT_S
    routes = {("GET", "/health"): "_health",
              ("GET", "/v1/models"): "_models",
              ("POST", "/v1/chat/completions"): "_chat"}
    _streaming = False  # response headers are out: an error can only be one more event
    _body_read = False

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
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
        except TimeoutError:
            self._send_error(408, f"nothing received or sent for {SOCKET_TIMEOUT_S:.0f} s", "invalid_request_error")
        except Exception:  # noqa: BLE001 - the trace goes to the server's log, never to the client
            traceback.print_exc(file=sys.stderr)
            self._send_error(500, "internal server error (see the server log)", "server_error")
        finally:
            self._drain_body()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a garbled request line, an unknown method) in JSON, and as
        the client's errors: 501 and 505 would blame the server for a request it cannot read."""
        code = {HTTPStatus.NOT_IMPLEMENTED: 405, HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: 400}.get(code, code)
        self.close_connection = True
        # A request line refused for its version leaves the default, HTTP/0.9, which would
        # answer without a status line; nobody speaks 0.9 any more.
        self.request_version = "HTTP/1.0"
        if self.command == "HEAD":  # no body: the base class knows how
            super().send_error(code, message, explain)
            return
        self._send_error(code, message or HTTPStatus(code).phrase, "invalid_request_error")

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
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise BadRequest(f"the body must be JSON sent with Content-Type: application/json "
                             f"(got {content_type or 'no Content-Type'})", status=415)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest("chunked request bodies are not supported: send Content-Length", status=411)
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest("a request body with a Content-Length is required", status=411)
        if not length.strip().isdigit():
            raise BadRequest(f"Content-Length must be a number of bytes (got {length[:40]!r})")
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"request body over {MAX_BODY_BYTES} bytes", status=413)
        body = self.rfile.read(size)
        self._body_read = True
        if len(body) < size:
            raise BadRequest(f"request body ended after {len(body)} of its {size} bytes (Content-Length)")
        return body

    def _drain_body(self) -> None:
        """Read and drop a body the handler refused unread: a socket closed with unread input is
        reset, and a reset can destroy the response before the client reads it."""
        length = self.headers.get("Content-Length", "")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if self._body_read or not (chunked or length.strip().isdigit()):
            return
        left = DRAIN_BYTES if chunked else min(int(length), DRAIN_BYTES)
        try:
            self.connection.settimeout(1.0)  # the client has its answer; it should close soon
            while left > 0:
                piece = self.rfile.read1(min(left, 1 << 16))
                if not piece:
                    break
                left -= len(piece)
        except OSError:
            pass
        self._body_read = True

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str, kind: str) -> None:
        try:
            if self._streaming:
                self._send_event(error_body(message, kind))
            else:
                self._send_json(status, error_body(message, kind))
        except OSError:
            pass  # the connection is gone (or stuck): nobody is left to tell

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


def make_server(assistant: Assistant, model_id: str, host: str = "127.0.0.1",
                port: int = DEFAULT_PORT) -> ChatServer:
    """A server bound and listening, not yet serving; port 0 picks a free port."""
    try:
        return ChatServer((host, port), ChatService(assistant, model_id))
    except OSError as e:
        raise FnedgeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def open_server(build_dir: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                artifact: str | None = None, threads: int | None = None) -> ChatServer:
    """The build loaded and listening; clients name its model by the build's name."""
    assistant = Assistant.from_build(build_dir, artifact=artifact, threads=threads)
    build = load_build(build_dir, verify=False)  # from_build has verified the files already
    return make_server(assistant, build.name, host, port)


def serve(build_dir: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, artifact: str | None = None,
          threads: int | None = None, log: Callable[[str], None] = print) -> None:
    """Load the build and answer requests until interrupted."""
    server = open_server(build_dir, host, port, artifact, threads)
    bound_host, bound_port = server.server_address[:2]
    log(f"serving {server.service.model_id} at http://{bound_host}:{bound_port}/v1 (Ctrl-C stops)")
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            log("stopped")
