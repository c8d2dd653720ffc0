"""The local world (DESIGN §4): moto, both CRM emulators, the HTTP API, the SQS pollers, the scheduler
and the Event Relay sink, started in-process from ``template.yaml`` and stopped cleanly.

    with LocalWorld(Path(".state"), seed="demo") as world:
        world.endpoints.api.base_url       # the HTTP API (webhooks) and /__local/ control endpoints
        world.run_schedule("SalesforcePollSchedule")
        world.drain()                      # until every polled queue is empty and no handler runs

``start()`` writes ``DIR/endpoints.json`` (:class:`dealsync_cli.endpoints.Endpoints`), ``DIR/env.json``
(``sam local invoke --env-vars``) and ``DIR/local.env`` (shell exports of the handlers' environment).

Handlers run in this process with the environment of ``Globals.Function.Environment`` resolved to
local names, set in ``os.environ`` before any handler module is imported (``set_environ=False``
leaves ``os.environ`` alone; ``stop()`` restores what was there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from dealsync_cli.endpoints import (
    ApiEndpoint,
    AwsEndpoint,
    Endpoints,
    HubSpotEndpoint,
    LocalResources,
    SalesforceEndpoint,
    WorldNotRunningError,
    endpoints_path,
    load_endpoints,
)
from dealsync_local.aws import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY, LocalAws
from dealsync_local.crm import CrmEmulators, start_emulators
from dealsync_local.demo import LoadedDemo, generate, load_into
from dealsync_local.eventbridge import Delivery, TargetDispatcher, rule_arn, scheduled_event
from dealsync_local.httpapi import CONTROL_PREFIX, HttpApi, HttpApiServer, Route
from dealsync_local.invoke import FunctionRegistry, LocalFunction
from dealsync_local.pollers import PollerGroup, SqsPoller
from dealsync_local.relay import EventRelay, PatternRule
from dealsync_local.scheduler import ScheduledJob, Scheduler, UnknownScheduleError
from dealsync_local.template import (
    ACCOUNT_ID,
    FUNCTIONS_ROOT,
    REGION,
    STACK_NAME,
    TEMPLATE_PATH,
    EventRuleDefinition,
    FunctionDefinition,
    Resolver,
    event_rule_definitions,
    function_definitions,
    global_environment,
    load_template,
)
from dealsync_local.tls import ensure_local_tls

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger("localworld.world")

SECRET_NAME = "dealsync/local/crm"
PARTNER_BUS_CHANNEL = "dealsync-local"
DEFAULT_CONTAINER_HOST = "host.docker.internal"
# Offsets from --port-base: moto, Salesforce, HubSpot, HTTP API.
PORT_OFFSETS = {"aws": 0, "salesforce": 1, "hubspot": 2, "api": 3}


class WorldStartError(RuntimeError):
    pass


class LocalWorld:
    """Everything dealsync talks to, on loopback, in this process."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        seed: str = "demo",
        size: int = 100,
        demo_seed: int = 7,
        port_base: int | None = None,
        template_path: Path | str = TEMPLATE_PATH,
        module_overrides: Mapping[str, str] | None = None,
        functions_root: Path = FUNCTIONS_ROOT,
        poll_interval: float | None = None,
        run_schedules: bool = True,
        retry_backoff_seconds: int = 1,
        poll_wait_seconds: int = 1,
        pollers_per_source: int = 1,
        function_concurrency: int = 1,
        integration_timeout: float | None = None,
        aws_host: str = "127.0.0.1",
        container_host: str = DEFAULT_CONTAINER_HOST,
        stack_name: str = STACK_NAME,
        secret_name: str = SECRET_NAME,
        set_environ: bool = True,
        preload_functions: bool = True,
        with_crms: bool = True,
    ) -> None:
        if seed not in ("demo", "none"):
            raise ValueError("seed must be 'demo' or 'none'")
        self.state_dir = Path(state_dir).resolve()
        self.seed = seed
        self.size = size
        self.demo_seed = demo_seed
        self.port_base = port_base
        self.template_path = Path(template_path).resolve()
        self.module_overrides = dict(module_overrides or {})
        self.functions_root = functions_root
        self.poll_interval = poll_interval
        self.run_schedules = run_schedules
        self.retry_backoff_seconds = retry_backoff_seconds
        self.poll_wait_seconds = poll_wait_seconds
        self.pollers_per_source = pollers_per_source
        self.function_concurrency = function_concurrency
        self.integration_timeout = integration_timeout
        self.aws_host = aws_host
        self.container_host = container_host
        self.stack_name = stack_name
        self.secret_name = secret_name
        self.set_environ = set_environ
        self.preload_functions = preload_functions
        self.with_crms = with_crms

        self.template: dict[str, Any] = {}
        self.aws: LocalAws | None = None
        self.crms: CrmEmulators | None = None
        self.api: HttpApiServer | None = None
        self.functions = FunctionRegistry([])
        self.pollers = PollerGroup([])
        self.scheduler = Scheduler([])
        self.relay: EventRelay | None = None
        self.dispatcher: TargetDispatcher | None = None
        self.resolver: Resolver | None = None
        self.environment: dict[str, str] = {}
        self.endpoints: Endpoints | None = None
        self.demo = LoadedDemo()
        self.partner_bus_name = ""
        self._saved_environ: dict[str, str | None] = {}
        self._started = False
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LocalWorld:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _port(self, name: str) -> int:
        return 0 if not self.port_base else self.port_base + PORT_OFFSETS[name]

    def start(self) -> LocalWorld:
        with self._lock:
            if self._started:
                return self
            self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._refuse_if_running()
        tls = ensure_local_tls(self.state_dir / "tls")
        self.template = load_template(self.template_path)

        self._check_ports()
        try:
            self.aws = LocalAws(self.aws_host, self._port("aws"), stack_name=self.stack_name).start()
            # Bind the HTTP API now: the emulators need its address for their webhooks.
            http_api = HttpApi([], api_id=self.api_id, control=self._control,
                               integration_timeout=self.integration_timeout)
            self.api = HttpApiServer(http_api, "127.0.0.1", self._port("api"))
            api_base = self.api.base_url
            if self.with_crms:
                self.crms = start_emulators(
                    tls=tls,
                    salesforce_port=self._port("salesforce"),
                    hubspot_port=self._port("hubspot"),
                    outbound_message_url=f"{api_base}/webhooks/salesforce/outbound-message",
                    event_relay_url=f"{api_base}{CONTROL_PREFIX}event-relay",
                    hubspot_webhook_url=f"{api_base}/webhooks/hubspot",
                )
        except (OSError, SystemExit) as exc:  # werkzeug exits when it cannot bind
            raise WorldStartError(f"cannot bind a port ({exc}); pick another --port-base or stop what uses it") from exc
        resources = self.aws.provision(self.template)
        org_id = self.crms.salesforce.org_id if self.crms else "00D000000000000EAA"
        self.partner_bus_name = f"aws.partner/salesforce.com/{org_id}/{PARTNER_BUS_CHANNEL}"
        self.aws.put_secret(self.secret_name, self.crm_secret(str(tls.ca_file)))

        self.resolver = Resolver(
            self.template,
            parameters={"CrmSecretArn": self.secret_name, "SalesforcePartnerEventBusName": self.partner_bus_name},
            refs={**resources.refs(), self._api_logical_id(): self.api_id},
            attributes=resources.attributes(),
            stack_name=self.stack_name,
        )
        definitions = function_definitions(self.template, resolver=self.resolver,
                                           module_overrides=self.module_overrides)
        self.environment = self._handler_environment(definitions)
        if self.set_environ:
            self._apply_environ(self.environment)
        self.functions = FunctionRegistry.from_definitions(
            definitions, concurrency=self.function_concurrency, functions_root=self.functions_root,
            stack_name=self.stack_name)
        if self.preload_functions:
            self.functions.preload()

        queues_by_arn = {arn: (logical_id, resources.queues[logical_id])
                         for logical_id, arn in resources.queue_arns.items()}
        self.dispatcher = TargetDispatcher(self.aws.sqs(), queues_by_arn, self._invoke_async)
        rules = event_rule_definitions(self.template, resolver=self.resolver)
        self.relay = EventRelay(self.partner_bus_name, self._relay_rules(rules, definitions), self.dispatcher)
        self.scheduler = Scheduler(self._schedule_jobs(rules, definitions))

        http_api.routes = sorted(self._routes(definitions), key=lambda route: route.priority)
        self.pollers = PollerGroup(self._pollers(definitions))

        self.api.start()
        self.pollers.start()
        if self.run_schedules:
            self.scheduler.start()

        if self.seed == "demo" and self.crms is not None:
            self.demo = load_into(self.crms, generate(self.size, seed=self.demo_seed))

        self.endpoints = self._build_endpoints(str(tls.ca_file))
        self.endpoints.write(self.state_dir)
        self._write_env_files(definitions)
        logger.info("local world up in %.1f s (%s)", time.monotonic() - started, self.state_dir)

    def _check_ports(self) -> None:
        """With ``port_base``, every port must be free (werkzeug would print and exit instead)."""
        if not self.port_base:
            return
        for name in PORT_OFFSETS:
            host = self.aws_host if name == "aws" else "127.0.0.1"
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, self._port(name)))
                except OSError as exc:
                    raise WorldStartError(
                        f"cannot bind port {self._port(name)} for {name} ({exc.strerror}); pick another --port-base "
                        "(0 picks free ports) or stop what uses it") from exc

    def _refuse_if_running(self) -> None:
        path = endpoints_path(self.state_dir)
        if not path.exists():
            return
        try:
            other = load_endpoints(self.state_dir)
        except WorldNotRunningError:
            return  # a stale file from a world that did not stop cleanly
        raise WorldStartError(f"a local world is already running with {self.state_dir} (pid {other.pid}, "
                              f"{other.api.base_url}); stop it or use another --state-dir")

    def stop(self) -> None:
        """Stop everything that was started, in reverse order; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.scheduler.stop()
        # Servers stop in parallel (each shutdown waits out a poll interval); moto goes last, once
        # the pollers that talk to it have finished their batch.
        steps: list[Callable[[], None]] = [self.pollers.stop]
        if self.api is not None:
            steps.append(self.api.stop)
        if self.crms is not None:
            steps += [self.crms.salesforce.stop, self.crms.hubspot.stop]
        _run_in_parallel(steps)
        if self.aws is not None:
            with contextlib.suppress(Exception):
                self.aws.cleanup()
            with contextlib.suppress(Exception):
                self.aws.stop()
        self._restore_environ()
        if self.endpoints is not None:
            with contextlib.suppress(OSError):
                path = endpoints_path(self.state_dir)
                if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                    path.unlink()

    def threads(self) -> list[threading.Thread]:
        """The long-lived threads this world started (servers, pollers, scheduler)."""
        threads = [poller.thread for poller in self.pollers.pollers]
        if self.scheduler.thread is not None:
            threads.append(self.scheduler.thread)
        if self.aws is not None:
            threads.append(self.aws.thread)
        if self.api is not None:
            threads.append(self.api.thread)
        return threads

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` is called (or ``timeout``); True when it was."""
        return self._stopped.wait(timeout)

    # --- names -----------------------------------------------------------------------------------
    @property
    def api_id(self) -> str:
        return hashlib.sha256(f"{self.stack_name}-WebhookApi".encode()).hexdigest()[:10]

    def _api_logical_id(self) -> str:
        apis = [logical_id for logical_id, resource in (self.template.get("Resources") or {}).items()
                if resource.get("Type") == "AWS::Serverless::HttpApi"]
        return apis[0] if apis else "ServerlessHttpApi"

    def queue_url(self, logical_id: str) -> str:
        assert self.aws is not None
        return self.aws.resources.queues[logical_id]

    def queue_arn(self, logical_id: str) -> str:
        assert self.aws is not None
        return self.aws.resources.queue_arns[logical_id]

    def table_name(self, logical_id: str) -> str:
        assert self.aws is not None
        return self.aws.resources.tables[logical_id]

    def sqs(self) -> SQSClient:
        assert self.aws is not None
        return self.aws.sqs()

    def client(self, service: str) -> Any:
        """A boto3 client for moto (any service moto serves)."""
        assert self.aws is not None
        return self.aws.client(service)

    # --- the secret and the environment ----------------------------------------------------------
    def crm_secret(self, ca_file: str) -> dict[str, Any]:
        """The CRM secret as the product's clients read it (keys are a contract: keep them)."""
        api_base = self.api.base_url if self.api else ""
        if self.crms is None:
            return {"salesforce": {}, "hubspot": {}, "webhook": {"public_base_url": api_base}}
        sf, hs = self.crms.salesforce, self.crms.hubspot
        return {
            "salesforce": {
                "auth": "client_credentials",
                "login_url": sf.base_url,
                "instance_url": sf.base_url,
                "client_id": sf.client_id,
                "client_secret": sf.client_secret,
                "api_version": sf.api_version,
                "org_id": sf.org_id,
                "ca_file": ca_file,
            },
            "hubspot": {
                "access_token": hs.access_token,
                "base_url": hs.base_url,
                "app_id": str(hs.app_id),  # strings, as an operator writes them (and the product reads them)
                "client_secret": hs.client_secret,
                "portal_id": str(hs.portal_id),
                "ca_file": ca_file,
            },
            "webhook": {"public_base_url": api_base},
        }

    def _handler_environment(self, definitions: Mapping[str, FunctionDefinition]) -> dict[str, str]:
        assert self.resolver is not None and self.aws is not None
        environment = {name: str(self.resolver.resolve(value))
                       for name, value in global_environment(self.template).items()}
        for definition in definitions.values():
            for name, value in definition.environment.items():
                resolved = str(self.resolver.resolve(value))
                if name in environment and environment[name] != resolved:
                    logger.warning("%s sets %s differently from other functions; in-process, the last one wins",
                                   definition.logical_id, name)
                environment[name] = resolved
        environment.update({
            "AWS_ENDPOINT_URL": self.aws.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
            "POWERTOOLS_TRACE_DISABLED": "true",
        })
        environment.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Dealsync")
        return environment

    def _apply_environ(self, environment: Mapping[str, str]) -> None:
        for name in (*environment, "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            self._saved_environ.setdefault(name, os.environ.get(name))
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(environment)

    def _restore_environ(self) -> None:
        for name, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environ.clear()

    # --- wiring ----------------------------------------------------------------------------------
    def _routes(self, definitions: Mapping[str, FunctionDefinition]) -> list[Route]:
        routes = []
        for definition in definitions.values():
            for route in definition.http_routes:
                routes.append(Route(route.method, route.path, self.functions.get(definition.logical_id),
                                    route.timeout_seconds))
        return routes

    def _queue_of(self, queue: Any) -> str:
        """The logical id of the queue an event source names (``!GetAtt X.Arn`` or an ARN)."""
        assert self.resolver is not None and self.aws is not None
        if isinstance(queue, dict) and "Fn::GetAtt" in queue:
            return str(queue["Fn::GetAtt"][0])
        arn = str(self.resolver.resolve(queue))
        for logical_id, queue_arn in self.aws.resources.queue_arns.items():
            if queue_arn == arn:
                return logical_id
        raise WorldStartError(f"event source queue {arn} is not a queue of the template")

    def _pollers(self, definitions: Mapping[str, FunctionDefinition]) -> list[SqsPoller]:
        assert self.aws is not None
        aws = self.aws
        pollers = []
        for definition in definitions.values():
            function = self.functions.get(definition.logical_id)
            for source in definition.sqs_sources:
                if not source.enabled:
                    continue
                logical_id = self._queue_of(source.queue)
                for index in range(max(1, self.pollers_per_source)):
                    pollers.append(SqsPoller(
                        function=function, source=source, queue_url=aws.resources.queues[logical_id],
                        queue_arn=aws.resources.queue_arns[logical_id], sqs_factory=aws.sqs,
                        retry_backoff_seconds=self.retry_backoff_seconds, wait_seconds=self.poll_wait_seconds,
                        index=index,
                    ))
        return pollers

    def _relay_rules(self, rules: Mapping[str, EventRuleDefinition],
                     definitions: Mapping[str, FunctionDefinition]) -> list[PatternRule]:
        assert self.resolver is not None
        relay_rules = [
            PatternRule(rule.logical_id, rule.event_pattern, rule.targets)
            for rule in rules.values()
            if rule.event_pattern is not None and rule.enabled and rule.event_bus_name == self.partner_bus_name
        ]
        for definition in definitions.values():
            for event_rule in definition.event_rules:
                bus = self.resolver.resolve(event_rule.event_bus_name) if event_rule.event_bus_name else None
                if bus == self.partner_bus_name:
                    relay_rules.append(PatternRule(f"{definition.logical_id}{event_rule.event_name}",
                                                   event_rule.pattern, (event_rule.target,)))
        return relay_rules

    def _schedule_jobs(self, rules: Mapping[str, EventRuleDefinition],
                       definitions: Mapping[str, FunctionDefinition]) -> list[ScheduledJob]:
        jobs = []
        for rule in rules.values():
            if rule.schedule_expression is None:
                continue
            jobs.append(ScheduledJob(
                name=rule.logical_id, expression=rule.schedule_expression, fire=self._rule_fire(rule),
                enabled=rule.enabled, interval_override=self.poll_interval, description=rule.description,
            ))
        for definition in definitions.values():
            for schedule in definition.schedules:
                name = f"{definition.logical_id}{schedule.event_name}"
                jobs.append(ScheduledJob(
                    name=name, expression=schedule.expression,
                    fire=self._function_schedule_fire(definition.logical_id, name, schedule.kind, schedule.input),
                    enabled=schedule.enabled, interval_override=self.poll_interval,
                ))
        return jobs

    def _rule_fire(self, rule: EventRuleDefinition) -> Callable[[dt.datetime], list[dict[str, Any]]]:
        arn = rule_arn(rule.logical_id, self.stack_name, event_bus_name=rule.event_bus_name)

        def fire(when: dt.datetime) -> list[dict[str, Any]]:
            assert self.dispatcher is not None
            event = scheduled_event(arn, now=when)
            return [self.dispatcher.deliver(target, event).to_json() for target in rule.targets]

        return fire

    def _function_schedule_fire(self, logical_id: str, name: str, kind: str,
                                payload: str | None) -> Callable[[dt.datetime], list[dict[str, Any]]]:
        arn = rule_arn(name, self.stack_name)

        def fire(when: dt.datetime) -> list[dict[str, Any]]:
            if payload is not None:
                event: Any = json.loads(payload)
            elif kind == "ScheduleV2":
                event = {}
            else:
                event = scheduled_event(arn, now=when)
            self._invoke_async(logical_id, event)
            return [Delivery(name, logical_id, "lambda").to_json()]

        return fire

    def _invoke_async(self, logical_id: str, event: Any) -> None:
        """An asynchronous invocation (EventBridge → Lambda): run it on its own thread."""
        function = self.functions.get(logical_id)
        threading.Thread(target=function.invoke, args=(event,), name=f"async-{logical_id}", daemon=True).start()

    # --- operations ------------------------------------------------------------------------------
    def invoke(self, function: str, event: Any) -> Any:
        """Invoke a function synchronously; return its result or raise its error."""
        outcome = self.functions.get(function).invoke(event)
        if outcome.error is not None:
            raise outcome.error
        return outcome.result

    def function(self, name: str) -> LocalFunction:
        return self.functions.get(name)

    def run_schedule(self, name: str) -> Any:
        """Fire a schedule now (as ``POST /__local/schedules/<name>/run`` does)."""
        return self.scheduler.run_now(name)

    def queue_depths(self) -> dict[str, dict[str, int]]:
        """Visible and in-flight messages of every queue, by logical id."""
        assert self.aws is not None
        sqs = self.aws.sqs()
        depths = {}
        for logical_id, url in self.aws.resources.queues.items():
            attributes = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            depths[logical_id] = {"visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
                                  "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))}
        return depths

    def drain(self, timeout: float = 30.0, settle: float = 0.2) -> None:
        """Wait until every queue with a poller is empty (nothing visible or in flight) and no handler
        is running, twice in a row ``settle`` seconds apart. Raises TimeoutError with the depths."""
        assert self.aws is not None
        polled = {logical_id for logical_id, url in self.aws.resources.queues.items()
                  if url in self.pollers.queue_urls()}
        deadline = time.monotonic() + timeout
        quiet = 0
        while True:
            depths = self.queue_depths()
            busy = self.pollers.busy or self.functions.in_flight > 0
            pending = {name: depth for name, depth in depths.items()
                       if name in polled and (depth["visible"] or depth["in_flight"])}
            quiet = quiet + 1 if not busy and not pending else 0
            if quiet >= 2:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the world did not drain in {timeout} s: {pending or 'handlers running'}")
            time.sleep(settle)

    def status(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
            "functions": {function.logical_id: {"module": function.definition.module,
                                                "invocations": function.invocations,
                                                "errors": function.errors, "in_flight": function.in_flight}
                          for function in self.functions},
            "pollers": self.pollers.to_json(),
            "schedules": [job.to_json() for job in self.scheduler.jobs.values()],
            "relay": self.relay.stats() if self.relay else None,
            "queues": self.queue_depths(),
            "demo": self.demo.summary,
        }

    # --- control endpoints (/__local/...) --------------------------------------------------------
    def _control(self, request: Request) -> Response:
        path = request.path.removeprefix(CONTROL_PREFIX).strip("/")
        parts = path.split("/")
        try:
            if path == "health":
                return _json({"status": "ok", "pid": os.getpid()})
            if path == "status":
                return _json(self.status())
            if path == "event-relay" and self.relay is not None:
                return self.relay.handle(request)
            if path == "schedules":
                return _json([job.to_json() for job in self.scheduler.jobs.values()])
            if len(parts) == 3 and parts[0] == "schedules" and parts[2] == "run":
                if request.method != "POST":
                    return _json({"message": "use POST"}, 405)
                deliveries = self.run_schedule(parts[1])
                return _json({"schedule": parts[1], "deliveries": deliveries})
        except UnknownScheduleError as exc:
            return _json({"message": str(exc)}, 404)
        except Exception as exc:
            logger.exception("control endpoint %s failed", path)
            return _json({"message": f"{type(exc).__name__}: {exc}"}, 500)
        return _json({"message": "Not Found"}, 404)

    # --- files -----------------------------------------------------------------------------------
    def _build_endpoints(self, ca_file: str) -> Endpoints:
        assert self.aws is not None and self.api is not None
        api_base = self.api.base_url
        if self.crms is not None:
            sf, hs = self.crms.salesforce, self.crms.hubspot
            salesforce = SalesforceEndpoint(
                instance_url=sf.base_url, access_token=sf.access_token, user_access_token=sf.user_access_token,
                ca_file=ca_file, org_id=sf.org_id, login_url=sf.base_url, client_id=sf.client_id,
                client_secret=sf.client_secret, api_version=sf.api_version,
                integration_user_id=sf.integration_user_id)
            hubspot = HubSpotEndpoint(
                base_url=hs.base_url, access_token=hs.access_token, user_access_token=hs.user_access_token,
                ca_file=ca_file, app_id=hs.app_id, client_secret=hs.client_secret, portal_id=hs.portal_id)
        else:
            salesforce = SalesforceEndpoint("", "", "", ca_file, "")
            hubspot = HubSpotEndpoint("", "", "", ca_file, 0, "", 0)
        return Endpoints(
            salesforce=salesforce,
            hubspot=hubspot,
            aws=AwsEndpoint(endpoint_url=self.aws.endpoint_url, region=REGION,
                            access_key_id=DUMMY_ACCESS_KEY_ID, secret_access_key=DUMMY_SECRET_ACCESS_KEY),
            api=ApiEndpoint(
                base_url=api_base,
                webhooks={"hubspot": f"{api_base}/webhooks/hubspot",
                          "salesforce_outbound_message": f"{api_base}/webhooks/salesforce/outbound-message"},
                control_url=f"{api_base}{CONTROL_PREFIX.rstrip('/')}",
                event_relay_url=f"{api_base}{CONTROL_PREFIX}event-relay",
            ),
            resources=LocalResources(
                stack_name=self.stack_name,
                tables=dict(self.aws.resources.tables),
                queues=dict(self.aws.resources.queues),
                dead_letter_queues=dict(self.aws.resources.dead_letter_queues),
                secret_id=self.secret_name,
                functions={function.logical_id: f"{function.definition.module}:{function.definition.attribute}"
                           for function in self.functions},
                schedules=sorted(self.scheduler.jobs),
            ),
            environment=dict(self.environment),
            state_dir=str(self.state_dir),
            template=str(self.template_path),
            pid=os.getpid(),
            started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )

    def _write_env_files(self, definitions: Mapping[str, FunctionDefinition]) -> None:
        """``env.json`` for ``sam local invoke --env-vars`` and ``local.env`` for a shell.

        Assumption for env.json: the function runs in a container that reaches this machine as
        ``container_host`` (``host.docker.internal``: Docker Desktop; on Linux, run the container with
        ``--add-host host.docker.internal:host-gateway`` or use ``--docker-network host`` and
        ``--container-host 127.0.0.1``), and moto listens on an address the container can reach
        (``--aws-host 0.0.0.0``). The CRM URLs in the secret are loopback addresses with a CA file on
        this machine: a container reaches them only with host networking."""
        assert self.aws is not None
        container_env = dict(self.environment)
        container_env["AWS_ENDPOINT_URL"] = f"http://{self.container_host}:{self.aws.port}"
        env_json: dict[str, dict[str, str]] = {"Parameters": container_env}
        for logical_id in definitions:
            env_json[logical_id] = dict(container_env)
        (self.state_dir / "env.json").write_text(json.dumps(env_json, indent=2) + "\n", encoding="utf-8")

        lines = ["# dealsync local world: the handlers' environment (source it: `set -a; . ./local.env`)"]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(self.environment.items())]
        lines.append(f"export DEALSYNC_STATE_DIR={shlex.quote(str(self.state_dir))}")
        (self.state_dir / "local.env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _run_in_parallel(steps: list[Callable[[], None]]) -> None:
    def guarded(step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:
            logger.exception("stopping %s failed", step)

    threads = [threading.Thread(target=guarded, args=(step,), daemon=True) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status=status, mimetype="application/json")


__all__ = ["ACCOUNT_ID", "LocalWorld", "WorldStartError"]
