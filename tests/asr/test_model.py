"""The acoustic model's bidirectional layers: exact on padded batches, and independent of what else is in the batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from services.asr.model import BiRNN, CTCModel, ModelConfig


@pytest.mark.parametrize("cell,cls", [("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_birnn_equals_packed_bidirectional_rnn(cell, cls):
    """BiRNN (no PackedSequence) against PyTorch's packed bidirectional RNN with the same weights: outputs
    and gradients agree on every frame within each sequence's length."""
    torch.manual_seed(0)
    B, T, n_in, H = 5, 17, 12, 8
    lens = torch.tensor([17, 3, 9, 17, 1])
    ref = cls(n_in, H, 2, batch_first=True, bidirectional=True)
    ours = BiRNN(cell, n_in, H, 2, dropout=0.0)
    for layer in range(2):
        for suffix, mods in (("", ours.fwd), ("_reverse", ours.bwd)):
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(mods[layer], f"{w}_l0").data.copy_(getattr(ref, f"{w}_l{layer}{suffix}").data)
    x = torch.randn(B, T, n_in)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    packed = nn.utils.rnn.pack_padded_sequence(x_ref, lens, batch_first=True, enforce_sorted=False)
    y_ref, _ = nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=T)
    y = ours(x_ours, lens)[-1]
    mask = (torch.arange(T)[None] < lens[:, None])[..., None].float()
    torch.testing.assert_close(y * mask, y_ref * mask, atol=1e-6, rtol=1e-5)
    w = torch.randn(B, T, 2 * H)
    (y * mask * w).sum().backward()
    (y_ref * mask * w).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.bwd[1].weight_hh_l0.grad, ref.weight_hh_l1_reverse.grad, atol=1e-6, rtol=1e-5)


def test_reverse_index_is_an_involution_within_each_length():
    rev = BiRNN.reverse_index(torch.tensor([4, 2]), 5)
    assert rev.tolist() == [[3, 2, 1, 0, 4], [1, 0, 2, 3, 4]]
    assert torch.equal(rev.gather(1, rev), torch.arange(5).expand(2, 5))


def test_an_utterance_decodes_the_same_alone_or_batched_with_longer_ones():
    """Serving batches requests of different lengths: padding must not change anyone's output."""
    torch.manual_seed(1)
    model = CTCModel(ModelConfig(hidden=16, proj=24, channels=4)).eval()
    short, long = torch.randn(1, 50, 80), torch.randn(1, 130, 80)
    batch = torch.zeros(2, 130, 80)
    batch[0, :50], batch[1] = short[0], long[0]
    with torch.no_grad():
        alone, n_alone = model(short, torch.tensor([50]))
        both, n_both = model(batch, torch.tensor([50, 130]))
    assert n_alone.item() == n_both[0].item()
    torch.testing.assert_close(both[0, : n_alone.item()], alone[0], atol=1e-5, rtol=1e-4)


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="unknown recurrent cell"):
        BiRNN("rnn", 4, 4, 1, 0.0)


def test_a_model_pt_from_before_birnn_still_loads():
    """model.pt files written by the packed-GRU model (no "cell" in their config, nn.GRU parameter names)."""
    import io
    import re

    from services.asr.model import export_state, load_model

    torch.manual_seed(2)
    model = CTCModel(ModelConfig(hidden=16, proj=24, channels=4, cell="gru")).eval()
    blob = torch.load(io.BytesIO(export_state(model)), weights_only=False)
    del blob["config"]["cell"]
    old = {}
    for k, v in blob["state_dict"].items():
        m = re.fullmatch(r"rnn\.(fwd|bwd)\.(\d+)\.(\w+)_l0", k)
        old[f"rnn.{m[3]}_l{m[2]}{'_reverse' if m[1] == 'bwd' else ''}" if m else k] = v
    blob["state_dict"] = old
    buf = io.BytesIO()
    torch.save(blob, buf)
    loaded, _ = load_model(buf.getvalue())
    assert loaded.cfg.cell == "gru"
    x = torch.randn(1, 60, 80)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, torch.tensor([60]))[0], model.half().float()(x, torch.tensor([60]))[0])


def test_locked_dropout_keeps_one_mask_per_sequence_and_the_expectation():
    from services.asr.model import LockedDropout

    torch.manual_seed(3)
    drop = LockedDropout(0.25).train()
    y = drop(torch.ones(64, 30, 40))
    torch.testing.assert_close(torch.unique(y), torch.tensor([0.0, 1 / 0.75]))
    assert torch.equal(y, y[:, :1].expand_as(y))  # the same features dropped in every frame of a sequence
    assert abs(y.mean().item() - 1.0) < 0.05
    x = torch.randn(2, 5, 3)
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("layers", [2, 3])
def test_intermediate_ctc_outputs_are_the_lower_layers_through_the_same_head(layers):
    torch.manual_seed(4)
    model = CTCModel(ModelConfig(hidden=16, proj=24, channels=4, layers=layers)).eval()
    x, n = torch.randn(2, 70, 80), torch.tensor([70, 41])
    with torch.no_grad():
        lp, out_len, inter = model(x, n, intermediate=True)
        lp2, _ = model(x, n)
        h = model.conv(x.unsqueeze(1))
        first = model.rnn(model.proj(h.permute(0, 2, 1, 3).reshape(2, h.shape[2], -1)), out_len)[0]
    torch.testing.assert_close(lp, lp2)  # without self-conditioning the intermediate outputs change nothing
    assert len(inter) == layers - 1 and all(i.shape == lp.shape and not torch.allclose(i, lp) for i in inter)
    torch.testing.assert_close(inter[0][0], model.head(first).log_softmax(-1)[0])  # the full-length one
    torch.testing.assert_close(inter[-1].exp().sum(-1), torch.ones(inter[-1].shape[:2]))
    assert h.shape[2] == lp.shape[1] and out_len.tolist() == [24, 14]


def test_self_conditioning_feeds_the_first_layers_posteriors_to_the_second():
    torch.manual_seed(5)
    model = CTCModel(ModelConfig(hidden=16, proj=24, channels=4, self_condition=True)).train()
    x, n = torch.randn(2, 70, 80), torch.tensor([70, 41])
    lp, _, inter = model(x, n, intermediate=True)
    (lp * torch.randn_like(lp)).sum().backward()  # the final output alone trains the conditioning layer
    assert model.condition.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        before = model(x, n)[0]
        model.condition.weight.mul_(2)
        assert not torch.allclose(model(x, n)[0], before)  # serving runs the conditioning too
