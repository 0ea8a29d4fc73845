"""The complete default configuration tree.

Every key a config file or a command-line override may set is declared here, with the value used when nobody sets
it, so one tree holds every key and a typo is caught before training starts.
"""

from .config import CfgNode as CN

_C = CN()
_C.VERSION = 1

# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------
_C.MODEL = CN()
_C.MODEL.META_ARCHITECTURE = "SemanticFPN"
# "auto" = CUDA when a GPU is visible, else the CPU, decided when the model is built (freemask/config/device.py), so
# the dumped config.yaml is the same on every machine; or a torch device name: "cpu", "cuda", "cuda:1".
_C.MODEL.DEVICE = "auto"
# Checkpoint of the whole model, loaded before training or for --eval-only.
_C.MODEL.WEIGHTS = ""
# Checkpoints are loaded with torch.load(weights_only=True); set True only for files you trust.
_C.MODEL.ALLOW_UNSAFE_WEIGHTS = False
# Multi-scale deformable attention: "auto" uses the compiled CUDA op (pip install --no-build-isolation ./ops) for CUDA
# tensors when it is built and the PyTorch path otherwise; "cuda" makes a missing op an error; "pytorch" never uses
# it. The environment variable FREEMASK_MSDA_IMPL, when set, overrides this key.
_C.MODEL.MSDA_IMPL = "auto"
# RGB order, 0..255 scale (the ImageNet statistics used by MMSegmentation and the FreeMask release).
_C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
_C.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "TimmBackbone"
# A timm model name, e.g. resnet50, resnet101, swin_tiny_patch4_window7_224, swin_base_patch4_window12_384.
_C.MODEL.BACKBONE.TIMM_NAME = "resnet50"
# Local file with ImageNet weights for the backbone (timm .pth/.safetensors, official Swin release .pth, torchvision
# ResNet .pth); "" trains from scratch. A report of loaded/missing/unexpected keys is logged.
_C.MODEL.BACKBONE.PRETRAINED = ""
# Stages up to this index are frozen (0 = nothing frozen, 1 = stem (Swin: patch embedding), 2 = stem + res2, ...).
_C.MODEL.BACKBONE.FREEZE_AT = 0
# BN (trainable batch norm) | FrozenBN (statistics and affine parameters fixed, as for ImageNet-initialised ResNets)
_C.MODEL.BACKBONE.NORM = "BN"
_C.MODEL.BACKBONE.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.BACKBONE.DROP_PATH_RATE = 0.0
# ResNet only: dilations of res5's blocks' 3x3 convolutions (detectron2's DeepLab RES5_MULTI_GRID with RES5_DILATION 1,
# e.g. [1, 2, 4] for FreeSeg's R101c); [] = none.
_C.MODEL.BACKBONE.RES5_MULTI_GRID = []
# Swin attention window (0 = the model's own, e.g. 7 for *_window7_224, 12 for *_window12_384); pre-trained relative
# position bias tables are resized to it.
_C.MODEL.BACKBONE.WINDOW_SIZE = 0
# Swin size [embed_dim, [depths], [num_heads]] replacing the timm model's, for small Swins trained from scratch (the
# toy configs); [] keeps the model's own.
_C.MODEL.BACKBONE.SWIN_SIZE = []
# Backbones read only MODEL.BACKBONE.* keys. A value that must agree with another part of the config defaults to "as
# the rest of the model says" (0 / []) and is filled in when the backbone is built (freemask/modeling/build.py).
# MixTransformer (SegFormer's encoder) size b0..b5: b0 widths (32, 64, 160, 256), b1..b5 (64, 128, 320, 512); depths
# b0/b1 (2, 2, 2, 2), b2 (3, 4, 6, 3), b3 (3, 4, 18, 3), b4 (3, 8, 27, 3), b5 (3, 6, 40, 3). Formerly
# MODEL.SEGFORMER.VARIANT, which configs may still use (read as this key, with a warning).
_C.MODEL.BACKBONE.MIT = CN()
_C.MODEL.BACKBONE.MIT.VARIANT = "b2"
# ViTBackbone: (height, width) its position table is built for, MMSegmentation's img_size; pre-trained tables are
# resampled to it when loaded, other input sizes on the fly. [] = the training crop, INPUT.CROP.SIZE.
_C.MODEL.BACKBONE.VIT = CN()
_C.MODEL.BACKBONE.VIT.IMG_SIZE = []
# SeMaskSwin's semantic layers (SeMask-FPN, below).
_C.MODEL.BACKBONE.SEMASK = CN()
# Channels of the class prior maps; 0 = the head's classes, MODEL.SEM_SEG_HEAD.NUM_CLASSES (they must agree).
_C.MODEL.BACKBONE.SEMASK.NUM_CLASSES = 0
# Window of the semantic attention (0 = the Swin's own: 7 for *_window7_*, 12 for *_window12_*). Stages 3 and 4 of
# Swin-T/S/L attend globally when there are more than 19 classes, as published.
_C.MODEL.BACKBONE.SEMASK.WINDOW_SIZE = 0
# "normed": the attention's update is added to the LayerNorm-ed tokens (the official layer, so a stage hands on
# LayerNorm(x)); "input": added to the stage's own tokens, so an ImageNet Swin gives plain Swin features at start.
_C.MODEL.BACKBONE.SEMASK.RESIDUAL = "normed"

