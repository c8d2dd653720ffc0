"""API Gateway HTTP API, locally: each ``HttpApi`` route of ``template.yaml`` becomes a route of a plain
HTTP server that turns the request into a payload-format 2.0 event, invokes the handler in-process and
turns its return value into the HTTP response, as API Gateway does:

* route selection: exact paths before ``{param}`` before ``{proxy+}``, a method before ``ANY``, then
  ``$default``; no match is ``404 {"message":"Not Found"}``;
* event: lower-cased headers with duplicates comma-joined, ``cookies`` split out of the cookie header,
  query parameters comma-joined, ``pathParameters``, ``requestContext`` with ``domainName`` = Host,
  a request id and the time; bodies of non-text content types base64-encoded;
* response: a ``statusCode`` object is taken as is (``headers``, ``cookies``, ``body``,
  ``isBase64Encoded``); any other JSON value is a 200 ``application/json`` body; a handler error or a
  malformed response is ``500 {"message":"Internal Server Error"}``; no answer within the
  integration timeout (30 s) is ``503 {"message":"Service Unavailable"}``.

Paths under ``/__local/`` are the local world's own control endpoints, answered by ``control``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from dealsync_local.invoke import Invocation, LocalFunction
from dealsync_local.template import ACCOUNT_ID

logger = logging.getLogger("localworld.httpapi")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

MAX_REQUEST_BYTES = 10 * 1024 * 1024
CONTROL_PREFIX = "/__local/"

_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|ecmascript|graphql|x-ndjson|soap\+xml))$"
)


def is_text_content_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    return bool(_TEXT_TYPES.match(content_type.split(";", 1)[0].strip().lower()))


def request_id() -> str:
    """An id shaped like API Gateway's (``JKJaXmPLvHcESHA=``)."""
    return base64.b64encode(os.urandom(10)).decode("ascii")


def trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, mimetype="application/json")


def gateway_error(status: int, message: str, apigw_request_id: str) -> Response:
    return Response(json.dumps({"message": message}), status=status, mimetype="application/json",
                    headers={"apigw-requestid": apigw_request_id})


@dataclass
class Route:
    """One route of the API, bound to the function that serves it."""

    method: str  # GET, POST, ... or ANY
    path: str  # /webhooks/hubspot, /items/{id}, /{proxy+}, or $default
    function: LocalFunction
    timeout_seconds: float = 30.0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        if self.path == "$default":
            self._pattern = re.compile(r"^.*$")
            return
        regex = ""
        for segment in self.path.strip("/").split("/"):
            if segment.startswith("{") and segment.endswith("+}"):
                regex += rf"/(?P<{_group(segment[1:-2])}>.+)"
            elif segment.startswith("{") and segment.endswith("}"):
                regex += rf"/(?P<{_group(segment[1:-1])}>[^/]+)"
            elif segment:
                regex += "/" + re.escape(segment)
        self._pattern = re.compile(f"^{regex or '/'}/?$")

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    @property
    def priority(self) -> tuple[int, int, int, int]:
        """Lower sorts first: exact before parameters before greedy, a method before ANY."""
        segments = self.path.strip("/").split("/")
        greedy = any(segment.endswith("+}") for segment in segments)
        parameters = sum(segment.startswith("{") for segment in segments)
        return (self.path == "$default", greedy, parameters, self.method == "ANY")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method.upper()):
            return None
        found = self._pattern.match(path)
        if found is None:
            return None
        names = re.findall(r"\{([^}+]+)\+?\}", self.path)
        return {name: found.group(_group(name)) for name in names}


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


