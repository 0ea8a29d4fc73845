#!/usr/bin/env python
"""Images/s of tools/generate_syn.py's sampling design against a re-creation of FreestyleNet's, on one model.

    python bench/generate.py                          # CPU: the tiny random model, 64 px, 10 steps
    python bench/generate.py --real-size --steps 50   # GPU: Stable Diffusion 1.x shapes (random weights), 512 px

Both designs run the same UNet, VAE, CLIP text encoder, PLMS schedule, rectified cross-attention and initial noise:

- ours (the backend generate_syn.py uses): a batch of --batch-size layouts per call, classifier-free guidance
  batched into one UNet call (unconditional and conditional halves, the rectification an additive SDPA mask on the
  second), fp16 on GPU (--dtype), channels_last on GPU, optionally torch.compile (--compile);
- FreestyleNet's (scripts/LIS.py + plms.py, re-created): one layout at a time, float32 without autocast, two UNet
  passes per step (conditional with the rectification, unconditional without).

Timing alternates the two designs in rounds (so load from other jobs moves both) after one warm-up call each,
and prints a table, the ratio, the largest pixel difference between the two designs' first image (the same model
and noise: a check of the re-creation; 0-2 levels in float32, more in fp16), and the time ADE20K's 20,210 masks x
20 seeds would take on 8 GPUs at the measured seconds per image.
"""

import argparse
import copy
import time
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

ADE20K_MASKS, SEEDS, GPUS = 20210, 20, 8