_C.MODEL.SEM_SEG_HEAD = CN()
_C.MODEL.SEM_SEG_HEAD.NAME = "SemanticFPNHead"
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 150
# Label of unlabelled pixels, ignored by the losses. Code calls it ignore_label; the key keeps the name official
# Mask2Former / detectron2 configs use, so their files merge unchanged (DATASETS.CUSTOM.IGNORE_LABEL must equal it).
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
# Channels of the FPN levels and of the semantic head's towers.
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 256
_C.MODEL.SEM_SEG_HEAD.HEAD_DIM = 128
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
_C.MODEL.SEM_SEG_HEAD.NORM = "GN"
_C.MODEL.SEM_SEG_HEAD.DROPOUT = 0.1
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0
# Per-pixel heads: True averages the cross-entropy over labelled pixels (detectron2); False over every label pixel,
# ignored ones counting 0 (MMSegmentation's default, so the published SegFormer and Segmenter runs').
_C.MODEL.SEM_SEG_HEAD.LOSS_AVG_NON_IGNORE = True

# Mask2Former's pixel decoder: deformable-attention encoder over strides 8/16/32, FPN to stride 4, mask features.
_C.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"
_C.MODEL.SEM_SEG_HEAD.MASK_DIM = 256
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
_C.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 6
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD = 1024
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_DROPOUT = 0.0
# True runs the whole pixel decoder in float32 outside autocast (official Mask2Former). False lets it follow
# SOLVER.AMP: the deformable op then reads a bf16/fp16 value with float32 locations and weights (float32
# accumulation), about half the op's bytes. The default stays True until bench/gpu_check.sh has measured the speed
# and the loss of both on the GPU (bench/RESULTS.md, "MSDeformAttn CUDA op"); change it only on that measurement.
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_FP32 = True

# Segmenter (Strudel et al., 2021) heads on a ViTBackbone: SEM_SEG_HEAD.NAME SegmenterMaskTransformerHead (class
# embeddings processed jointly with the patch tokens, masks by scalar products) or SegmenterLinearHead. Values are those
# of MMSegmentation's Segmenter configs, which the FreeMask release trained with. 0 for D_MODEL / NUM_HEADS = the
# backbone's width / width // 64 (ViT-S: 384 / 6, ViT-B: 768 / 12).
_C.MODEL.SEGMENTER = CN()
_C.MODEL.SEGMENTER.D_MODEL = 0
_C.MODEL.SEGMENTER.NUM_LAYERS = 2
_C.MODEL.SEGMENTER.NUM_HEADS = 0
_C.MODEL.SEGMENTER.MLP_RATIO = 4.0
# Stochastic depth of the mask-transformer layers (0 ... DROP_PATH_RATE over the layers) and their dropout.
_C.MODEL.SEGMENTER.DROP_PATH_RATE = 0.1
_C.MODEL.SEGMENTER.DROPOUT = 0.0

