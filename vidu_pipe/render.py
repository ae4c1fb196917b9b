"""Render: Jinja templates → the strings of a shot.

One sandboxed environment per storyboard, with ``StrictUndefined`` (an unknown
name is an error, never an empty string), the storyboard's ``templates:``
mapping and the ``.j2`` files of a ``templates/`` folder beside it (nothing
outside that folder can be reached, symlinks included). The sandbox also
intercepts ``*`` and ``**`` so that ``{{ 'x' * 10**9 }}`` is refused instead of
eating the machine, and rendering stops as soon as the output is longer than
any prompt can be.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nodes
from jinja2 import sandbox
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path

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
    """``.j2`` files under one folder, by name with or without the ``.j2``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        for name in (template, template + ".j2"):
            pieces = split_template_path(name)  # refuses '..'
            try:
                real = self.root.joinpath(*pieces).resolve(strict=True)
            except OSError:
                continue
            # A symlink may point anywhere; only files really inside the folder count.
            if real.is_file() and real.is_relative_to(self.root):
                source = real.read_text(encoding="utf-8")
                return source, str(real), lambda: True
        raise jinja2.TemplateNotFound(template)

    def list_templates(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root)).removesuffix(".j2") for p in self.root.rglob("*.j2")
        )


class _Sandbox(sandbox.SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator_: str, left: Any, right: Any
    ) -> Any:
        if operator_ == "**":
            if isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is too large")
            return operator.pow(left, right)
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, (str, list, tuple))
                and isinstance(times, int)
                and len(seq) * times > _MAX_REPEAT
            ):
                raise SecurityError("repeating a sequence that many times")
        return operator.mul(left, right)


class TemplateEnv:
    """The Jinja environment of one storyboard, with a cache of compiled strings."""

    def __init__(self, templates: Mapping[str, str], folder: Path | None) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.DictLoader(dict(templates))]
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
            return "".join(out)
        except RenderError:
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise _syntax_error(exc) from None
        except jinja2.UndefinedError as exc:
            raise _undefined_error(exc, variables) from None
        except jinja2.TemplateNotFound as exc:
            known = self.known_templates()
            near = difflib.get_close_matches(str(exc.name), known, n=1)
            hint = (
                f"did you mean '{near[0]}'?"
                if near
                else (
                    "templates: " + ", ".join(known)
                    if known
                    else "define it under templates:, or as templates/NAME.j2 beside the storyboard"
                )
            )
            raise RenderError(f"no template named '{exc.name}'", hint) from None
        except SecurityError as exc:
            raise RenderError(f"not allowed in the template sandbox: {exc}") from None
        except _ShotRefError as exc:
            raise RenderError(exc.message, exc.hint) from None
        except Exception as exc:  # any other error raised by template code
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from None


class _ShotRefError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def make_ref(references: list[str], urls: list[str]) -> Callable[[str], str]:
    """``ref(name)`` → ``@ImageN``: N is the 1-based place of ``name`` (an asset
    name or the URL itself) in the shot's ``reference_image_urls``."""

    def ref(name: object) -> str:
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
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{near[0]}'?" if near else None
        if hint is None:
            hint = "define it under vars: (in the storyboard or the shot)"
            if known:
                hint += "; defined: " + ", ".join(known)
        return RenderError(f"undefined name '{name}'", hint)
    return RenderError(f"undefined value: {text}")
