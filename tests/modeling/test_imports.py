"""Import order of freemask.modeling: the op loads alone, and the builders may be imported first."""

import subprocess
import sys


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_the_op_imports_without_the_builders_or_the_model_zoo():
    loaded = _fresh(
        "import sys, freemask.modeling.ops, freemask.modeling.ops.ms_deform_attn_cuda\n"
        "print(sorted(m for m in sys.modules if m.startswith('freemask.modeling') or m == 'timm'))"
    )
    assert loaded.strip() == str(
        ["freemask.modeling", "freemask.modeling.ops", "freemask.modeling.ops.deform_attn",
         "freemask.modeling.ops.deform_attn_pytorch", "freemask.modeling.ops.ms_deform_attn_cuda"]
    )  # fmt: skip


def test_the_builders_may_come_first_and_the_package_names_register_every_built_in():
    """build.py imports none of the parts at load time (they import it for their registries)."""
    code = (
        "import freemask.modeling.build\n"
        "from freemask.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY\n"
        "print(len(list(BACKBONE_REGISTRY)), 'ViTBackbone' in BACKBONE_REGISTRY, 'SeMaskFPN' in META_ARCH_REGISTRY)"
    )
    count, vit, semask = _fresh(code).split()
    assert int(count) >= 4 and vit == semask == "True"
