"""Render: Jinja templates → the strings of a shot.

One sandboxed environment per storyboard, with ``StrictUndefined`` (an unknown
name is an error, never an empty string), the storyboard's ``templates:``
mapping and the ``.j2`` files of a ``templates/`` folder beside it (nothing
outside that folder can be reached, symlinks included). The sandbox also
intercepts ``*``, ``**``, ``+``, ``%`` and ``~`` (and every filter and block that
joins text) so that ``{{ 'x' * 10**9 }}`` is refused instead of eating the
machine, and rendering stops as soon as the output is longer than any prompt can be.

A request must render the same on every run (its fingerprint decides what a rerun
pays for), so no value whose text is not its content may become text: a generator
(``{{ [1,2]|map('string') }}`` prints ``<generator object … at 0x7f…>``), a method,
an object with an address in its repr, an undefined name inside a list
(``{{ [plcae] }}`` prints ``[Undefined]``). They are refused wherever a value turns
into text: ``{{ }}``, ``~``, ``%``, and every filter that reads its value as text.
"""

from __future__ import annotations

import contextlib
import operator
import re
import sys
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import jinja2
import jinja2.compiler
import jinja2.filters
import jinja2.nodes
import jinja2.runtime
import jinja2.utils
from jinja2 import sandbox
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path

from vidu_pipe.text import suggest

__all__ = ["RenderError", "TemplateEnv"]

#: Rendering stops past this many characters (the endpoint takes 5000).
MAX_OUTPUT = 20_000
_MAX_REPEAT = 100_000
_MAX_EXPONENT = 256


class RenderError(Exception):
    """A template could not be rendered; ``message`` and ``hint`` are for people."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class _FolderLoader(jinja2.BaseLoader):
    """``.j2`` files under one folder, by name with or without the ``.j2``.

    The folder must really lie inside the storyboard's folder (a ``templates``
    symlink to ``/proc/self`` would otherwise read the environment, key and all);
    only ``.j2`` files are read, never hidden ones, and symlinks inside may not
    lead out of it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @staticmethod
    def outside(folder: Path) -> bool:
        """Whether ``folder`` (``templates/`` beside a storyboard) leads out of that folder."""
        return not folder.resolve().is_relative_to(folder.parent.resolve())

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        name = template if template.endswith(".j2") else template + ".j2"
        pieces = split_template_path(name)  # refuses '..'
        if any(piece.startswith(".") for piece in pieces):
            raise jinja2.TemplateNotFound(template)
        try:
            real = self.root.joinpath(*pieces).resolve(strict=True)
        except OSError:
            raise jinja2.TemplateNotFound(template) from None
        # A symlink may point anywhere; only files really inside the folder count.
        if not (real.is_file() and real.is_relative_to(self.root)):
            raise jinja2.TemplateNotFound(template)
        try:
            source = real.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise jinja2.TemplateNotFound(template) from None
        return source, str(real), lambda: True

    def list_templates(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = []
        for path in self.root.rglob("*.j2"):
            relative = path.relative_to(self.root)
            if any(part.startswith(".") for part in relative.parts):
                continue  # hidden: never read, so never suggested
            if not path.resolve().is_relative_to(self.root):
                continue  # a link out of the folder: never read either
            names.append(str(relative).removesuffix(".j2"))
        return sorted(names)


#: Most characters (or items) any value built inside a template may have.
_MAX_SIZE = 100_000
#: Most Python lines a render with loops may run (about a second of work).
_MAX_STEPS = 2_000_000
# Loops, and macros (which may call themselves), are what can make a render run long.
_LOOP = re.compile(r"\{%[-+]?\s*(for|macro|call)\b")
_FORMAT_SPEC = re.compile(r"%[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?")
# String methods that can build huge values from small inputs; filters do the same
# jobs with bounds (center, join, format, indent).
# (translate multiplies like replace; encode would make bytes, whose methods are unbounded)
_UNSAFE_STR_METHODS = frozenset(
    {
        "center",
        "ljust",
        "rjust",
        "zfill",
        "expandtabs",
        "join",
        "format",
        "format_map",
        "translate",
        "maketrans",
        "encode",
    }
)
#: Largest integer a template may compute (about 1200 digits): ``a * a`` and ``a ** 256``
#: grow a number's size much faster than its text shows.
_MAX_INT_BITS = 4000
# Filters that take a whole iterable (a generator too) and do not turn it into text:
# their value is not checked for printability (what they return is, where it is printed).
_ITERABLE_FILTERS = frozenset(
    {
        "attr",
        "batch",
        "count",
        "d",
        "default",
        "dictsort",
        "first",
        "groupby",
        "items",
        "join",
        "last",
        "length",
        "list",
        "map",
        "max",
        "min",
        "random",
        "reject",
        "rejectattr",
        "reverse",
        "select",
        "selectattr",
        "slice",
        "sort",
        "sum",
        "tojson",
        "unique",
    }
)


def _size(value: Any, budget: int = _MAX_SIZE) -> int:
    """About how many characters ``value`` prints as, counting no further than past
    ``budget`` (a list may hold one long string many times over)."""
    total = 0
    stack = [value]
    while stack and total <= budget:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 * len(item) + 2
            stack.extend(item)
        elif isinstance(item, dict):
            total += 4 * len(item) + 2
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += 8
    return total


def _check_size(value: Any, what: str) -> Any:
    if _size(value) > _MAX_SIZE:
        raise SecurityError(f"{what} would be larger than {_MAX_SIZE} characters or items")
    return value


def _check_printable(value: Any) -> None:
    """Refuse a value whose text would not be its content: a generator or a method prints
    its memory address (a new request on every run), an undefined name prints
    ``Undefined``. Plain data (text, numbers, lists, mappings of them) passes."""
    if isinstance(value, str):
        return
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (str, int, float, type(None), range)):
            continue
        if isinstance(item, jinja2.Undefined):
            item._fail_with_undefined_error()
        if isinstance(item, (list, tuple, KeysView, ValuesView, ItemsView)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, jinja2.utils.Namespace):
            stack.extend(object.__getattribute__(item, "_Namespace__attrs").values())
        elif callable(item):
            raise SecurityError("cannot print a function or macro; call it: {{ name(...) }}")
        elif isinstance(item, Iterator):
            raise RenderError(
                "prints a generator, whose text is its memory address (a new request on every run)",
                "make it a list or text: add |list, or |join(', ')",
            )
        else:
            raise RenderError(
                f"prints a {type(item).__name__} object, whose text is not its content "
                "(it may differ on every run)",
                "print text or numbers, e.g. one of its attributes",
            )


