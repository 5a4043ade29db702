"""A Textual stylesheet that parses each piece of CSS once per process, rather than once per app and reparse.

Textual keeps parsed CSS per stylesheet, empties that cache when the theme's variables are set, and parses into a
fresh stylesheet on every reparse (a screen with CSS of its own, a theme change). The runs screen and a run view
(18 sources) asked for 85 parses of them, about 30 ms of CPU, in every app the process starts (each of the test
suite's Pilot apps), and again on each theme switched back to. Here parses are kept for the process, by source and
by the CSS variables (the theme) they were parsed with; Textual reads parsed rules and never changes them, and
already shares them between the parses of one stylesheet.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from textual.cache import LRUCache
from textual.css.model import RuleSet
from textual.css.stylesheet import Stylesheet
from textual.css.types import CSSLocation

_PARSE_PARAMETERS = ["self", "css", "read_from", "is_default_rules", "tie_breaker", "scope"]


def fits_this_textual() -> bool:
    """Whether the installed Textual's stylesheet has the private parts this class relies on, as in Textual 8.2 (the
    TUI allows any 8.x): where not, the app keeps Textual's own stylesheet and parses as Textual does."""
    return list(inspect.signature(Stylesheet._parse_rules).parameters) == _PARSE_PARAMETERS and all(
        hasattr(Stylesheet(), name) for name in ("_variables", "_invalid_css", "_rules_map", "_require_parse", "source")
    )


class SharedStylesheet(Stylesheet):
    _parsed: ClassVar[LRUCache[tuple[Any, ...], list[RuleSet]]] = LRUCache(2048)
    """Every instance's parses, by source and theme: about 20 entries per theme."""

    def __init__(self, *, variables: dict[str, str] | None = None) -> None:
        super().__init__(variables=variables)
        self._theme_key: tuple[tuple[str, str], ...] | None = None

    def set_variables(self, variables: dict[str, str]) -> None:
        super().set_variables(variables)
        self._theme_key = None

    def _parse_rules(
        self,
        css: str,
        read_from: CSSLocation,
        is_default_rules: bool = False,
        tie_breaker: int = 0,
        scope: str = "",
    ) -> list[RuleSet]:
        if self._theme_key is None:
            self._theme_key = tuple(sorted(self._variables.items()))
        key = (css, read_from, is_default_rules, tie_breaker, scope, self._theme_key)
        rules = self._parsed.get(key)
        if rules is None:
            rules = super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
            self._parsed.set(key, rules)
        return rules

    def reparse(self) -> None:
        """Textual's reparse (into a fresh stylesheet, so that an error leaves this one as it was), with this
        class's parses."""
        fresh = type(self)(variables=self._variables)
        for read_from, source in self.source.items():
            fresh.add_source(source.content, read_from=read_from, is_default_css=source.is_defaults,
                             tie_breaker=source.tie_breaker, scope=source.scope)  # fmt: skip
        try:
            fresh.parse()
        except Exception:
            self._invalid_css.update(fresh._invalid_css)
            raise
        self._rules = fresh.rules
        self._rules_map = None
        self.source = fresh.source
        self._require_parse = False
