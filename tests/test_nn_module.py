"""Module: named parameters, running with other parameters, saving and loading."""
import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn


def mlp(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(1, 8, rng, dtype=dtype), nn.ReLU(), nn.Linear(8, 1, rng, dtype=dtype))


def test_nested_parameter_names_in_registration_order():
    assert [name for name, _ in mlp().named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(p.requires_grad for p in mlp().parameters())


def test_same_network_runs_with_other_parameters():
    model = mlp(dtype=np.float64)
    x = tm.tensor(np.linspace(-1, 1, 5).reshape(5, 1))
    doubled = {name: p * 2.0 for name, p in model.parameters_dict().items()}
    w1, b1, w2, b2 = (p.data * 2.0 for p in model.parameters())
    expected = np.maximum(x.data @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(model(x, params=doubled).data, expected, rtol=1e-12)


def test_gradients_flow_to_the_parameters_passed_in():
    """d sum(relu(x W1 + b1) W2 + b2) / d params, at params = phi - 0.1, by hand in numpy."""
    model = mlp(dtype=np.float64)
    x = np.linspace(-1, 1, 3).reshape(3, 1)
    params = model.parameters_dict()
    adapted = {name: p - 0.1 for name, p in params.items()}
    grads = tm.grad(tm.sum(model(tm.tensor(x), params=adapted)), list(params.values()))
    w1, b1, w2, _ = (p.data - 0.1 for p in params.values())
    z = x @ w1 + b1
    dz = (z > 0) * w2.T  # d sum / d z, row by row
    expected = [x.T @ dz, dz.sum(0), np.maximum(z, 0).sum(0)[:, None], np.array([3.0])]
    for name, g, e in zip(params, grads, expected):
        np.testing.assert_allclose(g.data, e, rtol=1e-12, atol=1e-15, err_msg=name)


def test_missing_or_misshapen_params_are_named():
    model = mlp()
    x = tm.tensor(np.ones((2, 1), np.float32))
    params = model.parameters_dict()
    with pytest.raises(KeyError, match="no entry '2.bias'"):
        model(x, params={k: v for k, v in params.items() if k != "2.bias"})
    bad = dict(params, **{"0.weight": tm.tensor(np.ones((2, 8), np.float32))})
    with pytest.raises(ValueError, match=r"params\['0.weight'\] has shape \(2, 8\), expected \(1, 8\)"):
        model(x, params=bad)


def test_state_dict_round_trip_through_an_npz_file(tmp_path):
    source, target = mlp(seed=1), mlp(seed=2)
    source.save(tmp_path / "model.npz")
    target.load(tmp_path / "model.npz")
    for (name, a), (_, b) in zip(source.named_parameters(), target.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_loading_a_checkpoint_of_another_architecture_is_an_error():
    rng = np.random.default_rng(0)
    other = nn.Sequential(nn.Linear(1, 4, rng), nn.ReLU(), nn.Linear(4, 4, rng), nn.Linear(4, 1, rng))
    with pytest.raises(KeyError, match="another architecture"):
        mlp().load_state_dict(other.state_dict())
    wider = nn.Sequential(nn.Linear(1, 9, rng), nn.ReLU(), nn.Linear(9, 1, rng))
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(1, 9\) in the checkpoint but \(1, 8\)"):
        mlp().load_state_dict(wider.state_dict())


def test_batch_norm_buffers_are_saved_and_evaluation_uses_them():
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(3, track_running_stats=True, momentum=1.0)
    x = tm.tensor(rng.standard_normal((10, 3)).astype(np.float32) * 2 + 5)
    bn(x)
    state = bn.state_dict()
    np.testing.assert_allclose(state["running_mean"], x.data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(state["running_var"], x.data.var(0, ddof=1), rtol=1e-5)
    scale, shift = np.array([2.0, -1.0, 0.5], np.float32), np.array([0.3, 0.0, -4.0], np.float32)
    with tm.no_grad():
        bn.parameters_dict()["weight"].copy_(scale)
        bn.parameters_dict()["bias"].copy_(shift)
    bn.eval()
    single = bn(x[:1])  # one example: only running statistics make sense
    expected = (x.data[:1] - x.data.mean(0)) / np.sqrt(x.data.var(0, ddof=1) + 1e-5) * scale + shift
    np.testing.assert_allclose(single.data, expected, rtol=1e-4, atol=1e-5)


def test_layers_reject_wrong_input_shapes():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"Conv2d\(1, 4\): expected input \(N, 1, H, W\), or \(T, N, 1, H, W\) with "
                       r"per-task parameters, got input \(2, 3, 5, 5\)"):
        nn.Conv2d(1, 4, 3, rng)(tm.tensor(np.ones((2, 3, 5, 5), np.float32)))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\): expected input with 4 axes \(one more with per-task "
                                         r"parameters\) and 4 channels"):
        nn.BatchNorm2d(4)(tm.tensor(np.ones((2, 4), np.float32)))


def test_repr_reads_like_pytorch():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, rng, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4, 2, rng))
    assert repr(model) == "\n".join([
        "Sequential(",
        "  (0): Conv2d(1, 4, kernel_size=3, stride=1, padding=1)",
        "  (1): BatchNorm2d(4, eps=1e-05, track_running_stats=False)",
        "  (2): ReLU()",
        "  (3): MaxPool2d(kernel_size=2, stride=2)",
        "  (4): Flatten(start_dim=1)",
        "  (5): Linear(in_features=4, out_features=2, bias=True)",
        ")"])


@pytest.mark.parametrize("make, message", [
    (lambda rng: nn.Linear(0, 3, rng), "Linear: in_features must be an integer >= 1, got 0"),
    (lambda rng: nn.Linear(2, 2.5, rng), "Linear: out_features must be an integer >= 1, got 2.5"),
    (lambda rng: nn.Conv2d(1, 4, 0, rng), "Conv2d: kernel_size must be an integer >= 1, got 0"),
    (lambda rng: nn.Conv2d(1, 4, 3, rng, stride=0), "Conv2d: stride must be an integer >= 1, got 0"),
    (lambda rng: nn.Conv2d(1, 4, 3, rng, padding=-1), "Conv2d: padding must be an integer >= 0, got -1"),
    (lambda rng: nn.BatchNorm2d(0), "BatchNorm2d: num_features must be an integer >= 1, got 0"),
    (lambda rng: nn.BatchNorm1d(3, momentum=2.0),
     r"BatchNorm1d: momentum must lie in \[0, 1\] and eps be positive, got momentum=2.0, eps=1e-05"),
    (lambda rng: nn.MaxPool2d(2, stride=0), "MaxPool2d: stride must be an integer >= 1, got 0"),
    (lambda rng: nn.Sequential(nn.ReLU(), 3), "Sequential: child '1' is a int, expected a Module")])
def test_layers_refuse_bad_sizes_when_made(make, message):
    with pytest.raises((ValueError, TypeError), match=f"^{message}$"):
        make(np.random.default_rng(0))