# Mask2Former's masked-attention transformer decoder.
_C.MODEL.MASK_FORMER = CN()
_C.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
# Loss weights, which are also the matching costs (Mask2Former: class 2.0, mask BCE 5.0, dice 5.0).
_C.MODEL.MASK_FORMER.CLASS_WEIGHT = 2.0
_C.MODEL.MASK_FORMER.MASK_WEIGHT = 5.0
_C.MODEL.MASK_FORMER.DICE_WEIGHT = 5.0
# Cross-entropy weight of the no-object class.
_C.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT = 0.1
# Supervise the prediction after the query initialisation and after every decoder layer, not only the last.
_C.MODEL.MASK_FORMER.DEEP_SUPERVISION = True
# Points on which mask losses and matching costs are computed (importance sampling around uncertain pixels).
_C.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 12544
_C.MODEL.MASK_FORMER.OVERSAMPLE_RATIO = 3.0
_C.MODEL.MASK_FORMER.IMPORTANCE_SAMPLE_RATIO = 0.75
_C.MODEL.MASK_FORMER.HIDDEN_DIM = 256
_C.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 100
_C.MODEL.MASK_FORMER.NHEADS = 8
_C.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 2048
# Number of decoder layers (the official configs write 10, counting the prediction made from the initial queries).
_C.MODEL.MASK_FORMER.DEC_LAYERS = 9
_C.MODEL.MASK_FORMER.PRE_NORM = False
_C.MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ = False
# Test-time outputs (Mask2Former's config.py): which of semantic / instance / panoptic post-processing runs
# (freemask/modeling/postprocess.py), the probability a panoptic query needs to be kept, and the fraction of its own
# mask a panoptic segment must keep after overlaps are resolved. COCO panoptic configs set both thresholds to 0.8.
_C.MODEL.MASK_FORMER.TEST = CN()
_C.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True
_C.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False
_C.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = False
_C.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.0
_C.MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD = 0.0
# Whose panoptic / instance rules and mask upsampling: "mask2former" (freemask/modeling/postprocess.py), or, for
# META_ARCHITECTURE "OpenVocabulary" only, "freeseg" (FreeSeg's released inference, what its weights were evaluated
# with: masks upsampled with align_corners=True, every output made at the input size then resized, its panoptic and
# instance rules with their quirks) or "freeseg_corrected" (the same with FreeSeg's plain bugs fixed; see
# freemask/modeling/open_vocab/freeseg_postprocess.py).
_C.MODEL.MASK_FORMER.TEST.POSTPROCESS = "mask2former"

