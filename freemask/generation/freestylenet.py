"""FreestyleNet's released checkpoints on diffusers: ``from_single_file`` with a local config folder, PLMS, RCA.

The released ``freestyle-sd-v1-4-{ade20k,coco}.ckpt`` are Lightning checkpoints of an SD-v1.4-shaped
LatentDiffusion (rectified cross-attention adds no parameters). diffusers converts them with ``from_single_file``;
given ``config=<local folder>`` (model_index.json plus each component's config and the tokenizer) it reads nothing
from the hub, and ``local_files_only=True`` makes any slip an error instead of a download. Without the folder it
would fetch SD-v1.5's configs from the hub, so the folder is required. Sampling is PNDM with ``skip_prk_steps``,
which is FreestyleNet's PLMS (same 51 evaluations, same updates); guidance 2.0 and 50 steps are its defaults.
"""

from typing import Optional

from .captions import dataset_family, freestylenet_names
from .diffusion import StableDiffusionBackend, plms_scheduler, speed_up, torch_dtype
from .errors import GenerationError
from .file_checks import check_files, folder_files, load_errors_as_user_errors
from .offline import LOCAL_PIPELINE, import_diffusers, require_file, require_folder
from .rectified_attention import RectificationLayout, install_rectified_attention
from .sampling_options import SamplingOptions

CONFIG_ENTRIES = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "tokenizer/vocab.json|tokenizer/tokenizer.json",  # transformers 5 saves the single tokenizer.json
    "tokenizer/merges.txt|tokenizer/tokenizer.json",
    "scheduler/scheduler_config.json",
)
CONFIG_WHAT = (
    "a diffusers Stable Diffusion v1 folder (model_index.json, unet/ vae/ text_encoder/ config.json, tokenizer/, "
    "scheduler/; weights not needed)"
)
# What the single-file load reads of the config folder: configs and the tokenizer, no weights.
CONFIG_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
CHECKPOINT_WHAT = "FreestyleNet's released freestyle-sd-v1-4-ade20k.ckpt or freestyle-sd-v1-4-coco.ckpt"
CHECKPOINT_HOW = "the links in FreestyleNet's README; README: Generating synthetic images"
CONFIG_HOW = (
    "make it on a machine with network access with `hf download CompVis/stable-diffusion-v1-4 --include '*.json' "
    "'*.txt' --local-dir <folder>` (about 1 MB) and pass it as --config-dir"
)


def require_config_dir(config_dir: Optional[str], flag: str = "--config-dir") -> str:
    if not config_dir:
        raise GenerationError(f"{flag} is required for the freestylenet backend: {CONFIG_WHAT}; {CONFIG_HOW}")
    require_folder(config_dir, flag, CONFIG_ENTRIES, CONFIG_WHAT, CONFIG_HOW)
    return config_dir


def check_freestylenet_files(weights: str, config_dir: Optional[str]) -> None:
    """GenerationError (one line) for a missing, remote, truncated or corrupt file the backend would load: the
    checkpoint, the config folder's configs and tokenizer. Reads headers only; the launching process runs it before
    any worker starts, and each worker again where it loads."""
    require_file(weights, "--weights", CHECKPOINT_WHAT)
    require_config_dir(config_dir)
    check_files([weights], "--weights", CHECKPOINT_WHAT, CHECKPOINT_HOW)
    check_files(folder_files(config_dir, CONFIG_COMPONENTS, weights=False), "--config-dir", CONFIG_WHAT, CONFIG_HOW)


def build_freestylenet(
    weights: str, config_dir: Optional[str], dataset: str, options: SamplingOptions
) -> StableDiffusionBackend:
    """The FreestyleNet backend (see :func:`freemask.generation.backend.build_backend`)."""
    family = dataset_family(dataset)
    if family is None:
        raise GenerationError(
            f"dataset {dataset}: FreestyleNet has name tables for ADE20K and COCO-Stuff only; pass ade20k, coco_stuff "
            f"or a dataset registered with their classes"
        )
    check_freestylenet_files(weights, config_dir)
    torch_dtype(options.dtype, options.device)  # refuse before the slow imports
    diffusers = import_diffusers()
    subject = f"--weights {weights} with --config-dir {config_dir}"
    with load_errors_as_user_errors(subject, CHECKPOINT_WHAT, CHECKPOINT_HOW):
        pipe = diffusers.StableDiffusionPipeline.from_single_file(weights, config=config_dir, **LOCAL_PIPELINE)
    pipe.scheduler = plms_scheduler(diffusers, pipe.scheduler.config)
    layout = RectificationLayout()
    install_rectified_attention(pipe.unet, layout)
    return StableDiffusionBackend(
        "freestylenet",
        speed_up(pipe, options),
        options,
        names=freestylenet_names(family),
        settings={"captions": family},
        weight_files=[weights],
        layout=layout,
    )