def sd_v1_pipeline(size: int) -> Any:
    """A Stable Diffusion v1 shaped pipeline (UNet 320-640-1280-1280, 8 heads, 768-d context; the KL-f8 VAE; the
    CLIP ViT-L/14 text tower), random weights from seed 0: the compute of the real models without their files."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from freemask.generation.clip_vocab import load_clip_tokenizer
    from freemask.generation.diffusion import plms_scheduler
    from freemask.generation.offline import import_diffusers

    diffusers = import_diffusers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = diffusers.UNet2DConditionModel(sample_size=size // 8, cross_attention_dim=768, attention_head_dim=8)
        vae = diffusers.AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=size,
        )
        text = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=49407,
            )
        )
    schedule = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    return diffusers.StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text.eval(),
        tokenizer=load_clip_tokenizer(),
        unet=unet.eval(),
        scheduler=plms_scheduler(diffusers, {**schedule, "num_train_timesteps": 1000}),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def ours(pipe: Any, args: argparse.Namespace, device: str) -> Any:
    """Our backend over a copy of ``pipe`` moved to ``device`` in --dtype (the code generate_syn.py runs)."""
    from freemask.generation.diffusion import StableDiffusionBackend, speed_up
    from freemask.generation.rectified_attention import RectificationLayout, install_rectified_attention
    from freemask.generation.sampling_options import SamplingOptions

    options = SamplingOptions(args.steps, args.guidance, args.size, device, args.dtype, 255, args.compile)
    fast = speed_up(copy.deepcopy(pipe), options)
    layout = RectificationLayout()
    install_rectified_attention(fast.unet, layout)
    return StableDiffusionBackend("ours", fast, options, names=None, settings={}, layout=layout)


class FreestyleNetDesign:
    """FreestyleNet's sampling loop on ``pipe`` (float32, no autocast): per image, a conditional UNet pass with the
    rectification and an unconditional one without, combined as e_u + s (e_c - e_u), PLMS (PNDM, skip_prk_steps)."""

    def __init__(self, pipe: Any, args: argparse.Namespace, device: str) -> None:
        from freemask.generation.rectified_attention import RectificationLayout, install_rectified_attention

        self.pipe = copy.deepcopy(pipe).to(device=device, dtype=torch.float32)
        self.layout = RectificationLayout()
        install_rectified_attention(self.pipe.unet, self.layout)
        self.steps, self.guidance, self.device = args.steps, args.guidance, device

    @torch.inference_mode()
    def generate(self, requests: Sequence[Any], latents: torch.Tensor) -> List[np.ndarray]:
        from freemask.generation.captions import CaptionBuilder

        pipe, images = self.pipe, []
        builder = CaptionBuilder(requests[0].class_names, pipe.tokenizer)
        for request, latent in zip(requests, latents):
            caption = builder(request.labels)
            cond = pipe.text_encoder(torch.tensor([caption.input_ids], device=self.device))[0]
            uncond = pipe.text_encoder(torch.tensor([builder.empty().input_ids], device=self.device))[0]
            labels = torch.from_numpy(np.asarray(request.labels, dtype=np.int64))[None]
            tokens = torch.from_numpy(caption.token_labels())[None]
            scheduler = copy.deepcopy(pipe.scheduler)
            scheduler.set_timesteps(self.steps, device=self.device)
            x = latent[None].to(self.device) * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                self.layout.set(labels, tokens, tuple(x.shape[-2:]))
                e_c = pipe.unet(x, t, encoder_hidden_states=cond).sample
                self.layout.clear()
                e_u = pipe.unet(x, t, encoder_hidden_states=uncond).sample
                x = scheduler.step(e_u + self.guidance * (e_c - e_u), t, x).prev_sample
            decoded = pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample
            image = (decoded[0].permute(1, 2, 0).float().cpu().numpy() / 2 + 0.5).clip(0, 1)
            images.append((image * 255).round().astype(np.uint8))
        return images


def layouts(count: int, size: int, num_classes: int) -> List[np.ndarray]:
    """``count`` label maps of 4-8 rectangles each over ADE20K's classes (some pixels ignored), seeded."""
    rng = np.random.default_rng(0)
    maps = []
    for _ in range(count):
        labels = np.full((size, size), 255, np.int64)
        for _ in range(rng.integers(4, 9)):
            y, x = rng.integers(0, size, 2)
            h, w = rng.integers(size // 8, size // 2, 2)
            labels[y : y + h, x : x + w] = rng.integers(num_classes)
        maps.append(labels)
    return maps


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(designs: Dict[str, Any], requests: Sequence[Any], latents: torch.Tensor, args, device: str) -> Dict:
    """Seconds per image of each design: one warm-up batch, then --rounds alternating rounds of --batch-size."""
    batch = args.batch_size
    seconds = {name: 0.0 for name in designs}
    first = {}
    warm = slice(args.rounds * batch, (args.rounds + 1) * batch)  # the last chunk: not timed
    for name, design in designs.items():
        first[name] = design.generate(requests[warm], latents[warm])[0]
    for round_ in range(args.rounds):
        chunk = slice(round_ * batch, (round_ + 1) * batch)
        for name, design in designs.items():
            _sync(device)
            start = time.perf_counter()
            design.generate(requests[chunk], latents[chunk])
            _sync(device)
            seconds[name] += time.perf_counter() - start
    images = args.rounds * batch
    diff = int(np.abs(first["ours"].astype(int) - first["freestylenet"].astype(int)).max())
    return {"per_image": {n: s / images for n, s in seconds.items()}, "images": images, "max_diff": diff}


def table(result: Dict, args: argparse.Namespace, device: str, model: str) -> str:
    fsn, mine = result["per_image"]["freestylenet"], result["per_image"]["ours"]
    rows = [
        "| design | batch | dtype | UNet calls per step | s / image | images/s | vs FreestyleNet |",
        "|---|---:|---|---:|---:|---:|---:|",
        f"| FreestyleNet (re-created) | 1 | float32 | 2 | {fsn:.3f} | {1 / fsn:.2f} | 1.00x |",
        f"| ours{' + compile' if args.compile else ''} | {args.batch_size} | {args.dtype} | 1 | {mine:.3f} | "
        f"{1 / mine:.2f} | {fsn / mine:.2f}x |",
    ]
    total = ADE20K_MASKS * SEEDS
    lines = [
        f"{model}, {args.size} px, {args.steps} PLMS steps, guidance {args.guidance}, {device}, "
        f"{torch.get_num_threads()} threads, {result['images']} images per design",
        *rows,
        f"largest pixel difference between the designs' first image: {result['max_diff']} (of 255)",
        f"ADE20K, {ADE20K_MASKS} masks x {SEEDS} seeds on {GPUS} GPUs at these s / image: "
        f"ours {total * mine / GPUS / 3600:.1f} h, FreestyleNet's design {total * fsn / GPUS / 3600:.1f} h "
        f"(--copies-from: about half)",
    ]
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-size", action="store_true", help="SD 1.x shapes (GPU); default the tiny model")
    parser.add_argument("--size", type=int, help="image side (default 64 tiny, 512 real size)")
    parser.add_argument("--steps", type=int, default=10, help="PLMS steps (default 10)")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=8, help="our batch; FreestyleNet's is 1 (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of --batch-size images per design")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="ours (GPU float16, CPU float32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our UNet")
    parser.add_argument("--device", help="default cuda when available, else cpu")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.size = args.size or (512 if args.real_size else 64)
    args.dtype = args.dtype or ("float16" if device.startswith("cuda") else "float32")

    from freemask.data.datasets.ade20k import ade20k_meta
    from freemask.generation.backend import GenerationRequest
    from freemask.generation.noise import batch_latents
    from freemask.generation.tiny import tiny_pipeline

    pipe = sd_v1_pipeline(args.size) if args.real_size else tiny_pipeline(args.size)
    names = ade20k_meta()[0]
    count = args.batch_size * (args.rounds + 1)
    requests = [
        GenerationRequest(f"bench{i:03d}", 42, labels, names)
        for i, labels in enumerate(layouts(count, args.size, len(names)))
    ]
    latents = batch_latents([(r.stem, r.seed) for r in requests], (4, args.size // 8, args.size // 8))
    designs = {"freestylenet": FreestyleNetDesign(pipe, args, device), "ours": ours(pipe, args, device)}
    model = "SD 1.x shapes, random weights" if args.real_size else "tiny random model"
    report = table(measure(designs, requests, latents, args, device), args, device, model)
    print(report)
    return report


if __name__ == "__main__":
    main()