def _check_format(spec: str) -> None:
    for width, precision in _FORMAT_SPEC.findall(spec):
        for number in (width, precision):
            if number == "*" or (number and int(number) > _MAX_SIZE):
                raise SecurityError("a %-format width or precision that large")


class _CodeGenerator(jinja2.compiler.CodeGenerator):
    """Jinja's compiler, but ``a ~ b`` calls the environment (bounded) instead of
    joining directly: the sandbox intercepts operators, and ``~`` is not one."""

    def visit_Concat(self, node: jinja2.nodes.Concat, frame: jinja2.compiler.Frame) -> None:
        self.write("environment.concat_values((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _bounded_concat(parts: Any) -> str:
    """Join a block's output (``{% set x %}…{% endset %}``, a macro's body) — each
    piece was printed, so bounded, but a thousand of them are not."""
    pieces: list[str] = []
    total = 0
    for piece in parts:
        total += len(piece)
        if total > _MAX_SIZE:
            raise SecurityError(f"a block's output larger than {_MAX_SIZE} characters")
        pieces.append(piece)
    return "".join(pieces)


class _Sandbox(sandbox.ImmutableSandboxedEnvironment):
    """Jinja's sandbox, also bounded in the size of what a template can build.

    Jinja's sandbox stops access to unsafe attributes but not a template that
    builds a gigabyte string from a few characters (``'x'|center(10**9)``); every
    operator, call and filter that can grow a value is checked here before it runs.
    It is the immutable sandbox: ``list.append``/``extend`` and ``dict.update`` would
    grow a value with no operator to check.
    """

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator
    concat = staticmethod(_bounded_concat)

    def handle_exception(self, source: str | None = None) -> NoReturn:
        """A template's error, raised as it is. Jinja's own rewrites the traceback into
        fake frames whose globals hold the error itself: a reference cycle that kept the
        template's locals (lists it built, possibly large) alive until a full garbage
        collection, and every shot is rendered, failures or not, so they piled up (60
        failing shots took 1.7 GB). No one reads these tracebacks: a failure becomes a
        RenderError's message."""
        raise

    def __init__(self, **options: Any) -> None:
        # Every value printed is measured before it becomes text.
        super().__init__(finalize=_finalize, **options)
        self.globals["namespace"] = _BoundedNamespace
        # A request must render the same on every run, or its fingerprint changes and
        # make-style reruns would pay again: nothing random.
        self.globals["lipsum"] = _not_deterministic("lipsum()")
        self.filters.update(
            center=_bounded_center,
            join=_bounded_join,
            format=_bounded_format,
            indent=_bounded_indent,
            replace=_bounded_replace,
            string=_sized_filter(self.filters["string"]),
            pprint=_sized_filter(self.filters["pprint"]),
            tojson=_bounded_tojson(self.filters["tojson"]),
            sum=_bounded_sum,
            random=_not_deterministic("the random filter"),
            wordwrap=_bounded_wordwrap,
            batch=_bounded_batch,
            slice=_bounded_slice,
            urlize=_refused("the urlize filter (a prompt has no links)"),
        )
        # Every filter: its value and arguments must print as what they are, and what it
        # returns is measured (|urlencode triples its input, and filters chain).
        self.filters = {name: _guarded(name, f) for name, f in self.filters.items()}

    def concat_values(self, parts: tuple[Any, ...]) -> str:
        """``a ~ b ~ c``: each part as text, bounded like ``+`` (13 doublings of
        ``a ~ a`` built 819 MB before this)."""
        texts: list[str] = []
        total = 0
        for part in parts:
            if not isinstance(part, str):
                _check_size(part, "a part of ~")
                _check_printable(part)
                part = str(part)  # an undefined name raises here
            total += len(part)
            if total > _MAX_SIZE:
                raise SecurityError(f"~ would build a string longer than {_MAX_SIZE} characters")
            texts.append(part)
        return "".join(texts)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Jinja hands out str.format before it asks is_safe_attribute; ask first.
        if isinstance(obj, str) and attribute in _UNSAFE_STR_METHODS:
            return self.unsafe_undefined(obj, attribute)
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call(
        __self,
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        for arg in (*args, *kwargs.values()):
            _check_size(arg, "an argument")
        if getattr(__obj, "__name__", None) == "replace" and isinstance(
            getattr(__obj, "__self__", None), str
        ):
            plain = {k: v for k, v in kwargs.items() if k not in ("_loop_vars", "_block_vars")}
            return _bounded_replace(__obj.__self__, *args, **plain)
        return _check_size(super().call(__context, __obj, *args, **kwargs), "a result")

    def call_binop(
        self, context: jinja2.runtime.Context, operator_: str, left: Any, right: Any
    ) -> Any:
        if operator_ == "**":
            if isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is too large")
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                _check_int_bits(left.bit_length() * right)
            return operator.pow(left, right)
        if operator_ == "%":
            if isinstance(left, str):
                _check_format(left)
                _check_size(right, "a %-format argument")
                _check_printable(right)
                return _check_size(left % right, "a %-formatted string")
            return operator.mod(left, right)
        if operator_ == "*" and isinstance(left, int) and isinstance(right, int):
            _check_int_bits(left.bit_length() + right.bit_length())
        if operator_ == "+":
            if _size(left) + _size(right) > _MAX_SIZE:
                raise SecurityError(f"a value larger than {_MAX_SIZE} characters or items")
            return operator.add(left, right)
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, (str, list, tuple))
                and isinstance(times, int)
                and len(seq) * times > _MAX_REPEAT
            ):
                raise SecurityError("repeating a sequence that many times")
        return operator.mul(left, right)


