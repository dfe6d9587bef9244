"""sqlfluff's stand-in for the dbt package namespace ``etl_platform``: the domains' models call the
platform's macros as ``etl_platform.<macro>(...)``, and sqlfluff's Jinja templater (which loads the
macros of .sqlfluff's load_macros_from_path into one flat namespace) has no packages. Each attribute
of this module calls the macro of that name from the template's own context."""

from __future__ import annotations

from typing import Any

import jinja2


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)

    @jinja2.pass_context
    def call(context: Any, *args: Any, **kwargs: Any) -> Any:
        macro = context.get(name)
        if macro is None:
            raise jinja2.UndefinedError(f"etl_platform has no macro {name}")
        # through the environment, which ends a dbt return() at this macro's boundary; a direct call
        # would let it unwind to the calling macro, which would then return this macro's value
        return context.environment.call(context, macro, *args, **kwargs)

    return call
