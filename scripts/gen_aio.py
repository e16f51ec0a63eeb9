"""Generate agentkeep/_aio_resources.py: the typed async twins of the entity stores.

Every operation is written once, in the sync store; this script derives the
awaitable methods with the same signatures, so editors and mypy see real
types: an operation made with ``store._steps.op`` (the message operations)
is awaited natively (``_aio_util.arun_op``: the same generator, driven by the
store's async connections); any other method runs in a worker thread. tests/test_generated.py fails when the file
is stale: run ``python scripts/gen_aio.py`` after changing a store method.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

from agentkeep.store._validate import UNSET
from agentkeep.store.store import Store

TARGET = Path(__file__).resolve().parent.parent / "agentkeep" / "_aio_resources.py"
SOURCES = [
    "builtins",
    "typing",
    "collections.abc",
    "pathlib",
    "datetime",
    "decimal",
    "agentkeep.models",
    "agentkeep.models.common",
    "agentkeep.store._validate",
]
_BARE_LIST = re.compile(r"(?<![.\w])list\[")
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def resources() -> list[tuple[str, type]]:
    """The (attribute, class) pairs that ``Store.__init__`` sets up."""
    names = re.findall(r"self\.(\w+) = (\w+)\(core, tenant_id\)", inspect.getsource(Store.__init__))
    mod = importlib.import_module("agentkeep.store.store")
    return [(attr, getattr(mod, cls)) for attr, cls in names]


def qualify(annotation: str) -> str:
    """``list[...]`` would name the generated class's own ``list`` method: spell the builtin."""
    return _BARE_LIST.sub("builtins.list[", annotation)


def find_origin(name: str, module: Any) -> str | None:
    if name in ("builtins", "None", "True", "False"):
        return "builtins"
    if isinstance(module.__dict__.get(name), types.ModuleType):
        return f"import:{name}"
    for source in SOURCES:
        m = importlib.import_module(source)
        if name in getattr(m, "__dict__", {}) and (source != "typing" or name[0].isupper()):
            return source
    if name in module.__dict__:
        return str(module.__name__)
    return None


def add_import(imports: dict[str, set[str]], origin: str | None, name: str) -> None:
    if origin is None or origin == "builtins":
        return
    if origin.startswith("import:"):
        imports.setdefault(origin[len("import:") :], set())
    else:
        imports.setdefault(origin, set()).add(name)


def render_default(value: Any) -> str:
    if value is UNSET:
        return "UNSET"
    return repr(value)


