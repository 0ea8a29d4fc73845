"""The two inputs of the filter (real pairs for the class losses, synthetic pairs to filter), given either as a
registered dataset name or as an image folder and a mask folder as in the release, and where the output goes."""

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..data.datasets.sem_seg import load_sem_seg
from ..data.datasets.synthetic import FILTERED_MASKS_DIR, MASKS_DIR
from ..data.errors import DatasetError


@dataclass(frozen=True)
class MaskSource:
    """Records ``{"file_name", "sem_seg_file_name", "reduce_zero_label"}`` and the label conventions of one input.

    ``description`` identifies the input in ``class_loss.json`` and in the output's settings; ``class_names`` is
    None for folders, which carry no class list.
    """

    description: str
    records: List[dict]
    ignore_label: int
    class_names: Optional[List[str]]


def source_from_dataset(name: str) -> MaskSource:
    """A registered dataset (its loader lists the files now)."""
    records = DatasetCatalog.get(name)
    meta = MetadataCatalog.get(name)
    if not records:
        raise DatasetError(f"dataset '{name}' has no images; check its folders")
    return MaskSource(name, records, int(meta.get("ignore_label", 255)), list(meta.stuff_classes))


def source_from_folders(
    image_dir: str, mask_dir: str, reduce_zero: bool, ignore_label: int, image_ext: str, mask_ext: str
) -> MaskSource:
    """Every ``<stem><image_ext>`` of ``image_dir`` with ``<stem><mask_ext>`` in ``mask_dir`` (an image without a
    mask is an error naming it)."""
    records = load_sem_seg(image_dir, mask_dir, image_ext, mask_ext, reduce_zero_label=reduce_zero)
    return MaskSource(folder_description(image_dir, mask_dir), records, ignore_label, None)


def folder_description(image_dir: str, mask_dir: str) -> str:
    """How a pair of folders is named in ``class_loss.json`` and in the output's settings."""
    return f"{os.path.abspath(image_dir)} | {os.path.abspath(mask_dir)}"


def dataset_class_names(name: str) -> List[str]:
    """Classes of a registered dataset from its metadata (no folder is listed)."""
    if name not in DatasetCatalog:
        raise DatasetError(
            f"dataset '{name}' is not registered; registered: {', '.join(sorted(DatasetCatalog.list()))}"
        )
    return list(MetadataCatalog.get(name).stuff_classes)


def check_class_count(name: str, class_names: Sequence[str], num_classes: int, config_file: str) -> None:
    """DatasetError when a registered dataset's classes differ in number from the model's."""
    if len(class_names) != num_classes:
        raise DatasetError(
            f"the model has {num_classes} classes (MODEL.SEM_SEG_HEAD.NUM_CLASSES of {config_file or 'the defaults'})"
            f" but dataset '{name}' has {len(class_names)}; use a config and MODEL.WEIGHTS trained on this dataset"
        )


def model_class_names(sources: Sequence[MaskSource], datasets: Sequence[str], num_classes: int) -> List[str]:
    """Class names for the reports: from an input dataset, else from the first of ``datasets`` registered with the
    right number of classes (the real dataset, the config's training sets), else ``class_<i>``."""
    for source in sources:
        if source.class_names is not None and len(source.class_names) == num_classes:
            return list(source.class_names)
    for name in datasets:
        if name in DatasetCatalog:
            names = MetadataCatalog.get(name).get("stuff_classes")
            if names is not None and len(names) == num_classes:
                return list(names)
    return [f"class_{i}" for i in range(num_classes)]


def default_output(source: MaskSource) -> str:
    """``<root>/annotations_filtered`` for a synthetic dataset whose masks lie in ``<root>/annotations`` (where the
    ``*_syn_filtered_*`` splits read them); otherwise the user must say where."""
    folders = {os.path.dirname(os.path.abspath(r["sem_seg_file_name"])) for r in source.records}
    if len(folders) == 1:
        folder = folders.pop()
        if os.path.basename(folder) == MASKS_DIR:
            return os.path.join(os.path.dirname(folder), FILTERED_MASKS_DIR)
    raise DatasetError(
        f"cannot choose an output folder for {source.description} (its masks are not in one '{MASKS_DIR}' folder of "
        f"a synthetic root); pass --output DIR"
    )


def check_output_is_not_input(output: str, sources: Sequence[MaskSource]) -> None:
    """DatasetError when ``output`` is a folder holding input masks or images: inputs are never modified."""
    target = os.path.realpath(output)
    for source in sources:
        folders = {os.path.dirname(r[key]) for r in source.records for key in ("sem_seg_file_name", "file_name")}
        for folder in sorted(folders):
            if os.path.realpath(folder or ".") == target:
                raise DatasetError(
                    f"--output {output} is an input folder of {source.description}; inputs are never overwritten: "
                    f"choose another folder"
                )
