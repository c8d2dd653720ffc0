"""SOQL: a parser for the subset dealsync uses and an evaluator over the in-memory store.

Supported: field lists with parent paths (``Owner.Email``), ``COUNT()``/``COUNT(field)``,
``FIELDS(ALL|STANDARD|CUSTOM)``, child subqueries (``(SELECT ... FROM OpportunityContactRoles)``),
``WHERE`` with ``= != <> < <= > >= LIKE IN NOT IN``, semi-joins (``Id IN (SELECT ...)``),
``AND``/``OR``/``NOT`` with parentheses (mixing AND and OR without parentheses is refused, as
Salesforce does), strings with escapes, numbers, ``true``/``false``/``null``, date and datetime
literals and the relative date literals (``TODAY``, ``LAST_N_DAYS:n``, ...), ``ORDER BY`` with
``ASC``/``DESC`` and ``NULLS FIRST|LAST``, ``LIMIT`` and ``OFFSET``. Errors carry Salesforce's codes
(``MALFORMED_QUERY``, ``INVALID_FIELD``, ``INVALID_TYPE``, ``INVALID_QUERY_FILTER_OPERATOR``) and its
message layout (the line, a caret, ``ERROR at Row:r:Column:c``).

Filters on ``Id``, external ids and indexed lookups (``OpportunityId``, ``AccountId``, ...) are
answered from indexes, so ``Id IN (...)`` is a lookup rather than a scan.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dealsync_local.salesforce.ids import normalize_id
from dealsync_local.salesforce.schema import FieldDef, ObjectDef
from dealsync_local.salesforce.store import Record, Store
from dealsync_local.salesforce.values import canonical_datetime


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- tokens ---------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(
    r"""
     (?P<ws>\s+)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
    |(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),:])
    """,
    re.VERBOSE,
)
KEYWORDS = frozenset({
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC", "NULLS",
    "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "INCLUDES", "EXCLUDES", "GROUP",
    "HAVING", "WITH", "FOR", "USING", "TYPEOF", "UPDATE",
})
FIXED_DATE_LITERALS = frozenset({
    "YESTERDAY", "TODAY", "TOMORROW", "LAST_WEEK", "THIS_WEEK", "NEXT_WEEK", "LAST_MONTH", "THIS_MONTH",
    "NEXT_MONTH", "LAST_90_DAYS", "NEXT_90_DAYS", "THIS_QUARTER", "LAST_QUARTER", "NEXT_QUARTER",
    "THIS_YEAR", "LAST_YEAR", "NEXT_YEAR",
})
N_DATE_LITERALS = frozenset({
    "LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO", "LAST_N_WEEKS", "NEXT_N_WEEKS", "N_WEEKS_AGO",
    "LAST_N_MONTHS", "NEXT_N_MONTHS", "N_MONTHS_AGO", "LAST_N_QUARTERS", "NEXT_N_QUARTERS",
    "N_QUARTERS_AGO", "LAST_N_YEARS", "NEXT_N_YEARS", "N_YEARS_AGO",
})
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f",
            "_": "_", "%": "%"}


@dataclass
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()

    def is_kw(self, *names: str) -> bool:
        return self.kind == "ident" and self.upper in names


# --- syntax tree ----------------------------------------------------------------------------------
@dataclass
class FieldRef:
    path: str
    pos: int


@dataclass
class CountItem:
    field: FieldRef | None
    alias: str | None
    pos: int


@dataclass
class FieldsItem:
    kind: str
    pos: int


@dataclass
class SubqueryItem:
    query: Query
    pos: int


@dataclass
class Literal:
    kind: str  # string number boolean null date datetime dateliteral
    value: Any
    pos: int
    text: str


@dataclass
class Compare:
    field: FieldRef
    op: str
    value: Literal | list[Literal] | Query
    pos: int


@dataclass
class BoolOp:
    op: str
    items: list[Condition]


@dataclass
class NotOp:
    item: Condition


Condition = Compare | BoolOp | NotOp
SelectItem = FieldRef | CountItem | FieldsItem | SubqueryItem


@dataclass
class OrderItem:
    field: FieldRef
    desc: bool
    nulls_first: bool


@dataclass
class Query:
    items: list[SelectItem]
    from_name: str
    from_pos: int
    alias: str | None = None
    where: Condition | None = None
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


# --- parser ---------------------------------------------------------------------------------------
class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.index = 0

    def error(self, code: str, pos: int, message: str) -> SoqlError:
        return SoqlError(code, located(self.text, pos, message))

    def _tokenize(self, text: str) -> list[Token]:
        tokens: list[Token] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN_RE.match(text, pos)
            if match is None:
                raise self.error("MALFORMED_QUERY", pos, f"unexpected token: '{text[pos]}'")
            kind = match.lastgroup or ""
            if kind != "ws":
                tokens.append(Token(kind, match.group(), pos))
            pos = match.end()
        tokens.append(Token("eof", "", len(text)))
        return tokens

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def unexpected(self, token: Token | None = None) -> SoqlError:
        token = token or self.peek()
        shown = "<EOF>" if token.kind == "eof" else f"'{token.text}'"
        return self.error("MALFORMED_QUERY", token.pos, f"unexpected token: {shown}")

    def expect_kw(self, name: str) -> Token:
        token = self.peek()
        if not token.is_kw(name):
            raise self.unexpected(token)
        return self.take()

    def expect(self, kind: str, text: str | None = None) -> Token:
        token = self.peek()
        if token.kind != kind or (text is not None and token.text != text):
            raise self.unexpected(token)
        return self.take()

    def parse(self) -> Query:
        query = self.query(nested=False)
        if self.peek().kind != "eof":
            raise self.unexpected()
        return query

    def query(self, *, nested: bool) -> Query:
        self.expect_kw("SELECT")
        items = self.select_list(nested)
        self.expect_kw("FROM")
        source = self.peek()
        if source.kind != "ident" or source.upper in KEYWORDS:
            raise self.unexpected(source)
        self.take()
        query = Query(items, source.text, source.pos)
        token = self.peek()
        if token.kind == "ident" and token.upper not in KEYWORDS and "." not in token.text:
            query.alias = self.take().text
        if self.peek().is_kw("USING", "WITH", "GROUP", "HAVING", "TYPEOF"):
            token = self.peek()
            raise self.error("MALFORMED_QUERY", token.pos,
                             f"{token.upper} is not supported by this Salesforce emulator")
        if self.peek().is_kw("WHERE"):
            self.take()
            query.where = self.condition()
        if self.peek().is_kw("GROUP", "HAVING", "WITH"):
            token = self.peek()
            raise self.error("MALFORMED_QUERY", token.pos,
                             f"{token.upper} is not supported by this Salesforce emulator")
        if self.peek().is_kw("ORDER"):
            self.take()
            self.expect_kw("BY")
            query.order = self.order_list()
        if self.peek().is_kw("LIMIT"):
            self.take()
            query.limit = self.integer()
        if self.peek().is_kw("OFFSET"):
            self.take()
            query.offset = self.integer()
        if self.peek().is_kw("FOR"):
            self.take()
            if not self.peek().is_kw("VIEW", "UPDATE", "REFERENCE"):
                raise self.unexpected()
            self.take()
        return query

    def integer(self) -> int:
        token = self.peek()
        if token.kind != "number" or not token.text.isdigit():
            raise self.unexpected(token)
        self.take()
        return int(token.text)

    def select_list(self, nested: bool) -> list[SelectItem]:
        items: list[SelectItem] = []
        while True:
            token = self.peek()
            if token.kind == "punct" and token.text == "(":
                if nested:
                    raise self.unexpected(token)
                self.take()
                sub = self.query(nested=True)
                self.expect("punct", ")")
                items.append(SubqueryItem(sub, token.pos))
            elif token.is_kw("COUNT") or (token.kind == "ident" and token.upper == "COUNT"):
                items.append(self.count_item())
            elif token.kind == "ident" and token.upper == "FIELDS" and self.peek(1).text == "(":
                self.take()
                self.take()
                kind = self.peek()
                if not (kind.kind == "ident" and kind.upper in ("ALL", "STANDARD", "CUSTOM")):
                    raise self.unexpected(kind)
                self.take()
                self.expect("punct", ")")
                items.append(FieldsItem(kind.upper, token.pos))
            elif token.kind == "ident" and token.upper not in KEYWORDS:
                self.take()
                items.append(FieldRef(token.text, token.pos))
            else:
                raise self.unexpected(token)
            if self.peek().kind == "punct" and self.peek().text == ",":
                self.take()
                continue
            return items

    def count_item(self) -> CountItem:
        token = self.take()
        if self.peek().text != "(":
            return _as_count_field(token)
        self.take()
        counted: FieldRef | None = None
        if self.peek().text != ")":
            inner = self.peek()
            if inner.kind != "ident":
                raise self.unexpected(inner)
            self.take()
            counted = FieldRef(inner.text, inner.pos)
        self.expect("punct", ")")
        alias = None
        nxt = self.peek()
        if nxt.kind == "ident" and nxt.upper not in KEYWORDS:
            alias = self.take().text
        return CountItem(counted, alias, token.pos)

    def order_list(self) -> list[OrderItem]:
        items = []
        while True:
            token = self.peek()
            if token.kind != "ident" or token.upper in KEYWORDS:
                raise self.unexpected(token)
            self.take()
            desc = False
            if self.peek().is_kw("ASC", "DESC"):
                desc = self.take().upper == "DESC"
            nulls_first = not desc
            if self.peek().is_kw("NULLS"):
                self.take()
                which = self.peek()
                if not which.is_kw("FIRST", "LAST"):
                    raise self.unexpected(which)
                nulls_first = self.take().upper == "FIRST"
            items.append(OrderItem(FieldRef(token.text, token.pos), desc, nulls_first))
            if self.peek().text == ",":
                self.take()
                continue
            return items

    def condition(self) -> Condition:
        first = self.unary()
        items = [first]
        op: str | None = None
        while self.peek().is_kw("AND", "OR"):
            token = self.take()
            if op is not None and token.upper != op:
                raise self.unexpected(token)
            op = token.upper
            items.append(self.unary())
        return first if op is None else BoolOp(op, items)

    def unary(self) -> Condition:
        token = self.peek()
        if token.is_kw("NOT"):
            self.take()
            return NotOp(self.unary())
        if token.kind == "punct" and token.text == "(":
            self.take()
            inner = self.condition()
            self.expect("punct", ")")
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        token = self.peek()
        if token.kind != "ident" or token.upper in KEYWORDS:
            raise self.unexpected(token)
        self.take()
        ref = FieldRef(token.text, token.pos)
        nxt = self.peek()
        if nxt.is_kw("NOT") and self.peek(1).is_kw("IN"):
            self.take()
            self.take()
            return Compare(ref, "NOT IN", self.in_list(), nxt.pos)
        if nxt.is_kw("IN"):
            self.take()
            return Compare(ref, "IN", self.in_list(), nxt.pos)
        if nxt.is_kw("LIKE"):
            self.take()
            value = self.literal()
            return Compare(ref, "LIKE", value, nxt.pos)
        if nxt.is_kw("INCLUDES", "EXCLUDES"):
            raise self.error("MALFORMED_QUERY", nxt.pos,
                             f"{nxt.upper} is not supported by this Salesforce emulator")
        if nxt.kind == "op":
            self.take()
            op = "!=" if nxt.text == "<>" else nxt.text
            return Compare(ref, op, self.literal(), nxt.pos)
        raise self.unexpected(nxt)

    def in_list(self) -> list[Literal] | Query:
        self.expect("punct", "(")
        if self.peek().is_kw("SELECT"):
            sub = self.query(nested=True)
            self.expect("punct", ")")
            return sub
        values = [self.literal()]
        while self.peek().text == ",":
            self.take()
            values.append(self.literal())
        self.expect("punct", ")")
        return values

    def literal(self) -> Literal:
        token = self.peek()
        if token.kind == "string":
            self.take()
            return Literal("string", self.unescape(token), token.pos, token.text)
        if token.kind == "number":
            self.take()
            return Literal("number", float(token.text), token.pos, token.text)
        if token.kind == "date":
            self.take()
            try:
                dt.date.fromisoformat(token.text)
            except ValueError:
                raise self.error("MALFORMED_QUERY", token.pos, f"line 1:{token.pos} no viable alternative "
                                 f"at character '{token.text}'") from None
            return Literal("date", token.text, token.pos, token.text)
        if token.kind == "datetime":
            self.take()
            return Literal("datetime", canonical_datetime(token.text), token.pos, token.text)
        if token.kind == "ident":
            word = token.upper
            if word in ("TRUE", "FALSE"):
                self.take()
                return Literal("boolean", word == "TRUE", token.pos, token.text)
            if word == "NULL":
                self.take()
                return Literal("null", None, token.pos, token.text)
            if word in FIXED_DATE_LITERALS:
                self.take()
                return Literal("dateliteral", (word, 0), token.pos, token.text)
            if word in N_DATE_LITERALS:
                self.take()
                if self.peek().text != ":":
                    raise self.unexpected()
                self.take()
                amount = self.peek()
                if amount.kind != "number" or not amount.text.isdigit():
                    raise self.unexpected(amount)
                self.take()
                return Literal("dateliteral", (word, int(amount.text)), token.pos, f"{token.text}:{amount.text}")
        raise self.unexpected(token)

    def unescape(self, token: Token) -> str:
        body = token.text[1:-1]
        if "\\" not in body:
            return body
        out = []
        index = 0
        while index < len(body):
            char = body[index]
            if char == "\\":
                code = body[index + 1]
                if code == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[index + 2:index + 6]):
                    out.append(chr(int(body[index + 2:index + 6], 16)))
                    index += 6
                    continue
                if code not in _ESCAPES:
                    raise self.error("MALFORMED_QUERY", token.pos,
                                     f"Invalid string literal '{body}'. Illegal character sequence "
                                     f"'\\{code}' in string literal.")
                out.append("\\" + code if code in "_%" else _ESCAPES[code])
                index += 2
                continue
            out.append(char)
            index += 1
        return "".join(out)


def _as_count_field(token: Token) -> CountItem:
    raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")


def located(text: str, pos: int, message: str) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    if line_end < 0:
        line_end = len(text)
    row = text.count("\n", 0, pos) + 1
    column = pos - line_start + 1
    return f"\n{text[line_start:line_end]}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{message}"


def parse(text: str) -> Query:
    return Parser(text).parse()


# --- date literal ranges --------------------------------------------------------------------------
def _add_months(day: dt.date, months: int) -> dt.date:
    total = day.year * 12 + (day.month - 1) + months
    return dt.date(total // 12, total % 12 + 1, 1)


def date_literal_range(name: str, amount: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """[start, end) of a relative date literal, in UTC."""
    day = dt.timedelta(days=1)
    week_start = today - dt.timedelta(days=(today.weekday() + 1) % 7)
    month_start = today.replace(day=1)
    quarter_start = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year_start = dt.date(today.year, 1, 1)
    fixed: dict[str, tuple[dt.date, dt.date]] = {
        "YESTERDAY": (today - day, today),
        "TODAY": (today, today + day),
        "TOMORROW": (today + day, today + 2 * day),
        "LAST_WEEK": (week_start - 7 * day, week_start),
        "THIS_WEEK": (week_start, week_start + 7 * day),
        "NEXT_WEEK": (week_start + 7 * day, week_start + 14 * day),
        "LAST_MONTH": (_add_months(month_start, -1), month_start),
        "THIS_MONTH": (month_start, _add_months(month_start, 1)),
        "NEXT_MONTH": (_add_months(month_start, 1), _add_months(month_start, 2)),
        "LAST_90_DAYS": (today - 90 * day, today + day),
        "NEXT_90_DAYS": (today + day, today + 91 * day),
        "LAST_QUARTER": (_add_months(quarter_start, -3), quarter_start),
        "THIS_QUARTER": (quarter_start, _add_months(quarter_start, 3)),
        "NEXT_QUARTER": (_add_months(quarter_start, 3), _add_months(quarter_start, 6)),
        "LAST_YEAR": (_add_months(year_start, -12), year_start),
        "THIS_YEAR": (year_start, _add_months(year_start, 12)),
        "NEXT_YEAR": (_add_months(year_start, 12), _add_months(year_start, 24)),
    }
    if name in fixed:
        return fixed[name]
    n = amount
    spans: dict[str, tuple[dt.date, dt.date]] = {
        "LAST_N_DAYS": (today - n * day, today + day),
        "NEXT_N_DAYS": (today + day, today + (n + 1) * day),
        "N_DAYS_AGO": (today - n * day, today - (n - 1) * day),
        "LAST_N_WEEKS": (week_start - 7 * n * day, week_start),
        "NEXT_N_WEEKS": (week_start + 7 * day, week_start + 7 * (n + 1) * day),
        "N_WEEKS_AGO": (week_start - 7 * n * day, week_start - 7 * (n - 1) * day),
        "LAST_N_MONTHS": (_add_months(month_start, -n), month_start),
        "NEXT_N_MONTHS": (_add_months(month_start, 1), _add_months(month_start, n + 1)),
        "N_MONTHS_AGO": (_add_months(month_start, -n), _add_months(month_start, -n + 1)),
        "LAST_N_QUARTERS": (_add_months(quarter_start, -3 * n), quarter_start),
        "NEXT_N_QUARTERS": (_add_months(quarter_start, 3), _add_months(quarter_start, 3 * (n + 1))),
        "N_QUARTERS_AGO": (_add_months(quarter_start, -3 * n), _add_months(quarter_start, -3 * (n - 1))),
        "LAST_N_YEARS": (_add_months(year_start, -12 * n), year_start),
        "NEXT_N_YEARS": (_add_months(year_start, 12), _add_months(year_start, 12 * (n + 1))),
        "N_YEARS_AGO": (_add_months(year_start, -12 * n), _add_months(year_start, -12 * (n - 1))),
    }
    return spans[name]


# --- compiled queries -----------------------------------------------------------------------------
Getter = Callable[[Record], Any]
Predicate = Callable[[Record], bool]


@dataclass
class Resolved:
    path: str  # canonical dotted path
    hops: list[tuple[str, str, str]]  # (relationship name, reference field, target object)
    fdef: FieldDef
    getter: Getter


@dataclass
class RenderNode:
    obj_name: str
    order: list[tuple[str, str]] = field(default_factory=list)  # ("f"|"r"|"c", key)
    fields: set[str] = field(default_factory=set)
    rels: dict[str, tuple[str, RenderNode]] = field(default_factory=dict)
    children: dict[str, tuple[str, str, CompiledQuery]] = field(default_factory=dict)


@dataclass
class Column:
    header: str
    getter: Getter
    fdef: FieldDef | None


@dataclass
class CompiledQuery:
    store: Store
    obj: ObjectDef
    root: RenderNode
    columns: list[Column]
    predicate: Predicate | None
    candidates: Callable[[bool], list[str] | None]
    order: list[tuple[Getter, bool, bool]]
    limit: int | None
    offset: int | None
    count_only: bool = False
    aggregates: list[tuple[str, Getter | None]] = field(default_factory=list)
    has_subqueries: bool = False

    def execute(self, include_deleted: bool = False) -> list[Record]:
        table = self.store.tables[self.obj.name]
        ids = self.candidates(include_deleted)
        rows: Iterable[Record]
        if ids is None:
            rows = table.rows.values()
        else:
            found = table.rows
            rows = [found[i] for i in ids if i in found]
        predicate = self.predicate
        if include_deleted:
            out = list(rows) if predicate is None else [r for r in rows if predicate(r)]
        elif predicate is None:
            out = [r for r in rows if not r.get("IsDeleted")]
        else:
            out = [r for r in rows if not r.get("IsDeleted") and predicate(r)]
        return self.arrange(out)

    def arrange(self, rows: list[Record]) -> list[Record]:
        for getter, desc, nulls_first in reversed(self.order):
            low = nulls_first != desc
            rows.sort(key=_sort_key(getter, low), reverse=desc)
        start = self.offset or 0
        if start:
            rows = rows[start:]
        if self.limit is not None:
            rows = rows[: self.limit]
        return rows

    def render(self, rec: Record, version: str, include_deleted: bool = False) -> dict[str, Any]:
        return self._render(self.root, rec, version, include_deleted)

    def _render(self, node: RenderNode, rec: Record, version: str, include_deleted: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {"type": node.obj_name,
                           "url": f"/services/data/v{version}/sobjects/{node.obj_name}/{rec['Id']}"},
        }
        live = self.store.live
        for kind, key in node.order:
            if kind == "f":
                out[key] = rec.get(key)
            elif kind == "r":
                ref_field, child_node = node.rels[key]
                parent = live(rec.get(ref_field))
                out[key] = None if parent is None else self._render(child_node, parent, version, include_deleted)
            else:
                child_type, child_field, sub = node.children[key]
                kids = self.store.children(child_type, child_field, rec["Id"])
                predicate = sub.predicate
                kids = [k for k in kids if (include_deleted or not k.get("IsDeleted"))
                        and (predicate is None or predicate(k))]
                kids = sub.arrange(kids)
                out[key] = None if not kids else {
                    "totalSize": len(kids),
                    "done": True,
                    "records": [sub.render(k, version, include_deleted) for k in kids],
                }
        return out

    def aggregate_row(self, rows: list[Record]) -> dict[str, Any]:
        row: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        for alias, getter in self.aggregates:
            row[alias] = len(rows) if getter is None else sum(1 for r in rows if getter(r) is not None)
        return row


def _sort_key(getter: Getter, nulls_low: bool) -> Callable[[Record], tuple[int, Any]]:
    null_key = (0, 0) if nulls_low else (2, 0)

    def key(rec: Record) -> tuple[int, Any]:
        value = getter(rec)
        if value is None:
            return null_key
        if isinstance(value, str):
            return (1, value.lower())
        return (1, value)

    return key


class Compiler:
    def __init__(self, store: Store, text: str, now: dt.datetime) -> None:
        self.store = store
        self.text = text
        self.today = now.date()

    def error(self, code: str, pos: int, message: str) -> SoqlError:
        return SoqlError(code, located(self.text, pos, message))

    def compile(self, query: Query, *, parent: ObjectDef | None = None) -> CompiledQuery:
        if parent is None:
            obj = self.store.object_named(query.from_name)
            if obj is None:
                raise self.error(
                    "INVALID_TYPE", query.from_pos,
                    f"sObject type '{query.from_name}' is not supported. If you are attempting to use a "
                    "custom object, be sure to append the '__c' after the entity name. Please reference "
                    "your WSDL or the describe call for the appropriate names.",
                )
        else:
            rel = parent.children_ci.get(query.from_name.lower())
            if rel is None:
                raise self.error(
                    "INVALID_TYPE", query.from_pos,
                    f"Didn't understand relationship '{query.from_name}' in FROM part of query call. If "
                    "you are attempting to use a custom relationship, be sure to append the '__r' after "
                    "the custom relationship name. Please reference your WSDL or the describe call for "
                    "the appropriate names.",
                )
            obj = self.store.schema[rel.child]
        alias = query.alias
        root = RenderNode(obj.name)
        columns: list[Column] = []
        count_only = False
        aggregates: list[tuple[str, Getter | None]] = []
        plain_fields: list[FieldRef] = []
        has_sub = False
        for item in query.items:
            if isinstance(item, CountItem):
                if item.field is None:
                    if len(query.items) > 1:
                        raise self.error("MALFORMED_QUERY", item.pos, "unexpected token: 'COUNT'")
                    count_only = True
                else:
                    resolved = self.resolve(obj, item.field, alias)
                    aggregates.append((item.alias or f"expr{len(aggregates)}", resolved.getter))
            elif isinstance(item, FieldsItem):
                if item.kind in ("ALL", "CUSTOM") and (query.limit is None or query.limit > 200):
                    raise self.error("MALFORMED_QUERY", item.pos,
                                     "The SOQL FIELDS function must have a LIMIT of at most 200")
                for fdef in obj.fields.values():
                    if item.kind == "ALL" or (item.kind == "CUSTOM") == fdef.custom:
                        self._add_field(root, columns, self.resolve(obj, FieldRef(fdef.name, item.pos), alias))
            elif isinstance(item, SubqueryItem):
                if parent is not None:
                    raise self.error("MALFORMED_QUERY", item.pos, "unexpected token: '('")
                sub = self.compile(item.query, parent=obj)
                rel = obj.children_ci[item.query.from_name.lower()]
                if rel.name not in root.children:
                    root.children[rel.name] = (rel.child, rel.field, sub)
                    root.order.append(("c", rel.name))
                has_sub = True
            else:
                plain_fields.append(item)
                self._add_field(root, columns, self.resolve(obj, item, alias))
        if aggregates and plain_fields:
            ref = plain_fields[0]
            raise self.error("MALFORMED_QUERY", ref.pos, f"Field must be grouped or aggregated: {ref.path}")
        predicate = self.condition(obj, query.where, alias) if query.where is not None else None
        order: list[tuple[Getter, bool, bool]] = []
        for order_item in query.order:
            resolved = self.resolve(obj, order_item.field, alias)
            if not resolved.fdef.sortable:
                raise self.error("INVALID_FIELD", order_item.field.pos,
                                 f"field '{resolved.fdef.name}' can not be sorted in a query call")
            order.append((resolved.getter, order_item.desc, order_item.nulls_first))
        return CompiledQuery(
            store=self.store, obj=obj, root=root, columns=columns, predicate=predicate,
            candidates=self.index_plan(obj, query.where, alias), order=order, limit=query.limit,
            offset=query.offset, count_only=count_only, aggregates=aggregates, has_subqueries=has_sub,
        )

    # --- fields ----------------------------------------------------------------------------------
    def resolve(self, obj: ObjectDef, ref: FieldRef, alias: str | None) -> Resolved:
        parts = ref.path.split(".")
        if len(parts) > 1 and (
            (alias and parts[0].lower() == alias.lower())
            or (parts[0].lower() == obj.name.lower() and parts[0].lower() not in obj.relationships_ci)
        ):
            parts = parts[1:]
        current = obj
        hops: list[tuple[str, str, str]] = []
        for part in parts[:-1]:
            rel_field = current.relationships_ci.get(part.lower())
            if rel_field is None:
                raise self.error(
                    "INVALID_FIELD", ref.pos,
                    f"Didn't understand relationship '{part}' in field path. If you are attempting to use "
                    "a custom relationship, be sure to append the '__r' after the custom relationship "
                    "name. Please reference your WSDL or the describe call for the appropriate names.",
                )
            target = rel_field.reference_to[0]
            hops.append((rel_field.relationship_name or part, rel_field.name, target))
            current = self.store.schema[target]
        fdef = current.field(parts[-1])
        if fdef is None:
            raise self.error(
                "INVALID_FIELD", ref.pos,
                f"No such column '{parts[-1]}' on entity '{current.name}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name. Please reference "
                "your WSDL or the describe call for the appropriate names.",
            )
        path = ".".join([h[0] for h in hops] + [fdef.name])
        return Resolved(path, hops, fdef, self._getter([h[1] for h in hops], fdef.name))

    def _getter(self, ref_fields: list[str], name: str) -> Getter:
        if not ref_fields:
            return lambda rec: rec.get(name)
        live = self.store.live

        def get(rec: Record) -> Any:
            current: Record | None = rec
            for ref_field in ref_fields:
                current = live(current.get(ref_field)) if current is not None else None
            return current.get(name) if current is not None else None

        return get

    def _add_field(self, root: RenderNode, columns: list[Column], resolved: Resolved) -> None:
        node = root
        for rel_name, ref_field, target in resolved.hops:
            if rel_name not in node.rels:
                node.rels[rel_name] = (ref_field, RenderNode(target))
                node.order.append(("r", rel_name))
            node = node.rels[rel_name][1]
        if resolved.fdef.name not in node.fields:
            node.fields.add(resolved.fdef.name)
            node.order.append(("f", resolved.fdef.name))
            columns.append(Column(resolved.path, resolved.getter, resolved.fdef))

    # --- conditions ------------------------------------------------------------------------------
    def condition(self, obj: ObjectDef, cond: Condition, alias: str | None) -> Predicate:
        if isinstance(cond, BoolOp):
            parts = [self.condition(obj, item, alias) for item in cond.items]
            if cond.op == "AND":
                return lambda rec: all(p(rec) for p in parts)
            return lambda rec: any(p(rec) for p in parts)
        if isinstance(cond, NotOp):
            inner = self.condition(obj, cond.item, alias)
            return lambda rec: not inner(rec)
        return self.compare(obj, cond, alias)

    def compare(self, obj: ObjectDef, cond: Compare, alias: str | None) -> Predicate:
        resolved = self.resolve(obj, cond.field, alias)
        fdef = resolved.fdef
        get = resolved.getter
        if not fdef.filterable:
            raise self.error("INVALID_FIELD", cond.field.pos,
                             f"field '{fdef.name}' can not be filtered in query call")
        fold = fdef.is_string

        def norm(value: Any) -> Any:
            return value.lower() if fold and value is not None else value

        if cond.op in ("IN", "NOT IN"):
            negate = cond.op == "NOT IN"
            if isinstance(cond.value, Query):
                values = self.semi_join(obj, fdef, cond)
                if negate:
                    return lambda rec: get(rec) not in values()
                return lambda rec: get(rec) in values()
            assert isinstance(cond.value, list)
            keys = {self.literal_key(fdef, lit, cond.op) for lit in cond.value}
            if negate:
                return lambda rec: norm(get(rec)) not in keys
            return lambda rec: norm(get(rec)) in keys
        assert isinstance(cond.value, Literal)
        literal = cond.value
        if cond.op == "LIKE":
            if not (fdef.is_string or fdef.is_id) or literal.kind != "string":
                raise self.error("INVALID_QUERY_FILTER_OPERATOR", literal.pos,
                                 f"invalid operator on {fdef.type} field: {fdef.name}")
            pattern = like_regex(literal.value)
            return lambda rec: (value := get(rec)) is not None and pattern.fullmatch(value) is not None
        if literal.kind == "dateliteral":
            return self.date_range_predicate(fdef, get, cond.op, literal)
        key = self.literal_key(fdef, literal, cond.op)
        op = cond.op
        if op in ("<", "<=", ">", ">=") and fdef.type == "boolean":
            raise self.error("INVALID_QUERY_FILTER_OPERATOR", cond.pos,
                             f"invalid operator on boolean field: {fdef.name}")
        if op == "=":
            return lambda rec: norm(get(rec)) == key
        if op == "!=":
            return lambda rec: norm(get(rec)) != key
        if key is None:
            return lambda rec: False
        compare = _ORDERINGS[op]
        return lambda rec: (value := get(rec)) is not None and compare(norm(value), key)

    def literal_key(self, fdef: FieldDef, literal: Literal, op: str) -> Any:
        if literal.kind == "null":
            return None
        if literal.kind == "dateliteral":
            raise self.error("INVALID_QUERY_FILTER_OPERATOR", literal.pos,
                             f"{literal.text} is not a valid value for the operator {op}")
        kind = fdef.type
        if fdef.is_id:
            canonical = normalize_id(literal.value) if literal.kind == "string" else None
            if canonical is None:
                raise self.error("INVALID_QUERY_FILTER_OPERATOR", literal.pos,
                                 f"invalid ID field: {literal.value if literal.kind == 'string' else literal.text}")
            return canonical
        if fdef.is_string:
            if literal.kind != "string":
                raise self._type_error(fdef, literal, "string", quoted=True)
            return str(literal.value).lower()
        if kind == "boolean":
            if literal.kind != "boolean":
                raise self._type_error(fdef, literal, "boolean")
            return literal.value
        if fdef.is_number:
            if literal.kind != "number":
                raise self._type_error(fdef, literal, "integer" if kind == "int" else "double")
            return literal.value
        if kind == "date":
            if literal.kind != "date":
                raise self._type_error(fdef, literal, "date")
            return literal.value
        if kind == "datetime":
            if literal.kind != "datetime":
                raise self._type_error(fdef, literal, "dateTime")
            return literal.value
        return literal.value

    def _type_error(self, fdef: FieldDef, literal: Literal, type_name: str, *, quoted: bool = False) -> SoqlError:
        should = "should" if quoted else "should not"
        return self.error("INVALID_QUERY_FILTER_OPERATOR", literal.pos,
                          f"value of filter criterion for field '{fdef.name}' must be of type {type_name} "
                          f"and {should} be enclosed in quotes")

    def date_range_predicate(self, fdef: FieldDef, get: Getter, op: str, literal: Literal) -> Predicate:
        if fdef.type not in ("date", "datetime"):
            raise self._type_error(fdef, literal, "string" if fdef.is_string else fdef.type,
                                   quoted=fdef.is_string)
        name, amount = literal.value
        start_day, end_day = date_literal_range(name, amount, self.today)
        if fdef.type == "date":
            start, end = start_day.isoformat(), end_day.isoformat()
        else:
            start, end = f"{start_day.isoformat()}T00:00:00.000+0000", f"{end_day.isoformat()}T00:00:00.000+0000"
        checks: dict[str, Callable[[str], bool]] = {
            "=": lambda v: start <= v < end,
            "<": lambda v: v < start,
            "<=": lambda v: v < end,
            ">": lambda v: v >= end,
            ">=": lambda v: v >= start,
        }
        if op == "!=":
            return lambda rec: (value := get(rec)) is None or not start <= value < end
        check = checks[op]
        return lambda rec: (value := get(rec)) is not None and check(value)

    def semi_join(self, obj: ObjectDef, fdef: FieldDef, cond: Compare) -> Callable[[], set[Any]]:
        assert isinstance(cond.value, Query)
        if not fdef.is_id:
            raise self.error("INVALID_FIELD", cond.field.pos,
                             "Semi join sub-selects are only allowed on Id or reference fields")
        sub_query = cond.value
        sub = self.compile(sub_query)
        if len(sub.columns) != 1 or sub.columns[0].fdef is None or not sub.columns[0].fdef.is_id:
            raise self.error("MALFORMED_QUERY", sub_query.from_pos,
                             "The selected field in a semi join sub-select must be an Id or reference field")
        getter = sub.columns[0].getter

        def values() -> set[Any]:
            cache = getattr(values, "cache", None)
            if cache is None:
                cache = {getter(r) for r in sub.execute()}
                cache.discard(None)
                values.cache = cache  # type: ignore[attr-defined]
            return cache

        return values

    # --- index plan ------------------------------------------------------------------------------
    def index_plan(self, obj: ObjectDef, where: Condition | None,
                   alias: str | None) -> Callable[[bool], list[str] | None]:
        if where is None:
            return lambda include_deleted: None
        conjuncts = where.items if isinstance(where, BoolOp) and where.op == "AND" else [where]
        table = self.store.tables[obj.name]
        lookups: list[Lookup] = []
        for cond in conjuncts:
            if not isinstance(cond, Compare) or cond.op not in ("=", "IN"):
                continue
            resolved = self.resolve(obj, cond.field, alias)
            if resolved.hops:
                continue
            name = resolved.fdef.name
            if isinstance(cond.value, Query):
                if name == "Id":
                    lookups.append(_semi_join_lookup(self.semi_join(obj, resolved.fdef, cond)))
                continue
            literals = cond.value if isinstance(cond.value, list) else [cond.value]
            if any(lit.kind != "string" for lit in literals):
                continue
            keys = [self.literal_key(resolved.fdef, lit, cond.op) for lit in literals]
            if name == "Id":
                lookups.append(_id_lookup(keys))
            elif name in table.unique_fields:
                lookups.append(_index_lookup(keys, table.unique[name], live_only=True))
            elif name in table.ref_fields:
                lookups.append(_index_lookup(keys, table.refs[name], live_only=False))
        if not lookups:
            return lambda include_deleted: None

        def plan(include_deleted: bool) -> list[str] | None:
            best: list[str] | None = None
            for lookup in lookups:
                found = lookup(include_deleted)
                if found is not None and (best is None or len(found) < len(best)):
                    best = found
            return best

        return plan


Lookup = Callable[[bool], list[str] | None]


def _semi_join_lookup(values: Callable[[], set[Any]]) -> Lookup:
    return lambda include_deleted: sorted(values())


def _id_lookup(keys: list[Any]) -> Lookup:
    found = sorted({k for k in keys if k is not None})
    return lambda include_deleted: found


def _index_lookup(keys: list[Any], index: Mapping[str, Iterable[str]], *, live_only: bool) -> Lookup:
    def lookup(include_deleted: bool) -> list[str] | None:
        if live_only and include_deleted:
            return None  # the external-id index holds live records only
        return sorted({rid for key in keys for rid in index.get(key, ())})
    return lookup


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def compile_soql(store: Store, text: str, now: dt.datetime) -> CompiledQuery:
    query = parse(text)
    return Compiler(store, text, now).compile(query)