# FreeSeg (open-vocabulary, META_ARCHITECTURE "OpenVocabulary"; stage 1 "ProposalClipClassifier"): the keys of its
# config that this project reads, with its defaults (bytedance/FreeSeg, mask2former/config.py, add_our_config). The
# class head projects each query to CLIP's text space: MLP(HIDDEN_DIM -> EMBED_HIDDEN_DIM -> EMBEDDING_DIM,
# EMBED_LAYERS layers). The text-pixel interaction layer is one cross-attention of EMB_SIZE-d pixels onto PROMPT_DIM-d
# text features, NUM_HEADS heads, EMBED_DIM wide, with a layer scale (initial 0.1) when USE_LAYER_SCALE.
_C.MODEL.SEM_SEG_HEAD.EMBEDDING_DIM = 512
_C.MODEL.SEM_SEG_HEAD.EMBED_HIDDEN_DIM = 1024
_C.MODEL.SEM_SEG_HEAD.EMBED_LAYERS = 2
_C.MODEL.SEM_SEG_HEAD.EMB_SIZE = 256
_C.MODEL.SEM_SEG_HEAD.EMBED_DIM = 2048
_C.MODEL.SEM_SEG_HEAD.NUM_HEADS = 8
_C.MODEL.SEM_SEG_HEAD.USE_LAYER_SCALE = True
# The interaction's text LayerNorm: "repeated" re-applies it before each map as FreeSeg does (the text is normalised
# 1, 2, 3 and 4 times for the three multi-scale maps and the mask features); "once" normalises it once for all maps,
# the computation of this project's versions before FreeSeg's was reproduced (for models trained with them).
_C.MODEL.SEM_SEG_HEAD.INTERACTION_TEXT_NORM = "repeated"
_C.MODEL.CLIP_ADAPTER = CN()
# open_clip architecture name. OpenAI's weights need the QuickGELU variant ("ViT-B-16-quickgelu"): the plain
# "ViT-B-16" loads them without error but with the wrong activation (measured with open_clip 3.3.0: its text features
# differ from OpenAI's by 0.048 max-abs, "ViT-B-16-quickgelu"'s by 0.003, the fp16 rounding).
_C.MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME = "ViT-B-16-quickgelu"
# Local file with the CLIP weights (a plain state dict; nothing is downloaded). "" = random CLIP (tests only).
_C.MODEL.CLIP_ADAPTER.CLIP_WEIGHTS = ""
# OpenAI's released .pt files are TorchScript archives, which can run code when loaded: read them only with this on
# (or convert them once with tools/convert_clip.py).
_C.MODEL.CLIP_ADAPTER.ALLOW_TORCHSCRIPT = False
# "learnable" (FreeSeg's adaptive prompt) or "predefined" (the average over PREDEFINED_PROMPT_TEMPLATES).
_C.MODEL.CLIP_ADAPTER.PROMPT_LEARNER = "learnable"
_C.MODEL.CLIP_ADAPTER.PREDEFINED_PROMPT_TEMPLATES = ["a sculpture of a {}."]
_C.MODEL.CLIP_ADAPTER.PROMPT_DIM = 512
# (learnable class-context tokens before the class name, after it): FreeSeg's (16, 0).
_C.MODEL.CLIP_ADAPTER.PROMPT_SHAPE = [16, 0]
# Learnable task tokens after the task name.
_C.MODEL.CLIP_ADAPTER.TASK_PROMPT_SHAPE = 8
# Stage 1's checkpoint: its prompt parameters are loaded into stage 2 and frozen ("" = prompts train with the model).
_C.MODEL.CLIP_ADAPTER.PROMPT_CHECKPOINT = ""
# Region classification: a query's mask (sigmoid > MASK_THR) is cut out of the image by its box grown by
# MASK_EXPAND_RATIO, the pixels outside the mask filled with CLIP's mean ("mean") or 0 ("zero"), resized to
# REGION_SIZE px and classified by CLIP.
_C.MODEL.CLIP_ADAPTER.MASK_FILL = "mean"
_C.MODEL.CLIP_ADAPTER.MASK_EXPAND_RATIO = 1.0
_C.MODEL.CLIP_ADAPTER.MASK_THR = 0.5
_C.MODEL.CLIP_ADAPTER.REGION_SIZE = 224
# The geometric ensemble of mask-classifier and CLIP probabilities at test time, with weight lambda:
# seen classes p_mask^l * p_clip^(1-l), unseen classes p_mask^(1-l) * p_clip^l.
_C.MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE = True
_C.MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT = 0.8

# SegFormer: MODEL.BACKBONE.NAME "MixTransformer" (MiT encoder) + MODEL.SEM_SEG_HEAD.NAME "SegFormerHead" (all-MLP
# decoder) under META_ARCHITECTURE "EncoderDecoder" (backbone + per-pixel head). Drop-path is
# MODEL.BACKBONE.DROP_PATH_RATE (0.1 published), the decoder's dropout MODEL.SEM_SEG_HEAD.DROPOUT (0.1) and its norm
# MODEL.SEM_SEG_HEAD.NORM, the encoder's size MODEL.BACKBONE.MIT.VARIANT.
_C.MODEL.SEGFORMER = CN()
# Width every level is projected to in the decoder; 0 = the paper's choice for MODEL.BACKBONE.MIT.VARIANT (256 for
# b0/b1, 768 for b2..b5). MMSegmentation, whose models the FreeMask release trained, uses 256 for every size.
_C.MODEL.SEGFORMER.DECODER_DIM = 0

