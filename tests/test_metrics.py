import torch

from modicl.data import sample_sequences
from modicl.metrics import Counts, classify_phase, evaluate


class Oracle(torch.nn.Module):
    """Predicts the true next token at the chosen positions and a wrong one elsewhere."""

    def __init__(self, p, right_at_z: bool, right_elsewhere: bool, full: torch.Tensor):
        super().__init__()
        self.p, self.full, self.right_at_z, self.right_elsewhere = p, full, right_at_z, right_elsewhere

    def forward(self, inputs):
        rows = [int((self.full[:, :-1] == r).all(1).nonzero()[0]) for r in inputs]
        nxt = self.full[rows, 1:]  # the true next token at every position
        T = inputs.shape[1]
        y_pos = torch.zeros(T, dtype=torch.bool)
        y_pos[1::3] = True
        right = torch.where(y_pos, torch.tensor(self.right_at_z), torch.tensor(self.right_elsewhere))
        pred = torch.where(right, nxt, (nxt + 1) % self.p)
        return torch.nn.functional.one_hot(pred, self.p).float() * 10


def _run(right_at_z, right_elsewhere):
    p = 7
    tasks, pairs = torch.tensor([[1, 2], [3, 5]]), torch.tensor([(x, y) for x in range(p) for y in range(p)])
    g = torch.Generator()
    g.manual_seed(0)
    full = sample_sequences(tasks, pairs, 8, 5, p, g)
    g.manual_seed(0)
    model = Oracle(p, right_at_z, right_elsewhere, full)
    return evaluate(model, {"s": (tasks, pairs)}, n_ctx=5, p=p, sequences=16, batch_size=5, generator=g)["s"]


def test_accuracy_of_fabricated_logits_counts_only_z_positions():
    right_only_at_z = _run(True, False)
    assert right_only_at_z["acc"] == 1.0 and right_only_at_z["acc_last"] == 1.0 and right_only_at_z["kshot"] == [1.0] * 5
    wrong_only_at_z = _run(False, True)
    assert wrong_only_at_z["acc"] == 0.0 and wrong_only_at_z["acc_last"] == 0.0
    assert right_only_at_z["n_sequences"] == 16


def test_counts_stay_exact_past_256_under_bf16():
    n, n_ctx, V = 1000, 3, 5
    targets = torch.randint(0, V, (n, n_ctx))
    logits = torch.nn.functional.one_hot(targets, V).to(torch.bfloat16)
    logits[:3, -1] = torch.nn.functional.one_hot((targets[:3, -1] + 1) % V, V).to(torch.bfloat16)  # 3 wrong
    c = Counts(n_ctx, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c.add(logits, targets)
        c.add(logits, targets)
    r = c.result()
    assert c.correct.tolist() == [2000, 2000, 1994]
    assert r["acc_last"] == 1994 / 2000 and r["acc"] == 5994 / 6000 and r["n_sequences"] == 2000


def _m(idtr, idte, oodtr, oodte):
    return {s: {"acc_last": v} for s, v in zip(("id_train", "id_test", "ood_train", "ood_test"), (idtr, idte, oodtr, oodte))}


def test_phase_labels_follow_table_1():
    assert classify_phase(_m(1.0, 0.2, 0.1, 0.1)) == "id_memorization"
    assert classify_phase(_m(0.9, 0.8, 0.2, 0.1)) == "id_generalization"
    assert classify_phase(_m(0.9, 0.3, 0.7, 0.2)) == "ood_memorization"
    assert classify_phase(_m(0.9, 0.8, 0.8, 0.6)) == "ood_generalization"
    assert classify_phase(_m(0.2, 0.1, 0.1, 0.1)) == "none"
    assert classify_phase(_m(0.9, 0.8, 0.8, 0.6), threshold=0.7) == "ood_memorization"