def main() -> None:
    imports: dict[str, set[str]] = {}
    classes: list[str] = []
    for attr, cls in resources():
        module = importlib.import_module(cls.__module__)
        imports.setdefault(cls.__module__, set()).add(cls.__name__)
        lines = [
            f"class Async{cls.__name__}:",
            f'    """Awaitable twin of ``store.{attr}`` (:class:`{cls.__module__}.{cls.__name__}`)."""',
            "",
            f"    def __init__(self, sync: {cls.__name__}) -> None:",
            "        self.sync = sync",
            "        self.tenant_id = sync.tenant_id",
        ]
        for name, fn in sorted(vars(cls).items()):
            if name.startswith("_") or not inspect.isfunction(fn):
                continue
            sig = inspect.signature(fn)
            params = []
            call = []
            seen_star = False
            for p in list(sig.parameters.values())[1:]:
                ann = qualify(str(p.annotation))
                text = f"{p.name}: {ann}" if p.annotation is not inspect.Parameter.empty else p.name
                for ident in _IDENT.findall(str(ann)):
                    origin = find_origin(ident, module)
                    add_import(imports, origin, ident)
                if p.default is not inspect.Parameter.empty:
                    text += f" = {render_default(p.default)}"
                    if p.default is UNSET:
                        imports.setdefault("agentkeep.store._validate", set()).add("UNSET")
                if p.kind is inspect.Parameter.KEYWORD_ONLY and not seen_star:
                    params.append("*")
                    seen_star = True
                if p.kind is inspect.Parameter.VAR_POSITIONAL:
                    text = "*" + text
                    seen_star = True
                if p.kind is inspect.Parameter.VAR_KEYWORD:
                    text = "**" + text
                params.append(text)
                if p.kind is inspect.Parameter.KEYWORD_ONLY:
                    call.append(f"{p.name}={p.name}")
                elif p.kind is inspect.Parameter.VAR_POSITIONAL:
                    call.append(f"*{p.name}")
                elif p.kind is inspect.Parameter.VAR_KEYWORD:
                    call.append(f"**{p.name}")
                else:
                    call.append(p.name)
            ret = qualify(str(sig.return_annotation))
            for ident in _IDENT.findall(ret):
                origin = find_origin(ident, module)
                add_import(imports, origin, ident)
            doc = (inspect.getdoc(fn) or "").splitlines()
            first = doc[0] if doc else f"``store.{attr}.{name}``, awaited."
            arglist = ", ".join(["self", *params])
            args = ", ".join(call)
            fn_ref = f"self.sync.{name}"
            lines.append("")
            if inspect.isgeneratorfunction(fn):
                ret = re.sub(
                    r"^(Iterator|Generator)\[(.*?)(, None, None)?\]$", r"AsyncIterator[\2]", ret
                )
                imports.setdefault("collections.abc", set()).add("AsyncIterator")
                body = f"        return aiter_thread(functools.partial({fn_ref}, {args}))"
                if "cancel" in sig.parameters:  # let the iterator end when the consumer stops
                    imports.setdefault("threading", set())
                    body = (
                        "        cancel = cancel if cancel is not None else threading.Event()\n"
                        f"        return aiter_thread(functools.partial({fn_ref}, {args}), cancel=cancel)"
                    )
                lines += [f"    def {name}({arglist}) -> {ret}:", f'        """{first}"""', body]
            elif hasattr(fn, "op"):  # an operation written once (store._steps): run natively
                ret = re.sub(r"^Op\[(.*)\]$", r"\1", ret)
                imports.setdefault("agentkeep._aio_util", set()).add("arun_op")
                lines += [
                    f"    async def {name}({arglist}) -> {ret}:",
                    f'        """{first}"""',
                    f"        return await arun_op({fn_ref}, {args})",
                ]
            else:
                lines += [
                    f"    async def {name}({arglist}) -> {ret}:",
                    f'        """{first}"""',
                    f"        return await asyncio.to_thread({fn_ref}, {args})",
                ]
        classes.append("\n".join(lines))
    imports.get("collections.abc", set()).discard("Iterator")
    header = [
        '"""Typed async twins of the entity stores. GENERATED by scripts/gen_aio.py: do not edit."""',
        "",
        "from __future__ import annotations",
        "",
        "import asyncio",
        "import builtins",
        "import functools",
        "",
        "from agentkeep._aio_util import aiter_thread",
    ]
    for mod in sorted(imports):
        if mod == "builtins":
            continue
        if not imports[mod]:
            header.append(f"import {mod}")
            continue
        header.append(f"from {mod} import {', '.join(sorted(imports[mod]))}")
    all_names = sorted(f"Async{cls.__name__}" for _, cls in resources())
    body = (
        "\n".join(header)
        + "\n\n__all__ = "
        + repr(all_names)
        + "\n\n\n"
        + "\n\n\n".join(classes)
        + "\n"
    )
    check = "--check" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / TARGET.name
        out.write_text(body)
        bin_dir = Path(sys.executable).parent
        config = ["--config", str(TARGET.parent.parent / "pyproject.toml")]
        subprocess.run([bin_dir / "ruff", "check", *config, "--fix", "-q", str(out)], check=False)
        subprocess.run([bin_dir / "ruff", "format", *config, "-q", str(out)], check=True)
        text = out.read_text()
    if check:
        if not TARGET.exists() or TARGET.read_text() != text:
            sys.exit(f"{TARGET} is stale: run python scripts/gen_aio.py")
        print(f"{TARGET} is up to date")
        return
    TARGET.write_text(text)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
