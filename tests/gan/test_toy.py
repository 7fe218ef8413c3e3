"""The GAN game's theory on a 1-D toy (two Gaussians): D* and V at equilibrium."""

from __future__ import annotations

import math

import torch

from services.gan import toy

DATA, GEN = (2.0, 0.5), (0.0, 1.0)


def test_js_integral_matches_known_values():
    assert abs(toy.js_divergence(DATA, DATA)) < 1e-9
    far = toy.js_divergence((0.0, 1.0), (40.0, 1.0))
    assert abs(far - math.log(2)) < 1e-6  # disjoint supports: JS = log 2


def test_trained_discriminator_approaches_optimal_d_and_v_equals_2js_minus_2log2():
    torch.set_num_threads(1)
    D = toy.fit_discriminator(DATA, GEN, steps=1000)
    x = torch.linspace(-1.5, 3.5, 101)  # where both densities have mass
    with torch.no_grad():
        d = torch.sigmoid(D(x))
    d_star = toy.optimal_d(x, DATA, GEN)
    assert float((d - d_star).abs().max()) < 0.1
    assert float((d - d_star).abs().mean()) < 0.03
    v, v_star = toy.value(D, DATA, GEN), 2 * toy.js_divergence(DATA, GEN) - 2 * toy.LOG2
    assert abs(v - v_star) < 0.02, (v, v_star)
    assert v_star > -2 * toy.LOG2 + 0.5  # the distributions differ: V is far above the equilibrium value


def test_game_reaches_equilibrium_minus_2log2():
    torch.set_num_threads(1)
    D, G = toy.train_game(DATA, steps=1500)
    mu, sigma = G.params
    assert abs(mu - DATA[0]) < 0.15 and abs(sigma - DATA[1]) < 0.15, (mu, sigma)
    assert abs(toy.value(D, DATA, G) + 2 * toy.LOG2) < 0.03
    with torch.no_grad():
        d = torch.sigmoid(D(torch.linspace(1.0, 3.0, 41)))
    assert float((d - 0.5).abs().max()) < 0.1  # D* = 1/2 where p_g = p_data
