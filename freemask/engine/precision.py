"""TensorFloat-32 for float32 training on Ampere and later GPUs (``SOLVER.ALLOW_TF32``), set once at trainer start.

Why: torch leaves cuBLAS matmuls in full float32 by default (cuDNN convolutions already use TF32), so an fp32 run of
Mask2Former spends its pixel decoder's linear layers (about 125 GFLOP per encoder layer forward at 512x512, batch 16)
on the float32 CUDA cores, several times slower than the tensor cores TF32 uses. TF32 rounds the inputs of those
products to 10 mantissa bits and accumulates in float32; its effect on the loss curve is measured by
``bench/gpu_check.sh``. The legacy ``allow_tf32`` flags are the ones set: torch refuses a mix of those and the newer
``fp32_precision`` settings, and the flags are what libraries read.
"""

import logging

import torch

logger = logging.getLogger(__name__)

TF32_MIN_CAPABILITY = (8, 0)


def tf32_choice(allow: bool, device: str) -> tuple[bool, str]:
    """``(on, why)`` for ``SOLVER.ALLOW_TF32 = allow`` on ``device`` (``MODEL.DEVICE``); reads the GPU's capability."""
    if torch.device(device).type != "cuda":
        return False, f"MODEL.DEVICE is {device}; TF32 is a CUDA tensor-core format"
    if not allow:
        return False, "SOLVER.ALLOW_TF32 False: float32 matmuls and convolutions in full float32"
    capability = torch.cuda.get_device_capability(device)
    name = torch.cuda.get_device_name(device)
    if tuple(capability) < TF32_MIN_CAPABILITY:
        return False, f"{name} has compute capability {capability[0]}.{capability[1]}; TF32 needs 8.0 (Ampere) or later"
    return True, (
        f"SOLVER.ALLOW_TF32 True on {name}, compute capability {capability[0]}.{capability[1]}: float32 matmuls and "
        "convolutions use TensorFloat-32 (float32 accumulation)"
    )


def apply_tf32(allow: bool, device: str) -> bool:
    """Set cuBLAS and cuDNN TF32 as :func:`tf32_choice` decides, log ``TF32: on/off (why)``, return whether it is on.

    On a CUDA device both flags are written either way, so ``SOLVER.ALLOW_TF32 False`` also turns off the cuDNN TF32
    that torch enables by default; on the CPU nothing is touched.
    """
    on, why = tf32_choice(allow, device)
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    logger.info("TF32: %s (%s)", "on" if on else "off", why)
    return on