# SeMask-FPN (Jain et al., 2021): MODEL.BACKBONE.NAME "SeMaskSwin" (the Swin of MODEL.BACKBONE.TIMM_NAME with a
# semantic layer ending every stage, MODEL.BACKBONE.SEMASK.*; its class prior maps have MODEL.SEM_SEG_HEAD.NUM_CLASSES
# channels) and MODEL.SEM_SEG_HEAD.NAME "SeMaskFPNHead" (towers of CONVS_DIM channels, NORM, DROPOUT) under
# META_ARCHITECTURE "SeMaskFPN". MODEL.SEMASK.WINDOW_SIZE and RESIDUAL moved to MODEL.BACKBONE.SEMASK (configs may
# still use the old names: read as the new ones, with a warning).
_C.MODEL.SEMASK = CN()
# Weight of the cross-entropy on the summed class prior maps (0.4 published; 0 trains without the prior loss).
_C.MODEL.SEMASK.PRIOR_LOSS_WEIGHT = 0.4
# OHEM on the main loss: only the OHEM_MIN_KEPT highest-loss labelled pixels per image count (0 = off; SeMask-L on
# ADE20K and COCO-Stuff-10k: 100000).
_C.MODEL.SEMASK.OHEM_MIN_KEPT = 0

# ---------------------------------------------------------------------------------------------------------------------
# Input pipeline (FreeMask / MMSegmentation ADE20K 512x512 recipe by default)
# ---------------------------------------------------------------------------------------------------------------------
_C.INPUT = CN()
_C.INPUT.FORMAT = "RGB"
# Training resize: shortest edge drawn from MIN_SIZE_TRAIN ("choice") or uniformly in its [min, max] ("range").
_C.INPUT.MIN_SIZE_TRAIN = [int(512 * x / 10) for x in range(5, 21)]
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 2048
# Test resize: shortest edge MIN_SIZE_TEST, longest edge at most MAX_SIZE_TEST.
_C.INPUT.MIN_SIZE_TEST = 512
_C.INPUT.MAX_SIZE_TEST = 2048
# How images are resized, in training and test, as the official code of the model family does (labels always take the
# nearest pixel): "cv2" = mmcv's OpenCV bilinear and size rounding (MMSegmentation families: the FreeMask-table
# Mask2Former, SegFormer, Segmenter, SeMask, Semantic FPN); "pil" = detectron2's Pillow bilinear, which averages the
# whole footprint when it downscales, and ResizeShortestEdge's size rounding (Mask2Former panoptic / instance, FreeSeg).
_C.INPUT.RESIZE_BACKEND = "cv2"
_C.INPUT.CROP = CN()
_C.INPUT.CROP.ENABLED = True
_C.INPUT.CROP.SIZE = [512, 512]
# Re-draw the crop (up to 10 times) while one category covers more than this fraction of it (ignore excluded).
_C.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 0.75
_C.INPUT.RANDOM_FLIP = "horizontal"
# Photometric distortion: brightness, contrast, saturation, hue (MMSegmentation's PhotoMetricDistortion).
_C.INPUT.COLOR_AUG_SSD = True
# Pad batched images so height and width are multiples of this (0 = no constraint).
_C.INPUT.SIZE_DIVISIBILITY = 512
# COCO's large-scale jitter (freemask/data/mappers/instance.py, recipe "lsj"): the IMAGE_SIZE square box scaled by a
# factor drawn in [MIN_SCALE, MAX_SCALE], the image resized to fit it (aspect kept), then an IMAGE_SIZE crop / pad.
_C.INPUT.IMAGE_SIZE = 1024
_C.INPUT.MIN_SCALE = 0.1
_C.INPUT.MAX_SCALE = 2.0
# Which mapper turns records into model inputs (freemask/data/mappers/build.py, Mask2Former's names):
# "mask_former_semantic" (SemSegDatasetMapper), "mask_former_panoptic" / "mask_former_instance" (InstanceDatasetMapper,
# the semantic-style recipe above), "coco_panoptic_lsj" / "coco_instance_lsj" (InstanceDatasetMapper with the
# large-scale jitter).
_C.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"
# FreeSeg's tasks: each training iteration draws one (the same on every process); at test time each enabled one has
# its own head pass with its task prompt. Names as FreeSeg's prompts: "semantic segmentation.", "instance
# segmentation.", "panoptic segmentation.".
_C.INPUT.TASK_NAME = ["semantic segmentation."]

