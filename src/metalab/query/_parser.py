"""Tokenizer and parser of the run filter language, and its keyword form.

Grammar (keywords are case-insensitive)::

    query      := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | "(" or_expr ")" | predicate
    predicate  := field ("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") literal
                | literal op field
                | field ["not"] "in" "(" literal ("," literal)* ")"
                | field ["not"] "between" literal "and" literal
                | field ["not"] "startswith" string
                | field ["not"] "contains" literal
                | field "is" ["not"] "null"
    field      := name ["." (name | string)]        e.g. params.lr, metrics."top-1 acc"
    literal    := number | string | true | false

Names after the namespace may contain letters, digits, ``_``, ``-`` and dots
(``params.opt.lr`` is the parameter named ``opt.lr``); quote anything else.
Strings use single or double quotes with backslash escapes.  Parentheses and
``not`` nest at most :data:`~._ast.MAX_NESTING` (100) levels deep.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from metalab._errors import QueryError, QuerySyntaxError, UnknownFieldError
from metalab.query._ast import (
    DYNAMIC,
    FIXED,
    MAX_NESTING,
    NAMESPACE_ALIASES,
    And,
    Between,
    Compare,
    Contains,
    Field,
    In,
    IsNull,
    Node,
    Not,
    Or,
    Query,
    StartsWith,
    TrueNode,
    check_depth,
    check_literal,
    normalize_order,
)

__all__ = ["as_query", "build_query", "from_keywords", "parse", "parse_field"]

_KEYWORDS = frozenset({
    "and", "or", "not", "in", "between", "startswith", "contains", "is", "null", "true", "false",
})
_OPS = ("==", "!=", "<=", ">=", "<>", "=", "<", ">")
_OP_START = frozenset("=!<>")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SUB = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}


class _Tok:
    __slots__ = ("kind", "pos", "value")

    def __init__(self, kind: str, value: Any, pos: int) -> None:
        self.kind = kind  # name, field, string, number, op, kw, (, ), ",", end
        self.value = value
        self.pos = pos

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the query"
        if self.kind == "string":
            return f"the string {self.value!r}"
        if self.kind == "field":
            return f"the field {self.value[0]}{'.' + self.value[1] if self.value[1] else ''}"
        return repr(str(self.value))


def _read_string(text: str, i: int) -> tuple[str, int]:
    quote = text[i]
    out: list[str] = []
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and j + 1 < len(text):
            nxt = text[j + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            j += 2
            continue
        if c == quote:
            return "".join(out), j + 1
        out.append(c)
        j += 1
    raise QuerySyntaxError("unterminated string: add the closing quote", text, i)


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "(),":
            toks.append(_Tok(c, c, i))
            i += 1
            continue
        if c in "\"'":
            string, j = _read_string(text, i)
            toks.append(_Tok("string", string, i))
            i = j
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None) if c in _OP_START else None
        if op is not None:
            toks.append(_Tok("op", {"==": "=", "<>": "!="}.get(op, op), i))
            i += len(op)
            continue
        m = _NUMBER.match(text, i)
        if m and (c != "-" or m.end() > i + 1):
            raw = m.group()
            number: Any = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
            toks.append(_Tok("number", number, i))
            i = m.end()
            continue
        m = _NAME.match(text, i)
        if m:
            word = m.group()
            j = m.end()
            if j < n and text[j] == ".":
                # a namespaced field: ns.name, ns."quoted name"
                if j + 1 < n and text[j + 1] in "\"'":
                    sub, k = _read_string(text, j + 1)
                else:
                    sm = _SUB.match(text, j + 1)
                    if not sm:
                        raise QuerySyntaxError(
                            f"expected a field name after '{word}.'", text, j + 1
                        )
                    sub, k = sm.group(), sm.end()
                toks.append(_Tok("field", (word, sub), i))
                i = k
                continue
            low = word.lower()
            if low in _KEYWORDS:
                toks.append(_Tok("kw", low, i))
            else:
                toks.append(_Tok("field", (word, ""), i))
            i = j
            continue
        raise QuerySyntaxError(f"unexpected character {c!r}", text, i)
    toks.append(_Tok("end", None, n))
    return toks


def _make_field(ns: str, name: str, text: str, pos: int | None) -> Field:
    ns_l = NAMESPACE_ALIASES.get(ns, ns)
    if ns_l in DYNAMIC:
        return Field(ns_l, name, pos)
    if ns_l in FIXED and not name:
        return Field(ns_l, "", pos)
    import difflib

    full = f"{ns}.{name}" if name else ns
    known = [*(f"{d}.<name>" for d in DYNAMIC), *FIXED]
    close = tuple(difflib.get_close_matches(ns, [*DYNAMIC, *FIXED], n=3, cutoff=0.6))
    hint = f" Did you mean {', '.join(repr(c + ('.' + name if name and c in DYNAMIC else '')) for c in close)}?" if close else ""
    raise UnknownFieldError(
        f"unknown field {full!r}.{hint} Fields are: {', '.join(known)}",
        text,
        pos,
        field=full,
        suggestions=close,
    )


def parse_field(text: str, *, query: str | None = None, pos: int | None = None) -> Field:
    """Parse one field name (``"params.lr"``, ``"status"``, ``'metrics."a b"'``).

    After ``params.`` / ``metrics.`` / ``derived.`` the rest is the name as it
    is (any characters) unless it starts with a quote.
    """
    if not isinstance(text, str) or not text.strip():
        raise QuerySyntaxError(f"a field name must be a non-empty string, got {text!r}")
    _check_encodable(text, "the field name")
    ns, dot, rest = text.partition(".")
    if dot and rest and NAMESPACE_ALIASES.get(ns, ns) in DYNAMIC and rest[0] not in "\"'":
        # outside the query text a name needs no quoting: take it as it is
        return Field(NAMESPACE_ALIASES.get(ns, ns), rest, pos)
    toks = _tokenize(text)
    if len(toks) != 2 or toks[0].kind != "field":
        bad = toks[1] if toks[0].kind == "field" else toks[0]
        raise QuerySyntaxError(
            f"{text!r} is not a field name (such as params.lr or status)", text, bad.pos
        )
    ns, name = toks[0].value
    return _make_field(ns, name, query if query is not None else text,
                       pos if pos is not None else toks[0].pos)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0  # levels of '(' and 'not' around the current token

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def is_kw(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "kw" and tok.value in words

    def fail(self, expected: str, tok: _Tok | None = None) -> QuerySyntaxError:
        tok = tok or self.peek()
        return QuerySyntaxError(f"expected {expected}, found {tok.describe()}", self.text, tok.pos)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            return TrueNode()
        node = self.or_expr()
        if self.peek().kind != "end":
            raise self.fail("'and', 'or' or the end of the query")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.is_kw("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.is_kw("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def enter(self) -> _Tok:
        """Take a '(' or 'not', one level deeper (a bounded recursion)."""
        tok = self.take()
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise QuerySyntaxError(
                f"the filter nests more than {MAX_NESTING} levels of parentheses and 'not'; "
                "write it with fewer levels (join conditions with and / or, drop double 'not')",
                self.text, tok.pos,
            )
        return tok

    def unary(self) -> Node:
        if self.is_kw("not"):
            self.enter()
            node: Node = Not(self.unary())
            self.depth -= 1
            return node
        if self.peek().kind == "(":
            open_tok = self.enter()
            node = self.or_expr()
            if self.peek().kind != ")":
                raise QuerySyntaxError(
                    f"expected ')' to close the '(' at position {open_tok.pos}, found "
                    f"{self.peek().describe()}", self.text, self.peek().pos,
                )
            self.take()
            self.depth -= 1
            return node
        return self.predicate()

    def literal(self) -> tuple[Any, int]:
        tok = self.peek()
        if tok.kind in ("string", "number"):
            self.take()
            return tok.value, tok.pos
        if tok.kind == "kw" and tok.value in ("true", "false", "null"):
            self.take()
            return {"true": True, "false": False, "null": None}[tok.value], tok.pos
        raise self.fail("a value (number, \"string\", true or false)")

    def field(self) -> Field:
        tok = self.peek()
        if tok.kind != "field":
            raise self.fail("a field such as params.lr, metrics.score or status")
        self.take()
        ns, name = tok.value
        return _make_field(ns, name, self.text, tok.pos)

    def predicate(self) -> Node:
        tok = self.peek()
        if tok.kind in ("string", "number") or (tok.kind == "kw" and tok.value in ("true", "false")):
            value, vpos = self.literal()
            op_tok = self.peek()
            if op_tok.kind != "op":
                raise self.fail("a comparison operator (= != < <= > >=)")
            self.take()
            field = self.field()
            flipped = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op_tok.value, op_tok.value)
            return _compare(field, flipped, value, self.text, vpos)
        field = self.field()
        tok = self.peek()
        if tok.kind == "op":
            self.take()
            value, vpos = self.literal()
            return _compare(field, tok.value, value, self.text, vpos)
        if self.is_kw("is"):
            self.take()
            negate = False
            if self.is_kw("not"):
                self.take()
                negate = True
            if not self.is_kw("null"):
                raise self.fail("'null'")
            self.take()
            return _is_null(field, negate, self.text, tok.pos)
        negate = False
        if self.is_kw("not"):
            self.take()
            negate = True
        if self.is_kw("in"):
            self.take()
            if self.peek().kind != "(":
                raise self.fail("'(' after 'in'")
            self.take()
            values = []
            while True:
                values.append(self.literal())
                if self.peek().kind == ",":
                    self.take()
                    continue
                if self.peek().kind == ")":
                    self.take()
                    break
                raise self.fail("',' or ')'")
            return _in(field, values, negate, self.text)
        if self.is_kw("between"):
            self.take()
            low, lpos = self.literal()
            if not self.is_kw("and"):
                raise self.fail("'and' between the two bounds")
            self.take()
            high, hpos = self.literal()
            node: Node = Between(
                field,
                _check(field, low, "between", self.text, lpos),
                _check(field, high, "between", self.text, hpos),
            )
            return Not(node) if negate else node
        if self.is_kw("startswith"):
            self.take()
            value, vpos = self.literal()
            node = _startswith(field, value, self.text, vpos)
            return Not(node) if negate else node
        if self.is_kw("contains"):
            self.take()
            value, vpos = self.literal()
            node = _contains(field, value, self.text, vpos)
            return Not(node) if negate else node
        raise self.fail(
            "an operator (= != < <= > >=, in, between, startswith, contains, is null)"
        )


# ------------------------------------------------------------ node builders
def _check(field: Field, value: Any, op: str, text: str, pos: int | None) -> Any:
    if field.whole_namespace:
        raise QueryError(
            f"{field.path!r} is a whole namespace; name one field such as {field.path}.x",
            text, field.pos,
        )
    if field.ns == "tags":
        raise QueryError(
            "tags is a list: test it with 'tags contains \"x\"'", text, field.pos
        )
    if value is None:
        raise QueryError(f"{field.path} {op} null never matches; use '{field.path} is null'",
                         text, pos)
    if isinstance(value, list | tuple | dict):
        raise QueryError(f"{field.path} {op}: compare with a number, string or boolean",
                         text, pos)
    if isinstance(value, str):
        _check_encodable(value, f"the value compared with {field.path}")
    return check_literal(field, value, op, text, pos)


def _compare(field: Field, op: str, value: Any, text: str, pos: int | None) -> Node:
    return Compare(field, op, _check(field, value, op, text, pos))


def _in(field: Field, values: Sequence[tuple[Any, int | None]], negate: bool, text: str) -> Node:
    checked = tuple(_check(field, v, "in", text, p) for v, p in values)
    return In(field, checked, negate)


def _is_null(field: Field, negate: bool, text: str, pos: int | None) -> Node:
    if field.whole_namespace or field.ns == "tags":
        raise QueryError(f"'{field.path} is null' is not supported; name one field", text,
                         field.pos)
    return IsNull(field, negate)


def _startswith(field: Field, value: Any, text: str, pos: int | None) -> Node:
    if not isinstance(value, str):
        raise QueryError("startswith needs a string such as \"res\"", text, pos)
    _check_encodable(value, "the prefix")
    if field.kind in ("time", "number", "tags") or field.whole_namespace:
        raise QueryError(f"startswith applies to strings, not to {field.path}", text, field.pos)
    return StartsWith(field, value)


def _contains(field: Field, value: Any, text: str, pos: int | None) -> Node:
    if value is None or isinstance(value, list | tuple | dict):
        raise QueryError("contains needs a number, string or boolean", text, pos)
    if field.kind in ("time", "number") or field.whole_namespace:
        raise QueryError(
            f"contains applies to strings, lists and tags, not to {field.path}", text, field.pos
        )
    if field.ns == "tags" and not isinstance(value, str):
        raise QueryError("tags hold strings: use tags contains \"name\"", text, pos)
    if isinstance(value, str):
        _check_encodable(value, "the value of contains")
    return Contains(field, value)


# ------------------------------------------------------------ public entry points
def parse(text: str) -> Node:
    """Parse a filter string into an AST (an empty string matches every run).

    Raises:
        QuerySyntaxError: malformed text (the message points at the position),
            also parentheses and ``not`` nested more than 100 levels deep.
        UnknownFieldError: a field outside params/metrics/derived and the
            top-level fields.
        QueryError: a literal that can never match its field.
    """
    if not isinstance(text, str):
        raise QuerySyntaxError(f"a query must be a string, got {type(text).__name__}")
    _check_encodable(text, "the query")
    return _Parser(text).parse()


def _check_encodable(text: str, what: str) -> None:
    """Raise QuerySyntaxError at the first character with no UTF-8 form (a lone
    surrogate): no store can hold or compare it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
        raise QuerySyntaxError(
            f"{what} holds a character with no UTF-8 form (a lone surrogate); remove it",
            shown, exc.start,
        ) from None


