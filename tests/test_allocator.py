"""camtl.training.allocator: entry points keep freed host memory for the next step; the user's settings
win."""

import json
import os
import subprocess
import sys

import pytest

from camtl.training.allocator import environment_configures_malloc

# Frees a 256 MiB block after touching it, and reports the resident set before and after the free.
PROBE = """
import json, sys
from camtl.training.allocator import retain_freed_memory
took_effect = retain_freed_memory() if sys.argv[1] == "retain" else False

def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

block = bytearray(256 * 2**20)  # one block, far above glibc's mmap threshold; bytearray zero-fills it
touched = rss_mib()
del block
print(json.dumps({"took_effect": took_effect, "touched": touched, "freed": rss_mib()}))
"""


def probe(mode: str, **environment: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    env.pop("CAMTL_RETAIN_FREED_MEMORY", None)
    process = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**env, **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(process.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc are Linux's")
def test_freed_blocks_stay_resident_only_when_retained():
    system = probe("system")
    assert system["touched"] - system["freed"] > 200  # glibc unmapped the block on free
    retained = probe("retain")
    assert retained["took_effect"]
    assert retained["touched"] - retained["freed"] < 50  # kept for the next allocation


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc are Linux's")
@pytest.mark.parametrize("environment", [{"CAMTL_RETAIN_FREED_MEMORY": "0"}, {"MALLOC_ARENA_MAX": "2"}])
def test_the_opt_out_and_the_users_own_malloc_settings_win(environment):
    result = probe("retain", **environment)
    assert not result["took_effect"]
    assert result["touched"] - result["freed"] > 200


def test_what_counts_as_the_environment_configuring_malloc():
    assert not environment_configures_malloc({"PATH": "/usr/bin", "OMP_NUM_THREADS": "2"})
    assert environment_configures_malloc({"MALLOC_TRIM_THRESHOLD_": "0"})
    assert environment_configures_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"})
    assert environment_configures_malloc({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"})
    assert not environment_configures_malloc({"LD_PRELOAD": ""})
