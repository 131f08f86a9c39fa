"""The example programs in examples/ run, learn, and agree with NumPy.

Skipped when scikit-learn (the ``examples`` extra) is not installed.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

import logitkit  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_mlp.py"


@pytest.fixture(scope="module")
def train_mlp():
    """examples/train_mlp.py imported as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("train_mlp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_two_epochs_learn_the_digits(train_mlp):
    result = train_mlp.train(epochs=2, log=None)
    assert [s.epoch for s in result.history] == [1, 2]
    first, last = result.history
    assert np.isfinite(first.loss) and np.isfinite(last.loss)
    assert last.loss < first.loss
    assert last.train_accuracy > 0.8
    assert last.test_accuracy > 0.8
    # the recorded batches cover the training set once, as float32 logits
    n_train = len(train_mlp.load_data()[0])
    assert sum(len(labels) for _, labels in result.last_epoch_batches) == n_train
    assert all(logits.dtype == np.float32 for logits, _ in result.last_epoch_batches)


def test_training_is_deterministic(train_mlp):
    a = train_mlp.train(epochs=1, seed=3, log=None)
    b = train_mlp.train(epochs=1, seed=3, log=None)
    assert a.history == b.history


def test_model_stays_float32(train_mlp):
    rng = np.random.default_rng(0)
    model = train_mlp.MLP(64, 16, 10, rng)
    opt = train_mlp.SGDMomentum(model.params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = rng.standard_normal((8, 64), dtype=np.float32)
    y = rng.integers(0, 10, size=8)
    logits, cache = model.forward(x)
    _, grad = logitkit.cross_entropy(logits, y, return_grad=True)
    opt.step(model.backward(grad, cache))
    assert logits.dtype == np.float32
    for name in model.params:
        assert model.params[name].dtype == np.float32, name
        assert opt.velocity[name].dtype == np.float32, name


def test_backward_matches_finite_differences(train_mlp):
    rng = np.random.default_rng(1)
    model = train_mlp.MLP(5, 4, 3, rng)
    model.params = {k: v.astype(np.float64) for k, v in model.params.items()}
    model.params["b1"] += 0.1  # keep the ReLUs away from their kink
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 3, size=6)

    def loss():
        return float(logitkit.cross_entropy(model.forward(x)[0], y))

    logits, cache = model.forward(x)
    _, grad = logitkit.cross_entropy(logits, y, return_grad=True)
    grads = model.backward(grad, cache)
    h = 1e-6
    for name, w in model.params.items():
        numeric = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + h
            up = loss()
            w[i] = old - h
            down = loss()
            w[i] = old
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-4, atol=1e-7, err_msg=name)


def test_numpy_step_matches_logitkit(train_mlp):
    # the worked example of the docstring: scores [2, 3, 4], second class correct
    z = np.array([[2.0, 3.0, 4.0]], dtype=np.float32)
    loss, grad = train_mlp.numpy_loss_and_grad(z, np.array([1]))
    np.testing.assert_allclose(grad, [[0.0900, -0.7553, 0.6652]], atol=1e-4)
    assert loss.dtype == grad.dtype == np.float32

    rng = np.random.default_rng(2)
    batches = [
        (rng.standard_normal((n, 10), dtype=np.float32) * 5, rng.integers(0, 10, size=n))
        for n in (1, 3, 32, 100)
    ]
    loss_diff, grad_diff = train_mlp.check_same(batches)
    assert loss_diff < 1e-5 and grad_diff < 1e-6
    times = train_mlp.time_per_call(batches, repeats=3)
    assert set(times) == {"logitkit", "numpy"}
    assert all(t > 0 for t in times.values())


def test_command_line_two_epochs():
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE), "--epochs", "2", "--repeats", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "epoch 1/2" in out and "epoch 2/2" in out
    assert "allclose" in out
    assert re.search(r"logitkit\.cross_entropy.*\d us", out)
    test_accuracies = [float(a) for a in re.findall(r"test (\d+\.\d+)%", out)]
    assert len(test_accuracies) == 2
    assert test_accuracies[-1] > 80


def test_quiet_and_bad_arguments(train_mlp, capsys):
    assert train_mlp.main(["--epochs", "1", "--repeats", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" not in out
    assert "test accuracy" in out

    for bad in (["--epochs", "0"], ["--batch-size", "-1"], ["--lr", "0"]):
        with pytest.raises(SystemExit) as exc:
            train_mlp.parse_args(bad)
        assert exc.value.code == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