def from_keywords(criteria: Mapping[str, Any]) -> Node:
    """The keyword form: ``{"status": "success", "params.lr": 0.01}`` -> AST.

    A scalar means equality (``tags``: contains), a list/tuple/set means
    ``in``, ``None`` means ``is null``.  All conditions must hold.
    """
    items: list[Node] = []
    for key, value in criteria.items():
        field = parse_field(key)
        if field.ns == "tags":
            tags = [value] if isinstance(value, str) else list(value)
            items += [_contains(field, t, key, None) for t in tags]
        elif value is None:
            items.append(_is_null(field, False, key, None))
        elif isinstance(value, list | tuple | set | frozenset):
            items.append(_in(field, [(v, None) for v in value], False, key))
        else:
            items.append(_compare(field, "=", value, key, None))
    if not items:
        return TrueNode()
    return items[0] if len(items) == 1 else And(tuple(items))


def _order_item(item: str) -> tuple[Field, bool]:
    if not isinstance(item, str) or not item.strip():
        raise QuerySyntaxError(f"an order_by item must be a field name, got {item!r}")
    text = item.strip()
    desc = False
    if text.startswith("-"):
        desc, text = True, text[1:].strip()
    else:
        low = text.lower()
        for suffix, flag in ((" desc", True), (" asc", False)):
            if low.endswith(suffix):
                desc, text = flag, text[: -len(suffix)].strip()
                break
    return parse_field(text), desc


