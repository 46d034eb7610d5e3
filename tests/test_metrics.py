import numpy as np
import pytest

from tinysml.metrics import accuracy, confusion_matrix, macro_f1, report


def test_hand_computed_case():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp1 fp0 fn1 -> 2/3
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert "precision" in report(y_true, y_pred, ["a", "b", "c"])


def test_macro_f1_matches_sklearn_convention_for_absent_classes():
    # class 3 never appears: it is skipped; class 2 is predicted but never true: F1 0, counted
    assert macro_f1([0, 1], [0, 2]) == pytest.approx((1 + 0 + 0) / 3)


def test_length_mismatch():
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        accuracy([0, 1, 2], [0, 1])
