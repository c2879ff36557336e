"""The part each energy domain plays in a total: decided here, once, for every reader.

A domain is one ``energy`` series of one host: ``(host, source, domain)``. Its **role**:

- :data:`COUNTED`: added to the total (a CPU package, DRAM, the CPU model's estimate, or
  whatever the user's ``--count`` patterns name);
- :data:`GPU`: added to the total, and a GPU (``gpu*``): its power is also the GPU power;
- :data:`WALL`: the whole machine at the wall (``wall``, e.g. IPMI's): shown beside the total,
  never in it, since the wall contains every component;
- :data:`NESTED`: inside a counted domain (``core-*``, ``uncore-*`` inside a package);
- :data:`PLATFORM`: the platform (``psys``), which contains the packages;
- :data:`DUPLICATE`: another source measures the same thing: a GPU that both NVML and
  dcgm-exporter report counts once, from NVML; the CPU model's estimate counts only on a host
  with no RAPL domain;
- :data:`OTHER`: anything else the patterns do not name.

Only a duplicate is kept out whatever the patterns say; a nested, platform or wall domain is
counted (and then plays :data:`COUNTED`) where the user's patterns name it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

COUNTED = "counted"
GPU = "gpu"
WALL = "wall"
NESTED = "nested"
PLATFORM = "platform"
DUPLICATE = "duplicate"
OTHER = "other"
IN_TOTAL = (COUNTED, GPU)

DEFAULT_COUNTED = ("package-*", "dram-*", "gpu*", "cpu-estimate")
GPU_DOMAINS = "gpu*"
UNCOUNTED_ROLES = ((WALL, ("wall",)), (NESTED, ("core-*", "uncore-*")),
                   (PLATFORM, ("psys", "psys-*")))  # fmt: skip

Domain = tuple[str, str, str]  # (host, source, domain)


def domain_of(tags: Mapping[str, str]) -> Domain:
    """The ``(host, source, domain)`` of an ``energy`` series from its tags."""
    return tags.get("host", ""), tags.get("source", ""), tags.get("domain", "")


def _matches(domain: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(domain, p) for p in patterns)


def _duplicates(domains: Sequence[Domain]) -> set[Domain]:
    """dcgm's reading of a GPU NVML reads too; the CPU model's estimate on a host with RAPL."""
    hosts_with_rapl = {host for host, source, _ in domains if source == "rapl"}
    nvml_gpus = {(host, domain) for host, source, domain in domains if source == "nvml"}
    return {
        (host, source, domain)
        for host, source, domain in domains
        if (source == "model" and host in hosts_with_rapl)
        or (source == "dcgm" and (host, domain) in nvml_gpus)
    }


def domain_roles(domains: Sequence[Domain], patterns: Sequence[str] = DEFAULT_COUNTED) -> list[str]:
    """The role of each ``(host, source, domain)``, judged among all of them (a duplicate
    needs its better twin in the list); ``patterns`` (fnmatch) name the counted domains."""
    duplicates = _duplicates(domains)
    roles = []
    for key in domains:
        name = key[2]
        if key in duplicates:
            roles.append(DUPLICATE)
        elif _matches(name, patterns):
            roles.append(GPU if fnmatch.fnmatchcase(name, GPU_DOMAINS) else COUNTED)
        else:
            roles.append(next((r for r, names in UNCOUNTED_ROLES if _matches(name, names)), OTHER))
    return roles