def build_query(
    where: str | Node | None = None,
    *,
    columns: Iterable[str] | None = None,
    order_by: str | Iterable[str] | None = None,
    limit: int | None = None,
    keywords: Mapping[str, Any] | None = None,
) -> Query:
    """Parse and check all parts of a query.

    ``where``: filter text or an AST; ``keywords``: the keyword form (joined
    with ``and``).  ``columns``: field names to return (``"params"`` means all
    parameters); ``None`` returns whole run documents.  ``order_by``: field
    names, ``"-field"`` or ``"field desc"`` for descending.  ``limit``: at
    most that many runs.

    Raises:
        QueryError (and subclasses): see :func:`parse`; a negative limit; a
            filter tree deeper than :data:`~._ast.MAX_NODE_DEPTH`.
    """
    text = where if isinstance(where, str) else ""
    if where is None or isinstance(where, str):
        node = parse(where or "")
    elif isinstance(where, Node):
        node = check_depth(where)
    else:
        raise QuerySyntaxError(f"where must be a query string, got {type(where).__name__}")
    if keywords:
        extra = from_keywords(keywords)
        if isinstance(node, TrueNode):
            node = extra
        elif not isinstance(extra, TrueNode):
            node = And((node, extra))
    cols: tuple[Field, ...] | None = None
    if columns is not None:
        if isinstance(columns, str):
            columns = [c.strip() for c in columns.split(",") if c.strip()]
        seen: dict[Field, None] = {}
        for c in columns:
            f = parse_field(c)
            seen.setdefault(f, None)
        cols = tuple(seen)
    if isinstance(order_by, str):
        order_by = [o for o in order_by.split(",") if o.strip()]
    order = normalize_order([_order_item(o) for o in (order_by or ())])
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise QueryError(f"limit must be a non-negative integer, got {limit!r}")
    return Query(node, cols, order, limit, text)


def as_query(
    where: Query | str | Node | None,
    columns: Iterable[str] | None = None,
    order_by: str | Iterable[str] | None = None,
    limit: int | None = None,
) -> Query:
    """``where`` itself when it is a :class:`Query` (the other arguments are then
    ignored), else :func:`build_query` of the four (the arguments of
    ``Store.query_runs``); raises as :func:`build_query` does."""
    if isinstance(where, Query):
        return where
    return build_query(where, columns=columns, order_by=order_by, limit=limit)
