"""ArcFaceLoss: logits for known angles, the margin fallback, label smoothing per category, bad input."""

import math

import pytest
import torch
from torch.nn import functional as F

from oml.losses import ArcFaceLoss, ArcFaceLossWithMLP
from oml.losses.arcface import label_smoothing


def arcface_with_axes(**kwargs: object) -> ArcFaceLoss:
    """3 classes whose weights are the x, y and z axes (their norms are irrelevant: weights are normalised)."""
    criterion = ArcFaceLoss(in_features=3, num_classes=3, **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():
        criterion.weight.copy_(torch.diag(torch.tensor([1.0, 2.0, 3.0])))
    return criterion


def at_angle(theta: float) -> torch.Tensor:
    """A feature (scaled: features are normalised too) at angle theta from the x axis, in the x-y plane."""
    return 7 * torch.tensor([[math.cos(theta), math.sin(theta), 0.0]])


def test_target_logit_gets_the_angular_margin_and_others_stay_cosines() -> None:
    theta, m, s = math.pi / 6, 0.5, 10.0
    criterion = arcface_with_axes(m=m, s=s, reduction="none")
    loss = criterion(at_angle(theta), torch.tensor([0]))
    expected_logits = s * torch.tensor([[math.cos(theta + m), math.sin(theta), 0.0]])
    assert loss.item() == pytest.approx(F.cross_entropy(expected_logits, torch.tensor([0])).item(), rel=1e-5)


def test_past_pi_minus_m_the_target_logit_falls_back_to_cosine_minus_m_sin_m() -> None:
    theta, m, s = math.pi - 0.2, 0.5, 4.0  # theta + m > pi
    criterion = arcface_with_axes(m=m, s=s, reduction="none")
    loss = criterion(at_angle(theta), torch.tensor([0]))
    expected_logits = s * torch.tensor([[math.cos(theta) - m * math.sin(m), math.sin(theta), 0.0]])
    assert loss.item() == pytest.approx(F.cross_entropy(expected_logits, torch.tensor([0])).item(), rel=1e-5)


def test_accuracy_is_logged_from_the_cosines_without_margin() -> None:
    criterion = arcface_with_axes()
    features = torch.cat([at_angle(0.1), at_angle(math.pi / 2 - 0.1), at_angle(0.2)])
    criterion(features, torch.tensor([0, 1, 1]))
    assert criterion.last_logs == {"accuracy": pytest.approx(2 / 3)}


def test_gradients_reach_the_features_and_the_class_weights() -> None:
    criterion = ArcFaceLoss(in_features=5, num_classes=4)
    features = torch.randn(6, 5, requires_grad=True)
    criterion(features, torch.tensor([0, 1, 2, 3, 0, 1])).backward()
    assert bool(torch.isfinite(features.grad).all()) and bool((features.grad != 0).any())
    assert criterion.weight.grad is not None and bool((criterion.weight.grad != 0).any())


def test_a_feature_exactly_on_its_class_weight_has_finite_gradients() -> None:
    criterion = arcface_with_axes()
    features = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True)
    criterion(features, torch.tensor([0])).backward()
    assert bool(torch.isfinite(features.grad).all())


def test_smoothing_without_categories_spreads_epsilon_over_all_labels() -> None:
    targets = label_smoothing(torch.tensor([2, 0]), num_classes=4, epsilon=0.2)
    assert targets[0].tolist() == pytest.approx([0.05, 0.05, 0.85, 0.05])
    assert targets.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])


def test_smoothing_with_categories_spreads_epsilon_only_inside_the_true_category() -> None:
    categories = torch.tensor([0, 0, 0, 1, 1])
    targets = label_smoothing(torch.tensor([1, 4]), num_classes=5, epsilon=0.3, categories=categories)
    assert targets[0].tolist() == pytest.approx([0.1, 0.8, 0.1, 0.0, 0.0])
    assert targets[1].tolist() == pytest.approx([0.0, 0.0, 0.0, 0.15, 0.85])
    assert targets[0, :3].sum().item() == pytest.approx(1.0)  # all the mass stays in the category


def test_arcface_with_categories_trains_against_the_category_smoothed_targets() -> None:
    label2category = {0: "shoes", 1: "shoes", 2: "bags"}
    smoothed = arcface_with_axes(m=0.3, s=8.0, smoothing_epsilon=0.2, label2category=label2category)
    plain = arcface_with_axes(m=0.3, s=8.0)
    x, y = torch.cat([at_angle(0.4), at_angle(1.2)]), torch.tensor([0, 1])

    logits = 8.0 * torch.tensor(
        [
            [math.cos(0.4 + 0.3), math.sin(0.4), 0.0],
            [math.cos(1.2), math.cos(math.pi / 2 - 1.2 + 0.3), 0.0],
        ]
    )
    targets = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]])
    expected = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert smoothed(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert plain(x, y).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)


def test_label2category_must_cover_every_label() -> None:
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        ArcFaceLoss(in_features=3, num_classes=3, smoothing_epsilon=0.1, label2category={0: "a", 1: "b"})


@pytest.mark.parametrize("epsilon", [-0.1, 1.0, 1.5])
def test_smoothing_epsilon_must_be_in_zero_one(epsilon: float) -> None:
    with pytest.raises(ValueError, match="smoothing_epsilon"):
        ArcFaceLoss(in_features=3, num_classes=3, smoothing_epsilon=epsilon)


@pytest.mark.parametrize("labels", [[0, 3], [-1, 0]])
def test_labels_outside_zero_to_num_classes_are_refused(labels: list) -> None:
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 3\)"):
        ArcFaceLoss(in_features=3, num_classes=3)(torch.randn(2, 3), torch.tensor(labels))


def test_labels_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="one label per item"):
        ArcFaceLoss(in_features=3, num_classes=3)(torch.randn(3, 3), torch.tensor([0, 1]))


def test_the_category_table_follows_the_module_but_is_not_saved() -> None:
    criterion = ArcFaceLoss(in_features=3, num_classes=2, smoothing_epsilon=0.1, label2category={0: 5, 1: 5})
    assert list(criterion.state_dict()) == ["weight"]
    criterion = criterion.to(torch.float64)
    loss = criterion(torch.randn(2, 3, dtype=torch.float64), torch.tensor([0, 1]))
    assert loss.dtype == torch.float64


def test_arcface_with_mlp_projects_before_the_loss_and_trains_the_projector() -> None:
    criterion = ArcFaceLossWithMLP(in_features=6, num_classes=3, mlp_features=[8, 4], smoothing_epsilon=0.1)
    assert criterion.arcface.weight.shape == (3, 4)
    features = torch.randn(5, 6, requires_grad=True)
    criterion(features, torch.tensor([0, 1, 2, 0, 1])).backward()
    assert features.grad is not None
    assert all(p.grad is not None for p in criterion.mlp.parameters())
    assert "accuracy" in criterion.last_logs
    with pytest.raises(ValueError, match="mlp_features"):
        ArcFaceLossWithMLP(in_features=6, num_classes=3, mlp_features=[])
