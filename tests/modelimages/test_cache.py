"""The model cache's budget: the least recently used model goes first, a model in use never."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from kaito.modelimages.cache import ModelCache
from kaito.modelimages.pull import pull_model
from tests.modelimages.models import files_of, make_model
from tests.modelimages.test_push_pull import creds, pushed
from tests.registry import Registry


class Clock:
    """A virtual wall clock for the cache's LRU order."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        self.now += 10
        return self.now


def test_a_budget_evicts_the_least_recently_used_model_nobody_uses(registry: Registry, tmp_path: Path) -> None:
    images = [
        pushed(registry, make_model(tmp_path / f"m{i}", shards=2, shard_bytes=400_000, seed=100 * i)) for i in range(3)
    ]
    size = sum(len(data) for data in files_of(tmp_path / "m0").values())
    clock = Clock()
    cache = ModelCache(tmp_path / "cache", budget=int(size * 2.5), clock=clock)

    def pull(index: int, output: str) -> int:
        result = pull_model(
            images[index], tmp_path / output, cache=cache, auth=creds(registry), ca_file=registry.ca_file
        )
        return result.downloaded_blobs

    pull(0, "a")
    pull(1, "b")
    shutil.rmtree(tmp_path / "a")  # model 0's pod is gone; model 1's output still holds links to its blobs
    pull(2, "c")  # three models do not fit: the oldest unused one goes
    assert cache.size() <= cache.budget  # type: ignore[operator]
    assert pull(1, "b2") == 0  # still cached: in use by output b when the budget was enforced
    assert pull(0, "a2") > 0  # evicted earlier: downloaded again
    assert files_of(tmp_path / "a2") == files_of(tmp_path / "m0")


def test_models_in_use_stay_even_over_budget(registry: Registry, tmp_path: Path) -> None:
    images = [
        pushed(registry, make_model(tmp_path / f"m{i}", shards=1, shard_bytes=300_000, seed=7 + i)) for i in range(2)
    ]
    cache = ModelCache(tmp_path / "cache", budget=1, clock=Clock())
    for index, output in enumerate(("a", "b")):
        pull_model(images[index], tmp_path / output, cache=cache, auth=creds(registry), ca_file=registry.ca_file)
    assert cache.evict() == []  # both outputs still link their blobs
    shutil.rmtree(tmp_path / "a")
    assert cache.evict() == [images[0]]
    assert files_of(tmp_path / "b") == files_of(tmp_path / "m1")


def test_a_model_two_pods_share_stays_while_either_runs_though_each_sees_it_at_the_same_path(
    registry: Registry, tmp_path: Path
) -> None:
    """Every pod sees its model directory at one path (/mnt/model): here, `mnt`, moved aside as the next pod starts."""
    shared, other = (
        pushed(registry, make_model(tmp_path / f"m{i}", shards=1, shard_bytes=200_000, seed=40 + i)) for i in range(2)
    )
    cache = ModelCache(tmp_path / "cache", budget=1, clock=Clock())
    mount = tmp_path / "mnt"

    def start_pod(name: str, image: str) -> str:
        pulled = pull_model(image, mount, cache=cache, auth=creds(registry), ca_file=registry.ca_file)
        mount.rename(tmp_path / name)  # the pod's own emptyDir; the next pod's /mnt/model is another one
        return pulled.digest

    digest = start_pod("pod-a", shared)
    assert start_pod("pod-b", shared) == digest
    shutil.rmtree(tmp_path / "pod-a")
    start_pod("pod-c", other)  # its pull enforces the budget: pod-b still runs the shared model
    assert cache.has_model(digest) and cache.evict() == []
    assert files_of(tmp_path / "pod-b") == files_of(tmp_path / "m0")
    shutil.rmtree(tmp_path / "pod-b")
    assert cache.evict() == [shared]
    assert not cache.has_model(digest)


def test_a_model_linked_by_symbolic_links_is_kept_since_its_readers_cannot_be_counted(
    registry: Registry, tmp_path: Path
) -> None:
    kept, later = (
        pushed(registry, make_model(tmp_path / f"m{i}", shards=1, shard_bytes=100_000, seed=60 + i)) for i in range(2)
    )
    cache = ModelCache(tmp_path / "cache", budget=1, clock=Clock())
    with tempfile.TemporaryDirectory(dir="/dev/shm") as elsewhere:  # another file system: no hard links
        pulled = pull_model(kept, Path(elsewhere), cache=cache, auth=creds(registry), ca_file=registry.ca_file)
        assert pulled.link == "symlink"
        assert cache.evict() == [] and cache.has_model(pulled.digest)
        # a later model shares its config and tokenizer files: evicting it must leave the kept model's copies
        pull_model(later, tmp_path / "b", cache=cache, auth=creds(registry), ca_file=registry.ca_file)
        shutil.rmtree(tmp_path / "b")
        assert cache.evict() == [later]
        assert cache.has_model(pulled.digest)
        assert files_of(Path(elsewhere)) == files_of(tmp_path / "m0")