# ---------------------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------------------
_C.DATASETS = CN()
_C.DATASETS.TRAIN = []
# Synthetic training sets, mixed with DATASETS.TRAIN as DATALOADER.SYN_RATIO says.
_C.DATASETS.TRAIN_SYN = []
# One integer per dataset of TRAIN + TRAIN_SYN (in that order): how many times its list is repeated. With SYN_RATIO 0
# this weights the plain concatenation (the FreeMask release used real x11 for ADE20K); with SYN_RATIO > 0 it weights
# datasets within the real stream and within the synthetic stream. Empty = 1 for all.
_C.DATASETS.REPEAT_FACTORS = []
_C.DATASETS.TEST = []
# FreeSeg's stage 1 (prompt learning): at most this many training samples per class, drawn with SAMPLE_SEED
# (-1 = all).
_C.DATASETS.SAMPLE_PER_CLASS = -1
_C.DATASETS.SAMPLE_SEED = 0
# A dataset of your own, registered from the config alone as <NAME>_sem_seg_train and <NAME>_sem_seg_val, in the
# ADE20K layout: ROOT/images/{training,validation}/*IMAGE_EXT with ROOT/annotations/{training,validation}/*MASK_EXT.
_C.DATASETS.CUSTOM = CN()
_C.DATASETS.CUSTOM.NAME = ""
_C.DATASETS.CUSTOM.ROOT = ""
# Text file with one class name per line (line k names label k).
_C.DATASETS.CUSTOM.CLASSES_FILE = ""
_C.DATASETS.CUSTOM.IGNORE_LABEL = 255
# True when masks store 0 = unlabeled and class k as k + 1 (the raw ADE20K convention).
_C.DATASETS.CUSTOM.REDUCE_ZERO_LABEL = False
_C.DATASETS.CUSTOM.IMAGE_EXT = ".jpg"
_C.DATASETS.CUSTOM.MASK_EXT = ".png"

# ---------------------------------------------------------------------------------------------------------------------
# Data loader
# ---------------------------------------------------------------------------------------------------------------------
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
# How loader workers start: "" = fork on Linux, spawn elsewhere (measured choice, reasons in
# freemask/data/loading/loader_start.py); fork, forkserver or spawn to force one. Workers share the records under each.
_C.DATALOADER.START_METHOD = ""
# Fraction of every global batch drawn from DATASETS.TRAIN_SYN (0.5 = exactly half synthetic, the real set
# over-sampled). 0 concatenates all training sets (with REPEAT_FACTORS) and shuffles them instead.
_C.DATALOADER.SYN_RATIO = 0.0
# A training sample whose files are missing, unreadable or inconsistent stops training with one line naming the file.
# True instead replaces it by another sample, and the count of skipped samples is logged.
_C.DATALOADER.SKIP_BAD_SAMPLES = False
# Training images whose instance annotations are all crowd (or absent) are dropped from DATASETS.TRAIN, as detectron2
# does for COCO instances: they would only teach "no object". Records without an "annotations" list (semantic,
# panoptic) are kept either way.
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True

