"""Runs a handler of ``template.yaml`` in-process, as the Lambda runtime would: imported once by module
name (``functions/<dir>/`` + ``Handler: app.lambda_handler`` is ``<dir>.app``), called with an event
and a fresh context, at most ``concurrency`` invocations at a time (one warm execution environment by
default), and an invocation that outlives the function's ``Timeout`` counted as timed out."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dealsync_local.lambda_context import LambdaContext
from dealsync_local.template import FUNCTIONS_ROOT, STACK_NAME, FunctionDefinition, local_name

# Not "dealsync_local...": Powertools' Logger keeps records of loggers whose name contains its service name
# ("dealsync") away from the root handlers, which would hide the world's own messages.
logger = logging.getLogger("localworld.invoke")

Handler = Callable[[Any, Any], Any]


class FunctionLoadError(RuntimeError):
    """The handler of a function cannot be imported."""


class UnknownFunctionError(KeyError):
    """No function of that name in the template."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown function"


def _load_package_from(directory: Path, name: str) -> None:
    """Import ``name`` from ``directory`` when no import root provides it (a function folder added after
    the editable install was made). Registers the package in ``sys.modules``; ``sys.path`` is untouched."""
    init = directory / "__init__.py"
    spec: importlib.machinery.ModuleSpec | None
    if init.exists():
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(directory)])
    else:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(directory)]
    if spec is None:
        raise FunctionLoadError(f"cannot load package {name} from {directory}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def import_handler(definition: FunctionDefinition, functions_root: Path = FUNCTIONS_ROOT) -> Handler:
    """The handler callable of a function, importing its module by name."""
    top = definition.module.split(".", 1)[0]
    try:
        module = importlib.import_module(definition.module)
    except ModuleNotFoundError as exc:
        directory = functions_root / top
        if exc.name != top or not directory.is_dir():
            raise FunctionLoadError(
                f"{definition.logical_id}: cannot import {definition.module} ({exc}); "
                f"is {definition.code_uri or 'its CodeUri'} under an import root?"
            ) from exc
        _load_package_from(directory, top)
        module = importlib.import_module(definition.module)
    handler = getattr(module, definition.attribute, None)
    if not callable(handler):
        raise FunctionLoadError(f"{definition.logical_id}: {definition.module} has no callable {definition.attribute}")
    return handler  # type: ignore[no-any-return]


@dataclass
class Invocation:
    """The outcome of one invocation."""

    function: str
    request_id: str
    result: Any = None
    error: BaseException | None = None
    error_type: str | None = None
    error_message: str | None = None
    duration_ms: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    def error_payload(self) -> dict[str, Any]:
        """The body Lambda returns for a failed invocation."""
        if self.timed_out and self.error is None:
            return {"errorMessage": f"Task timed out after {self.duration_ms / 1000:.2f} seconds",
                    "errorType": "Sandbox.Timedout"}
        stack = traceback.format_exception(self.error) if self.error else []
        return {"errorMessage": self.error_message, "errorType": self.error_type,
                "requestId": self.request_id, "stackTrace": stack}


class LocalFunction:
    """One function of the template, runnable in-process."""

    def __init__(self, definition: FunctionDefinition, *, concurrency: int = 1,
                 functions_root: Path = FUNCTIONS_ROOT, stack_name: str = STACK_NAME) -> None:
        self.definition = definition
        self.functions_root = functions_root
        self.function_name = local_name(definition.logical_id, stack_name)
        self._handler: Handler | None = None
        self._load_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._stats_lock = threading.Lock()
        self.invocations = 0
        self.errors = 0
        self.in_flight = 0

    @property
    def logical_id(self) -> str:
        return self.definition.logical_id

    @property
    def handler(self) -> Handler:
        with self._load_lock:
            if self._handler is None:
                self._handler = import_handler(self.definition, self.functions_root)
            return self._handler

    def new_context(self) -> LambdaContext:
        return LambdaContext(function_name=self.function_name,
                             memory_limit_in_mb=self.definition.memory_size,
                             timeout_seconds=float(self.definition.timeout_seconds))

    def invoke(self, event: Any, context: LambdaContext | None = None) -> Invocation:
        """Call the handler once; exceptions are caught and reported in the :class:`Invocation`."""
        handler = self.handler
        context = context or self.new_context()
        outcome = Invocation(function=self.logical_id, request_id=context.aws_request_id)
        with self._slots:
            with self._stats_lock:
                self.in_flight += 1
            started = time.monotonic()
            logger.debug("START RequestId: %s %s", context.aws_request_id, self.logical_id)
            try:
                outcome.result = handler(event, context)
            except Exception as exc:
                outcome.error = exc
                outcome.error_type = type(exc).__name__
                outcome.error_message = str(exc)
                logger.warning("%s failed (RequestId %s): %s: %s\n%s", self.logical_id, context.aws_request_id,
                               outcome.error_type, exc, "".join(traceback.format_exception(exc)))
            finally:
                outcome.duration_ms = (time.monotonic() - started) * 1000
                outcome.timed_out = outcome.duration_ms > self.definition.timeout_seconds * 1000
                with self._stats_lock:
                    self.in_flight -= 1
                    self.invocations += 1
                    if not outcome.ok:
                        self.errors += 1
        if outcome.timed_out:
            logger.warning("%s: Task timed out after %.2f seconds (RequestId %s)", self.logical_id,
                           outcome.duration_ms / 1000, context.aws_request_id)
        logger.debug("END RequestId: %s Duration: %.2f ms", context.aws_request_id, outcome.duration_ms)
        return outcome


class FunctionRegistry:
    """The template's functions by logical id; also found by their ``functions/`` folder name."""

    def __init__(self, functions: Iterable[LocalFunction]) -> None:
        self._by_id: dict[str, LocalFunction] = {function.logical_id: function for function in functions}

    @classmethod
    def from_definitions(cls, definitions: Mapping[str, FunctionDefinition], *, concurrency: int = 1,
                         functions_root: Path = FUNCTIONS_ROOT, stack_name: str = STACK_NAME) -> FunctionRegistry:
        return cls(LocalFunction(definition, concurrency=concurrency, functions_root=functions_root,
                                 stack_name=stack_name) for definition in definitions.values())

    def __iter__(self) -> Any:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, name: object) -> bool:
        try:
            self.get(str(name))
        except UnknownFunctionError:
            return False
        return True

    def names(self) -> list[str]:
        return sorted(self._by_id)

    def get(self, name: str) -> LocalFunction:
        """By logical id (``SfChangeFunction``), folder name (``sf_change``) or local function name."""
        if name in self._by_id:
            return self._by_id[name]
        for function in self._by_id.values():
            if name in (function.definition.directory_name, function.function_name, function.definition.module):
                return function
        known = ", ".join(self.names()) or "none: template.yaml declares no AWS::Serverless::Function yet"
        raise UnknownFunctionError(f"unknown function {name!r}; known: {known}")

    def preload(self) -> None:
        """Import every handler now, so a broken one fails the start rather than the first event."""
        for function in self._by_id.values():
            _ = function.handler

    @property
    def in_flight(self) -> int:
        return sum(function.in_flight for function in self._by_id.values())
