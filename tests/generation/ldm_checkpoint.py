"""Write a diffusers Stable Diffusion pipeline as an LDM / Lightning ``.ckpt`` (the layout of FreestyleNet's files).

Our own diffusers -> LDM key converter, the inverse of the renames diffusers' ``from_single_file`` applies
(``single_file_utils.convert_ldm_{unet,vae,clip}_checkpoint``), for SD-v1-shaped models of any depth, including up
blocks with attention (which diffusers' reference script mishandles). The top-level renames come from diffusers' own
``DIFFUSERS_TO_LDM_MAPPING`` table; the block renames follow LDM's layout: ``input_blocks.{i}`` with i counting the
resnet/attention pairs and downsamplers of every level, ``middle_block.{0,1,2}``, ``output_blocks.{i}`` with the
upsampler after the attention. CLIP keys get back the ``text_model.`` level that transformers >= 5.6 flattens away.
"""

import re
from typing import Dict

import torch

_UNET_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)
_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _rename_first(rest: str, table) -> str:
    for new, old in table:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def _top_level(state: Dict[str, torch.Tensor], table: Dict[str, str]):
    """(the renamed entries of diffusers' own top-level table, the other entries)."""
    return {table[k]: v for k, v in state.items() if k in table}, [(k, v) for k, v in state.items() if k not in table]


def unet_to_ldm(state: Dict[str, torch.Tensor], layers_per_block: int) -> Dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    up_has_attention = {int(m.group(1)) for k in state for m in [re.match(r"up_blocks\.(\d+)\.attentions", k)] if m}
    out, rest_items = _top_level(state, DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"])
    for key, value in rest_items:
        m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.*)", key)
        if m:
            side, block, kind, layer, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
            if side == "down":
                base = 1 + block * (layers_per_block + 1)
                if kind == "downsamplers":
                    out[f"input_blocks.{base + layers_per_block}.0.op.{rest.split('.', 1)[1]}"] = value
                    continue
                prefix = f"input_blocks.{base + layer}.{0 if kind == 'resnets' else 1}"
            else:
                base = block * (layers_per_block + 1)
                if kind == "upsamplers":
                    slot = 2 if block in up_has_attention else 1
                    out[f"output_blocks.{base + layers_per_block}.{slot}.{rest}"] = value
                    continue
                prefix = f"output_blocks.{base + layer}.{0 if kind == 'resnets' else 1}"
            out[f"{prefix}.{_rename_first(rest, _UNET_RESNET) if kind == 'resnets' else rest}"] = value
            continue
        m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if not m:
            raise KeyError(f"no LDM name for UNet key {key}")
        kind, index, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind == "resnets":
            out[f"middle_block.{2 * index}.{_rename_first(rest, _UNET_RESNET)}"] = value
        else:
            out[f"middle_block.1.{rest}"] = value
    return out


def vae_to_ldm(state: Dict[str, torch.Tensor], num_blocks: int) -> Dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    out, rest_items = _top_level(state, DIFFUSERS_TO_LDM_MAPPING["vae"])
    for key, value in rest_items:
        m = re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.*)", key)
        if m:
            part, side, block, kind, layer, rest = m.groups()
            ldm_block = int(block) if side == "down" else num_blocks - 1 - int(block)
            rest = rest.replace("conv_shortcut", "nin_shortcut")
            if kind == "resnets":
                out[f"{part}.{side}.{ldm_block}.block.{layer}.{rest}"] = value
            else:
                out[f"{part}.{side}.{ldm_block}.{'downsample' if side == 'down' else 'upsample'}.{rest}"] = value
            continue
        m = re.match(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if not m:
            raise KeyError(f"no LDM name for VAE key {key}")
        part, kind, index, rest = m.groups()
        if kind == "resnets":
            out[f"{part}.mid.block_{int(index) + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"] = value
        else:
            # LDM's attention projections are 1x1 convolutions.
            name = _rename_first(rest, _VAE_ATTENTION)
            out[f"{part}.mid.attn_1.{name}"] = value[:, :, None, None] if value.dim() == 2 else value
    return out


def pipeline_to_ldm(pipe) -> Dict[str, torch.Tensor]:
    """The LDM state dict of a diffusers SD pipeline (UNet, VAE, CLIP text encoder)."""
    unet, vae = pipe.unet, pipe.vae
    state = {}
    ldm_unet = unet_to_ldm(unet.state_dict(), unet.config.layers_per_block)
    state.update({f"model.diffusion_model.{k}": v for k, v in ldm_unet.items()})
    ldm_vae = vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels))
    state.update({f"first_stage_model.{k}": v for k, v in ldm_vae.items()})
    for key, value in pipe.text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        state[f"cond_stage_model.transformer.{key}"] = value
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def write_lightning_ckpt(pipe, path: str) -> None:
    """A PyTorch-Lightning-style checkpoint of ``pipe``, as FreestyleNet's released files are laid out."""
    torch.save(
        {"state_dict": pipeline_to_ldm(pipe), "epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.5.9"}, path
    )
