"""Block scan, selection, host copies and error feedback of omnireduce.torch, on the CPU (and CUDA where present).

    .venv/bin/pytest -q tests/torch/test_blocks.py
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="omnireduce.torch tests need PyTorch: pip install -e '.[test,torch]'")

from omnireduce.torch.blocks import (  # noqa: E402
    LANES,
    Score,
    block_scores,
    blocks_above,
    copy_blocks_to_host,
    copy_result_to_device,
    nonzero_block_indices,
    top_blocks,
    zero_blocks,
)
from omnireduce.torch.sparsify import ErrorFeedback, Sparsification  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def sparse_flat(length: int, blocks: list[int], device: str, seed: int = 0) -> torch.Tensor:
    """`length` zeros with the given blocks filled with normal values (the tail block may be among them)."""
    generator = torch.Generator().manual_seed(seed)
    flat = torch.zeros(length)
    for block in blocks:
        stop = min(length, (block + 1) * LANES)
        flat[block * LANES:stop] = torch.randn(stop - block * LANES, generator=generator)
    return flat.to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_scores_cover_the_tail_block(device):
    flat = sparse_flat(5 * LANES + 7, [1, 5], device)
    scores = block_scores(flat, Score.MAX_ABS)
    assert scores.shape == (6,)
    expected = [float(flat[b * LANES:(b + 1) * LANES].abs().max()) for b in range(6)]
    assert scores.cpu().tolist() == pytest.approx(expected)
    l2 = block_scores(flat, Score.L2)
    assert float(l2[5]) == pytest.approx(float(flat[5 * LANES:].norm()), rel=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_natural_sparsity_keeps_nonzero_and_nan_blocks(device):
    flat = sparse_flat(8 * LANES, [2, 6], device)
    flat[3 * LANES + 4] = math.nan  # a NaN block must reach the agent, which makes the whole job refuse the bucket
    assert nonzero_block_indices(block_scores(flat, Score.MAX_ABS)).cpu().tolist() == [2, 3, 6]


def test_threshold_and_top_k_pick_the_right_blocks():
    scores = torch.tensor([0.0, 0.5, 3.0, 0.1, 2.0, math.nan, 1.0, 0.0])
    assert blocks_above(scores, 0.5).tolist() == [2, 4, 5, 6]
    # ceil(0.25 * 8) = 2 blocks: NaN ranks first, then the largest.
    assert top_blocks(scores, 0.25).tolist() == [2, 5]
    # top-k never sends an all-zero block even when k is larger than the non-zero ones.
    assert top_blocks(torch.tensor([0.0, 1.0, 0.0]), 1.0).tolist() == [1]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("length", [7 * LANES, 7 * LANES + 5, 3])
def test_chosen_blocks_reach_the_host_and_the_result_comes_back(device, length):
    last = (length - 1) // LANES
    flat = sparse_flat(length, sorted({0, last}), device)
    chosen = nonzero_block_indices(block_scores(flat, Score.MAX_ABS))
    host = copy_blocks_to_host(flat, chosen)
    assert host.values.shape == (length,)
    np.testing.assert_array_equal(host.values, flat.cpu().numpy())
    assert host.indices.tolist() == sorted({0, last})
    out = torch.full((length,), 7.0, device=device)
    result = host.values * 2
    copy_result_to_device(result, out, divisor=2)
    np.testing.assert_array_equal(out.cpu().numpy(), host.values)


@pytest.mark.parametrize("device", DEVICES)
def test_zero_blocks_clears_only_the_chosen_blocks(device):
    flat = sparse_flat(4 * LANES + 3, [0, 1, 4], device)
    kept = flat.clone()
    zero_blocks(flat, torch.tensor([1, 4], device=device))
    assert torch.count_nonzero(flat[LANES:]) == 0
    assert torch.equal(flat[:LANES], kept[:LANES])


@pytest.mark.parametrize("device", DEVICES)
def test_error_feedback_delays_but_loses_nothing(device):
    """Sent blocks plus the final residual add up to the sum of all gradients: nothing is lost."""
    sparsification = Sparsification.block_top_k(0.25)
    feedback = ErrorFeedback()
    generator = torch.Generator().manual_seed(3)
    total_gradient = torch.zeros(16 * LANES, dtype=torch.float64)
    total_sent = torch.zeros(16 * LANES, dtype=torch.float64)
    for _step in range(5):
        gradient = torch.randn(16 * LANES, generator=generator)
        total_gradient += gradient.double()
        work = gradient.to(device)
        feedback.compensate(0, work)
        chosen = sparsification.select(work)
        assert chosen.numel() == 4
        sent = copy_blocks_to_host(work, chosen).values
        total_sent += torch.from_numpy(sent).double()
        residual = work.clone()
        zero_blocks(residual, chosen)
        feedback.keep(0, residual)
    final = feedback.residual(0)
    assert final is not None
    torch.testing.assert_close(total_sent + final.cpu().double(), total_gradient, rtol=0, atol=1e-5)


def test_a_rebuilt_bucket_drops_its_old_residual():
    feedback = ErrorFeedback()
    feedback.keep(0, torch.ones(64))
    resized = torch.zeros(96)
    feedback.compensate(0, resized)
    assert torch.count_nonzero(resized) == 0 and feedback.residual(0) is None


def test_sparsification_refuses_bad_settings():
    with pytest.raises(ValueError, match="fraction"):
        Sparsification.block_top_k(0.0)
    with pytest.raises(ValueError, match="threshold"):
        Sparsification.block_threshold(-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton scan runs on CUDA tensors only (no GPU here)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_the_triton_scan_equals_torch_on_the_gpu(dtype):
    from omnireduce.torch import triton_scan
    from omnireduce.torch.blocks import _failed_kinds

    if not triton_scan.available():
        pytest.skip("Triton is not installed on this GPU machine")
    generator = torch.Generator().manual_seed(3)
    blocks = torch.randn(10_007, LANES, generator=generator).to("cuda", dtype)
    blocks[torch.rand(10_007, generator=generator) < 0.9] = 0  # mostly zero blocks, as a sparse gradient
    blocks[5, 3], blocks[77, 0], blocks[78, 31], blocks[900, 1] = math.nan, math.inf, -math.inf, -0.0
    wide = blocks.float()
    for squares, expected in ((False, wide.abs().amax(dim=1)), (True, torch.linalg.vector_norm(wide, dim=1))):
        for rows, warps in ((32, 1), (128, 4), (512, 8)):
            got = triton_scan.block_scores(blocks, squares, rows, warps)
            torch.testing.assert_close(got, expected, equal_nan=True, rtol=1e-6, atol=0)
    flat = blocks.reshape(-1)
    assert nonzero_block_indices(block_scores(flat, Score.MAX_ABS)).tolist() == \
        torch.nonzero(wide.abs().amax(dim=1).isnan() | (wide.abs().amax(dim=1) != 0)).reshape(-1).tolist()
    assert not _failed_kinds, f"a faster scan failed and was dropped: {_failed_kinds}"
