"""A small MLP learns sklearn's digits well above chance in a few epochs."""

import numpy as np

from hpcdist import nn


def test_mlp_learns_digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    model = nn.mlp([64, 64, 10], dropout=0.1, seed=0)
    opt = nn.Momentum(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    sched = nn.LinearWarmup(nn.CosineLR(0.1, total_steps=8 * 44), warmup_steps=20, start_lr=0.01)
    rng, step = np.random.default_rng(1), 0
    for _ in range(8):
        perm = rng.permutation(train)
        for i in range(0, len(perm), 32):
            batch = perm[i : i + 32]
            sched.apply(opt, step)
            _, d = nn.softmax_cross_entropy(model.forward(x[batch]), y[batch])
            model.backward(d, input_grad=False)
            opt.step()
            step += 1
    model.eval()
    loss_sum, correct, count = nn.softmax_cross_entropy_sums(model.forward(x[test]), y[test])
    assert count == len(test)
    assert correct / count > 0.9, f"accuracy {correct / count:.3f} (chance is 0.1)"
    assert loss_sum / count < 0.5
