"""bench/data_scale.py's parts that decide its figures: the fake tree (read by the project's own dataset loaders, with
every file a hard link under ext4's link cap), the sizes it stands for, the /proc memory reader (a process's own
allocation shows in its USS; loader workers found under fork and forkserver alike) and the issue's checks.

The measurements themselves (minutes, whole training start-ups) are not run here."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from freemask.data.catalog import DatasetCatalog
from freemask.toy.generator import ToyParams, generate_toy_dataset


@pytest.fixture
def tree_module(load_script):
    return load_script("_data_tree")


@pytest.fixture
def toy_files(tmp_path, tree_module):
    generate_toy_dataset(str(tmp_path / "toy_root"), ToyParams(num_train=2, num_val=1, num_seeds=1))
    return tree_module.toy_sources(str(tmp_path / "toy_root"))


def test_sizes_stand_for_freemask_scales(tree_module):
    parse = tree_module.parse_size
    assert (parse("600").family, parse("600").real, parse("600").synthetic) == ("ade", 300, 300)
    assert (parse("20k").real, parse("20k").synthetic) == (20_210, 20_000)
    assert parse("400k").joint == 420_210 and parse("400k").family == "ade"
    coco = parse("710k")
    assert (coco.family, coco.joint, coco.syn_dataset) == ("coco", 828_287, "coco_2017_syn_stuff_sem_seg_train")
    assert parse("coco:5k").real == 118_287
    with pytest.raises(ValueError):
        parse("imagenet:5k")


@pytest.mark.parametrize("family", ["ade", "coco"])
def test_tree_is_read_by_the_registered_datasets(family, tmp_path, tree_module, toy_files, monkeypatch):
    spec = tree_module.TreeSpec(family, 5, 12)
    monkeypatch.setattr(tree_module, "MAX_LINKS_PER_SOURCE", 3)
    folder, _, built = tree_module.ensure_tree(str(tmp_path / "trees"), spec, *toy_files)
    assert built
    monkeypatch.setenv("DETECTRON2_DATASETS", folder)
    real, syn = DatasetCatalog.get(spec.train_dataset), DatasetCatalog.get(spec.syn_dataset)
    assert len(real) == 5 and len(syn) == 12
    # 12 pairs over 5 real stems: seeds 42, 43, 44 as the release names its copies
    assert sorted({r["seed"] for r in syn}) == [42, 43, 44]
    assert {r["real_stem"] for r in syn} == {os.path.splitext(os.path.basename(r["file_name"]))[0] for r in real}
    images, masks = toy_files
    toy_bytes = {open(p, "rb").read() for p in images + masks}
    for record in real + syn:
        for path in (record["file_name"], record["sem_seg_file_name"]):
            assert open(path, "rb").read() in toy_bytes
            assert os.stat(path).st_nlink <= 3 + 1  # the cap, plus the copy's own name in .sources
    # built once: a second call reuses it; an interrupted build (no marker) is rebuilt
    assert tree_module.ensure_tree(str(tmp_path / "trees"), spec, *toy_files)[2] is False
    os.remove(os.path.join(folder, tree_module.COMPLETE))
    assert tree_module.ensure_tree(str(tmp_path / "trees"), spec, *toy_files)[2] is True


_HOLDER = textwrap.dedent(
    """
    import multiprocessing, sys, time
    def hold(size):
        block = bytearray(size)
        for i in range(0, size, 4096):
            block[i] = 1
        time.sleep(60)
    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        workers = [ctx.Process(target=hold, args=(4096,), daemon=True) for _ in range(2)]
        for w in workers:
            w.start()
        print("ready", flush=True)
        hold(int(sys.argv[2]))
    """
)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_memory_reader_finds_workers_and_private_pages(method, tmp_path, load_script):
    memory = load_script("_proc_memory")
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    size = 200 * 2**20
    proc = subprocess.Popen([sys.executable, str(script), method, str(size)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 30
        while (memory.uss_bytes(proc.pid) or 0) < size and time.time() < deadline:
            time.sleep(0.1)
        workers = memory.loader_workers(proc.pid)
        assert len(workers) == 2  # under forkserver: the server (with children) and the resource tracker left out
        found = memory.job_memory(proc.pid, [proc.pid])
        assert found["rank"][0] >= size  # the touched 200 MiB are this process's own
        assert all(w < size / 4 for w in found["worker"]) and len(found["worker"]) == 2
        assert sum(found["pss"]) >= size
    finally:
        proc.kill()
        proc.wait()
    assert memory.uss_bytes(proc.pid) is None  # gone


def _row(joint, worker_gb, rank_gb, startup):
    return {"joint": joint, "ranks": 2, "workers": 4, "worker_uss": [worker_gb * 1e9], "rank_uss": [rank_gb * 1e9],
            "startup_s": startup}  # fmt: skip


def test_must_show_lines_compare_828k_with_the_600_record_run(load_script):
    must_show = load_script("_scale_report").must_show
    small, big = _row(600, 0.46, 0.22, 10.0), _row(828_287, 0.68, 1.0, 12.0)
    lines = must_show([small, big], [{"synthetic": 400_000, "resume_s": 19.0}])
    assert lines[0].startswith("FAIL: worker USS +0.22 GB")
    assert lines[1].startswith("FAIL: rank USS +0.78 GB")
    assert lines[2].startswith("PASS: start-up 1.20x")
    assert lines[3].startswith("PASS: filter resume at 400k pairs")
    assert must_show([small], [])[0].startswith("not measured")