class HttpApi:
    """The WSGI application."""

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        api_id: str,
        account_id: str = ACCOUNT_ID,
        stage: str = "$default",
        control: Callable[[Request], Response] | None = None,
        integration_timeout: float | None = None,
    ) -> None:
        self.routes = sorted(routes, key=lambda route: route.priority)
        self.api_id = api_id
        self.account_id = account_id
        self.stage = stage
        self.control = control
        self.integration_timeout = integration_timeout
        self.requests = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        apigw_request_id = request_id()
        if request.path.startswith(CONTROL_PREFIX) and self.control is not None:
            return self.control(request)
        self.requests += 1
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            return gateway_error(413, "Request Entity Too Large", apigw_request_id)
        for route in self.routes:
            parameters = route.match(request.method, request.path)
            if parameters is not None:
                break
        else:
            return gateway_error(404, "Not Found", apigw_request_id)
        event = self.build_event(request, route, parameters, apigw_request_id)
        timeout = self.integration_timeout if self.integration_timeout is not None else route.timeout_seconds
        outcome = _invoke_with_timeout(route.function, event, timeout)
        if outcome is None:
            logger.warning("%s: no answer within %.1f s: 503", route.route_key, timeout)
            return gateway_error(503, "Service Unavailable", apigw_request_id)
        if not outcome.ok:
            return gateway_error(500, "Internal Server Error", apigw_request_id)
        try:
            response = to_http_response(outcome.result)
        except (TypeError, ValueError) as exc:
            logger.warning("%s returned a malformed response (%s): 500", route.function.logical_id, exc)
            return gateway_error(500, "Internal Server Error", apigw_request_id)
        response.headers["apigw-requestid"] = apigw_request_id
        return response

    def build_event(self, request: Request, route: Route, path_parameters: dict[str, str],
                    apigw_request_id: str | None = None) -> dict[str, Any]:
        """The payload-format 2.0 event API Gateway sends for this request."""
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in request.headers.items():
            key = name.lower()
            if key == "cookie":
                cookies.extend(part.strip() for part in value.split(";") if part.strip())
                continue
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        host = headers.get("host", "")
        remote = request.remote_addr or "127.0.0.1"
        headers.setdefault("x-amzn-trace-id", trace_id())
        forwarded = headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{forwarded}, {remote}" if forwarded else remote
        headers["x-forwarded-port"] = str(request.environ.get("SERVER_PORT", ""))
        headers["x-forwarded-proto"] = request.scheme

        raw_query = request.query_string.decode("latin-1")
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value

        now = dt.datetime.now(dt.UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": request.path,
            "rawQueryString": raw_query,
        }
        if cookies:
            event["cookies"] = cookies
        event["headers"] = headers
        if query:
            event["queryStringParameters"] = query
        event["requestContext"] = {
            "accountId": self.account_id,
            "apiId": self.api_id,
            "domainName": host,
            "domainPrefix": host.split(":", 1)[0].split(".", 1)[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": remote,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": apigw_request_id or request_id(),
            "routeKey": route.route_key,
            "stage": self.stage,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        }
        body = request.get_data(cache=True)
        if path_parameters:
            event["pathParameters"] = path_parameters
        encode = bool(body) and not is_text_content_type(request.content_type)
        if body:
            if not encode:
                try:
                    event["body"] = body.decode("utf-8")
                except UnicodeDecodeError:
                    encode = True
            if encode:
                event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = encode
        return event


def _invoke_with_timeout(function: LocalFunction, event: dict[str, Any], timeout: float) -> Invocation | None:
    """Invoke on a worker thread; None when it has not answered within ``timeout`` (the handler
    carries on in the background, as a Lambda invocation does after API Gateway gave up)."""
    box: list[Invocation] = []
    done = threading.Event()

    def run() -> None:
        try:
            box.append(function.invoke(event))
        finally:
            done.set()

    threading.Thread(target=run, name=f"http-{function.logical_id}", daemon=True).start()
    if not done.wait(timeout):
        return None
    return box[0] if box else None


def to_http_response(result: Any) -> Response:
    """A handler's return value, read as API Gateway reads payload format 2.0 responses."""
    if isinstance(result, dict) and "statusCode" in result:
        status = int(result["statusCode"])
        if not 100 <= status <= 599:
            raise ValueError(f"statusCode {status} out of range")
        headers = result.get("headers") or {}
        if not isinstance(headers, dict):
            raise TypeError("headers must be an object")
        body = result.get("body")
        if body is None:
            data = b""
        elif not isinstance(body, str):
            raise TypeError("body must be a string")
        elif result.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = body.encode("utf-8")
        response = Response(data, status=status)
        response.headers.remove("Content-Type")
        for name, value in headers.items():
            response.headers[str(name)] = str(value)
        if "content-type" not in {str(name).lower() for name in headers}:
            response.headers["Content-Type"] = "text/plain; charset=utf-8"
        for cookie in result.get("cookies") or []:
            response.headers.add("Set-Cookie", str(cookie))
        return response
    return Response(json.dumps(result), status=200, mimetype="application/json")


class HttpApiServer:
    """Runs an :class:`HttpApi` on a background thread over plain HTTP."""

    def __init__(self, app: HttpApi, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self.server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.server.serve_forever, name="http-api", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> HttpApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: only when it runs
            self.server.shutdown()
            self._thread.join(timeout=5)
        self.server.server_close()