def _check_int_bits(bits: int) -> None:
    if bits > _MAX_INT_BITS:
        raise SecurityError(f"a number with more than {_MAX_INT_BITS * 3 // 10} digits")


def _guarded(name: str, inner: Callable[..., Any]) -> Callable[..., Any]:
    """Filter ``name``, refusing unprintable values (unless it consumes iterables) and
    results larger than the size bound."""
    pass_arg = getattr(inner, "jinja_pass_arg", None)
    check_values = name not in _ITERABLE_FILTERS

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if check_values:  # each is read as text: measure it before it becomes text
            for arg in (*(args[1:] if pass_arg is not None else args), *kwargs.values()):
                _check_size(arg, f"the value of |{name}")
                _check_printable(arg)
        result = inner(*args, **kwargs)
        if isinstance(result, str):
            _check_size(result, f"the result of |{name}")
        elif name == "map" and isinstance(result, Iterator):
            result = _bounded_items(result)
        return result

    if pass_arg is not None:
        guarded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return guarded


def _bounded_items(items: Any) -> Any:
    """``|map``'s results, stopped once they add up past the size bound
    (``[a] * 99999|map('upper')|list`` would hold 10 GB)."""
    total = 0
    for item in items:
        total += _size(item)
        if total > _MAX_SIZE:
            raise SecurityError(f"map() results larger than {_MAX_SIZE} characters or items")
        yield item