# ---------------------------------------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.OPTIMIZER = "ADAMW"
_C.SOLVER.BASE_LR = 1e-4
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.BETAS = [0.9, 0.999]
_C.SOLVER.EPS = 1e-8
_C.SOLVER.WEIGHT_DECAY = 0.05
# Weight decay of normalisation layers' parameters and of embeddings (queries, position tables).
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.WEIGHT_DECAY_EMBED = 0.0
# Learning-rate multiplier of every parameter under `backbone.`.
_C.SOLVER.BACKBONE_MULTIPLIER = 0.1
# Extra multipliers: a list of [name_substring, lr_multiplier, weight_decay_multiplier]; the first match wins and
# replaces BACKBONE_MULTIPLIER for that parameter, e.g. [["decode_head", 10.0, 1.0]].
_C.SOLVER.CUSTOM_MULTIPLIERS = []
_C.SOLVER.MAX_ITER = 160000
_C.SOLVER.IMS_PER_BATCH = 16
# WarmupPolyLR | WarmupCosineLR | WarmupMultiStepLR
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
_C.SOLVER.POLY_LR_POWER = 0.9
# Learning rate the poly and cosine schedules decay to (0 = all the way down; Segmenter's recipe ends at 1e-4).
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.STEPS = [30000]
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.WARMUP_FACTOR = 1.0
_C.SOLVER.WARMUP_ITERS = 0
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.CHECKPOINT_PERIOD = 1000
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
# full_model (one L2 norm over all parameters) | value (clamp each gradient) | norm (one norm per parameter)
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.01
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
# bfloat16 (no loss scaling needed) | float16 (with a gradient scaler)
_C.SOLVER.AMP.DTYPE = "bfloat16"
# TensorFloat-32 for the float32 matmuls and convolutions on CUDA GPUs of compute capability >= 8.0 (Ampere and
# later): inputs rounded to 10 mantissa bits, float32 accumulation, several times the float32 throughput. It covers
# fp32 training and the parts AMP leaves in float32 (the pixel decoder with DEFORMABLE_FP32). A SOLVER key next to AMP
# rather than detectron2's CUDNN node: it is a training-precision choice like AMP, and it sets cuBLAS as well as cuDNN.
# Applied and logged once when the trainer starts ("TF32: on/off (why)"); its effect on the loss curve is measured by
# bench/gpu_check.sh (200 toy Mask2Former steps with and without it).
_C.SOLVER.ALLOW_TF32 = True

# ---------------------------------------------------------------------------------------------------------------------
# Test
# ---------------------------------------------------------------------------------------------------------------------
_C.TEST = CN()
# Evaluate every EVAL_PERIOD iterations (0 = only at the end).
_C.TEST.EVAL_PERIOD = 5000
# Instances kept per image by instance post-processing (top (query, class) pairs; detectron2's default).
_C.TEST.DETECTIONS_PER_IMAGE = 100
# At each evaluation during training, this many image | ground truth | prediction panels of DATASETS.TEST[0] go to
# TensorBoard (tag val_panels/<stem>; 0 = none).
_C.TEST.VIS_IMAGES = 4
# Test images per loader batch. Semantic inference runs the images of one size together and each gets the scores it
# gets alone, so scores do not depend on this; MaskFormer's panoptic / instance path pads a batch to one size, as
# official Mask2Former does (it evaluates with 1).
_C.TEST.IMS_PER_BATCH = 1
# Also save the predictions beside the results files (OUTPUT_DIR/inference, or inference/<dataset> with several test
# sets), as detectron2's evaluators do with save_predictions: panoptic in COCO panoptic format (panoptic/<image
# stem>.png, each written by its rank as the image is evaluated, and panoptic/panoptic_predictions.json), instances as
# coco_instances_results.json (COCO's results format). Off by default: one file per test image. Semantic-only
# evaluation saves no predictions.
_C.TEST.SAVE_PREDICTIONS = False
_C.TEST.AUG = CN()
# Multi-scale (+ flip) inference: scale ratios relative to the test resize.
_C.TEST.AUG.ENABLED = False
_C.TEST.AUG.RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
_C.TEST.AUG.FLIP = True
# Evaluate twice, at a single scale without flip and with RATIOS (+ FLIP), and report both numbers, as SeMask's tables
# do (results "sem_seg" and "sem_seg_ms_flip"); ENABLED is then ignored.
_C.TEST.AUG.EVAL_BOTH = False
# Pad each test image (or sliding window) bottom/right to a multiple of this before the forward (0 = unpadded). Its own
# key because INPUT.SIZE_DIVISIBILITY pads training batches to the crop: official Mask2Former pads test images to the
# model's size divisibility (32), not to the 512 training crop. Each model family's config sets its official value.
_C.TEST.SIZE_DIVISIBILITY = 32
_C.TEST.SLIDING_WINDOW = CN()
_C.TEST.SLIDING_WINDOW.ENABLED = False
_C.TEST.SLIDING_WINDOW.CROP_SIZE = [512, 512]
_C.TEST.SLIDING_WINDOW.STRIDE = [341, 341]

# ---------------------------------------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------------------------------------
_C.OUTPUT_DIR = "./output"
# Seed of every random choice (sampling, augmentation, initialisation); negative = drawn from the clock.
_C.SEED = -1
# Iterations between console / metrics.json / TensorBoard writes.
_C.LOG_PERIOD = 20
