"""shared/ is imported by every environment, the light evaluator included: it must not pull torch in at import."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import shared

ROOT = Path(__file__).resolve().parents[3]


def test_shared_modules_import_without_torch():
    names = [f"shared.{m.name}" for m in pkgutil.iter_modules(shared.__path__)]
    assert "shared.config" in names
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "heavy = [m for m in ('torch', 'transformers', 'services') if m in sys.modules]\n"
        "assert not heavy, f'shared imports {heavy} at module level'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_shared_never_imports_services():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "shared").rglob("*.py")
        if "import services" in p.read_text() or "from services" in p.read_text()
    ]
    assert offenders == []
