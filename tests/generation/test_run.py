"""The generation run with a test double of the backend: pairs independent of batch size and interruption, the
settings check, masks written at the image's size in the right encoding, the label check, the noise."""

import hashlib
import os

import cv2
import numpy as np
import pytest
import torch

from freemask.data.errors import DatasetError
from freemask.generation import outputs
from freemask.generation import run as gen_run
from freemask.generation.noise import batch_latents, initial_latents, pair_seed
from freemask.generation.run import GenerationJob, all_pairs, run_generation
from freemask.synthetic.sources import RealMasks

NUM_CLASSES = 3


class FakeBackend:
    """Honours the backend Protocol: each image a function of its own latents and labels only."""

    name = "fake"

    def __init__(self, size: int, tone: int = 0, weights=()) -> None:
        self.size, self.tone, self.weights = size, tone, list(weights)
        self.latent_shape = (4, size // 8, size // 8)
        self.generated = []

    def weight_files(self):
        return self.weights

    def settings(self):
        return {"tone": self.tone}

    def generate(self, requests, latents):
        assert latents.shape == (len(requests), *self.latent_shape) and latents.dtype == torch.float32
        images = []
        for request, latent in zip(requests, latents):
            self.generated.append((request.stem, request.seed))
            noise = torch.nn.functional.interpolate(latent[None, :3], size=(self.size, self.size), mode="nearest")[0]
            rgb = (noise.permute(1, 2, 0).numpy() * 40 + 128 + self.tone).clip(0, 255)
            rgb[..., 0] = np.where(request.labels == 1, 255, rgb[..., 0])  # the layout shows in the image
            images.append(rgb.astype(np.uint8))
        return images


def write_masks(folder, count=3, shape=(20, 30), raw=True):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        mask = rng.integers(0, NUM_CLASSES + (1 if raw else 0), size=shape).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, f"m{i}.png"), mask)
    return {f"m{i}": os.path.join(folder, f"m{i}.png") for i in range(count)}


def make_job(tmp_path, raw=True, raw_output=None, **kwargs):
    paths = write_masks(str(tmp_path / "real"), raw=raw)
    masks = RealMasks(str(tmp_path / "real"), paths, raw, 255, NUM_CLASSES)
    options = dict(size=16, batch_size=2, progress=False, output=str(tmp_path / "out"))
    options.update(kwargs)
    return GenerationJob(
        masks=masks,
        class_names=("a", "b", "c"),
        pairs=all_pairs(sorted(paths), [42, 43, 44]),
        raw_output=raw if raw_output is None else raw_output,
        **options,
    )


