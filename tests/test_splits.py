"""Validation splits and the prepared inputs (tinysml/data/splits.py, prepare.py), property by
property: a split is a partition of the training windows; by subject it moves whole subjects, about
a fraction of them and at least one; without subjects it is stratified by class and leaves a class
of one window in training; the defaults are a fifth and seed 0; leave-one-subject-out folds are
partitions too; prepare scales all three parts with statistics of the training part alone."""
import numpy as np
import pytest

from tinysml.data import HARDataset, WindowSet, fit_scaler, leave_one_subject_out, prepare, validation_split

R = np.random.default_rng(7)


def _windows(subjects, classes=3, per=4):
    subjects = np.asarray(subjects)
    n = len(subjects)
    X = (R.standard_normal((n, 2, 8)) + np.arange(n)[:, None, None]).astype(np.float32)   # each row unique
    return WindowSet(X, np.arange(n) % classes, subjects)


def _assert_partition(whole, a, b):
    """a and b together are exactly the windows of whole, each once (rows are told apart by X)."""
    assert len(a) + len(b) == len(whole)
    joined = np.concatenate([a.X, b.X])
    order = np.lexsort(joined.reshape(len(joined), -1).T)
    ref = np.lexsort(whole.X.reshape(len(whole), -1).T)
    np.testing.assert_array_equal(joined[order], whole.X[ref])
    np.testing.assert_array_equal(np.concatenate([a.y, b.y])[order], whole.y[ref])
    np.testing.assert_array_equal(np.concatenate([a.subjects, b.subjects])[order], whole.subjects[ref])


@pytest.mark.parametrize("n_subjects, fraction, expected", [(10, 0.2, 2), (10, 0.34, 3), (10, 0.26, 3), (4, 0.01, 1),
                                                            (3, 0.5, 2), (2, 0.2, 1)])
def test_by_subject_whole_subjects_round_of_the_fraction_at_least_one(n_subjects, fraction, expected):
    ws = _windows(np.repeat(np.arange(n_subjects) + 100, 5))
    train, val = validation_split(ws, fraction, seed=3)
    _assert_partition(ws, train, val)
    assert len(set(val.subjects)) == expected and not set(train.subjects) & set(val.subjects)
    for s in set(val.subjects):                               # every window of a validation subject moved
        assert (val.subjects == s).sum() == 5


def test_by_subject_defaults_are_a_fifth_and_seed_0_and_the_seed_matters():
    ws = _windows(np.repeat(np.arange(10), 3))
    default_train, default_val = validation_split(ws)
    explicit_train, explicit_val = validation_split(ws, 0.2, 0)
    np.testing.assert_array_equal(default_val.X, explicit_val.X)
    assert len(set(default_val.subjects)) == 2
    picks = {tuple(sorted(set(validation_split(ws, 0.2, seed)[1].subjects))) for seed in range(8)}
    assert len(picks) > 1                                     # another seed, other subjects
    assert picks == {tuple(sorted(set(validation_split(ws, 0.2, seed)[1].subjects))) for seed in range(8)}


def test_one_training_subject_is_refused():
    with pytest.raises(ValueError, match=r"^a subject-wise validation split needs at least two training subjects$"):
        validation_split(_windows(np.zeros(6, int)))


def test_one_unknown_subject_makes_the_split_stratified():
    subjects = np.repeat(np.arange(6), 5)
    subjects[0] = -1                                          # one window without a subject id
    ws = _windows(subjects, classes=3)
    train, val = validation_split(ws, 0.2, seed=0)
    _assert_partition(ws, train, val)
    assert np.bincount(val.y, minlength=3).tolist() == [2, 2, 2]   # 10 per class, a fifth of each
    assert not ws.subject_wise and _windows(np.repeat(np.arange(6), 5), classes=3).subject_wise


@pytest.mark.parametrize("counts, fraction, expected", [([20, 20, 20], 0.25, [5, 5, 5]), ([10, 3, 7], 0.2, [2, 1, 1]),
                                                         ([10, 1, 2], 0.2, [2, 0, 1]), ([9, 9], 0.5, [4, 4])])
def test_without_subjects_stratified_by_class(counts, fraction, expected):
    y = np.repeat(np.arange(len(counts)), counts)
    ws = WindowSet((R.standard_normal((len(y), 2, 8)) + np.arange(len(y))[:, None, None]).astype(np.float32), y,
                   -np.ones(len(y)))
    train, val = validation_split(ws, fraction, seed=2)
    _assert_partition(ws, train, val)
    assert np.bincount(val.y, minlength=len(counts)).tolist() == expected     # round(), at least one, none of one
    other = validation_split(ws, fraction, seed=5)[1]
    assert len(other) == sum(expected) and not np.array_equal(np.sort(val.X[:, 0, 0]), np.sort(other.X[:, 0, 0]))


def test_stratified_default_fraction():
    y = np.repeat(np.arange(2), 10)
    ws = WindowSet(np.zeros((20, 1, 4), np.float32), y, -np.ones(20))
    assert np.bincount(validation_split(ws)[1].y).tolist() == [2, 2]


def test_leave_one_subject_out_folds_are_partitions_in_subject_order():
    ws = _windows(np.repeat([7, 3, 5], [4, 6, 2]))
    folds = list(leave_one_subject_out(ws))
    assert [s for s, _, _ in folds] == [3, 5, 7] and all(type(s) is int for s, _, _ in folds)
    for s, train, test in folds:
        _assert_partition(ws, train, test)
        assert set(test.subjects) == {s} and s not in set(train.subjects)
    with pytest.raises(ValueError, match=r"^leave-one-subject-out needs subject ids; this data set has none$"):
        next(leave_one_subject_out(_windows([0, 1, -1])))


def test_prepare_scales_every_part_with_the_training_part_statistics():
    subjects = np.repeat(np.arange(5), 8)
    train = _windows(subjects, classes=2)
    test = _windows(np.repeat([9], 6), classes=2)
    d = HARDataset("toy", train, test, ["a", "b"], ["x", "y"], 50.0)
    p = prepare(d, 0.4, seed=1, scaling="zscore")
    tr, va = validation_split(train, 0.4, 1)
    s = fit_scaler(tr.X, "zscore")
    np.testing.assert_array_equal(p.scaler.shift, s.shift)
    for (X, y), part in [(p.train, tr), (p.val, va), (p.test, test)]:
        np.testing.assert_allclose(X, s.transform(part.X), rtol=1e-6)
        np.testing.assert_array_equal(y, part.y)
    np.testing.assert_array_equal(p.train_subjects, np.unique(tr.subjects))
    np.testing.assert_array_equal(p.val_subjects, np.unique(va.subjects))
    assert p.dataset is d and len(p.val_subjects) == 2
    robust = prepare(d, 0.4, seed=1)                          # the default scaling is robust, not zscore
    np.testing.assert_array_equal(robust.scaler.shift, fit_scaler(tr.X, "robust").shift)
    assert not np.allclose(robust.scaler.shift, s.shift)
    default = prepare(d)                                       # and the default split a fifth, seed 0
    np.testing.assert_array_equal(default.val_subjects, np.unique(validation_split(train, 0.2, 0)[1].subjects))
