"""skyplug/core names no format, site type, engine, publisher or catalogue: plugins own them.

The test walks the syntax tree of every core module: imports, string constants (docstrings aside),
attributes, definitions, arguments and keywords. A new use of one of the words below in core code is
a plugin's concern leaking into the core; a generic use goes into ``GENERIC`` with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import skyplug.core

CORE = Path(skyplug.core.__file__).parent

WORDS = {
    "site type or its options": {
        "s3", "sky", "local", "endpoint", "bucket", "region", "profile", "addressing",
        "egress_per_gb", "storage_per_gb_month", "client_site",
    },
    "format": {"ms", "fits", "hdf5", "h5parm", "npy", "casacore", "python-casacore", "h5py", "astropy"},
    "engine": {"lithops", "dask", "distributed"},
    "publisher or catalogue": {"catalog", "catalogue", "obscore", "tap", "adql", "sparql", "virtuoso"},
}  # fmt: skip
# Packages the core may not import: plugins, the catalogue, and what only a plugin needs.
IMPORTS = (
    "skyplug.plugins", "skyplug.catalog", "casacore", "h5py", "astropy", "lithops", "dask",
    "distributed", "boto3", "botocore", "sqlglot", "psycopg",
)  # fmt: skip
# (module, word, enclosing class or function): generic uses of one of the words, and why
GENERIC = {
    ("config.py", "endpoint", ""): "a word that makes a key name where a secret is, not a secret",
    ("provenance.py", "sky", "to_document"): "the PROV namespace prefix of skyplug's own terms",
    ("uri.py", "bucket", "URI"): "a URI's first path component, whatever its scheme",
    ("engine.py", "local", ""): "the default engine's name (--engine's default)",
    ("plugins.py", "import skyplug.plugins", ""): "the logger of the plugin machinery",
    ("plugins.py", "import skyplug.plugins", "_builtins"): "the package that lists the built-ins",
}


def _uses(path: Path) -> list[tuple[str, str, int]]:
    """(word, enclosing def, line) of each use of a watched word, or an import of a watched package."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    watched = set().union(*WORDS.values())
    scopes = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, where: str) -> None:
        names: list[str] = []
        modules: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            names.append(node.value)
            modules.append(node.value)  # importlib.import_module("skyplug.plugins...") too
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
        elif isinstance(node, scopes):
            names.append(node.name)
        elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
            names.append(node.arg)  # type: ignore[arg-type]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.append(node.module)
        line = getattr(node, "lineno", 0)
        found.extend((n, where, line) for n in names if n.lower() in watched)
        found.extend(
            (f"import {m}", where, line)
            for m in modules
            if any(m == p or m.startswith(p + ".") for p in IMPORTS)
        )
        inner = node.name if isinstance(node, scopes) else where
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, "")
    return found


def test_core_names_no_plugin_concern() -> None:
    bad = [
        f"{path.name}:{line}: {word!r} (in {where or 'module'})"
        for path in sorted(CORE.glob("*.py"))
        for word, where, line in _uses(path)
        if (path.name, word.lower(), where) not in GENERIC
    ]
    assert not bad, "skyplug/core names what plugins own:\n" + "\n".join(bad)


def test_the_walker_sees_every_kind_of_use(tmp_path: Path) -> None:
    """The test would catch each way a name can leak in (so that a pass means something)."""
    src = tmp_path / "leaky.py"
    src.write_text(
        '"""A docstring may say s3 and fits."""\n'
        "import casacore.tables\n"
        "from skyplug.plugins.formats import fits\n"
        "def f(endpoint=None, *, dask=1):\n"
        "    x.bucket = 'lithops'\n"
        "    g(region=2)\n"
        "    importlib.import_module('skyplug.catalog.db')\n"
        "class Sky:\n"
        "    client_site: str\n"
    )
    words = sorted({w.lower() for w, _, _ in _uses(src)})
    assert words == sorted(
        [
            "bucket",
            "client_site",
            "dask",
            "endpoint",
            "import casacore.tables",
            "import lithops",
            "import skyplug.catalog.db",
            "import skyplug.plugins.formats",
            "lithops",
            "region",
            "sky",
        ]
    )