def snapshot(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                files[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return files


def test_noise_depends_on_the_pair_alone():
    a = initial_latents("ADE_train_00000001", 42, (4, 8, 8))
    assert torch.equal(a, initial_latents("ADE_train_00000001", 42, (4, 8, 8)))
    assert not torch.equal(a, initial_latents("ADE_train_00000001", 43, (4, 8, 8)))
    assert not torch.equal(a, initial_latents("ADE_train_00000002", 42, (4, 8, 8)))
    batch = batch_latents([("x", 1), ("ADE_train_00000001", 42)], (4, 8, 8))
    assert torch.equal(batch[1], a) and batch.dtype == torch.float32
    assert pair_seed("a_seed", 1) != pair_seed("a", 1) and 0 <= pair_seed("a", 1) < 2**63


def test_same_files_for_any_batch_size_and_the_manifest_lists_the_pairs(tmp_path):
    one = make_job(tmp_path, batch_size=1, output=str(tmp_path / "b1"))
    five = make_job(tmp_path, batch_size=5, output=str(tmp_path / "b5"))
    manifest = run_generation(one, lambda: FakeBackend(16))
    run_generation(five, lambda: FakeBackend(16))
    assert snapshot(one.output) == snapshot(five.output)
    assert manifest["num_pairs"] == 9 and manifest["pairs"]["m1"] == [42, 43, 44]
    assert manifest["settings"]["tone"] == 0 and manifest["settings"]["backend"] == "fake"
    image = cv2.imread(outputs.image_path(one.output, "m0", 43))
    mask = cv2.imread(outputs.mask_path(one.output, "m0", 43), cv2.IMREAD_UNCHANGED)
    assert image.shape == (16, 16, 3) and mask.shape == (16, 16) and mask.dtype == np.uint8


def test_rank_batches_share_the_work_without_overlap():
    pairs = [("s", i) for i in range(7)]
    shares = [gen_run.rank_batches(pairs, set(), 2, r, 3) for r in range(3)]
    flat = [p for share in shares for batch in share for p in batch]
    assert sorted(flat) == pairs and shares[0] == [[("s", 0), ("s", 1)], [("s", 6)]]


def test_rank_batches_keep_their_companions_when_a_run_resumes():
    """Batches are cut from all pairs: a resumed run recomputes a partly finished batch with the same companions
    (on a GPU they move the rounding), and skips the finished batches."""
    pairs = [("s", i) for i in range(7)]
    done = {("s", 0), ("s", 1), ("s", 3)}
    assert gen_run.rank_batches(pairs, done, 2, 0, 1) == [[("s", 2), ("s", 3)], [("s", 4), ("s", 5)], [("s", 6)]]


def test_an_interrupted_run_resumes_to_the_same_files_doing_only_the_missing_pairs(tmp_path, monkeypatch):
    reference = make_job(tmp_path, output=str(tmp_path / "ref"))
    run_generation(reference, lambda: FakeBackend(16))
    job = make_job(tmp_path)
    write_pair = outputs.write_pair
    calls = []

    def interrupted(*args):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(args[1:3])
        write_pair(*args)

    monkeypatch.setattr(outputs, "write_pair", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_generation(job, lambda: FakeBackend(16))
    monkeypatch.setattr(outputs, "write_pair", write_pair)
    os.remove(outputs.mask_path(job.output, *calls[-1]))  # a kill between the image and its mask
    written = []

    def recorded(*args):
        written.append(args[1:3])
        write_pair(*args)

    monkeypatch.setattr(outputs, "write_pair", recorded)
    backend = FakeBackend(16)
    run_generation(job, lambda: backend)
    assert snapshot(job.output) == snapshot(reference.output)
    missing = set(job.pairs) - set(calls[:3])
    assert sorted(written) == sorted(missing)
    # Only the unfinished batches ran (a partly finished one whole, with its companions).
    batches = gen_run.rank_batches(job.pairs, set(calls[:3]), job.batch_size, 0, 1)
    assert sorted(backend.generated) == sorted(p for b in batches for p in b)
    assert len(backend.generated) < len(job.pairs)


def test_other_settings_are_refused_and_overwrite_redoes(tmp_path):
    job = make_job(tmp_path)
    run_generation(job, lambda: FakeBackend(16))
    with pytest.raises(outputs.OutputSettingsError, match=r"other settings \(tone: 0 -> 9\)"):
        run_generation(job, lambda: FakeBackend(16, tone=9))
    with pytest.raises(outputs.OutputSettingsError, match="jpeg_quality: 95 -> 80"):
        run_generation(make_job(tmp_path, jpeg_quality=80), lambda: FakeBackend(16))
    before = snapshot(job.output)
    run_generation(make_job(tmp_path, overwrite=True), lambda: FakeBackend(16, tone=9))
    after = snapshot(job.output)
    assert set(after) == set(before) and after != before


def test_more_seeds_later_add_only_their_pairs(tmp_path):
    job = make_job(tmp_path)
    run_generation(job, lambda: FakeBackend(16))
    before = snapshot(job.output)
    more = GenerationJob(**{**job.__dict__, "pairs": all_pairs(sorted(job.masks.paths), [42, 45])})
    backend = FakeBackend(16)
    manifest = run_generation(more, lambda: backend)
    # The new pairs, each computed in its batch of the new list (with an old companion it does not rewrite).
    assert sorted(p for p in backend.generated if p[1] == 45) == [("m0", 45), ("m1", 45), ("m2", 45)]
    after = snapshot(job.output)
    assert all(after[k] == v for k, v in before.items() if k != outputs.MANIFEST_NAME)
    assert manifest["pairs"]["m0"] == [42, 43, 44, 45]


def test_pairs_without_a_manifest_are_refused(tmp_path):
    job = make_job(tmp_path)
    run_generation(job, lambda: FakeBackend(16))
    os.remove(os.path.join(job.output, outputs.MANIFEST_NAME))
    with pytest.raises(outputs.OutputSettingsError, match="holds 9 pairs but no generation_manifest.json"):
        run_generation(job, lambda: FakeBackend(16))


@pytest.mark.parametrize("raw, raw_output", [(True, True), (False, False), (False, True), (True, False)])
def test_masks_are_the_real_mask_at_the_image_size_in_the_output_encoding(tmp_path, raw, raw_output):
    job = make_job(tmp_path, raw=raw, raw_output=raw_output)
    run_generation(job, lambda: FakeBackend(16))
    stored = cv2.imread(job.masks.paths["m2"], cv2.IMREAD_UNCHANGED)
    # Pillow's NEAREST: source pixel floor((i + 0.5) * H / size)
    rows = ((np.arange(16) + 0.5) * stored.shape[0] / 16).astype(int)
    cols = ((np.arange(16) + 0.5) * stored.shape[1] / 16).astype(int)
    resized = stored[rows][:, cols]
    labels = np.where(resized == 0, 255, resized.astype(int) - 1) if raw else resized.astype(int)
    expected = np.where(labels == 255, 0, labels + 1) if raw_output else labels
    written = cv2.imread(outputs.mask_path(job.output, "m2", 44), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(written, expected)
    image = cv2.imread(outputs.image_path(job.output, "m2", 44))[..., ::-1]
    red = image[..., 0].astype(float)
    assert red[labels == 1].mean() > red[labels != 1].mean() + 20  # the backend got the same layout, aligned (JPEG)


def test_a_mask_with_labels_outside_the_classes_is_refused_naming_it(tmp_path):
    paths = write_masks(str(tmp_path / "real"))
    bad = np.full((4, 4), NUM_CLASSES + 2, np.uint8)
    cv2.imwrite(paths["m1"], bad)
    masks = RealMasks("x", paths, True, 255, NUM_CLASSES)
    with pytest.raises(DatasetError, match=r"m1.png: stored labels 5 are outside the 3 classes"):
        gen_run.check_mask_labels(masks, NUM_CLASSES, list(paths))
    cv2.imwrite(paths["m1"], np.full((4, 4), NUM_CLASSES, np.uint8))
    prepared = RealMasks("x", paths, False, 255, NUM_CLASSES)
    with pytest.raises(DatasetError, match="raw ADE20K masks. pass --reduce-zero-label"):
        gen_run.check_mask_labels(prepared, NUM_CLASSES, list(paths))


def test_the_output_may_not_be_the_real_mask_folder(tmp_path):
    job = make_job(tmp_path)
    inside = RealMasks("x", {"m": str(tmp_path / "annotations" / "m.png")}, True, 255, 3)
    with pytest.raises(DatasetError, match="inputs are never overwritten"):
        gen_run.check_output_is_not_input(str(tmp_path), inside)
    gen_run.check_output_is_not_input(job.output, job.masks)


def test_the_manifest_holds_the_weight_hashes_and_other_weights_are_refused(tmp_path):
    weights = tmp_path / "model.ckpt"
    weights.write_bytes(b"first")
    job = make_job(tmp_path)
    manifest = run_generation(job, lambda: FakeBackend(16, weights=[str(weights)]))
    assert manifest["settings"]["weights_sha256"] == [["model.ckpt", hashlib.sha256(b"first").hexdigest()]]
    weights.write_bytes(b"second")
    with pytest.raises(outputs.OutputSettingsError, match="weights_sha256"):
        run_generation(job, lambda: FakeBackend(16, weights=[str(weights)]))