def _refused(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SecurityError(f"{what} is not available")

    return refuse


class _BoundedNamespace(jinja2.utils.Namespace):
    """``namespace()``, whose attributes cannot grow past the size bound."""

    def __setitem__(self, name: str, value: Any) -> None:
        _check_size(value, f"namespace attribute {name!r}")
        super().__setitem__(name, value)


def _sized_filter(inner: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that turns a whole value into text: measure the value first."""

    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_size(value, "the value")
        return inner(value, *args, **kwargs)

    bounded.__wrapped__ = inner  # type: ignore[attr-defined]
    return bounded


def _bounded_tojson(inner: Callable[..., Any]) -> Callable[..., Any]:
    def tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Any:
        if indent is not None and not 0 <= int(indent) <= 16:
            raise SecurityError("tojson() indent must be from 0 to 16")
        _check_size(value, "the value")
        return inner(eval_ctx, value, indent)

    return jinja2.pass_eval_context(tojson)


def _not_deterministic(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SecurityError(
            f"{what} is not available: a shot must render the same request on every run "
            "(use takes: for variations)"
        )

    return refuse


def _finalize(value: Any) -> Any:
    """What ``{{ ... }}`` prints: never "None", an address, "Undefined" or a huge value."""
    if value is None:
        raise RenderError(
            "prints an empty value (it would read 'None' in the prompt)",
            "shot.take is set only on shots with takes, and `~` in vars is empty: "
            "write {{ x or '' }} or {% if x %}...{% endif %}",
        )
    _check_size(value, "a printed value")
    if not isinstance(value, (str, jinja2.Undefined)):  # a bare undefined raises as it prints
        _check_printable(value)
    return value


@jinja2.pass_environment
def _bounded_sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = list(iterable)
    # sum() of sequences copies the running total for every item (quadratic time).
    if isinstance(start, (list, tuple, str)) and _size([start, *items]) > _MAX_SIZE:
        raise SecurityError(f"sum() result larger than {_MAX_SIZE} characters or items")
    return jinja2.filters.sync_do_sum(environment, items, attribute, start)


def _bounded_center(value: Any, width: int = 80) -> str:
    if int(width) > _MAX_SIZE:
        raise SecurityError(f"center() wider than {_MAX_SIZE}")
    return str(value).center(int(width))


def _bounded_join(value: Any, d: str = "", attribute: Any = None) -> str:
    _check_printable(d)
    separator = str(d)
    items: list[str] = []
    total = 0
    for item in value:  # counted as it goes: the items may come from a generator
        if not isinstance(item, str):
            _check_size(item, "a joined item")
            _check_printable(item)
        text = str(item)
        total += len(text) + (len(separator) if items else 0)
        if total > _MAX_SIZE:
            raise SecurityError(f"join() result larger than {_MAX_SIZE} characters")
        items.append(text)
    return separator.join(items)


def _bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_format(str(value))
    _check_size([args, kwargs], "the format() arguments")
    return str(_check_size(jinja2.filters.do_format(value, *args, **kwargs), "format()"))


@jinja2.pass_environment
def _bounded_wordwrap(
    environment: Any,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = str(s)
    wrap = environment.newline_sequence if wrapstring is None else str(wrapstring)
    # at worst a line per character, each ended by the wrap string
    if len(text) + (len(text) + 1) * len(wrap) > _MAX_SIZE:
        raise SecurityError(f"wordwrap() result could be larger than {_MAX_SIZE} characters")
    return jinja2.filters.do_wordwrap(
        environment, text, width, break_long_words, wrapstring, break_on_hyphens
    )


def _bounded_batch(value: Any, linecount: Any, fill_with: Any = None) -> Any:
    if int(linecount) > _MAX_SIZE:  # the last batch is filled up to linecount items
        raise SecurityError(f"batch() of more than {_MAX_SIZE} items")
    return jinja2.filters.do_batch(value, linecount, fill_with)


def _bounded_slice(value: Any, slices: Any, fill_with: Any = None) -> Any:
    if int(slices) > _MAX_SIZE:
        raise SecurityError(f"slice() into more than {_MAX_SIZE} slices")
    return jinja2.filters.sync_do_slice(value, slices, fill_with)


def _bounded_indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> str:
    pad = len(width) if isinstance(width, str) else int(width)
    if pad * (str(s).count("\n") + 1) + len(str(s)) > _MAX_SIZE:
        raise SecurityError(f"indent() result larger than {_MAX_SIZE} characters")
    return jinja2.filters.do_indent(str(s), width, first, blank)


def _bounded_replace(s: Any, old: Any, new: Any, count: Any = None) -> str:
    text, old_s, new_s = str(s), str(old), str(new)
    hits = text.count(old_s) if old_s else len(text) + 1
    if count is not None:
        hits = min(hits, int(count))
    if len(text) + hits * len(new_s) > _MAX_SIZE:
        raise SecurityError(f"replace() result larger than {_MAX_SIZE} characters")
    return text.replace(old_s, new_s, -1 if count is None else int(count))


class _StepBudget:
    """Stops a render that runs too long: a line counter hooked in with sys.settrace.

    Only renders whose templates contain a ``for`` loop are traced (nothing else in
    Jinja can loop; recursion is bounded by Python), so plain prompts cost nothing.
    """

    def __init__(self, limit: int) -> None:
        self.left = limit

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self.left -= 1
            if self.left < 0:
                raise SecurityError("the template runs too long (a loop of loops?)")
        return self


class TemplateEnv:
    """The Jinja environment of one storyboard, with a cache of compiled strings."""

    def __init__(self, templates: Mapping[str, str], folder: Path | None) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.DictLoader(dict(templates))]
        #: Set when the templates folder may not be read (it leads outside).
        self.folder_problem: str | None = None
        if folder is not None and folder.exists() and _FolderLoader.outside(folder):
            self.folder_problem = (
                f"{folder.name}/ leads outside the storyboard's folder; refusing to read it"
            )
            folder = None
        self.folder_loader = _FolderLoader(folder) if folder is not None else None
        if self.folder_loader is not None:
            loaders.append(self.folder_loader)
        self.env = _Sandbox(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            auto_reload=False,
            cache_size=-1,
        )
        self.template_names = sorted(templates)
        self._compiled: dict[str, jinja2.Template] = {}
        sources = list(templates.values())
        if self.folder_loader is not None:
            for name in self.folder_loader.list_templates():
                with contextlib.suppress(jinja2.TemplateNotFound, OSError, UnicodeDecodeError):
                    sources.append(self.folder_loader.get_source(self.env, name)[0])
        # Only templates with a for loop can run long; only those pay for a step budget.
        self._loops = any(_LOOP.search(source) for source in sources)

    def known_templates(self) -> list[str]:
        names = list(self.template_names)
        if self.folder_loader is not None:
            names.extend(self.folder_loader.list_templates())
        return names

    def check_syntax(self, source: str, name: str | None = None) -> None:
        """Raise RenderError when ``source`` is not valid Jinja."""
        try:
            self.env.parse(source, name=name)
        except jinja2.TemplateSyntaxError as exc:
            raise _syntax_error(exc) from None

    def render(self, source: str, variables: Mapping[str, Any]) -> str:
        """Render one string. Text without Jinja markup is returned as it is."""
        if "{" not in source:
            return source
        template = self._compiled.get(source)
        try:
            if template is None:
                template = self.env.from_string(source)
                self._compiled[source] = template
            if self._loops or _LOOP.search(source):
                previous = sys.gettrace()
                sys.settrace(_StepBudget(_MAX_STEPS))
                try:
                    return _collect(template, variables)
                finally:
                    sys.settrace(previous)
            return _collect(template, variables)
        except RenderError:
            raise
        except Exception as exc:  # any error raised by the template or its code
            error = self._render_error(exc, variables)
        raise error

    def _render_error(self, exc: Exception, variables: Mapping[str, Any]) -> RenderError:
        """What a template's failure means, said for the storyboard's author."""
        if isinstance(exc, jinja2.TemplateSyntaxError):
            return _syntax_error(exc)
        if isinstance(exc, jinja2.UndefinedError):
            return _undefined_error(exc, variables)
        if isinstance(exc, jinja2.TemplateNotFound):
            known = self.known_templates()
            hint = suggest(str(exc.name), known) or (
                "templates: " + ", ".join(known)
                if known
                else "define it under templates:, or as templates/NAME.j2 beside the storyboard"
            )
            return RenderError(f"no template named '{exc.name}'", hint)
        if isinstance(exc, SecurityError):
            return RenderError(f"not allowed in the template sandbox: {exc}")
        if isinstance(exc, _ShotRefError):
            return RenderError(exc.message, exc.hint)
        return RenderError(f"template error: {type(exc).__name__}: {exc}")


def _collect(template: jinja2.Template, variables: Mapping[str, Any]) -> str:
    out: list[str] = []
    size = 0
    for piece in template.generate(variables):
        out.append(piece)
        size += len(piece)
        if size > MAX_OUTPUT:
            raise RenderError(
                f"renders to more than {MAX_OUTPUT} characters",
                "the endpoint takes at most 5000 characters; check loops and includes",
            )
    text = "".join(out)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RenderError(
            "renders a character that is not valid Unicode text (a lone surrogate)",
            r"check escapes such as '\ud800' in the template",
        ) from None
    return text


class _ShotRefError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def make_ref(references: list[str], urls: list[str]) -> Callable[[str], str]:
    """``ref(name)`` → ``@ImageN``: N is the 1-based place of ``name`` (an asset
    name or the URL itself) in the shot's ``reference_image_urls``."""

    def ref(name: object) -> str:
        _check_printable(name)  # its text would be compared, and echoed in an error
        text = str(name)
        if not references:
            raise _ShotRefError(
                f"ref('{text}'): this shot has no reference_image_urls",
                "ref() names a reference image; add reference_image_urls to the shot",
            )
        for index, (written, url) in enumerate(zip(references, urls, strict=True), 1):
            if text in (written, url):
                return f"@Image{index}"
        raise _ShotRefError(
            f"ref('{text}'): '{text}' is not one of this shot's reference images",
            "its reference_image_urls are: " + ", ".join(references),
        )

    return ref


def _syntax_error(exc: jinja2.TemplateSyntaxError) -> RenderError:
    where = f" (template '{exc.name}', line {exc.lineno})" if exc.name else ""
    if not exc.name and exc.lineno and exc.lineno > 1:
        where = f" (line {exc.lineno} of the template)"
    return RenderError(f"Jinja syntax error: {exc.message}{where}")


def _undefined_error(exc: jinja2.UndefinedError, variables: Mapping[str, Any]) -> RenderError:
    text = str(exc.message or exc)
    name = text.split("'")[1] if text.count("'") >= 2 else None
    if name and text.endswith("is undefined"):
        known = sorted(k for k in variables if k not in ("ref", "shot"))
        hint = suggest(name, known) or None
        if hint is None:
            hint = "define it under vars: (in the storyboard or the shot)"
            if known:
                hint += "; defined: " + ", ".join(known)
        return RenderError(f"undefined name '{name}'", hint)
    return RenderError(f"undefined value: {text}")
