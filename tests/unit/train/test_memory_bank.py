"""MA-LMM memory bank compression, checked against a plain per-(row, token) loop written from the paper's rule."""
import torch
import torch.nn.functional as F

from services.train.bridge.memory_bank import compress, empty, push


def reference_compress(bank, sizes):
    """One (b, n) at a time: merge the most cosine-similar adjacent pair into its size-weighted mean."""
    batch, slots, tokens, _ = bank.shape
    out_bank = torch.empty(batch, slots - 1, tokens, bank.shape[-1], dtype=bank.dtype)
    out_sizes = torch.empty(batch, slots - 1, tokens, dtype=sizes.dtype)
    for b in range(batch):
        for n in range(tokens):
            sims = [F.cosine_similarity(bank[b, t, n], bank[b, t + 1, n], dim=0) for t in range(slots - 1)]
            k = int(torch.stack(sims).argmax())
            merged = (bank[b, k, n] * sizes[b, k, n] + bank[b, k + 1, n] * sizes[b, k + 1, n]) / (
                sizes[b, k, n] + sizes[b, k + 1, n])
            seq = [bank[b, t, n] for t in range(slots)]
            size_seq = [sizes[b, t, n] for t in range(slots)]
            seq[k:k + 2] = [merged]
            size_seq[k:k + 2] = [sizes[b, k, n] + sizes[b, k + 1, n]]
            out_bank[b, :, n] = torch.stack(seq)
            out_sizes[b, :, n] = torch.stack(size_seq)
    return out_bank, out_sizes


def test_compress_matches_the_per_token_loop():
    torch.manual_seed(0)
    bank = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    sizes = torch.randint(1, 4, (3, 6, 4))
    got_bank, got_sizes = compress(bank, sizes)
    want_bank, want_sizes = reference_compress(bank, sizes)
    assert got_bank.shape == (3, 5, 4, 5) and got_sizes.shape == (3, 5, 4)
    torch.testing.assert_close(got_bank, want_bank)
    assert torch.equal(got_sizes, want_sizes)
    assert torch.equal(got_sizes.sum(1), sizes.sum(1))  # every original is still counted once


def test_the_most_similar_pair_is_merged_with_size_weights():
    a, b, c = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.1, 1.0])
    bank = torch.stack([a, b, c]).view(1, 3, 1, 2)
    sizes = torch.tensor([1, 3, 1]).view(1, 3, 1)
    new_bank, new_sizes = compress(bank, sizes)
    assert new_sizes.flatten().tolist() == [1, 4]
    torch.testing.assert_close(new_bank[0, :, 0], torch.stack([a, (3 * b + c) / 4]))


def test_token_positions_merge_different_pairs():
    bank = torch.zeros(1, 3, 2, 2)
    bank[0, :, 0] = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])  # position 0: slots 0 and 1 alike
    bank[0, :, 1] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])  # position 1: slots 1 and 2 alike
    new_bank, new_sizes = compress(bank, torch.ones(1, 3, 2, dtype=torch.long))
    assert new_sizes[0, :, 0].tolist() == [2, 1] and new_sizes[0, :, 1].tolist() == [1, 2]


def test_empty_slots_are_absorbed_before_real_memories_merge():
    torch.manual_seed(1)
    real = torch.randn(1, 3, 2, 4)
    bank, sizes = empty(1, 2, 2, 4, like=real)
    for t in range(3):  # two empty slots + three real entries, length 3: only the empties disappear
        bank, sizes = push(bank, sizes, real[:, t], torch.ones(1, 2, dtype=torch.long), length=3)
    assert torch.equal(bank, real) and sizes.eq(1).all()
    bank, sizes = push(bank, sizes, torch.randn(1, 2, 4), torch.ones(1, 2, dtype=torch.long), length=3)
    assert bank.shape[1] == 3 and sizes.sum(1).eq(4).all()  # now two real memories had to merge


def test_compress_is_differentiable_and_rejects_bad_shapes():
    bank = torch.randn(2, 4, 1, 3, requires_grad=True)
    out, _ = compress(bank, torch.ones(2, 4, 1, dtype=torch.long))
    out.sum().backward()
    assert bank.grad is not None and torch.isfinite(bank.grad).all()
    for bad in ((torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.long)),
                (torch.randn(1, 1, 1, 3), torch.ones(1, 1, 1, dtype=torch.long))):
        try:
            compress(*bad)
        except ValueError:
            continue
        raise AssertionError("compress accepted a bad shape")
