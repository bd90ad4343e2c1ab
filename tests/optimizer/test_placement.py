"""CPU placement layouts on a topology given as plain data (a 2-socket SMT server)."""

from __future__ import annotations

import pytest

from optimizer.placement import PLACEMENTS, layout, placement_of

# 2 packages x 2 cores x 2 threads, numbered like Intel servers: cpu0-3 first threads, cpu4-7 their siblings
TWO_SOCKET_SMT = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1), 4: (0, 0), 5: (0, 1), 6: (1, 0), 7: (1, 1)}


@pytest.mark.parametrize(
    "n, placement, expected",
    [
        (2, "compact", [0, 1]),
        (2, "smt-siblings", [0, 4]),  # both threads of one core
        (2, "spread", [0, 2]),  # one core on each package
        (4, "spread", [0, 1, 2, 3]),  # every core once before any sibling
        (4, "smt-siblings", [0, 1, 4, 5]),  # two whole cores of package 0
        (6, "spread", [0, 1, 2, 3, 4, 6]),
        (8, "compact", list(range(8))),
    ],
)
def test_layouts_on_a_two_socket_smt_server(n, placement, expected):
    assert layout(n, placement, list(range(8)), TWO_SOCKET_SMT) == expected


def test_layout_refuses_bad_requests():
    with pytest.raises(ValueError, match="unknown placement 'random'"):
        layout(1, "random", [0, 1], {})
    with pytest.raises(ValueError, match="3 CPUs asked, 2 allowed"):
        layout(3, "compact", [0, 1], {})


def test_unknown_cpus_are_their_own_core_on_package_0():
    assert layout(2, "spread", [0, 1, 2], {}) == layout(2, "spread", [0, 1, 2], {0: (0, 0), 1: (0, 1), 2: (0, 2)})


def test_placement_of_a_mask():
    allowed = list(range(8))
    for p in PLACEMENTS:
        mask = layout(2, p, allowed, TWO_SOCKET_SMT)
        assert layout(2, placement_of(mask, allowed, TWO_SOCKET_SMT), allowed, TWO_SOCKET_SMT) == mask
    assert placement_of([1, 6], allowed, TWO_SOCKET_SMT) == "custom"
    assert placement_of([0, 4], allowed, TWO_SOCKET_SMT) == "smt-siblings"
